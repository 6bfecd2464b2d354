"""Calibration from the data (issue 14): prewhitening, coil compression, coil maps, RING, DCF.

The data are simulated here with an analytic-free but honest setup: a phantom of ellipses with a
smooth background phase, coil maps of a Gaussian-loop model (not the birdcage model), radial
k-space from :class:`RadialNUFFT` on the *delayed* trajectory, and complex noise. Estimators see
only the k-space and the nominal trajectory.
"""

from __future__ import annotations

import math

import pytest
import torch

from mrphys.errors import MrphysError
from mrphys.physics.coils import SenseOp, birdcage_maps
from mrphys.physics.fourier import fft2c
from mrphys.physics.nufft import RadialNUFFT, golden_angle_radial, radial_dcf
from mrphys.recon import calib

pytestmark = pytest.mark.usefixtures("one_thread")

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available"),
    ),
]

N = 48  # image size
C = 8  # coils


def _grid(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    r = (torch.arange(n, dtype=torch.float64) - n // 2) / (n / 2)
    return torch.meshgrid(r, r, indexing="ij")


def phantom(n: int = N) -> torch.Tensor:
    """Ellipses (inside 70 % of the field of view) with a smooth phase, ``(n, n)`` complex64."""
    y, x = _grid(n)
    img = ((y / 0.7) ** 2 + (x / 0.55) ** 2 < 1).double()
    img -= 0.5 * (((y - 0.2) / 0.2) ** 2 + ((x + 0.1) / 0.3) ** 2 < 1).double()
    img += 0.6 * (((y + 0.3) / 0.15) ** 2 + ((x - 0.15) / 0.1) ** 2 < 1).double()
    return (img * torch.exp(1j * (0.5 * x + 0.3 * y))).to(torch.complex64)


def gaussian_maps(n_coils: int = C, n: int = N) -> torch.Tensor:
    """Coils with Gaussian magnitude around points on a circle and a linear phase each (not the
    birdcage model), normalised to unit sum of squares: ``(C, n, n)`` complex64."""
    y, x = _grid(n)
    maps = []
    for i in range(n_coils):
        a = 2 * math.pi * i / n_coils + 0.3
        mag = torch.exp(-((y - 0.9 * math.sin(a)) ** 2 + (x - 0.9 * math.cos(a)) ** 2) / 0.72)
        maps.append(mag * torch.exp(1j * (1.3 * (y * math.cos(2 * a) - x * math.sin(a)) + i)))
    m = torch.stack(maps)
    return (m / m.abs().pow(2).sum(0).sqrt()).to(torch.complex64)


def simulate(maps, delay=None, frames=6, spokes=13, noise=0.005, seed=0):
    """Radial k-space ``(T, C, S, N)`` of :func:`phantom` and the *nominal* trajectory."""
    n = maps.shape[-1]
    traj = golden_angle_radial(frames, spokes, 2 * n)
    sampled = traj if delay is None else delay.correct(traj)
    op = SenseOp(maps, RadialNUFFT(sampled, (n, n)))
    k = op(phantom(n).expand(frames, n, n).contiguous())
    g = torch.Generator().manual_seed(seed)
    sigma = noise * float(k.abs().max())
    k = k + sigma * torch.randn(k.shape, generator=g, dtype=torch.complex64)
    return k, traj


def map_error(est: torch.Tensor, true: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean over ``mask`` of ``|est - true e^{i phi}|`` (coil 2-norm), ``phi`` the best phase per
    pixel: the error "up to a phase"."""
    ph = torch.sgn((true.conj() * est).sum(0))
    return float((est - true * ph).abs().pow(2).sum(0).sqrt()[mask].mean())


# -------------------------------------------------------------------------------------------
# prewhitening
# -------------------------------------------------------------------------------------------


def _correlated_noise(c, m, seed):
    g = torch.Generator().manual_seed(seed)
    mix = torch.eye(c, dtype=torch.complex64) + 0.4 * torch.randn(
        c, c, generator=g, dtype=torch.complex64
    )
    mix = mix * torch.linspace(0.5, 2.0, c)[:, None]  # unequal coil noise levels
    return mix, mix @ torch.randn(c, m, generator=g, dtype=torch.complex64)


@pytest.mark.parametrize("device", DEVICES)
def test_prewhitening_makes_the_noise_covariance_the_identity(device):
    mix, scan = _correlated_noise(C, 4000, seed=1)
    w = calib.prewhiten(scan.to(device))
    assert w.matrix.shape == (C, C) and w.matrix.device.type == device
    # on the noise scan itself: exactly (up to rounding)
    white = w.apply(scan.to(device), coil_axis=0)
    cov = white @ white.conj().T / scan.shape[1]
    assert torch.allclose(cov.cpu(), torch.eye(C, dtype=cov.dtype), atol=1e-4)
    # on fresh noise of the same coils inside k-space (T, C, S, N): identity to sampling error
    g = torch.Generator().manual_seed(9)
    fresh = mix @ torch.randn(C, 3 * 5 * 2000, generator=g, dtype=torch.complex64)
    fresh = fresh.reshape(C, 3, 5, 2000).transpose(0, 1)  # (T, C, S, N)
    white = w.apply(fresh.to(device)).transpose(0, 1).reshape(C, -1)
    cov = (white @ white.conj().T / white.shape[1]).cpu()
    assert (cov - torch.eye(C)).abs().max() < 0.05
    # condition number: the eigenvalue ratio of the covariance
    ev = torch.linalg.eigvalsh(w.covariance.cpu().to(torch.complex128))
    assert w.condition == pytest.approx(float(ev[-1] / ev[0]), rel=1e-4)
    assert w.condition > 5  # the coils' levels differ by 4x in amplitude


def test_prewhitening_rejects_too_few_samples_and_a_dead_coil():
    with pytest.raises(MrphysError, match="at least as many samples as coils"):
        calib.prewhiten(torch.randn(8, 5, dtype=torch.complex64))
    noise = torch.randn(4, 100, dtype=torch.complex64)
    noise[2] = 0
    with pytest.raises(MrphysError, match="singular"):
        calib.prewhiten(noise)
    with pytest.raises(MrphysError, match="coils"):
        calib.prewhiten(noise).apply(torch.zeros(2, 5, 7, dtype=torch.complex64))


def test_noise_from_outer_kspace_estimates_the_covariance_without_a_noise_scan():
    mix, _ = _correlated_noise(4, 10, seed=2)
    true_cov = (mix @ mix.conj().T).to(torch.complex128)
    maps = gaussian_maps(4)
    k, traj = simulate(maps, noise=0.0)
    g = torch.Generator().manual_seed(3)
    level = 0.02 * float(k.abs().max())
    n = torch.randn((4,) + (k.shape[0],) + k.shape[2:], generator=g, dtype=torch.complex64)
    k = k + level * (mix @ n.reshape(4, -1)).reshape(n.shape).transpose(0, 1)
    samples = calib.noise_from_outer_kspace(k, traj, fraction=0.85)
    assert samples.shape[0] == 4 and samples.shape[1] > 1000
    est = calib.prewhiten(samples).covariance.to(torch.complex128) / level**2
    assert float((est - true_cov).norm() / true_cov.norm()) < 0.1
    with pytest.raises(MrphysError, match="fraction"):
        calib.noise_from_outer_kspace(k, traj, fraction=1.5)
    with pytest.raises(MrphysError, match="trajectory's shape"):
        calib.noise_from_outer_kspace(k[:, :, :4], traj)


# -------------------------------------------------------------------------------------------
# coil compression
# -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_coil_compression_keeps_the_stated_energy_with_the_fewest_coils(device):
    k, _ = simulate(gaussian_maps(), noise=0.01)
    k = k.to(device)
    total = float(k.abs().pow(2).sum())
    for energy in (0.8, 0.95, 0.999):
        cc = calib.coil_compress(k, energy=energy)
        kept = float(cc.apply(k).abs().pow(2).sum()) / total
        assert kept >= energy - 1e-5
        assert kept == pytest.approx(cc.energy_kept, rel=1e-4)
        assert cc.apply(k).shape[1] == cc.n_coils
        if cc.n_coils > 1:  # one coil fewer falls short: the count is the smallest
            fewer = calib.coil_compress(k, n_coils=cc.n_coils - 1)
            assert fewer.energy_kept < energy
    cc = calib.coil_compress(k, n_coils=3)
    assert cc.matrix.shape == (3, C) and cc.n_coils == 3
    assert torch.allclose(
        (cc.matrix @ cc.matrix.conj().T).cpu(), torch.eye(3, dtype=torch.complex64), atol=1e-5
    )


def test_coil_compression_acts_alike_on_kspace_and_on_maps():
    """Compressing data made with maps S equals the data made with the compressed maps."""
    maps = gaussian_maps()
    k, traj = simulate(maps, noise=0.0)
    cc = calib.coil_compress(k, n_coils=4)
    op = SenseOp(cc.apply(maps, coil_axis=0), RadialNUFFT(traj, (N, N)))
    k4 = op(phantom().expand(traj.shape[0], N, N).contiguous())
    assert float((cc.apply(k) - k4).norm() / k4.norm()) < 1e-4
    # data of rank 3 (three coils' worth) lose nothing at three virtual coils
    low = torch.einsum("vc,tcsn->tvsn", torch.randn(C, 3, dtype=torch.complex64), k[:, :3])
    c3 = calib.coil_compress(low, n_coils=3)
    assert c3.energy_kept == pytest.approx(1.0, abs=1e-6)
    back = torch.einsum("vc,tvsn->tcsn", c3.matrix.conj(), c3.apply(low))
    assert float((back - low).norm() / low.norm()) < 1e-4
    with pytest.raises(MrphysError, match="exactly one of n_coils"):
        calib.coil_compress(k, n_coils=2, energy=0.9)
    with pytest.raises(MrphysError, match="n_coils must be an integer in"):
        calib.coil_compress(k, n_coils=C + 1)


# -------------------------------------------------------------------------------------------
# gradient delay
# -------------------------------------------------------------------------------------------


def test_ring_recovers_a_known_anisotropic_delay_within_a_tenth_of_a_sample():
    # (ky, kx) order: S_yy = 0.35, S_xx = -0.25, S_xy = 0.15 samples
    true = calib.GradientDelay(torch.tensor([[0.35, 0.15], [0.15, -0.25]], dtype=torch.float64))
    k, traj = simulate(gaussian_maps(), delay=true, noise=0.01)
    est = calib.ring_delay(k, traj)
    for name, value in true.components.items():
        assert est.components[name] == pytest.approx(value, abs=0.1), name
    assert est.samples == pytest.approx(true.samples, abs=0.1)
    # the corrected trajectory is the one that made the data, to a small fraction of a sample
    dk = 2 * math.pi / traj.shape[-2]
    wrap = torch.remainder(est.correct(traj) - true.correct(traj) + math.pi, 2 * math.pi) - math.pi
    assert float(wrap.abs().max()) < 0.1 * dk


def test_ring_sign_convention_and_no_delay():
    """An isotropic delay d puts every sample d samples further along its spoke; none gives 0."""
    iso = calib.GradientDelay(0.4 * torch.eye(2, dtype=torch.float64))
    traj = golden_angle_radial(1, 3, 16)
    shift = iso.correct(traj) - traj
    direction = (traj[..., -1, :] - traj[..., 0, :]) / (traj[..., -1, :] - traj[..., 0, :]).norm(
        dim=-1, keepdim=True
    )
    inner = shift[..., 2:-2, :]  # away from the wrap at +-pi
    expect = (0.4 * 2 * math.pi / 16) * direction[..., None, :].expand_as(inner)
    assert torch.allclose(inner, expect, atol=1e-6)
    assert iso.samples == pytest.approx(0.4)
    k, traj = simulate(gaussian_maps(), frames=3, noise=0.005)
    est = calib.ring_delay(k, traj)
    assert abs(est.samples) < 0.05 and max(abs(v) for v in est.components.values()) < 0.05
    with pytest.raises(MrphysError, match="at least two pairs"):
        calib.ring_delay(k[:1, :, :1], traj[:1, :1])


# -------------------------------------------------------------------------------------------
# coil maps
# -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["gaussian", "birdcage"])
@pytest.mark.parametrize("method", ["espirit", "walsh", "inati"])
def test_estimated_maps_reproduce_known_smooth_maps_up_to_a_phase(model, method):
    maps = gaussian_maps() if model == "gaussian" else birdcage_maps(C, (N, N))
    k, traj = simulate(maps, noise=0.01)
    est = calib.estimate_maps(k, traj, (N, N), method=method)
    assert est.shape == (C, N, N) and est.dtype == torch.complex64
    obj = phantom().abs() > 0
    sos = est.abs().pow(2).sum(0)
    assert torch.allclose(sos[obj], torch.ones(()), atol=1e-4)
    bound = {"espirit": 0.03, "walsh": 0.08, "inati": 0.08}[method]
    assert map_error(est, maps, obj) < bound


@pytest.mark.parametrize("device", DEVICES)
def test_espirit_crops_outside_the_object_and_does_not_depend_on_the_chunk(device):
    maps = gaussian_maps()
    img = phantom()
    kspace = fft2c(maps * img).to(device)  # Cartesian, fully sampled
    full = calib.espirit_maps(kspace, (N, N), crop=0.9)
    small = calib.espirit_maps(kspace, (N, N), crop=0.9, chunk_pixels=100)
    assert torch.allclose(full, small, atol=1e-4)
    obj = (img.abs() > 0).to(device)
    y, x = _grid(N)
    far = ((y / 0.7) ** 2 + (x / 0.55) ** 2 > 2.0).to(device)  # 6+ pixels outside the object
    assert float(full.abs()[:, far].max()) == 0.0
    inner = obj & ~torch.nn.functional.max_pool2d((~obj)[None, None].float(), 5, 1, 2)[0, 0].bool()
    assert torch.allclose(full.abs().pow(2).sum(0)[inner].cpu(), torch.ones(()), atol=1e-4)
    assert map_error(full.cpu(), maps, inner.cpu()) < 0.02
    images = calib.espirit_maps(maps * img, (N, N), domain="image", crop=0.9)
    assert torch.allclose(images.cpu(), full.cpu(), atol=1e-4)
    with pytest.raises(MrphysError, match="calibration region"):
        calib.espirit_maps(kspace, (N, N), calib=6, kernel=6)


def test_walsh_and_inati_agree_and_check_their_input():
    maps = gaussian_maps()
    images = maps * phantom()
    w = calib.walsh_maps(images, 5, thresh=0.05)
    i = calib.inati_maps(images, 5, iterations=10, thresh=0.05)
    obj = phantom().abs() > 0
    assert map_error(i, w, obj) < 0.01
    assert float(w.abs()[:, 0, 0].max()) == 0.0  # corner: no signal, masked
    with pytest.raises(MrphysError, match="odd"):
        calib.walsh_maps(images, 4)
    with pytest.raises(MrphysError, match=r"\(C, Y, X\)"):
        calib.inati_maps(images[0])
    with pytest.raises(MrphysError, match="method must be one of"):
        calib.estimate_maps(torch.zeros(1, 2, 3, 8), golden_angle_radial(1, 3, 8), (4, 4),
                            method="sense")  # fmt: skip


# -------------------------------------------------------------------------------------------
# density compensation
# -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["pipe_menon", "voronoi"])
def test_dcf_makes_uniform_weights_a_flat_kspace_density(name):
    """Uniform k-space data (all ones) gridded with the DCF: ``fft2c(A^H (D 1))`` is the
    density-compensated sampling density on the Cartesian grid, which must be flat (1) inside
    the sampled disc, i.e. the point-spread function ``A^H (D 1)`` is a delta of unit k-space
    height. Fully sampled radial: ``pi/2 * 2N`` spokes of ``2N`` samples."""
    n = 32
    traj = golden_angle_radial(1, 101, 2 * n)
    w = calib.pipe_menon_dcf(traj, (n, n)) if name == "pipe_menon" else radial_dcf(traj, (n, n))
    assert w.shape == (1, 101, 2 * n) and bool((w > 0).all())
    dens = fft2c(RadialNUFFT(traj, (n, n)).adjoint(w.to(torch.complex64)))[0]
    k = (torch.arange(n) - n // 2) * (2 * math.pi / n)
    disc = (k[:, None] ** 2 + k[None, :] ** 2).sqrt() < 0.8 * math.pi
    assert float(dens.real[disc].mean()) == pytest.approx(1.0, abs=0.02)
    assert float(dens.real[disc].std()) < 0.03


def test_pipe_menon_dcf_grids_a_smooth_object_back_to_itself():
    """``A^H D A x = x`` for a smooth object (the property a gridding reconstruction needs)."""
    n = 32
    traj = golden_angle_radial(2, 101, 2 * n)
    y, x = _grid(n)
    blob = torch.exp(-(y**2 + x**2) / 0.18).to(torch.complex64).expand(2, n, n)
    op = RadialNUFFT(traj, (n, n))
    w = calib.pipe_menon_dcf(traj, (n, n))
    rec = op.adjoint(w * op(blob))
    assert float((rec - blob).norm() / blob.norm()) < 0.01
    flat = calib.pipe_menon_dcf(traj.reshape(2, -1, 2), (n, n))  # (T, K, 2) works alike
    assert torch.allclose(flat.reshape(w.shape), w)
    with pytest.raises(MrphysError, match="oversamp"):
        calib.pipe_menon_dcf(traj, (n, n), oversamp=1.0)


def test_fill_dark_extends_maps_smoothly_and_keeps_them_where_there_is_signal():
    maps = gaussian_maps()
    img = phantom()
    obj = img.abs() > 0
    g = torch.Generator().manual_seed(4)
    noise = torch.randn(maps.shape, generator=g, dtype=torch.complex64)
    noisy = torch.where(obj, maps, noise / noise.abs().pow(2).sum(0).sqrt())  # arbitrary outside
    filled = calib.fill_dark(noisy, maps * img, width=17)
    assert torch.allclose(filled[:, obj], noisy[:, obj], atol=1e-5)  # signal: unchanged
    assert torch.allclose(filled.abs().pow(2).sum(0), torch.ones(()), atol=1e-4)
    dark = ~obj
    assert map_error(filled, maps, dark) < 0.5 * map_error(noisy, maps, dark)
    assert calib.fill_dark(noisy, maps * img, width=0) is noisy


def test_estimate_maps_crop_zeroes_the_background_only():
    maps = gaussian_maps()
    k, traj = simulate(maps, noise=0.01)
    est = calib.estimate_maps(k, traj, (N, N), crop=0.9)
    y, x = _grid(N)
    far = (y / 0.7) ** 2 + (x / 0.55) ** 2 > 2.0
    inside = (y / 0.7) ** 2 + (x / 0.55) ** 2 < 0.6
    assert float(est.abs()[:, far].max()) == 0.0
    assert torch.allclose(est.abs().pow(2).sum(0)[inside], torch.ones(()), atol=1e-4)


def test_smooth_maps_extends_known_maps_into_the_dark_better_than_the_fill():
    """Arbitrary vectors outside the object: the smooth refit recovers the (smooth) true maps
    there far better than :func:`fill_dark`, keeps them inside, and has unit sum of squares."""
    maps = gaussian_maps()
    img = phantom()
    obj = img.abs() > 0
    g = torch.Generator().manual_seed(4)
    noise = torch.randn(maps.shape, generator=g, dtype=torch.complex64)
    noisy = torch.where(obj, maps, noise / noise.abs().pow(2).sum(0).sqrt())
    fit = calib.smooth_maps(noisy, maps * img)
    assert fit.shape == maps.shape and fit.dtype == torch.complex64
    assert torch.allclose(fit.abs().pow(2).sum(0), torch.ones(()), atol=1e-4)
    assert map_error(fit, maps, obj) < 0.02
    dark = ~obj
    filled = calib.fill_dark(noisy, maps * img, width=17)
    assert map_error(fit, maps, dark) < 0.5 * map_error(filled, maps, dark)
    with pytest.raises(MrphysError, match="period"):
        calib.smooth_maps(noisy, maps * img, period=0.5)
    with pytest.raises(MrphysError, match="shape"):
        calib.smooth_maps(noisy, img[None])


def test_estimate_maps_smooth_switch():
    """``smooth=False`` gives the per-pixel estimates with the fill (the earlier maps)."""
    maps = gaussian_maps()
    k, traj = simulate(maps, noise=0.01)
    on = calib.estimate_maps(k, traj, (N, N))
    off = calib.estimate_maps(k, traj, (N, N), smooth=False)
    obj = phantom().abs() > 0
    assert not torch.allclose(on, off)
    assert map_error(on, maps, obj) < 0.03 and map_error(off, maps, obj) < 0.03


# -------------------------------------------------------------------------------------------
# coil combination against the interference
# -------------------------------------------------------------------------------------------


def test_interference_combine_is_unbiased_and_rejects_a_coil_coherent_interference():
    """Frames ``m_t = S x_t + v n_t``: a changing object and an interference of a fixed coil
    signature ``v`` (like streaks from elsewhere in the object). The combination keeps the
    object exactly where there is no interference (``w^H S = 1``, even with the object changing
    between frames), and removes most of the interference the plain ``S^H m`` lets through."""
    maps = gaussian_maps(n=16)
    t = 8
    g = torch.Generator().manual_seed(0)
    x = torch.randn(t, 16, 16, generator=g, dtype=torch.complex64)  # changes every frame
    clean = maps[None] * x[:, None]
    out = calib.interference_combine(clean, maps)
    assert out.shape == (t, 16, 16) and out.dtype == torch.complex64
    assert torch.allclose(out, x, atol=1e-4 * float(x.abs().max()))
    v = gaussian_maps(n=16).roll(3, dims=0)  # another coil signature at every pixel
    n = 3 * torch.randn(t, 1, 16, 16, generator=g, dtype=torch.complex64)
    noisy = (
        clean + v[None] * n + 0.01 * torch.randn(clean.shape, generator=g, dtype=torch.complex64)
    )
    plain = (maps.conj()[None] * noisy).sum(1)
    opt = calib.interference_combine(noisy, maps)
    assert float((opt - x).abs().pow(2).mean()) < 0.1 * float((plain - x).abs().pow(2).mean())
    # one frame (no change to learn from): the plain combination
    assert torch.allclose(calib.interference_combine(noisy[:1], maps), plain[:1], atol=1e-5)
    with pytest.raises(MrphysError, match="window"):
        calib.interference_combine(noisy, maps, window=2)
    with pytest.raises(MrphysError, match="shape"):
        calib.interference_combine(noisy, maps[:3])


# -------------------------------------------------------------------------------------------
# support from the data
# -------------------------------------------------------------------------------------------


def _moving_series(frames: int = 8, n: int = N) -> torch.Tensor:
    """:func:`phantom` plus a bright disc that sits inside it and, in the last frame only, moves
    out to the edge of the field of view: ``(frames, n, n)`` complex64."""
    y, x = _grid(n)
    base = phantom(n)
    out = []
    for t in range(frames):
        cx = 0.2 if t < frames - 1 else 0.85  # one frame of eight at the edge
        disc = ((y + 0.1) ** 2 + (x - cx) ** 2 < 0.1**2).to(torch.complex64)
        out.append(base + 1.5 * disc)
    return torch.stack(out)


def test_support_weights_keep_a_moving_object_and_fall_off_in_the_empty_field():
    """The weights from each frame's coil images: at least 0.3 on every pixel of every frame's
    object, including a part that reaches the edge in one frame of eight (the frames' maximum
    keeps it: the time average alone gives it less), under 0.1 in the empty corners; the binary
    support at the cut's settings covers the whole object, and the time average alone does not."""
    maps = gaussian_maps()
    series = _moving_series()
    t = series.shape[0]
    traj = golden_angle_radial(t, 13, 2 * N)
    k = SenseOp(maps, RadialNUFFT(traj, (N, N)))(series)
    g = torch.Generator().manual_seed(1)
    k = k + 0.005 * float(k.abs().max()) * torch.randn(k.shape, generator=g, dtype=k.dtype)
    images = RadialNUFFT(traj, (N, N)).on_coils(C).adjoint(k * radial_dcf(traj, (N, N))[:, None])
    w = calib.support_weights(images)
    assert w.shape == (N, N) and w.dtype == torch.float32
    assert float(w.min()) >= 0.0 and float(w.max()) == 1.0
    obj = series.abs().amax(0) > 0
    corners = torch.stack([w[0, 0], w[0, -1], w[-1, 0], w[-1, -1]])
    assert float(w[obj].min()) >= 0.3 and float(corners.max()) < 0.1
    assert float(calib.support_weights(images, frame_factor=50.0)[obj].min()) < 0.3
    assert bool((calib.support_weights(images, threshold=0.0) == 1).all())
    # the binary support (where the weights are 1) with a margin: never the object
    sup = calib.estimate_support(images, threshold=0.1, margin=0.05)
    assert sup.dtype == torch.bool and bool(sup[obj].all())
    assert float(sup.float().mean()) < 0.75  # the object is 30-32 % of the field
    assert not bool(calib.estimate_support(images, threshold=0.1, margin=0.05,
                                           frame_factor=50.0)[obj].all())  # fmt: skip


def test_support_fills_holes_and_checks_its_input():
    """A dark region enclosed by the object (a ring) stays inside the support; the margin
    grows it; bad options raise."""
    y, x = _grid(N)
    r = (y**2 + x**2).sqrt()
    ring = ((r > 0.3) & (r < 0.5)).to(torch.complex64)
    images = gaussian_maps() * ring
    tight = calib.estimate_support(images, threshold=0.1, margin=0.0)
    assert bool(tight[r < 0.3].all())  # the hole is filled
    assert not bool(tight[r > 0.75].any())
    wide = calib.estimate_support(images, threshold=0.1, margin=0.1)
    assert int(wide.sum()) > int(tight.sum()) and bool(wide[tight].all())
    with pytest.raises(MrphysError, match="threshold"):
        calib.estimate_support(images, threshold=1.0)
    with pytest.raises(MrphysError, match="margin"):
        calib.estimate_support(images, margin=-0.1)
    with pytest.raises(MrphysError, match="coil images"):
        calib.estimate_support(images[0])
