"""Event-based Bloch simulator against closed forms, the analytic phase-cycled bSSFP model and
the SPIN Eq. 13 image; autograd; batching; bad inputs."""

from __future__ import annotations

import math

import pytest
import torch

from mrphys.errors import MrphysError
from mrphys.metrics import psnr
from mrphys.physics import bloch, signal
from mrphys.physics.fourier import ifft2c
from mrphys.physics.sequence import ADC, Block, Loop, RFPulse, Sequence, bssfp, gre, spin_echo
from mrphys.physics.ssfp import pc_bssfp_signal
from mrphys.tissue import Phantom, spin_shepp_logan

F64 = torch.float64
# (rho, T1 s, T2 s): SPIN Table 1 tissues
TISSUES = [(0.8, 0.324, 0.070), (0.98, 4.2, 1.99), (0.745, 0.857, 0.100), (0.617, 0.583, 0.080)]


def voxels(tissues=TISSUES, db0=None, b1=None, dtype=F64) -> Phantom:
    """A batch of single-voxel phantoms (B, 1, 1)."""
    cols = zip(*tissues, strict=True)
    rho, t1, t2 = (torch.tensor(c, dtype=dtype).reshape(-1, 1, 1) for c in cols)
    extra = {}
    if db0 is not None:
        extra["db0"] = torch.as_tensor(db0, dtype=dtype).reshape(-1, 1, 1)
    if b1 is not None:
        extra["b1"] = torch.as_tensor(b1, dtype=dtype).reshape(-1, 1, 1)
    return Phantom(rho, t1, t2, fov=(1e-3, 1e-3), **extra)


def ifft_image(k: torch.Tensor) -> torch.Tensor:
    return ifft2c(k, norm="backward")


# (a) spin echo vs its steady-state closed form
@pytest.mark.parametrize("tr,te", [(10.0, 0.04), (1.0, 0.02), (0.5, 0.1)])
def test_spin_echo_matches_steady_state_closed_form(tr, te):
    ph = voxels()
    seq = spin_echo(matrix=1, fov=1e-3, tr=tr, te=te, n_dummy=30)
    s = bloch.simulate(seq, ph)[:, 0]
    ref = signal.spin_echo_steady_state(ph.rho, ph.t1, ph.t2, tr, te).flatten()
    rel = ((s - ref).abs() / ref.abs()).max()
    assert rel < 1e-4, float(rel)
    assert s.imag.abs().max() < 1e-6 * ref.abs().max()  # 90_y/180_x: real positive echo


def test_spin_echo_carry_over_matters_for_csf():
    """TR 10 s leaves CSF partly saturated: without dummies the first echo is too high."""
    ph = voxels([(0.98, 4.2, 1.99)])
    s0 = bloch.simulate(spin_echo(matrix=1, fov=1e-3, n_dummy=0), ph)[0, 0].real
    ss = signal.spin_echo_steady_state(0.98, 4.2, 1.99, 10.0, 0.04)
    assert s0 > ss * 1.05


# (b) bSSFP steady state vs closed forms
@pytest.mark.parametrize("n_cycles", [1, 4, 6, 12])
def test_bssfp_matches_pc_bssfp_signal(n_cycles):
    tis = [(1.0, 0.939, 0.062), (1.0, 0.6, 0.05), (1.0, 1.5, 0.12), (1.0, 0.9, 0.09)]
    db0 = torch.tensor([0.0, 25.0, -60.0, 90.0], dtype=F64)
    b1 = torch.tensor([1.0, 0.8, 1.25, 1.1], dtype=F64)
    ph = voxels(tis, db0=db0, b1=b1)
    tr, te, flip = 4.8e-3, 2.4e-3, math.radians(15.0)
    seq = bssfp(tr=tr, te=te, flip=flip, n_cycles=n_cycles, n_dummy=3000)
    s = bloch.simulate(seq, ph)  # (B, N)
    t1 = torch.tensor([t[1] for t in tis], dtype=F64)
    t2 = torch.tensor([t[2] for t in tis], dtype=F64)
    theta = -2 * math.pi * db0 * tr
    ref = pc_bssfp_signal(t1, t2, b1, theta, tr=tr, te=te, flip=flip, n_cycles=n_cycles)
    rel = (s - ref).abs().max() / ref.abs().max()
    assert rel < 1e-3, float(rel)
    # also the single-increment closed form of physics.signal
    phi = math.pi * (2 * torch.arange(1, n_cycles + 1, dtype=F64) - 1) / n_cycles
    ref2 = signal.bssfp_steady_state(
        1.0,
        t1[:, None],
        t2[:, None],
        tr,
        te,
        flip * b1[:, None],
        off_resonance_hz=db0[:, None],
        phase_increment=phi,
    )
    assert (s - ref2).abs().max() / ref2.abs().max() < 1e-3


