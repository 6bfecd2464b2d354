"""Finite RF pulses, slice selection, gradient waveforms with ramps and the System limits:
against the small-tip Fourier prediction, a finely time-stepped Bloch reference (RK4), hard
pulses, closed-form moments; gradcheck through RF samples, gradient amplitudes and timings."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mrphys.errors import MrphysError
from mrphys.physics import bloch
from mrphys.physics import rf as rfm
from mrphys.physics.sequence import (
    ADC,
    GAMMABAR,
    Block,
    Grad,
    RFPulse,
    Sequence,
    ShapedRF,
    gre,
    spin_echo,
)
from mrphys.physics.system import System, trapezoid
from mrphys.tissue import Phantom

F64 = torch.float64
# 4 us RF raster keeps the pulses short in samples (the physics does not depend on it)
S = System(rf_raster=4e-6)


def fwhm(z: np.ndarray, a: np.ndarray) -> float:
    """Full width at half maximum of a single-peaked profile, linear between samples."""
    half = a.max() / 2
    above = np.nonzero(a >= half)[0]
    i0, i1 = above[0], above[-1]
    zl = np.interp(half, [a[i0 - 1], a[i0]], [z[i0 - 1], z[i0]])
    zr = np.interp(half, [a[i1 + 1], a[i1]], [z[i1 + 1], z[i1]])
    return float(zr - zl)


def sinc_block(flip_deg: float, thickness: float = 5e-3) -> Block:
    p = rfm.sinc_pulse(math.radians(flip_deg), 2e-3, S, tbw=4.0)
    blk, _ = rfm.slice_selective(p, thickness, 4.0, S, dtype=F64)
    return blk


def test_small_tip_slice_profile_matches_fourier_prediction():
    blk = sinc_block(10.0)
    z = torch.linspace(-8e-3, 8e-3, 321, dtype=F64)
    mxy, _ = bloch.block_response(blk, z)
    # small-tip: |Mxy(z)| = |2 pi sum_j s_j dt exp(-i 2 pi gammabar Gz z t_j)| (flat top)
    rf = blk.rf
    s = rf.signal.numpy()
    tj = (np.arange(rf.n) + 0.5) * rf.dwell
    gz = float(blk.gz.amps[1])
    ph = np.exp(-2j * np.pi * GAMMABAR * gz * np.outer(z.numpy(), tj))
    pred = np.abs(2 * np.pi * rf.dwell * ph @ s)
    sim = mxy.abs().numpy()
    w_sim, w_pred = fwhm(z.numpy(), sim), fwhm(z.numpy(), pred)
    assert abs(w_sim - w_pred) / w_pred < 0.05, (w_sim, w_pred)
    assert w_sim == pytest.approx(5e-3, rel=0.1)  # the slice thickness asked for
    assert sim.max() == pytest.approx(math.sin(math.radians(10.0)), rel=0.01)


def rk4_reference(blk: Block, z: np.ndarray, sub: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Integrate dM/dt = Omega x M (right-handed rotation at angular velocity
    Omega = (2 pi B1x, 2 pi B1y, -2 pi gammabar Gz z), the simulator's sign convention) with RK4
    at ``dwell / sub`` steps through the pulse, then free precession to the block end."""
    rf = blk.rf
    s = rf.signal.numpy() * np.exp(1j * float(rf.phase))
    g = blk.gz
    m = np.zeros((z.size, 3))
    m[:, 2] = 1.0
    h = rf.dwell / sub

    gt, ga = g.times.numpy(), g.amps.numpy()

    def omega(t: float, j: int) -> np.ndarray:
        gz = np.interp(t, gt, ga)
        w = np.empty((z.size, 3))
        w[:, 0] = 2 * np.pi * s[j].real
        w[:, 1] = 2 * np.pi * s[j].imag
        w[:, 2] = -2 * np.pi * GAMMABAR * gz * z
        return w

    # free precession before the pulse (ramp up): rotation about z by the moment
    def precess(m: np.ndarray, mom: float) -> np.ndarray:
        a = -2 * np.pi * GAMMABAR * mom * z
        c, sn = np.cos(a), np.sin(a)
        return np.stack([c * m[:, 0] - sn * m[:, 1], sn * m[:, 0] + c * m[:, 1], m[:, 2]], 1)

    t0 = rf.delay
    mom = lambda t: float(g.moment(torch.tensor([t], dtype=F64))[0])  # noqa: E731
    m = precess(m, mom(t0))
    t = t0
    for j in range(rf.n):
        for _ in range(sub):

            def f(tt: float, mm: np.ndarray, j: int = j) -> np.ndarray:
                return np.cross(omega(tt, j), mm)

            k1 = f(t, m)
            k2 = f(t + h / 2, m + h / 2 * k1)
            k3 = f(t + h / 2, m + h / 2 * k2)
            k4 = f(t + h, m + h * k3)
            m = m + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
            t += h
    m = precess(m, mom(float(blk.duration)) - mom(t))
    return m[:, 0] + 1j * m[:, 1], m[:, 2]


