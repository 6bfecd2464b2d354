"""Calibration from the data: noise prewhitening, coil compression, coil maps, gradient delay, DCF.

Everything a raw radial scan needs before a reconstruction, estimated from the scan itself. All
functions are torch, vectorised, and run where their input lives (CPU or CUDA); complex data are
``complex64`` in and out (the small global problems, noise covariance, PCA, the ESPIRiT SVD and
RING's fit, run in ``complex128``/``float64``; the per-pixel eigen-problems in ``complex64``).

Conventions (those of :mod:`mrphys.physics.nufft` and :mod:`mrphys.physics.fourier`):

- a radial trajectory is ``(T, S, N, 2)`` in rad/pixel, last axis ``(ky, kx)``; radial k-space of
  coil data is ``(..., T, C, S, N)`` (the output of :class:`~mrphys.physics.coils.SenseOp`), so
  the coil axis defaults to ``-3``; any other position is given as ``coil_axis``;
- Cartesian k-space is the centred orthonormal FFT of the image (:func:`fourier.fft2c`);
- coil maps are ``(C, Y, X)`` complex.

Contents
--------
:func:`prewhiten` (noise scan -> whitening matrix ``W`` with ``W Psi W^H = I``),
:func:`noise_from_outer_kspace` (noise samples when there is no noise scan),
:func:`coil_compress` (PCA of the data to a stated coil count or energy),
:func:`walsh_maps`, :func:`inati_maps`, :func:`espirit_maps` and :func:`estimate_maps` (coil
sensitivities from the time-averaged radial data), :func:`ring_delay` (gradient delay by RING,
Rosenzweig et al. 2019) and :func:`pipe_menon_dcf` (iterative density compensation, Pipe & Menon
1999). ``docs/calibration.md`` gives the measurements behind the defaults.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import torch

from mrphys.errors import check, check_finite

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MAP_METHOD",
    "Compression",
    "GradientDelay",
    "Whitening",
    "coil_compress",
    "espirit_maps",
    "estimate_maps",
    "estimate_support",
    "fill_dark",
    "gridded_coil_images",
    "inati_maps",
    "interference_combine",
    "noise_from_outer_kspace",
    "pipe_menon_dcf",
    "prewhiten",
    "ring_delay",
    "smooth_maps",
    "support_weights",
    "walsh_maps",
]

MAP_METHODS = ("auto", "espirit", "walsh", "inati")

#: What ``estimate_maps(method="auto")`` runs (the measurement: its docstring).
DEFAULT_MAP_METHOD = "espirit"

#: Default window of :func:`fill_dark` in :func:`estimate_maps`, as a fraction of the image width
#: (chosen on the ellipse phantom of ``benchmarks/espirit.py``; see ``docs/calibration.md``).
FILL_FRACTION = 1 / 3

#: :func:`smooth_maps` defaults in :func:`estimate_maps`: Fourier modes per axis, Sobolev weight,
#: period (in image widths) and Sobolev order, chosen on PINCAT and on the rat cine with another
#: coil set (seed 1), never on the rat bar case (``docs/calibration.md``).
SMOOTH_MODES = 12
SMOOTH_LAM = 1.0
SMOOTH_PERIOD = 2.0
SMOOTH_ORDER = 2
SMOOTH_POWER = 2.0
#: Calibration width of :func:`estimate_maps` with the smooth refit (24 without it).
SMOOTH_CALIB = 20

#: :func:`interference_combine` defaults: window (pixels) of the local interference covariance
#: and its diagonal loading (relative to the mean interference power per coil), chosen on
#: PINCAT and the rat cine with another coil set (seed 1), never on the rat bar case
#: (``docs/calibration.md``).
COMBINE_WINDOW = 3
COMBINE_LOADING = 0.01

#: :func:`estimate_support` defaults: threshold relative to the robust peak (the
#: ``SUPPORT_QUANTILE`` quantile) of the low-passed (``SUPPORT_CALIB``) time-averaged
#: coil-combined image, the frames' low-pass and threshold factor (moving parts), and the
#: dilation margin as a fraction of the image width; chosen on
#: PINCAT (5 spokes) and the rat cine with another coil set (seed 1), never on the rat bar case
#: (``docs/calibration.md``).
SUPPORT_THRESHOLD = 0.3
SUPPORT_MARGIN = 0.0
SUPPORT_CALIB = 24
SUPPORT_FRAME_CALIB = 12
SUPPORT_FRAME_FACTOR = 2.0
SUPPORT_QUANTILE = 0.99


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _complex(x: torch.Tensor, name: str) -> torch.Tensor:
    x = torch.as_tensor(x)
    check(x.numel() > 0, f"{name} is empty; expected complex data.")
    check_finite(name, x)
    if not x.is_complex():
        x = x.to(torch.complex64 if x.dtype != torch.float64 else torch.complex128)
    return x


def _coil_axis(x: torch.Tensor, coil_axis: int, name: str) -> int:
    check(
        -x.ndim <= int(coil_axis) < x.ndim,
        f"coil_axis {coil_axis} is outside the {x.ndim} dims of {name} {tuple(x.shape)}.",
    )
    return int(coil_axis) % x.ndim


def _mix(matrix: torch.Tensor, x: torch.Tensor, coil_axis: int, name: str) -> torch.Tensor:
    """``matrix @ x`` along ``coil_axis`` of ``x``: ``(D, C)`` times ``(..., C, ...)``."""
    x = torch.as_tensor(x)
    ax = _coil_axis(x, coil_axis, name)
    check(
        x.shape[ax] == matrix.shape[1],
        f"{name} must have {matrix.shape[1]} coils on axis {coil_axis}; got {tuple(x.shape)}.",
    )
    if not x.is_complex():
        x = x.to(torch.complex64)
    m = matrix.to(device=x.device, dtype=x.dtype)
    return torch.movedim(torch.tensordot(m, torch.movedim(x, ax, 0), dims=([1], [0])), 0, ax)


def _radial_coil_data(
    kspace: torch.Tensor, traj: torch.Tensor, coil_axis: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Radial k-space as ``(C, T, S, N)`` and its trajectory ``(T, S, N, 2)`` (checked)."""
    kspace = _complex(kspace, "k-space")
    traj = torch.as_tensor(traj)
    check(
        traj.ndim == 4 and traj.shape[-1] == 2,
        f"traj must be a radial trajectory (T, S, N, 2) in rad/pixel; got {tuple(traj.shape)}.",
    )
    check_finite("traj", traj)
    ax = _coil_axis(kspace, coil_axis, "k-space")
    k = torch.movedim(kspace, ax, 0)
    check(
        tuple(k.shape[1:]) == tuple(traj.shape[:-1]),
        f"k-space without its coil axis must have the trajectory's shape {tuple(traj.shape[:-1])}"
        f" (frames, spokes, samples); got {tuple(kspace.shape)} with coils on axis {coil_axis}.",
    )
    return k, traj.to(device=k.device)