def test_bssfp_on_resonance_magnitude_formula_float32():
    """METHODS section 1 magnitude; float32 phantom, long dummy train through the loop power."""
    ph = voxels(TISSUES, dtype=torch.float32)
    tr, flip = 5e-3, math.radians(40.0)
    s = bloch.simulate(bssfp(tr=tr, flip=flip, phase_increment=math.pi, n_dummy=5000), ph)[:, 0]
    e1, e2 = torch.exp(-tr / ph.t1.flatten()), torch.exp(-tr / ph.t2.flatten())
    ref = (
        ph.rho.flatten()
        * (1 - e1)
        * math.sin(flip)
        * e2.sqrt()
        / (1 - (e1 - e2) * math.cos(flip) - e1 * e2)
    )
    rel = ((s.abs() - ref) / ref).abs().max()
    assert rel < 1e-3, float(rel)


def test_bssfp_imaging_mode_recovers_steady_state_image():
    ph = spin_shepp_logan(1, matrix=32, fov=0.032, dtype=F64)[0]
    tr, te, flip = 6e-3, 3e-3, math.radians(30.0)
    seq = bssfp(
        tr=tr,
        te=te,
        flip=flip,
        phase_increment=math.pi,
        n_dummy=3000,
        matrix=32,
        fov=0.032,
        readout_dt=1e-5,
    )
    k = bloch.simulate_kspace(seq, ph)[0]
    img = ifft_image(k)
    truth = signal.bssfp_steady_state(ph.rho, ph.t1, ph.t2, tr, te, flip)
    # T2 decay during the 320 us readout is the only difference
    assert (img - truth).abs().max() < 2e-3 * truth.abs().max()


def test_gre_matches_ernst():
    ph = voxels()
    tr, te = 0.02, 0.004
    for deg in (10.0, 35.0, 90.0):
        flip = math.radians(deg)
        seq = gre(tr=tr, te=te, flip=flip, matrix=1, fov=1e-3, n_dummy=3000)
        s = bloch.simulate(seq, ph)[:, 0]
        ref = signal.spoiled_gre_steady_state(ph.rho, ph.t1, ph.t2, tr, te, flip).flatten()
        assert ((s - ref).abs() / ref).max() < 1e-4


def test_rf_spoiled_gre_with_isochromats_approaches_ernst():
    """RF spoiling + spoiler lobe, several isochromats per voxel: close to the ideal."""
    ph = voxels([(1.0, 0.8, 0.05)])
    tr, te, flip = 0.02, 0.004, math.radians(20.0)
    seq = gre(tr=tr, te=te, flip=flip, matrix=1, fov=1e-3, spoiling="rf", n_dummy=150)
    s = bloch.simulate(seq, ph, isochromats=64)[0, 0].abs()
    ref = float(signal.spoiled_gre_steady_state(1.0, 0.8, 0.05, tr, te, flip))
    assert abs(float(s) - ref) / ref < 0.03
    unspoiled = bloch.simulate(
        gre(tr=tr, te=te, flip=flip, matrix=1, fov=1e-3, spoiling="none", n_dummy=150), ph
    )[0, 0].abs()
    assert abs(float(unspoiled) - ref) / ref > 0.05  # the test can tell spoiling apart


# (c) gradcheck w.r.t. flip angle, gradient amplitude, T1 and T2
def _tiny_seq(flip: torch.Tensor, g: torch.Tensor) -> Sequence:
    z = torch.zeros((), dtype=F64)
    d = lambda v: torch.tensor(v, dtype=F64)  # noqa: E731
    rf = RFPulse(flip, d(math.pi / 2))
    return Sequence(
        [
            Loop(
                [
                    Block(d(0.05), rf=rf),
                    Block(d(2e-3), gx=g, gy=-0.5 * g),
                    Block(d(0.3), spoil=True),
                ],
                4,
                z,
            ),
            Block(d(1e-3), rf=rf),
            Block(d(2e-3), gx=-g, gy=0.3 * g),
            Block(d(3e-3), gx=g, adc=ADC(3, d(1e-3), z, z)),
        ]
    )


def test_gradcheck_flip_gradient_t1_t2():
    g0 = torch.tensor(2e-3, dtype=F64, requires_grad=True)
    f0 = torch.tensor(1.1, dtype=F64, requires_grad=True)
    t1 = torch.tensor([[0.4, 0.9]], dtype=F64, requires_grad=True)
    t2 = torch.tensor([[0.05, 0.08]], dtype=F64, requires_grad=True)
    rho = torch.tensor([[1.0, 0.7]], dtype=F64)

    def f(flip, g, t1, t2):
        ph = Phantom(rho, t1, t2, fov=(0.01, 0.01))
        s = bloch.simulate(_tiny_seq(flip, g), ph)
        return torch.view_as_real(s)

    assert torch.autograd.gradcheck(f, (f0, g0, t1, t2), eps=1e-7, atol=1e-6, rtol=1e-4)