def test_90_degree_slice_profile_matches_time_stepped_bloch_reference():
    blk = sinc_block(90.0)
    z = np.linspace(-6e-3, 6e-3, 25)
    mxy, mz = bloch.block_response(blk, torch.tensor(z, dtype=F64))
    ref_xy, ref_z = rk4_reference(blk, z)
    assert np.abs(mxy.numpy() - ref_xy).max() < 2e-3
    assert np.abs(mz.numpy() - ref_z).max() < 2e-3
    assert abs(mxy.numpy()[12]) == pytest.approx(1.0, abs=0.02)  # 90 deg at the centre


def test_block_pulse_equals_hard_pulse_without_gradients():
    z = torch.zeros(1, dtype=F64)
    for flip in (0.3, math.pi / 2, 2.5):
        p = rfm.block_pulse(flip, 2e-4, S, phase=0.4)
        p = ShapedRF(p.signal.to(torch.complex128), p.dwell, 0.0, p.phase.double())
        a = bloch.block_response(Block(torch.tensor(2e-4, dtype=F64), rf=p), z)
        h = RFPulse(torch.tensor(flip, dtype=F64), torch.tensor(0.4, dtype=F64))
        b = bloch.block_response(Block(torch.tensor(0.0, dtype=F64), rf=h), z)
        assert torch.allclose(a[0], b[0], atol=1e-12) and torch.allclose(a[1], b[1], atol=1e-12)


def test_relaxation_during_a_long_pulse():
    """A 10 ms block pulse on tissue with T2 = 20 ms loses signal against T2 = inf, about
    as the symmetric splitting predicts (half the pulse's T2 decay after the tip)."""
    p = rfm.block_pulse(math.pi / 2, 1e-2, System(rf_raster=1e-4))
    blk = Block(torch.tensor(1e-2, dtype=F64), rf=ShapedRF(p.signal.to(torch.complex128),
                p.dwell, 0.0, p.phase.double()))  # fmt: skip
    z = torch.zeros(1, dtype=F64)
    free = bloch.block_response(blk, z)[0].abs()
    rel = bloch.block_response(blk, z, t1=1.0, t2=0.02)[0].abs()
    assert float(rel / free) == pytest.approx(math.exp(-0.005 / 0.02), rel=0.05)


def test_trapezoid_moments_are_closed_form():
    g = Grad.trapezoid(torch.tensor(0.02, dtype=F64), 1e-4, 5e-4, 2e-4, 1e-4)
    t = torch.linspace(0, 1e-3, 2001, dtype=F64)
    num = torch.cumulative_trapezoid(g.amp_at(t), t)
    assert torch.allclose(g.moment(t[1:]), num, atol=1e-11)
    assert float(g.area()) == pytest.approx(0.02 * (5e-4 + 1.5e-4), rel=1e-12)


def test_ramp_sampling_adc_uses_the_closed_form_moment():
    """An ADC on a ramp: the signal of a spin at x is exp(-i gamma M(t_k) x) with M the
    trapezoid's closed-form moment at each sample."""
    g = Grad.trapezoid(torch.tensor(0.01, dtype=F64), 2e-4, 2e-4, 2e-4)
    adc = ADC(30, torch.tensor(2e-5, dtype=F64), torch.tensor(0.0, dtype=F64),
              torch.tensor(0.0, dtype=F64))  # fmt: skip
    seq = Sequence([
        Block(torch.tensor(0.0, dtype=F64), rf=RFPulse(torch.tensor(math.pi / 2, dtype=F64),
              torch.tensor(math.pi / 2, dtype=F64))),
        Block(torch.tensor(6e-4, dtype=F64), gx=g, adc=adc),
    ])  # fmt: skip
    ph = Phantom(torch.ones(1, 1, dtype=F64), torch.full((1, 1), 50.0, dtype=F64),
                 torch.full((1, 1), 50.0, dtype=F64), fov=(1e-3, 1e-3))  # fmt: skip
    # one voxel at x = 0: shift it with isochromats to x != 0 instead: 2 isochromats at +-dx/4
    s = bloch.simulate(seq, ph, isochromats=2)
    tk = 0.0 + (torch.arange(30, dtype=F64) + 0.5) * 2e-5
    xs = torch.tensor([-0.25e-3, 0.25e-3], dtype=F64)
    ph_k = -2 * math.pi * GAMMABAR * g.moment(tk)[None] * xs[:, None]
    ref = (0.5 * torch.exp(1j * ph_k) * torch.exp(-tk / 50.0)).sum(0)
    assert torch.allclose(s, ref.to(s.dtype), atol=1e-9)