def _unwrap(traj: torch.Tensor) -> torch.Tensor:
    """A radial ``(..., N, 2)`` trajectory made continuous along each spoke (undoing the
    ``[-pi, pi)`` wrap of :meth:`GradientDelay.correct`), from the centre sample outwards."""
    n = traj.shape[-2]
    tr = traj.to(torch.float64)
    step = torch.remainder(tr.diff(dim=-2) + math.pi, 2 * math.pi) - math.pi
    pos = torch.cat([torch.zeros_like(tr[..., :1, :]), torch.cumsum(step, dim=-2)], dim=-2)
    pos = pos - pos[..., n // 2 : n // 2 + 1, :] + tr[..., n // 2 : n // 2 + 1, :]
    return pos.to(traj.dtype)


def _spoke_geometry(traj: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit direction ``(..., 2)`` as ``(ky, kx)`` of each spoke (first -> last sample) and the
    sample spacing ``(...)`` in rad/pixel, for a ``(..., N, 2)`` radial trajectory."""
    tr = _unwrap(traj.to(torch.float64))
    n = tr.shape[-2]
    span = tr[..., -1, :] - tr[..., 0, :]
    length = torch.linalg.vector_norm(span, dim=-1)
    check(
        bool((length > 0).all()),
        "every spoke of traj must have distinct first and last samples (a radial line).",
    )
    return span / length[..., None], length / (n - 1)


# --------------------------------------------------------------------------------------------
# noise prewhitening
# --------------------------------------------------------------------------------------------


@dataclass
class Whitening:
    """Noise prewhitening from a noise covariance ``Psi`` (``C x C``).

    Attributes:
        matrix: ``W``, ``(C, C)`` complex64, lower triangular (``W = L^-1`` with the Cholesky
            factor ``Psi = L L^H``), so ``W Psi W^H = I``: whitened noise has unit variance
            (``E|n|^2 = 1`` per complex sample) and no correlation between coils.
        covariance: ``Psi``, ``(C, C)`` complex64, ``E[n n^H]`` of the complex noise samples
            (units of the data squared).
        condition: condition number of ``Psi`` (largest over smallest eigenvalue; 1 for white
            noise of equal variance in every coil).
    """

    matrix: torch.Tensor
    covariance: torch.Tensor
    condition: float

    @property
    def n_coils(self) -> int:
        return int(self.matrix.shape[0])

    def apply(self, kspace: torch.Tensor, coil_axis: int = -3) -> torch.Tensor:
        """Whitened data ``W y`` along ``coil_axis`` (any shape; dtype and device kept)."""
        return _mix(self.matrix, kspace, coil_axis, "k-space")


def prewhiten(noise: torch.Tensor) -> Whitening:
    """Prewhitening from noise samples ``(C, M)`` complex (a noise scan: ``M`` samples per coil).

    ``Psi = n n^H / M`` (the noise is zero-mean; the mean is not removed), ``W = L^-1`` with
    ``Psi = L L^H`` (Cholesky). Computed in complex128, returned in complex64 on the input's device.
    Raises unless there are at least ``C`` samples and ``Psi`` is positive definite.
    """
    noise = _complex(noise, "noise")
    check(noise.ndim == 2, f"noise must be (coils, samples); got {tuple(noise.shape)}.")
    c, m = noise.shape
    check(m >= c, f"noise needs at least as many samples as coils ({c}); got {m}.")
    n = noise.to(torch.complex128)
    psi = (n @ n.conj().T) / m
    psi = 0.5 * (psi + psi.conj().T)
    ev = torch.linalg.eigvalsh(psi)
    check(
        float(ev[0]) > 1e-12 * max(float(ev[-1]), 1e-300),
        "noise covariance is singular (a coil without noise or two identical coils); "
        "cannot prewhiten.",
    )
    chol = torch.linalg.cholesky(psi)
    eye = torch.eye(c, dtype=psi.dtype, device=psi.device)
    w = torch.linalg.solve_triangular(chol, eye, upper=False)
    cond = float(ev[-1] / ev[0])
    log.info("noise covariance of %d coils: condition number %.3g", c, cond)
    return Whitening(w.to(torch.complex64), psi.to(torch.complex64), cond)


def noise_from_outer_kspace(
    kspace: torch.Tensor, traj: torch.Tensor, coil_axis: int = -3, fraction: float = 0.9
) -> torch.Tensor:
    """Noise samples ``(C, M)`` from the k-space periphery when there is no noise scan.

    Takes every sample with ``|k| > fraction * k_max`` (``k_max`` the largest ``|k|`` of the
    trajectory). The signal there is small for an object well inside the field of view, so these
    samples are mostly noise; the covariance they give is biased upwards by what signal remains
    (use a noise scan where there is one).

    Args:
        kspace: radial k-space, coils on ``coil_axis``, the other dims the trajectory's
            ``(T, S, N)``.
        traj: ``(T, S, N, 2)`` rad/pixel.
        coil_axis: the coil axis of ``kspace``.
        fraction: in ``(0, 1)``.
    """
    check(0.0 < float(fraction) < 1.0, f"fraction must lie in (0, 1); got {fraction}.")
    k, traj = _radial_coil_data(kspace, traj, coil_axis)
    r = torch.linalg.vector_norm(traj.to(torch.float64), dim=-1)
    outer = r > float(fraction) * float(r.max())
    check(bool(outer.any()), f"no k-space sample lies beyond {fraction} of k_max.")
    return k[:, outer]


# --------------------------------------------------------------------------------------------
# coil compression
# --------------------------------------------------------------------------------------------


@dataclass
class Compression:
    """PCA coil compression ``C -> Cv`` virtual coils.

    Attributes:
        matrix: ``(Cv, C)`` complex64 with orthonormal rows (the leading left singular vectors of
            the data, conjugate-transposed): virtual coil ``v = sum_c matrix[v, c] * coil_c``.
        n_coils: ``Cv``.
        energy_kept: fraction of the data's energy (sum of squared singular values) in the kept
            virtual coils, in ``(0, 1]``.
        singular_values: all ``C`` singular values of the data, descending (float32).
    """

    matrix: torch.Tensor
    n_coils: int
    energy_kept: float
    singular_values: torch.Tensor = field(repr=False)

    def apply(self, x: torch.Tensor, coil_axis: int = -3) -> torch.Tensor:
        """Compressed data ``matrix @ x`` along ``coil_axis``: k-space, coil images or maps alike
        (compressed data are the compressed maps times the image). Dtype and device kept."""
        return _mix(self.matrix, x, coil_axis, "data to compress")


def coil_compress(
    kspace: torch.Tensor,
    coil_axis: int = -3,
    *,
    n_coils: int | None = None,
    energy: float | None = None,
) -> Compression:
    """PCA (SVD) coil compression of the data to ``n_coils`` or to a fraction of the energy.

    The data ``(C, M)`` (all samples of every coil) have left singular vectors ``U`` and singular
    values ``s`` (from the eigen-decomposition of the ``C x C`` Gram matrix, so memory is
    ``O(C^2)`` beyond the data). The kept virtual coils are the first ``Cv`` columns of ``U``: the
    given ``n_coils``, or the fewest whose ``sum s^2`` reaches ``energy`` of the total. Give one
    of the two. Prewhiten first when the noise is correlated.
    """
    k = _complex(kspace, "k-space")
    ax = _coil_axis(k, coil_axis, "k-space")
    c = int(k.shape[ax])
    check(
        (n_coils is None) != (energy is None),
        "coil compression needs exactly one of n_coils (a count) and energy (a fraction).",
    )
    d = torch.movedim(k, ax, 0).reshape(c, -1).to(torch.complex128)
    gram = d @ d.conj().T
    ev, vec = torch.linalg.eigh(0.5 * (gram + gram.conj().T))
    ev, vec = ev.flip(0).clamp(min=0), vec.flip(1)  # descending
    total = float(ev.sum())
    check(total > 0, "k-space is all zeros; nothing to compress.")
    cum = torch.cumsum(ev, 0) / total
    if n_coils is not None:
        check(
            1 <= int(n_coils) <= c,
            f"n_coils must be an integer in [1, {c}] (the number of coils); got {n_coils}.",
        )
        cv = int(n_coils)
    else:
        check(0.0 < float(energy) <= 1.0, f"energy must lie in (0, 1]; got {energy}.")
        cv = int(torch.searchsorted(cum, torch.tensor([float(energy) - 1e-12], dtype=cum.dtype)))
        cv = min(cv + 1, c)
    kept = float(cum[cv - 1])
    log.info("coil compression %d -> %d coils keeps %.4f of the energy", c, cv, kept)
    return Compression(
        vec[:, :cv].conj().T.to(torch.complex64), cv, kept, ev.sqrt().to(torch.float32)
    )


# --------------------------------------------------------------------------------------------
# coil maps
# --------------------------------------------------------------------------------------------


def _check_images(images: torch.Tensor) -> torch.Tensor:
    images = _complex(images, "coil images")
    check(images.ndim == 3, f"coil images must be (C, Y, X); got {tuple(images.shape)}.")
    return images


def _box(x: torch.Tensor, kernel: int) -> torch.Tensor:
    """Mean over a ``kernel x kernel`` window (shrunk at the edges) of ``(..., Y, X)`` complex."""
    if kernel <= 1:
        return x
    shape = x.shape
    v = torch.view_as_real(x.reshape(-1, *shape[-2:])).movedim(-1, 1)  # (B, 2, Y, X)
    h = kernel // 2  # separable: one pass per axis, O(kernel) per pixel
    pool = torch.nn.functional.avg_pool2d
    v = pool(v, (kernel, 1), stride=1, padding=(h, 0), count_include_pad=False)
    v = pool(v, (1, kernel), stride=1, padding=(0, h), count_include_pad=False)
    return torch.view_as_complex(v.movedim(1, -1).contiguous()).reshape(shape)


def _reference(images: torch.Tensor) -> torch.Tensor:
    """Dominant eigenvector ``(C,)`` of the global coil covariance: the phase reference."""
    d = images.reshape(images.shape[0], -1).to(torch.complex128)
    _, vec = torch.linalg.eigh(d @ d.conj().T)
    return vec[:, -1]


def _align(maps: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Rotate each pixel's coil vector ``(C, ...)`` so that ``ref^H v`` is real and >= 0."""
    r = ref.to(device=maps.device, dtype=maps.dtype).reshape((-1,) + (1,) * (maps.ndim - 1))
    proj = (r.conj() * maps).sum(0, keepdim=True)
    return maps * torch.sgn(proj).conj()


def _support(energy: torch.Tensor, thresh: float) -> torch.Tensor:
    """``energy >= thresh * max`` (a bool mask), or all True for ``thresh <= 0``."""
    if thresh <= 0:
        return torch.ones_like(energy, dtype=torch.bool)
    return energy >= thresh * energy.max()


def walsh_maps(
    coil_images: torch.Tensor,
    kernel: int = 7,
    *,
    thresh: float = 0.0,
    chunk_pixels: int = 4096,
) -> torch.Tensor:
    """Walsh et al. (2000) adaptive coil maps, ``(C, Y, X)`` complex64.

    At each pixel ``p`` the local coil covariance ``R(p) = mean_{q in window(p)} x_q x_q^H`` of
    the coil images over a ``kernel x kernel`` window; the map is its dominant eigenvector (unit
    norm: ``sum_c |S_c|^2 = 1``), its phase rotated so that ``ref^H S(p)`` is real positive for
    the global dominant coil vector ``ref`` (a smooth phase, no pixelwise jumps). The eigen-problem
    runs over ``chunk_pixels`` pixels at a time (memory ``O(chunk * C^2)``).

    Args:
        coil_images: ``(C, Y, X)`` complex (gridded, low-resolution is fine).
        kernel: odd window width in pixels.
        thresh: maps are zero where the local signal energy (the dominant eigenvalue) is below
            ``thresh`` times its maximum; 0 keeps every pixel.
        chunk_pixels: pixels per eigen-decomposition batch.
    """
    x = _check_images(coil_images)
    check(int(kernel) >= 1 and int(kernel) % 2 == 1, f"kernel must be odd; got {kernel}.")
    c, ny, nx = x.shape
    ref = _reference(x)
    maps = torch.empty((c, ny * nx), dtype=torch.complex64, device=x.device)
    energy = torch.empty(ny * nx, dtype=torch.float64, device=x.device)
    rows = max(1, int(chunk_pixels) // max(nx, 1))
    h = int(kernel) // 2
    for r0 in range(0, ny, rows):
        r1 = min(ny, r0 + rows)
        a0, a1 = max(0, r0 - h), min(ny, r1 + h)  # rows the window needs
        seg = x[:, a0:a1].to(torch.complex64)
        outer = seg[:, None] * seg[None, :].conj()  # (C, C, rows, X)
        cov = _box(outer, int(kernel))[:, :, r0 - a0 : r1 - a0]  # (C, C, r, X)
        cov = cov.permute(2, 3, 0, 1).reshape(-1, c, c)
        ev, vec = torch.linalg.eigh(0.5 * (cov + cov.conj().transpose(-1, -2)))
        sl = slice(r0 * nx, r1 * nx)
        maps[:, sl] = vec[..., -1].T.to(torch.complex64)
        energy[sl] = ev[..., -1]
    maps = _align(maps, ref)
    maps = maps * _support(energy, float(thresh))
    return maps.reshape(c, ny, nx)


def inati_maps(
    coil_images: torch.Tensor,
    kernel: int = 7,
    *,
    iterations: int = 5,
    thresh: float = 0.0,
) -> torch.Tensor:
    """Inati et al. (2014) style coil maps by power iteration, ``(C, Y, X)`` complex64.

    The same dominant eigenvector of the locally averaged coil covariance as :func:`walsh_maps`,
    without forming any ``C x C`` matrix: starting from the global dominant coil vector ``ref``,
    ``rho = sum_c conj(v_c) x_c`` (the combined image) and ``v <- box(x * conj(rho))``, normalised
    to unit norm over the coils, ``iterations`` times. ``box`` averages over the
    ``kernel x kernel`` window, so this approximates ``v <- R(p) v`` with ``v`` taken locally
    constant; memory ``O(C Y X)``. The start fixes the phase (``ref^H v`` stays near real
    positive, as in :func:`walsh_maps`).

    Args: as :func:`walsh_maps`, plus ``iterations`` (power iterations).
    """
    x = _check_images(coil_images)
    check(int(kernel) >= 1 and int(kernel) % 2 == 1, f"kernel must be odd; got {kernel}.")
    check(int(iterations) >= 1, f"iterations must be a positive integer; got {iterations}.")
    ref = _reference(x).to(x.dtype)
    v = ref[:, None, None].expand_as(x)
    for _ in range(int(iterations)):
        rho = (v.conj() * x).sum(0)
        v = _box(x * rho.conj(), int(kernel))
        norm = torch.linalg.vector_norm(v, dim=0)
        v = v / norm.clamp(min=torch.finfo(norm.dtype).tiny)
    maps = _align(v, ref)
    if thresh > 0:
        rho = (maps.conj() * x).sum(0)
        energy = _box(rho.abs() ** 2 + 0j, int(kernel)).real  # local combined signal energy
        maps = maps * _support(energy, float(thresh))
    return maps.to(torch.complex64)


def espirit_maps(
    data: torch.Tensor,
    im_size: tuple[int, int],
    *,
    kernel: int = 6,
    calib: int = 24,
    thresh: float = 0.02,
    crop: float = 0.95,
    domain: str = "kspace",
    chunk_pixels: int = 4096,
) -> torch.Tensor:
    """ESPIRiT coil maps (Uecker et al. 2014), ``(C, Y, X)`` complex64, memory bounded.

    1. The calibration matrix ``A`` holds every ``kernel x kernel`` patch (all coils) of the
       central ``calib x calib`` Cartesian k-space; its right singular vectors with
       singular value above ``thresh`` times the largest span the signal subspace (``r`` kernels
       ``K_j``, each ``(C, kernel, kernel)``).
    2. In image space the ESPIRiT operator is, at each pixel ``p``, the ``C x C`` matrix
       ``G(p) = 1/kernel^2 sum_j k_j(p) k_j(p)^H`` with ``k_j`` the kernel's inverse DFT on the
       ``im_size`` grid. ``G`` is computed without the ``(r, C, Y, X)`` kernel images: the sum
       over ``j`` is the cross-correlation of the kernels (``(C, C, 2 kernel - 1, 2 kernel - 1)``),
       evaluated by separable DFTs for ``chunk_pixels`` pixels at a time. Memory is
       ``O(chunk_pixels * C^2)`` beyond the output; no ``(Y X, C k^2, C k^2)`` array appears.
    3. The map is the eigenvector of ``G(p)`` with the largest eigenvalue (unit norm over the
       coils), kept where that eigenvalue exceeds ``crop`` (ideally 1 inside the object, smaller
       outside) and zero elsewhere; the phase is rotated so that ``ref^H S(p)`` is real positive
       (``ref`` the dominant coil vector of the calibration data).

    Args:
        data: ``(C, Ky, Kx)`` centred Cartesian k-space on the ``im_size`` grid spacing
            (``domain="kspace"``; only the centre is used), or coil images ``(C, Y, X)``
            (``domain="image"``, transformed by :func:`~mrphys.physics.fourier.fft2c`).
        im_size: ``(Y, X)`` of the maps.
        kernel: ESPIRiT kernel width (k-space samples).
        calib: width of the calibration region (reduced to what ``data`` holds).
        thresh: relative singular value threshold of the signal subspace.
        crop: eigenvalue threshold in ``[0, 1)``; 0 keeps every pixel.
        domain: ``"kspace"`` or ``"image"``.
        chunk_pixels: pixels per eigen-decomposition batch.
    """
    check(0.0 <= float(crop) < 1.0, f"crop must lie in [0, 1); got {crop}.")
    maps, eig = _espirit(data, im_size, kernel, calib, thresh, domain, chunk_pixels)
    return maps * (eig > float(crop)) if crop > 0 else maps


def _espirit(
    data: torch.Tensor,
    im_size: tuple[int, int],
    kernel: int,
    calib: int,
    thresh: float,
    domain: str,
    chunk_pixels: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`espirit_maps` without the crop: maps ``(C, Y, X)`` and eigenvalues ``(Y, X)``."""
    from mrphys.physics.fourier import fft2c

    x = _complex(data, "calibration data")
    check(x.ndim == 3, f"calibration data must be (C, Ky, Kx); got {tuple(x.shape)}.")
    check(domain in ("kspace", "image"), f"domain must be kspace or image; got {domain!r}.")
    check(
        len(im_size) == 2 and all(int(s) > 0 for s in im_size),
        f"im_size must be two positive sizes (Y, X); got {tuple(im_size)}.",
    )
    check(0.0 <= float(thresh) < 1.0, f"thresh must lie in [0, 1); got {thresh}.")
    if domain == "image":
        x = fft2c(x)
    c, ky, kx = x.shape
    k = int(kernel)
    cy, cx = min(int(calib), ky), min(int(calib), kx)
    check(
        k >= 2 and cy > k and cx > k,
        f"the calibration region ({cy} x {cx}) must exceed the kernel ({kernel}), kernel >= 2.",
    )
    y0, x0 = ky // 2 - cy // 2, kx // 2 - cx // 2
    reg = x[:, y0 : y0 + cy, x0 : x0 + cx].to(torch.complex64)
    # 1. calibration matrix (patches x C k k) and its signal subspace
    patches = reg.unfold(1, k, 1).unfold(2, k, 1)  # (C, py, px, k, k)
    amat = patches.permute(1, 2, 0, 3, 4).reshape(-1, c * k * k)
    _, sv, vh = torch.linalg.svd(amat.to(torch.complex128), full_matrices=False)
    check(float(sv[0]) > 0, "the calibration region is all zeros; cannot estimate coil maps.")
    keep = sv > float(thresh) * sv[0]
    kern = vh[keep].reshape(-1, c, k, k)  # rows of V^H span the patches
    log.info("ESPIRiT: %d of %d kernels above %.3g", int(keep.sum()), vh.shape[0], thresh)
    # 2. cross-correlation of the kernels: corr[c, d, l] = sum_j sum_a K_jc(a + l) conj K_jd(a)
    size = 2 * k - 1
    fk = torch.fft.fft2(kern, s=(size, size))
    corr = torch.fft.ifft2(torch.einsum("jcab,jdab->cdab", fk, fk.conj()))  # (C, C, L, L)
    lag = torch.arange(size, dtype=torch.float64, device=x.device)
    lag = torch.where(lag < k, lag, lag - size)
    ny, nx = int(im_size[0]), int(im_size[1])
    py = torch.arange(ny, dtype=torch.float64, device=x.device) - ny // 2
    px = torch.arange(nx, dtype=torch.float64, device=x.device) - nx // 2
    ey = torch.polar(
        torch.ones(ny, size, dtype=torch.float64, device=x.device),
        2 * math.pi * py[:, None] * lag[None, :] / ny,
    )
    ex = torch.polar(
        torch.ones(nx, size, dtype=torch.float64, device=x.device),
        2 * math.pi * px[:, None] * lag[None, :] / nx,
    )
    corr = (corr / (k * k)).to(torch.complex64)
    ey, ex = ey.to(torch.complex64), ex.to(torch.complex64)
    # 3. per-pixel dominant eigenvector, a block of rows at a time
    ref = _reference(reg)
    maps = torch.empty((c, ny * nx), dtype=torch.complex64, device=x.device)
    eig = torch.empty(ny * nx, dtype=torch.float64, device=x.device)
    rows = max(1, int(chunk_pixels) // nx)
    half = torch.einsum("cdlm,xm->cdlx", corr, ex)  # (C, C, L, X): small
    for r0 in range(0, ny, rows):
        r1 = min(ny, r0 + rows)
        g = torch.einsum("yl,cdlx->yxcd", ey[r0:r1], half).reshape(-1, c, c)
        ev, vec = torch.linalg.eigh(0.5 * (g + g.conj().transpose(-1, -2)))
        sl = slice(r0 * nx, r1 * nx)
        maps[:, sl] = vec[..., -1].T.to(torch.complex64)
        eig[sl] = ev[..., -1]
    maps = _align(maps, ref).reshape(c, ny, nx)
    return maps, eig.reshape(ny, nx)


def _lowpass(images: torch.Tensor, width: int) -> torch.Tensor:
    """Coil images ``(..., C, Y, X)`` low-passed to the central ``width`` of k-space (Hann
    taper)."""
    from mrphys.physics.fourier import fft2c, ifft2c

    ny, nx = images.shape[-2:]
    ky = torch.arange(ny, device=images.device, dtype=torch.float64) - ny // 2
    kx = torch.arange(nx, device=images.device, dtype=torch.float64) - nx // 2
    hy = torch.where(ky.abs() < width / 2, torch.cos(math.pi * ky / width) ** 2, 0.0)
    hx = torch.where(kx.abs() < width / 2, torch.cos(math.pi * kx / width) ** 2, 0.0)
    win = (hy[:, None] * hx[None, :]).to(images.real.dtype)
    return ifft2c(fft2c(images) * win)


def fill_dark(
    maps: torch.Tensor, images: torch.Tensor, width: int, floor: float = 0.05
) -> torch.Tensor:
    """Maps ``(C, Y, X)`` with their dark regions replaced by a smooth extension (complex64).

    Where the object gives no signal the data do not determine the sensitivities, and ESPIRiT or
    Walsh return an arbitrary unit vector there; a SENSE reconstruction then cannot unfold the
    aliasing that lands in those regions. Here the maps are extended from where there is signal
    by normalised convolution: with the signal weight ``w = |sum_c conj(S_c) x_c|^2 / max``
    (``x`` the coil images), ``S_smooth = B(w S) / B(w)`` with ``B`` a box window of ``width``
    pixels applied twice (a triangle of ``2 width - 1``); the result is
    ``a S + (1 - a) S_smooth`` with ``a = min(1, w / floor)``, renormalised to unit sum of squares.
    Pixels with ``w >= floor`` keep their maps. ``width <= 1`` returns the maps unchanged.
    """
    if int(width) <= 1:
        return maps
    width = int(width) | 1  # odd
    rho = (maps.conj() * images.to(maps.dtype)).sum(0)
    w = rho.abs() ** 2
    w = (w / w.max().clamp(min=torch.finfo(w.dtype).tiny)).to(maps.real.dtype)
    num = _box(_box(maps * w, width), width)
    den = _box(_box(w.to(maps.dtype), width), width).real
    smooth = num / den.clamp(min=torch.finfo(den.dtype).tiny)
    a = (w / float(floor)).clamp(max=1.0)
    out = a * maps + (1 - a) * smooth
    norm = torch.linalg.vector_norm(out, dim=0)
    return torch.where(norm > 0, out / norm.clamp(min=torch.finfo(norm.dtype).tiny), maps)


def _fourier_basis(n: int, modes: int, period: float, device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(n, modes)`` complex128 ``exp(2 pi i a p / (period n))`` at pixels ``p - n//2`` and the
    frequencies ``a / period`` (cycles per image width), ``a = -modes//2 ... modes - modes//2 - 1``.
    """
    a = torch.arange(modes, dtype=torch.float64, device=device) - modes // 2
    p = torch.arange(n, dtype=torch.float64, device=device) - n // 2
    phase = 2 * math.pi * p[:, None] * a[None, :] / (period * n)
    return torch.polar(torch.ones_like(phase), phase), a / period


def smooth_maps(
    maps: torch.Tensor,
    images: torch.Tensor,
    *,
    modes: int = SMOOTH_MODES,
    lam: float = SMOOTH_LAM,
    period: float = SMOOTH_PERIOD,
    order: int = SMOOTH_ORDER,
    power: float = SMOOTH_POWER,
) -> torch.Tensor:
    """Coil maps ``(C, Y, X)`` refitted in a smooth low-order basis over the whole field of view.

    A coil's sensitivity is smooth everywhere, but the data determine it only where the object
    gives signal: a per-pixel estimator (ESPIRiT, Walsh, Inati) returns noise-driven or arbitrary
    vectors in dark regions and small ripples at edges. Here each coil's map is replaced by the
    weighted least-squares fit

        ``min_a sum_p w(p) |sum_k a_k B_k(p) - S(p)|^2``
        ``      + lam mean(w) sum_k (1 + |f_k|^2)^order |a_k|^2``

    with ``B_k`` the ``modes x modes`` lowest Fourier modes of a period ``period`` times the
    image (so the fit need not wrap around the field of view), ``f_k`` their frequencies in
    cycles per image width (a Sobolev penalty, as in JSENSE / NLINV map models) and the signal
    weight ``w = (|sum_c conj(S_c) x_c|^2 / max)^power`` (``x`` the coil images; ``power`` 2
    trusts the bright pixels, where the per-pixel estimates are best, more than the signal
    energy alone would). Dark regions get the
    smooth extension of the maps around them. One ``modes^2 x modes^2`` system, shared by all
    coils, solved directly (separable sums; memory ``O(modes^4 + C Y X)``). The result is
    renormalised to ``sum_c |S_c|^2 = 1``.

    Args:
        maps: ``(C, Y, X)`` complex estimates (unit norm over the coils, smooth phase).
        images: ``(C, Y, X)`` coil images the maps came from (low-passed is fine): the weight.
        modes: Fourier modes per axis (``>= 1``).
        lam: Sobolev weight (``>= 0``, relative to the mean signal weight).
        period: basis period in image widths (``>= 1``).
        order: Sobolev order (``>= 0``).
        power: exponent of the signal weight (``> 0``).
    """
    m = _check_images(maps)
    check(tuple(images.shape) == tuple(m.shape), f"images must have the maps' shape "
          f"{tuple(m.shape)}; got {tuple(images.shape)}.")  # fmt: skip
    check(int(modes) >= 1, f"modes must be a positive integer; got {modes}.")
    check(float(lam) >= 0 and math.isfinite(float(lam)), f"lam must be >= 0; got {lam}.")
    check(float(period) >= 1, f"period must be at least 1 (image widths); got {period}.")
    check(int(order) >= 0, f"order must be >= 0; got {order}.")
    check(float(power) > 0, f"power must be positive; got {power}.")
    c, ny, nx = m.shape
    k = int(modes)
    dt = torch.complex128
    rho = (m.conj() * images.to(m.dtype)).sum(0)
    w = rho.abs().to(torch.float64) ** 2
    w = (w / w.max().clamp(min=torch.finfo(w.dtype).tiny)) ** float(power)
    by, fy = _fourier_basis(ny, k, float(period), m.device)
    bx, fx = _fourier_basis(nx, k, float(period), m.device)
    # Gram matrix B^H W B, separable: sum_y conj(by_a) by_c sum_x w conj(bx_b) bx_d
    t = torch.einsum("yx,xb,xd->ybd", w.to(dt), bx.conj(), bx)
    gram = torch.einsum("ya,yc,ybd->abcd", by.conj(), by, t).reshape(k * k, k * k)
    sob = (1 + fy[:, None] ** 2 + fx[None, :] ** 2) ** int(order)
    gram = gram + torch.diag((float(lam) * float(w.mean()) * sob.reshape(-1)).to(dt))
    rhs = torch.einsum("ya,xb,cyx->abc", by.conj(), bx.conj(), m.to(dt) * w).reshape(k * k, c)
    coef = torch.linalg.solve(gram, rhs).reshape(k, k, c)
    fit = torch.einsum("ya,xb,abc->cyx", by, bx, coef)
    norm = torch.linalg.vector_norm(fit, dim=0)
    tiny = torch.finfo(norm.dtype).tiny
    out = torch.where(norm > 0, fit / norm.clamp(min=tiny), m.to(dt))
    return out.to(torch.complex64)


def interference_combine(
    coil_images: torch.Tensor,
    maps: torch.Tensor,
    *,
    window: int = COMBINE_WINDOW,
    loading: float = COMBINE_LOADING,
    chunk_pixels: int = 4096,
) -> torch.Tensor:
    """Coil combination of a series that is optimal against its own undersampling interference.

    Roemer et al. (1990) combine coil images ``m = S x + a`` with the weights
    ``w = R^-1 S / (S^H R^-1 S)`` (``R`` the covariance of ``a``): the unbiased (``w^H S = 1``)
    linear estimate of ``x`` with the least variance. The plain combination ``S^H m / S^H S``
    takes ``R = I``, right for prewhitened thermal noise alone. In an undersampled radial frame
    ``a`` is mostly streaks from the rest of the object, which carry that object's coil
    signature, not white noise. Their covariance is estimated from the data: the frames'
    deviations from the time mean ``d_t = m_t - mean_t m`` (streaks move with the spokes of each
    frame, the object much less), ``R(p) = box_window(sum_t d_t d_t^H) / (T - 1)`` averaged over a
    ``window x window`` neighbourhood, plus ``loading`` times its mean per-coil power on the
    diagonal (diagonal loading; it keeps ``R`` invertible and the weights stable). Signal
    change between frames enters ``R`` in the direction ``S`` and does not bias the estimate
    (the weights keep ``w^H S = 1``). With one frame, or frames without any change, ``R`` has no
    interference and the plain combination ``S^H m / S^H S`` is returned.

    Args:
        coil_images: ``(T, C, Y, X)`` complex, e.g. the density-compensated adjoint NUFFT of each
            frame's coil data (prewhitened).
        maps: ``(C, Y, X)`` coil sensitivities in the same coil space; pixels where they are all
            zero give 0.
        window: odd neighbourhood width (pixels) of the covariance estimate.
        loading: diagonal loading ``>= 0`` relative to the mean interference power per coil.
        chunk_pixels: pixels per batched solve (memory ``O(chunk_pixels C^2)`` beyond the
            ``(C, C, Y, X)`` covariance).

    Returns:
        ``(T, Y, X)`` complex64, in the units of ``x`` for ``m = S x``.
    """
    m = _complex(coil_images, "coil images")
    check(m.ndim == 4, f"coil images must be (T, C, Y, X); got {tuple(m.shape)}.")
    s = _complex(maps, "maps").to(device=m.device, dtype=torch.complex64)
    check(
        tuple(s.shape) == tuple(m.shape[1:]),
        f"maps must have the coil images' shape {tuple(m.shape[1:])}; got {tuple(s.shape)}.",
    )
    check(int(window) >= 1 and int(window) % 2 == 1, f"window must be odd; got {window}.")
    check(
        float(loading) >= 0 and math.isfinite(float(loading)),
        f"loading must be finite and >= 0; got {loading}.",
    )
    m = m.to(torch.complex64)
    t, c, ny, nx = m.shape

    def plain() -> torch.Tensor:  # S^H m / S^H S: no interference to combine against
        power = (s.abs() ** 2).sum(0)
        return (s.conj()[None] * m).sum(1) / torch.where(power > 0, power, 1.0)

    if t < 2:
        return plain()
    dev = m - m.mean(0, keepdim=True)
    cov = _box(torch.einsum("tcyx,tdyx->cdyx", dev, dev.conj()) / (t - 1), int(window))
    level = float(torch.einsum("ccyx->yx", cov).real.mean()) / c
    if not level > 0:
        return plain()
    cov = cov.permute(2, 3, 0, 1).reshape(ny * nx, c, c)
    cov = 0.5 * (cov + cov.conj().transpose(-1, -2))
    eye = torch.eye(c, dtype=cov.dtype, device=cov.device)
    sv = s.permute(1, 2, 0).reshape(ny * nx, c)
    weights = torch.empty_like(sv)
    for p0 in range(0, ny * nx, int(chunk_pixels)):
        sl = slice(p0, p0 + int(chunk_pixels))
        r = cov[sl] + (float(loading) * level) * eye
        ris = torch.linalg.solve(r, sv[sl, :, None])[..., 0]  # R^-1 S
        den = (sv[sl].conj() * ris).sum(-1).real
        weights[sl] = ris / torch.where(den > 0, den, 1.0)[:, None]
    weights = weights.reshape(ny, nx, c).permute(2, 0, 1)
    return (weights.conj()[None] * m).sum(1)


def _dilate(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Grey dilation of a ``(Y, X)`` map of weights ``>= 0`` by a disc of ``radius`` pixels:
    the maximum over the disc around each pixel (zero outside the field of view)."""
    if radius <= 0:
        return x
    from scipy import ndimage

    r = int(radius)
    d = torch.arange(-r, r + 1)
    disc = (d[:, None] ** 2 + d[None, :] ** 2 <= r * r).numpy()
    out = ndimage.grey_dilation(x.detach().cpu().numpy(), footprint=disc, mode="constant", cval=0)
    return torch.from_numpy(out).to(device=x.device, dtype=x.dtype)


def _fill_holes(mask: torch.Tensor) -> torch.Tensor:
    """``(Y, X)`` bool mask with its holes filled: every pixel not reachable from the border
    through pixels outside the mask (4-connected) joins the mask."""
    from scipy import ndimage

    filled = ndimage.binary_fill_holes(mask.detach().cpu().numpy())  # 4-connected by default
    return torch.from_numpy(filled).to(mask.device)


def support_weights(
    images: torch.Tensor,
    *,
    threshold: float = SUPPORT_THRESHOLD,
    margin: float = SUPPORT_MARGIN,
    calib: int = SUPPORT_CALIB,
    frame_calib: int = SUPPORT_FRAME_CALIB,
    frame_factor: float = SUPPORT_FRAME_FACTOR,
    quantile: float = SUPPORT_QUANTILE,
    power: float = 1.0,
) -> torch.Tensor:
    """Where the data show an object, as weights ``(Y, X)`` in ``[0, 1]`` (float32): 1 on the
    support of :func:`estimate_support`, tapering to 0 where the data show no signal.

    Like ESPIRiT's eigenvalue crop (Uecker et al. 2014; BART ``ecalib -c``) it marks the pixels
    the data say hold signal, so that coil maps can be zero (or small) elsewhere and no method
    puts streaks or noise there. ESPIRiT's eigenvalue itself does not separate object from
    background in undersampled radial calibration data (the streaks lie in the coil subspace:
    it stays above 0.9 over 97-98 % of the field of view on PINCAT and the rat cine), so the
    weights come from the signal. With ``r`` the root sum of squares over the coils of the
    time-averaged coil images low-passed to the central ``calib`` of k-space (Hann taper) and
    ``q`` its ``quantile`` over the field of view (a robust peak: a few bright pixels do not set
    it), the level of a pixel is the larger of

    - ``r / (threshold q)`` (the time average), and
    - the largest over the frames of that frame's root sum of squares low-passed to
      ``frame_calib``, over ``frame_factor * threshold`` times the same robust peak of the time
      average low-passed alike (a moving part that the time average dilutes: bright in a few
      frames only);

    clipped to ``[0, 1]`` and raised to ``power``; then the map is dilated (the maximum over a
    disc of ``margin`` times the image width) and set to 1 in the holes of its support (dark
    regions enclosed by the object, such as lungs).

    Args:
        images: ``(T, C, Y, X)`` complex coil images of each frame (the density-compensated
            adjoint NUFFT of its spokes), prewhitened; ``(C, Y, X)`` is one frame.
        threshold: in ``[0, 1)``, relative to the robust peak; 0 gives weights 1 everywhere.
        margin: dilation radius as a fraction of ``max(Y, X)`` (``>= 0``).
        calib: low-pass width of the time average, k-space samples (``>= 2``).
        frame_calib: low-pass width of each frame (``>= 2``).
        frame_factor: the frames' threshold over the time average's (``> 0``).
        quantile: the robust peak's quantile in ``(0, 1]``.
        power: exponent of the taper (``> 0``).
    """
    x = _complex(images, "coil images")
    if x.ndim == 3:
        x = x[None]
    check(x.ndim == 4, f"coil images must be (T, C, Y, X) or (C, Y, X); got {tuple(x.shape)}.")
    check(0.0 <= float(threshold) < 1.0, f"threshold must lie in [0, 1); got {threshold}.")
    check(
        float(margin) >= 0 and math.isfinite(float(margin)),
        f"margin must be finite and >= 0; got {margin}.",
    )
    check(
        int(calib) >= 2 and int(frame_calib) >= 2,
        f"calib and frame_calib must be at least 2 k-space samples; got {calib}, {frame_calib}.",
    )
    check(float(frame_factor) > 0, f"frame_factor must be positive; got {frame_factor}.")
    check(0.0 < float(quantile) <= 1.0, f"quantile must lie in (0, 1]; got {quantile}.")
    check(float(power) > 0, f"power must be positive; got {power}.")
    t, _, ny, nx = x.shape
    ones = torch.ones((ny, nx), dtype=torch.float32, device=x.device)
    if float(threshold) == 0.0:
        return ones
    mean = x.mean(0)

    def rss(v: torch.Tensor, width: int) -> torch.Tensor:
        return _lowpass(v, width).abs().pow(2).sum(-3).sqrt().to(torch.float32)

    def peak(v: torch.Tensor) -> float:
        return float(torch.quantile(v.flatten().to(torch.float64), float(quantile)))

    avg = rss(mean, int(calib))
    q = peak(avg)
    if not q > 0:
        return ones
    level = avg / (float(threshold) * q)
    if t > 1:
        q_frame = peak(rss(mean, int(frame_calib)))
        frames = rss(x, int(frame_calib)).amax(0)
        level = torch.maximum(level, frames / (float(frame_factor) * float(threshold) * q_frame))
    w = level.clamp(0.0, 1.0) ** float(power)
    w = _dilate(w, int(round(float(margin) * max(ny, nx))))
    return torch.where(_fill_holes(w >= 1.0), ones, w)


def estimate_support(images: torch.Tensor, **options: float) -> torch.Tensor:
    """Where the data show an object: the ``(Y, X)`` bool mask where :func:`support_weights`
    (same ``images`` and options) is 1. A pixel is inside where the time average reaches
    ``threshold`` times its robust peak or a frame reaches ``frame_factor`` times that, or
    within the margin of such a pixel, or enclosed by the support."""
    return support_weights(images, **options) >= 1.0


def gridded_coil_images(
    kspace: torch.Tensor,
    traj: torch.Tensor,
    im_size: tuple[int, int],
    *,
    coil_axis: int = -3,
    dcf: torch.Tensor | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Time-averaged coil images ``(C, Y, X)``: the adjoint NUFFT of all spokes of all frames.

    The ``T`` frames of ``S`` spokes are pooled into one frame of ``T S`` spokes and gridded with
    density compensation ``dcf`` (``(T, S, N)``; default :func:`~mrphys.physics.nufft.radial_dcf`
    of the pooled trajectory), so a dynamic series gives its time-averaged coil images.
    """
    from mrphys.physics.nufft import RadialNUFFT, radial_dcf

    k, traj = _radial_coil_data(kspace, traj, coil_axis)
    c, t, s, n = k.shape
    pooled = traj.reshape(1, t * s, n, 2)
    if dcf is None:
        # the Voronoi weights of the spokes as lines (a corrected trajectory may wrap at pi)
        w = radial_dcf(_unwrap(pooled).cpu(), tuple(im_size)).to(k.device)
    else:
        dcf = torch.as_tensor(dcf)
        check(
            tuple(dcf.shape) == (t, s, n),
            f"dcf must have the trajectory's shape {(t, s, n)}; got {tuple(dcf.shape)}.",
        )
        w = dcf.reshape(1, t * s, n).to(k.device)
    op = RadialNUFFT(pooled, tuple(im_size), backend=backend).on_coils(c)
    data = k.reshape(c, 1, t * s, n).transpose(0, 1)  # (1, C, TS, N)
    return op.adjoint(data * w[:, None].to(k.real.dtype))[0]


def estimate_maps(
    kspace: torch.Tensor,
    traj: torch.Tensor,
    im_size: tuple[int, int],
    *,
    coil_axis: int = -3,
    method: str = "auto",
    dcf: torch.Tensor | None = None,
    calib: int | None = None,
    kernel: int | None = None,
    thresh: float | None = None,
    crop: float = 0.0,
    fill: int | None = None,
    smooth: bool = True,
    backend: str = "auto",
) -> torch.Tensor:
    """Coil maps ``(C, Y, X)`` complex64 from radial data alone.

    The time-averaged coil images (:func:`gridded_coil_images`: all spokes of all frames, density
    compensated) give either a Cartesian calibration region (their centred FFT, the central
    ``calib`` square) for :func:`espirit_maps`, or, low-passed to the same central
    ``calib`` of k-space, the input of :func:`walsh_maps` / :func:`inati_maps`.

    The per-pixel estimates are then refitted in a smooth low-order basis over the whole field
    of view (:func:`smooth_maps`, ``smooth=True``, the default), or, with ``smooth=False``,
    extended into the dark regions by :func:`fill_dark` (the earlier default). The refit gains
    1.8-1.9 dB for GRASP and 0.4-1.5 dB for CG-SENSE over the fill (PINCAT, rat cine with another
    coil set), but loses 1.2 dB to it on the ellipse phantom of ``benchmarks/espirit.py``, where
    the fill beats even the true maps (``docs/calibration.md``).

    ``method="auto"`` is ESPIRiT (``DEFAULT_MAP_METHOD``). Measured
    (``benchmarks/espirit.py --part choose``, ``docs/calibration.md``): on an ellipse phantom at
    96 x 96, 8 frames x 5 spokes, 8 coils, Gaussian-loop and birdcage maps, per-frame CG-SENSE
    with the estimated maps reaches 18.8 / 18.2 dB (true maps 18.5 / 17.3 dB), Walsh and Inati
    18.9 / 18.3 dB; ESPIRiT's map error inside the object is half theirs (0.014 vs 0.036, 0.011
    vs 0.023); ESPIRiT about 1 s, Inati about 0.5 s. Without the fill all three lose 2.5-3.9 dB.

    Args:
        kspace: radial k-space, coils on ``coil_axis``, the other dims the trajectory's
            ``(T, S, N)``; prewhiten first when the noise is correlated.
        traj: ``(T, S, N, 2)`` rad/pixel (corrected for the gradient delay where known).
        im_size: ``(Y, X)`` of the maps.
        coil_axis: coil axis of ``kspace`` (default ``-3``: ``(T, C, S, N)``).
        method: ``"auto"``, ``"espirit"``, ``"walsh"`` or ``"inati"``.
        dcf: density compensation ``(T, S, N)`` of the *pooled* spokes (all ``T S`` spokes as
            one frame, reshaped); default (None, recommended) the Voronoi/ramp weights of the
            pooled spokes. A per-frame DCF of a dynamic series weights each frame's few spokes as
            if they were alone and is not the right weighting here.
        calib: width of the central k-space region used (samples on the ``im_size`` grid);
            default ``SMOOTH_CALIB`` (20) with the smooth refit, 24 without.
        kernel: ESPIRiT kernel (default 6) or Walsh/Inati window (default 7 pixels).
        thresh: ESPIRiT singular value threshold (default 0.02) or Walsh/Inati energy threshold
            (default 0: no mask).
        crop: ESPIRiT eigenvalue crop (default 0: maps everywhere, the object's support is left
            to the reconstruction).
        fill: window (pixels) of :func:`fill_dark`, which extends the maps smoothly into the
            regions without signal; default ``FILL_FRACTION`` of the image width (odd); 0 or 1
            turns it off. Used only with ``smooth=False``.
        smooth: refit the maps by :func:`smooth_maps` (its frozen defaults).
        backend: NUFFT backend.
    """
    check(method in MAP_METHODS, f"method must be one of {', '.join(MAP_METHODS)}; got {method!r}.")
    images = gridded_coil_images(
        kspace, traj, im_size, coil_axis=coil_axis, dcf=dcf, backend=backend
    )
    if calib is None:
        calib = SMOOTH_CALIB if smooth else 24
    if fill is None:
        fill = int(round(FILL_FRACTION * max(int(im_size[0]), int(im_size[1])))) | 1
    low = _lowpass(images, int(calib))
    if method in ("auto", "espirit"):
        from mrphys.physics.fourier import fft2c

        check(0.0 <= float(crop) < 1.0, f"crop must lie in [0, 1); got {crop}.")
        maps, eig = _espirit(
            fft2c(images),
            im_size,
            6 if kernel is None else int(kernel),
            calib,
            0.02 if thresh is None else float(thresh),
            "kspace",
            4096,
        )
    else:
        fn = walsh_maps if method == "walsh" else inati_maps
        maps = fn(low, 7 if kernel is None else int(kernel))
    maps = smooth_maps(maps, low) if smooth else fill_dark(maps, low, int(fill))
    if method in ("auto", "espirit") and crop > 0:
        maps = maps * (eig > float(crop))
    elif method in ("walsh", "inati") and thresh:
        rho = (maps.conj() * low).sum(0)
        energy = _box(rho.abs() ** 2 + 0j, 7 if kernel is None else int(kernel)).real
        maps = maps * _support(energy, float(thresh))
    return maps


# --------------------------------------------------------------------------------------------
# gradient delay: RING
# --------------------------------------------------------------------------------------------


@dataclass
class GradientDelay:
    """A gradient delay as the shift of each spoke in k-space (RING, Rosenzweig et al. 2019).

    The sample a spoke of unit direction ``n`` was meant to take at ``k`` is taken at
    ``k + (S n) dk``: ``S`` is the symmetric ``2 x 2`` delay matrix in readout samples, ``dk`` the
    sample spacing (``2 pi / N`` for :func:`~mrphys.physics.nufft.golden_angle_radial`).

    Attributes:
        matrix: ``S``, ``(2, 2)`` float64 in samples, rows and columns ordered ``(ky, kx)`` like
            the trajectory: ``[[S_yy, S_xy], [S_xy, S_xx]]``.
        samples: the isotropic part ``(S_xx + S_yy) / 2``: the delay along the spoke in readout
            samples, positive when the samples lie further along the spoke direction (further
            out at its end) than the nominal trajectory says.
        components: ``{"S_xx", "S_yy", "S_xy"}`` in samples.
        n_pairs: spoke pairs used in the fit; ``residual``: RMS misfit of the intersections
            (samples).
    """

    matrix: torch.Tensor
    n_pairs: int = 0
    residual: float = 0.0

    @property
    def components(self) -> dict[str, float]:
        s = self.matrix
        return {"S_xx": float(s[1, 1]), "S_yy": float(s[0, 0]), "S_xy": float(s[0, 1])}

    @property
    def samples(self) -> float:
        return 0.5 * float(self.matrix[0, 0] + self.matrix[1, 1])

    def shifts(self, traj: torch.Tensor) -> torch.Tensor:
        """The k-space shift ``(S n) dk`` of each spoke, ``(..., 2)`` rad/pixel as ``(ky, kx)``."""
        traj = torch.as_tensor(traj)
        check(
            traj.ndim >= 3 and traj.shape[-1] == 2,
            f"traj must be radial (..., N, 2) in rad/pixel; got {tuple(traj.shape)}.",
        )
        n, dk = _spoke_geometry(traj)
        s = self.matrix.to(device=n.device, dtype=torch.float64)
        return (n @ s.T) * dk[..., None]

    def correct(self, traj: torch.Tensor) -> torch.Tensor:
        """The trajectory actually sampled: ``traj + (S n) dk`` for every sample of a spoke.

        Same shape and dtype as ``traj``; coordinates are wrapped into ``[-pi, pi)`` (exact for
        :class:`~mrphys.physics.nufft.RadialNUFFT`, whose exponentials are ``2 pi``-periodic in
        k). Compute density compensation from the nominal trajectory.
        """
        traj = torch.as_tensor(traj)
        out = traj.to(torch.float64) + self.shifts(traj)[..., None, :]
        out = torch.remainder(out + math.pi, 2 * math.pi) - math.pi
        return out.to(traj.dtype)


def _interp_matrix(n: int, t: torch.Tensor) -> torch.Tensor:
    """``(..., N, G)`` band-limited interpolation: samples ``m = i - N//2`` -> positions ``t``.

    ``y(t) = sum_m y_m D(t - m)`` with ``D(u) = 1/N sum_f exp(-i 2 pi u f / N)``, ``f`` over the
    ``N`` centred frequencies ``-N//2 .. N - N//2 - 1`` (the readout's projection), summed in
    closed form (a geometric series); exact for a projection that fits the readout field of view.
    """
    m = torch.arange(n, dtype=torch.float64, device=t.device) - n // 2
    u = t[..., None, :] - m[:, None]  # (..., N, G)
    a = -(n // 2)
    z = torch.polar(torch.ones_like(u), -2 * math.pi * u / n)
    zn = torch.polar(torch.ones_like(u), -2 * math.pi * u)
    za = torch.polar(torch.ones_like(u), -2 * math.pi * u * a / n)
    den = 1 - z
    small = den.abs() < 1e-9
    val = za * (1 - zn) / torch.where(small, torch.ones_like(den), den)
    return torch.where(small, torch.full_like(val, n), val) / n


def ring_delay(
    kspace: torch.Tensor,
    traj: torch.Tensor,
    coil_axis: int = -3,
    *,
    max_gap: int = 3,
    min_angle_deg: float = 20.0,
    search: float = 6.0,
) -> GradientDelay:
    """Gradient delay from the data by RING (Rosenzweig, Holme, Uecker 2019).

    Two radial spokes with directions ``n1``, ``n2`` are really the lines ``S n_i + t n_i``
    (samples); they cross where ``S n1 + t1 n1 = S n2 + t2 n2``, and there the two spokes
    measured the same k-space value. For each pair the crossing ``(t1, t2)`` is found as the
    minimum over ``|t| <= search`` of ``sum_c |y1_c(t1) - y2_c(t2)|^2`` (the spokes interpolated
    band-limited along the readout; a grid of 1/8 sample refined to 1/64 and a parabola), and
    ``S (n1 - n2) = t2 n2 - t1 n1`` (two equations per pair) is solved for
    ``(S_yy, S_xx, S_xy)`` by least squares, with one pass that drops pairs whose misfit exceeds
    three median absolute deviations.

    Pairs are spokes ``1..max_gap`` apart in acquisition order (frames after one another, so the
    object barely moves between them) whose directions differ by at least ``min_angle_deg``
    (modulo 180 degrees; near-parallel spokes cross ill-defined).

    Args:
        kspace: radial k-space, coils on ``coil_axis``, other dims the trajectory's ``(T, S, N)``.
        traj: nominal ``(T, S, N, 2)`` trajectory, rad/pixel, uniform sample spacing.
        coil_axis: coil axis of ``kspace``.
        max_gap: pair each spoke with the next ``max_gap`` spokes.
        min_angle_deg: smallest angle between paired spokes, in (0, 90).
        search: half-width of the crossing search, in samples.
    """
    check(int(max_gap) >= 1, f"max_gap must be a positive integer; got {max_gap}.")
    check(0 < float(min_angle_deg) < 90, f"min_angle_deg must lie in (0, 90); got {min_angle_deg}.")
    check(float(search) >= 1, f"search must be at least 1 sample; got {search}.")
    k, traj = _radial_coil_data(kspace, traj, coil_axis)
    c, t, s, n = k.shape
    y = k.reshape(c, t * s, n).transpose(0, 1).to(torch.complex128)  # (M, C, N)
    dirs, dk = _spoke_geometry(traj.reshape(t * s, n, 2))
    check(
        bool(torch.allclose(dk, dk[0].expand_as(dk), rtol=1e-3)),
        "every spoke must have the same sample spacing for RING.",
    )
    m = t * s
    ii, jj = [], []
    for g in range(1, min(int(max_gap), m - 1) + 1):
        ii.append(torch.arange(0, m - g))
        jj.append(torch.arange(g, m))
    ii = torch.cat(ii).to(k.device) if ii else torch.zeros(0, dtype=torch.long, device=k.device)
    jj = torch.cat(jj).to(k.device) if jj else torch.zeros(0, dtype=torch.long, device=k.device)
    sin = (dirs[ii, 0] * dirs[jj, 1] - dirs[ii, 1] * dirs[jj, 0]).abs()
    ok = sin >= math.sin(math.radians(float(min_angle_deg)))
    ii, jj = ii[ok], jj[ok]
    check(
        ii.numel() >= 2,
        "RING needs at least two pairs of spokes at different angles (>= "
        f"{min_angle_deg} degrees apart); got {ii.numel()}.",
    )
    # coarse search on a 1/8-sample grid shared by all spokes
    step = 1.0 / 8
    tg = torch.arange(
        -float(search), float(search) + step / 2, step, dtype=torch.float64, device=k.device
    )
    fine = torch.einsum("mcn,ng->mgc", y, _interp_matrix(n, tg))  # (M, G, C)
    t1s, t2s = [], []
    for p0 in range(0, ii.numel(), 256):
        a, b = ii[p0 : p0 + 256], jj[p0 : p0 + 256]
        ya, yb = fine[a], fine[b]  # (P, G, C)
        d = (
            (ya.abs() ** 2).sum(-1)[:, :, None]
            + (yb.abs() ** 2).sum(-1)[:, None, :]
            - 2 * torch.einsum("pgc,phc->pgh", ya.conj(), yb).real
        )
        idx = d.reshape(d.shape[0], -1).argmin(-1)
        c1, c2 = tg[idx // tg.numel()], tg[idx % tg.numel()]
        # refine on a 1/64 grid of +-1/8 around the coarse minimum, then a parabola per axis
        off = torch.arange(-8, 9, dtype=torch.float64, device=k.device) / 64
        g1, g2 = c1[:, None] + off, c2[:, None] + off  # (P, 17)
        za = torch.einsum("pcn,png->pgc", y[a], _interp_matrix(n, g1))
        zb = torch.einsum("pcn,png->pgc", y[b], _interp_matrix(n, g2))
        d = (
            (za.abs() ** 2).sum(-1)[:, :, None]
            + (zb.abs() ** 2).sum(-1)[:, None, :]
            - 2 * torch.einsum("pgc,phc->pgh", za.conj(), zb).real
        )
        flat = d.reshape(d.shape[0], -1).argmin(-1)
        r, q = (flat // 17).clamp(1, 15), (flat % 17).clamp(1, 15)
        pr = torch.arange(d.shape[0], device=k.device)
        t1s.append(g1[pr, r] + _parabola(d[pr, r - 1, q], d[pr, r, q], d[pr, r + 1, q]) / 64)
        t2s.append(g2[pr, q] + _parabola(d[pr, r, q - 1], d[pr, r, q], d[pr, r, q + 1]) / 64)
    t1, t2 = torch.cat(t1s), torch.cat(t2s)
    # least squares for (S_yy, S_xx, S_xy): S u with u = n1 - n2, u = (uy, ux)
    u = dirs[ii] - dirs[jj]
    rhs = t2[:, None] * dirs[jj] - t1[:, None] * dirs[ii]  # (P, 2) as (y, x)
    zero = torch.zeros_like(u[:, 0])
    rows_y = torch.stack([u[:, 0], zero, u[:, 1]], -1)  # (S u)_y = Syy uy + Sxy ux
    rows_x = torch.stack([zero, u[:, 1], u[:, 0]], -1)  # (S u)_x = Sxx ux + Sxy uy
    amat = torch.stack([rows_y, rows_x], 1)  # (P, 2, 3)
    keep = torch.ones(amat.shape[0], dtype=torch.bool, device=k.device)
    for _ in range(2):
        sol = torch.linalg.lstsq(amat[keep].reshape(-1, 3), rhs[keep].reshape(-1, 1)).solution
        res = torch.linalg.vector_norm(amat @ sol[:, 0] - rhs, dim=-1)  # (P,)
        med = res[keep].median()
        mad = (res[keep] - med).abs().median()
        keep = res <= med + 3 * 1.4826 * mad + 1e-9
    syy, sxx, sxy = (float(v) for v in sol[:, 0])
    mat = torch.tensor([[syy, sxy], [sxy, sxx]], dtype=torch.float64)
    rms = float(res[keep].pow(2).mean().sqrt())
    delay = GradientDelay(mat, int(keep.sum()), rms)
    log.info("RING gradient delay %.3f samples, %s", delay.samples, delay.components)
    return delay


def _parabola(lo: torch.Tensor, mid: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Offset (in grid steps, within [-0.5, 0.5]) of the vertex of the parabola through 3 points."""
    den = lo - 2 * mid + hi
    off = torch.where(den > 0, 0.5 * (lo - hi) / den.clamp(min=1e-300), torch.zeros_like(den))
    return off.clamp(-0.5, 0.5)


# --------------------------------------------------------------------------------------------
# density compensation: Pipe & Menon
# --------------------------------------------------------------------------------------------


def _kaiser_bessel(d: torch.Tensor, width: float, beta: float) -> torch.Tensor:
    """Kaiser-Bessel window ``I0(beta sqrt(1 - (2 d / width)^2))`` for ``|d| <= width / 2``."""
    arg = 1 - (2 * d / width) ** 2
    return torch.where(arg >= 0, torch.special.i0(beta * arg.clamp(min=0).sqrt()), 0.0)


def pipe_menon_dcf(
    traj: torch.Tensor,
    im_size: tuple[int, int],
    *,
    iterations: int = 30,
    oversamp: float = 2.0,
    width: int = 4,
) -> torch.Tensor:
    """Iterative density compensation (Pipe & Menon 1999), ``(T, S, N)`` float32, per frame.

    The fixed point of ``w <- w / (C w)`` with ``(C w)_i = sum_j w_j psi(k_i - k_j)``: the
    weighted sample density convolved with the kernel ``psi`` is 1 at every sample. ``C`` is
    applied by gridding (no FFT): each weight is spread onto a Cartesian grid ``oversamp`` times
    finer than ``im_size`` with a separable Kaiser-Bessel kernel ``phi`` of ``width`` grid cells
    (Beatty's beta), and the grid is interpolated back at the samples with the same kernel, so
    ``psi`` is the autocorrelation of ``phi``. The grid is periodic (``2 pi``), like the NUFFT.

    The weights are then scaled as :func:`~mrphys.physics.nufft.radial_dcf` is (k-space area per
    sample times ``Ny Nx / (2 pi)^2``, so that ``A^H D A`` is close to the identity for
    :class:`~mrphys.physics.nufft.RadialNUFFT`): the fixed point makes ``w`` times the integral of
    ``psi`` (``(int phi)^4`` grid cells) the area of a sample. Works for any trajectory
    ``(T, S, N, 2)`` or ``(T, K, 2)`` (shape of the result: the trajectory's without the last
    axis); device follows ``traj``.

    Args:
        traj: trajectory in rad/pixel, last axis ``(ky, kx)``.
        im_size: image size ``(Y, X)``.
        iterations: fixed-point iterations.
        oversamp: grid oversampling (> 1).
        width: kernel width in grid cells (>= 2).
    """
    traj = torch.as_tensor(traj)
    check(
        traj.ndim in (3, 4) and traj.shape[-1] == 2,
        f"traj must be (T, S, N, 2) or (T, K, 2) in rad/pixel; got {tuple(traj.shape)}.",
    )
    check_finite("traj", traj)
    check(int(iterations) >= 1, f"iterations must be a positive integer; got {iterations}.")
    check(float(oversamp) > 1.0, f"oversamp must exceed 1; got {oversamp}.")
    check(int(width) >= 2, f"width must be an integer >= 2 grid cells; got {width}.")
    check(
        len(im_size) == 2 and all(int(s) > 0 for s in im_size),
        f"im_size must be two positive sizes (Y, X); got {tuple(im_size)}.",
    )
    shape = traj.shape[:-1]
    t = int(traj.shape[0])
    kk = traj.reshape(t, -1, 2).to(torch.float64)
    ny, nx = int(im_size[0]), int(im_size[1])
    gy, gx = math.ceil(oversamp * ny), math.ceil(oversamp * nx)
    w_ = float(width)
    alpha = float(oversamp)
    beta = math.pi * math.sqrt(max((w_ / alpha) ** 2 * (alpha - 0.5) ** 2 - 0.8, 1e-6))
    off = torch.arange(int(width), dtype=torch.float64, device=kk.device)

    def axis(u: torch.Tensor, g: int) -> tuple[torch.Tensor, torch.Tensor]:
        pos = u / (2 * math.pi) * g  # grid cells, centre 0
        first = torch.floor(pos - w_ / 2) + 1
        idx = first[..., None] + off  # (T, K, W)
        wt = _kaiser_bessel(pos[..., None] - idx, w_, beta)
        return torch.remainder(idx, g).long(), wt

    iy, wy = axis(kk[..., 0], gy)
    ix, wx = axis(kk[..., 1], gx)
    frame = torch.arange(t, device=kk.device)[:, None, None, None] * (gy * gx)
    idx = (frame + iy[..., :, None] * gx + ix[..., None, :]).reshape(t, -1, int(width) ** 2)
    wt = (wy[..., :, None] * wx[..., None, :]).reshape(t, -1, int(width) ** 2)
    flat_idx = idx.reshape(-1)

    def conv(w: torch.Tensor) -> torch.Tensor:
        grid = torch.zeros(t * gy * gx, dtype=torch.float64, device=kk.device)
        grid.scatter_add_(0, flat_idx, (w[..., None] * wt).reshape(-1))
        return (grid[idx] * wt).sum(-1)

    w = torch.ones(kk.shape[:2], dtype=torch.float64, device=kk.device)
    for _ in range(int(iterations)):
        w = w / conv(w).clamp(min=1e-300)
    # integral of phi over one axis, in grid cells (trapezoid on a fine grid)
    d = torch.linspace(-w_ / 2, w_ / 2, 2001, dtype=torch.float64)
    phi_int = float(torch.trapezoid(_kaiser_bessel(d, w_, beta), d))
    scale = phi_int**4 * (ny * nx) / (gy * gx)
    return (w * scale).reshape(shape).to(torch.float32)