def test_gradient_flows_to_builder_parameters_and_phantom_maps():
    flip = torch.tensor(1.2, dtype=F64, requires_grad=True)
    tr = torch.tensor(1.0, dtype=F64, requires_grad=True)
    ph = spin_shepp_logan(1, matrix=32, fov=0.032, dtype=F64)
    ph.rho.requires_grad_(True)
    k = bloch.simulate_kspace(spin_echo(matrix=32, fov=0.032, tr=tr, flip1=flip), ph)
    k.abs().sum().backward()
    for t in (flip, tr, ph.rho):
        assert t.grad is not None and bool(torch.isfinite(t.grad).all()) and t.grad.abs().sum() > 0


# (d) FFT of simulated SPIN k-space vs the Eq. 13 image
def test_spin_phantom_fft_matches_eq13_image():
    ph = spin_shepp_logan(1, matrix=64, fov=0.064, generator=torch.Generator().manual_seed(3))[0]
    k = bloch.simulate_kspace(spin_echo(matrix=64, fov=0.064), ph)
    assert k.shape == (64, 64) and k.dtype == torch.complex64
    img = ifft_image(k).abs()
    truth = signal.spin_echo_image(ph, 10.0, 0.04)
    value = float(psnr(img[None], truth[None]))
    assert value > 35.0, value


def test_batched_equals_single_and_chunking():
    ph = spin_shepp_logan(3, matrix=32, fov=0.032, dtype=F64)
    seq = spin_echo(matrix=32, fov=0.032, tr=2.0)
    kb = bloch.simulate_kspace(seq, ph, chunk=2)
    for i in range(3):
        assert torch.allclose(kb[i], bloch.simulate_kspace(seq, ph[i]), atol=1e-12)


def test_loop_power_equals_expanded_loop():
    ph = voxels(db0=[5.0, -3.0, 0.0, 11.0])
    seq = bssfp(tr=4e-3, flip=0.5, n_cycles=3, n_dummy=37)
    flat = Sequence(seq.blocks, seq.kspace_shape)
    assert torch.allclose(bloch.simulate(seq, ph), bloch.simulate(flat, ph), atol=1e-12)


def test_isochromats_keep_total_magnetisation():
    ph = voxels()
    seq = spin_echo(matrix=1, fov=1e-3, tr=2.0)
    one = bloch.simulate(seq, ph)
    many = bloch.simulate(seq, ph, isochromats=(2, 3))
    assert torch.allclose(one, many, rtol=1e-9)  # no gradients at the centre voxel: no dephasing


def test_background_voxels_are_silent_and_gradients_finite():
    rho = torch.tensor([[0.0, 1.0]], dtype=F64)
    t1 = torch.tensor([[0.0, 0.8]], dtype=F64, requires_grad=True)
    t2 = torch.tensor([[0.0, 0.07]], dtype=F64)
    s = bloch.simulate(
        spin_echo(matrix=1, fov=1e-3, tr=1.0),
        Phantom(rho[:, :1], t1[:, :1].detach(), t2[:, :1], fov=(1e-3, 1e-3)),
    )
    assert s.abs().max() == 0
    ph = Phantom(rho, t1, t2, fov=(1e-3, 2e-3))
    bloch.simulate(spin_echo(matrix=1, fov=1e-3, tr=1.0), ph).abs().sum().backward()
    assert bool(torch.isfinite(t1.grad).all())


def test_bad_inputs_raise():
    ph = voxels()
    with pytest.raises(MrphysError, match="seq must be a mrphys Sequence; got str"):
        bloch.simulate("spin echo", ph)
    with pytest.raises(MrphysError, match="phantom must be a mrphys Phantom; got str"):
        bloch.simulate(spin_echo(matrix=1, fov=1e-3), "phantom")
    with pytest.raises(MrphysError, match="isochromats must be >= 1; got 0"):
        bloch.simulate(spin_echo(matrix=1, fov=1e-3), ph, isochromats=0)
    with pytest.raises(MrphysError, match="chunk must be >= 1; got 0"):
        bloch.simulate(spin_echo(matrix=1, fov=1e-3), ph, chunk=0)
    with pytest.raises(MrphysError, match="float32 or float64; got torch.float16"):
        bloch.simulate(spin_echo(matrix=1, fov=1e-3), ph.to(dtype=torch.float16))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    ph = spin_shepp_logan(2, matrix=32, fov=0.032)
    seq = spin_echo(matrix=32, fov=0.032)
    kc = bloch.simulate_kspace(seq, ph)
    kg = bloch.simulate_kspace(seq, ph.to(device="cuda"))
    assert kg.device.type == "cuda"
    assert (kg.cpu() - kc).abs().max() < 1e-4 * kc.abs().max()


def test_gradients_wrt_b1_and_off_resonance_maps():
    ph = voxels(db0=[3.0, -8.0, 0.5, 12.0], b1=[0.9, 1.1, 1.0, 0.8])
    ph.db0.requires_grad_(True)
    ph.b1.requires_grad_(True)
    s = bloch.simulate(bssfp(tr=5e-3, flip=0.6, n_cycles=2, n_dummy=200), ph, isochromats=2)
    s.abs().sum().backward()
    for t in (ph.db0, ph.b1):
        assert t.grad is not None and bool(torch.isfinite(t.grad).all()) and t.grad.abs().sum() > 0