def small_problem(signal: torch.Tensor, amp: torch.Tensor, rise: torch.Tensor) -> torch.Tensor:
    sig = torch.complex(signal, torch.zeros_like(signal))
    rf = ShapedRF(sig, 1e-5, 2e-5, torch.tensor(0.2, dtype=F64))
    gz = Grad.trapezoid(amp, rise, 1e-4, rise, 0.0)
    gx = Grad.trapezoid(amp * 0.5, rise, 1e-4, rise, 0.0)
    d = torch.tensor(2e-4, dtype=F64)
    adc = ADC(4, torch.tensor(2e-5, dtype=F64), torch.tensor(1e-5, dtype=F64),
              torch.tensor(0.0, dtype=F64))  # fmt: skip
    seq = Sequence([Block(d, rf=rf, gz=gz), Block(d, gx=gx, adc=adc)])
    ph = Phantom(torch.tensor([[1.0, 0.7], [0.5, 0.9]], dtype=F64),
                 torch.full((2, 2), 0.8, dtype=F64), torch.full((2, 2), 0.05, dtype=F64),
                 fov=(4e-3, 4e-3))  # fmt: skip
    z = torch.tensor([-1e-3, 0.0, 1.5e-3], dtype=F64)
    out = bloch.simulate(seq, ph, slice_positions=z)
    return torch.view_as_real(out)


def test_gradcheck_rf_samples_gradient_amplitude_and_timing():
    sig = (torch.hann_window(8, dtype=F64) * 300.0 + 20.0).requires_grad_()
    amp = torch.tensor(0.004, dtype=F64, requires_grad=True)
    rise = torch.tensor(4e-5, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(
        small_problem, (sig, amp, rise), eps=1e-7, atol=1e-6, fast_mode=True
    )


def test_gradients_flow_from_a_sinc_flip_through_a_slice():
    flip = torch.tensor(0.5, dtype=F64, requires_grad=True)
    p = rfm.sinc_pulse(flip, 1e-3, S)
    blk, _ = rfm.slice_selective(p, 5e-3, 4.0, S, dtype=F64)
    mxy, _ = bloch.block_response(blk, torch.linspace(-4e-3, 4e-3, 9, dtype=F64))
    mxy.abs().sum().backward()
    assert flip.grad is not None and float(flip.grad) > 0


def test_minimum_te_and_tr_are_named():
    with pytest.raises(MrphysError, match=r"TE 1 ms is below the minimum .* ms"):
        gre(tr=0.02, te=0.001, matrix=64, fov=0.2, system=System())
    with pytest.raises(MrphysError, match=r"TR 3 ms is below the minimum .* ms"):
        gre(tr=0.003, te=None, matrix=256, fov=0.2, system=System())
    with pytest.raises(MrphysError, match=r"TE 5 ms is below the minimum"):
        spin_echo(matrix=64, fov=0.2, tr=1.0, te=0.005, system=System())
    # a readout too strong for max_grad gets the shortest dwell that fits
    seq = gre(matrix=64, fov=0.032, readout_dt=1e-5, system=System())
    ro = next(b for b in seq.blocks if b.adc is not None)
    assert float(ro.gx.amps[1]) <= System().max_grad and float(ro.adc.dwell) > 1e-5


def test_trapezoids_respect_the_limits_and_the_raster():
    sysm = System()
    for area in (1e-6, 3e-5, 2e-4):
        g = trapezoid(area, sysm, dtype=F64)
        t = g.times.numpy()
        a = float(g.amps[1])
        assert abs(a) <= sysm.max_grad * (1 + 1e-9)
        assert abs(a) / (t[1] - t[0]) <= sysm.max_slew * (1 + 1e-9)
        assert np.allclose(np.round(t / sysm.grad_raster) * sysm.grad_raster, t, atol=1e-12)
        assert float(g.area()) == pytest.approx(area, rel=1e-9)
    with pytest.raises(MrphysError, match="needs at least .* ms"):
        trapezoid(2e-4, sysm, duration=1e-4)


def test_dummy_loop_with_finite_pulses_equals_the_expanded_loop():
    from mrphys.physics.sequence import Loop, bssfp

    seq = bssfp(tr=6e-3, matrix=8, fov=0.032, readout_dt=2e-5, n_cycles=2, n_dummy=12,
                system=System())  # fmt: skip
    flat = Sequence(
        [b for it in seq.items for b in (it.expand() if isinstance(it, Loop) else [it])],
        seq.kspace_shape,
    )
    ph = Phantom(torch.rand(8, 8, dtype=F64), torch.full((8, 8), 0.8, dtype=F64),
                 torch.full((8, 8), 0.1, dtype=F64), fov=(0.032, 0.032),
                 db0=torch.linspace(-30, 30, 64, dtype=F64).reshape(8, 8))  # fmt: skip
    a, b = bloch.simulate(seq, ph), bloch.simulate(flat, ph)
    assert torch.allclose(a, b, atol=1e-10 * float(b.abs().max()))
