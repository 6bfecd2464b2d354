"""Multi-coil golden-angle radial acquisition of a dynamic series: the :class:`RadialData` contract.

:class:`RadialData` is what every dynamic reconstruction in mrphys reads (gridding, CG-SENSE,
GRASP, L+S in :mod:`mrphys.recon.baselines`; the INR in :mod:`mrphys.recon.inr`):

==========  ==================  =========  =======================================================
field       shape               dtype      meaning
==========  ==================  =========  =======================================================
kspace      ``(T, C, S, N)``    complex64  samples: ``S`` spokes of ``N`` samples per frame and coil
traj        ``(T, S, N, 2)``    float32    rad/pixel in ``[-pi, pi)``, last axis ``(ky, kx)``
maps        ``(C, Y, X)``       complex64  coil sensitivities, ``sum_c |S_c|^2 = 1``
dcf         ``(T, S, N)``       float32    density compensation (:func:`~.nufft.radial_dcf`)
truth       ``(T, Y, X)``       complex64  the image series that was encoded, or None
meta        dict                           acquisition facts (spokes, SNR, noise std, seed, ...)
==========  ==================  =========  =======================================================

The model is ``kspace = SenseOp(maps, RadialNUFFT(traj)) truth + noise`` with the orthonormal
NUFFT scaling of :mod:`mrphys.physics.nufft`, so a reconstruction that inverts the operator comes
back in the units of ``truth`` (no extra scale factor). Folders written before the spoke axis was
kept (``kspace (T, C, K)``, ``traj (T, K, 2)``, ``dcf (T, K)``) load through
:meth:`RadialData.load`, which restores the axis from ``samples_per_spoke`` in their
``acquisition.json``.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mrphys.errors import MrphysError, check, check_finite
from mrphys.physics.coils import SenseOp, birdcage_maps
from mrphys.physics.noise import add_complex_noise, sigma_mean
from mrphys.physics.nufft import GOLDEN_ANGLE_DEG, RadialNUFFT, golden_angle_radial, radial_dcf
from mrphys.resources import check_memory

log = logging.getLogger(__name__)

_FILES = ("kspace", "traj", "maps", "dcf")


@dataclass
class RadialData:
    """A multi-coil radial acquisition of a dynamic series (see the module table for shapes)."""

    kspace: torch.Tensor
    traj: torch.Tensor
    maps: torch.Tensor
    dcf: torch.Tensor
    truth: torch.Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    # -- facts -----------------------------------------------------------------------------
    @property
    def n_frames(self) -> int:
        return int(self.kspace.shape[0])

    @property
    def n_coils(self) -> int:
        return int(self.kspace.shape[1])

    @property
    def im_size(self) -> tuple[int, int]:
        return (int(self.maps.shape[-2]), int(self.maps.shape[-1]))

    @property
    def spoke_shape(self) -> tuple[int, int]:
        """``(S, N)``: spokes per frame and samples per spoke."""
        return (int(self.kspace.shape[2]), int(self.kspace.shape[3]))

    def validate(self) -> None:
        """Raise :class:`MrphysError` unless the fields have consistent shapes and dtypes."""
        k, tr, m, d = self.kspace, self.traj, self.maps, self.dcf
        check(
            isinstance(k, torch.Tensor) and k.ndim == 4 and k.is_complex(),
            f"kspace must be a complex tensor (T, C, S, N) (frames, coils, spokes, samples per "
            f"spoke); got {_desc(k)}.",
        )
        t, c, s, n = k.shape
        check(
            isinstance(tr, torch.Tensor) and tuple(tr.shape) == (t, s, n, 2),
            f"traj must have shape ({t}, {s}, {n}, 2) to match kspace; got {_desc(tr)}.",
        )
        check(
            isinstance(m, torch.Tensor) and m.ndim == 3 and m.shape[0] == c and m.is_complex(),
            f"maps must be complex with shape ({c}, Y, X) to match kspace; got {_desc(m)}.",
        )
        check(
            isinstance(d, torch.Tensor) and tuple(d.shape) == (t, s, n),
            f"dcf must have shape ({t}, {s}, {n}) to match kspace; got {_desc(d)}.",
        )
        if self.truth is not None:
            check(
                isinstance(self.truth, torch.Tensor)
                and tuple(self.truth.shape) == (t,) + tuple(m.shape[1:]),
                f"truth must have shape ({t}, {m.shape[1]}, {m.shape[2]}); "
                f"got {_desc(self.truth)}.",
            )
        for name in ("kspace", "traj", "maps", "dcf"):
            check_finite(name, getattr(self, name))

    def operator(self, backend: str = "auto") -> SenseOp:
        """The encoding ``A``: image ``(T, Y, X)`` -> k-space ``(T, C, S, N)``."""
        return SenseOp(self.maps, RadialNUFFT(self.traj, self.im_size, backend=backend))

    def to(self, device: torch.device | str) -> RadialData:
        """A copy with all tensors on ``device``."""
        return RadialData(
            kspace=self.kspace.to(device),
            traj=self.traj.to(device),
            maps=self.maps.to(device),
            dcf=self.dcf.to(device),
            truth=None if self.truth is None else self.truth.to(device),
            meta=dict(self.meta),
        )

    # -- files -----------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike) -> None:
        """Write ``kspace.npy``, ``traj.npy``, ``maps.npy``, ``dcf.npy``, ``truth.npy`` (when
        known) and ``acquisition.json`` (``meta`` plus shapes) into an existing ``directory``."""
        d = Path(directory)
        check(d.is_dir(), f"output directory {d} does not exist.")
        np.save(d / "kspace.npy", self.kspace.detach().cpu().numpy().astype(np.complex64))
        np.save(d / "traj.npy", self.traj.detach().cpu().numpy().astype(np.float32))
        np.save(d / "maps.npy", self.maps.detach().cpu().numpy().astype(np.complex64))
        np.save(d / "dcf.npy", self.dcf.detach().cpu().numpy().astype(np.float32))
        if self.truth is not None:
            np.save(d / "truth.npy", self.truth.detach().cpu().numpy().astype(np.complex64))
        info = dict(self.meta)
        info.update(
            n_frames=self.n_frames,
            n_coils=self.n_coils,
            im_size=list(self.im_size),
            spokes_per_frame=self.spoke_shape[0],
            samples_per_spoke=self.spoke_shape[1],
            traj_units="rad/pixel, last axis (ky, kx)",
            layout=_LAYOUT,
        )
        (d / "acquisition.json").write_text(json.dumps(info, indent=2, default=str) + "\n")

    @classmethod
    def load(cls, directory: str | os.PathLike) -> RadialData:
        """Read a directory written by :meth:`save`.

        A folder of the earlier flattened layout (``kspace (T, C, K)``, ``traj (T, K, 2)``,
        ``dcf (T, K)``) is read too: its spoke axis is restored from ``samples_per_spoke`` in
        ``acquisition.json`` (the samples are the same, only reshaped).
        """
        d = Path(directory)
        check(not d.is_file(), f"input {d} is a file; expected a `mrphys dynamic simulate` folder.")
        check(d.is_dir(), f"input directory {d} does not exist.")
        arrays: dict[str, torch.Tensor] = {}
        for name in _FILES:
            p = d / f"{name}.npy"
            check(
                p.exists(), f"{d} has no {name}.npy; expected a `mrphys dynamic simulate` output."
            )
            arrays[name] = torch.from_numpy(_load_npy(p))
        truth = None
        if (d / "truth.npy").is_file():
            truth = torch.from_numpy(_load_npy(d / "truth.npy")).to(torch.complex64)
        meta: dict[str, Any] = {}
        if (d / "acquisition.json").exists():
            from mrphys.io import input_file

            try:
                meta = json.loads(input_file(d / "acquisition.json", "JSON file").read_text())
            except json.JSONDecodeError as e:
                raise MrphysError(
                    f"{d / 'acquisition.json'} is not valid JSON ({e.msg})."
                ) from None
        check(
            arrays["kspace"].is_complex() and arrays["maps"].is_complex(),
            f"{d}: kspace.npy and maps.npy must hold complex arrays.",
        )
        if arrays["kspace"].ndim == 3:
            _restore_spoke_axis(d, arrays, meta)
        return cls(
            kspace=arrays["kspace"].to(torch.complex64),
            traj=arrays["traj"].to(torch.float32),
            maps=arrays["maps"].to(torch.complex64),
            dcf=arrays["dcf"].to(torch.float32),
            truth=truth,
            meta=meta,
        )


_LAYOUT = "kspace (T, C, S, N), traj (T, S, N, 2), maps (C, Y, X), dcf (T, S, N), truth (T, Y, X)"


def _restore_spoke_axis(d: Path, arrays: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Reshape a flattened-layout folder's kspace/traj/dcf in place to keep the spoke axis."""
    k, tr, w = arrays["kspace"], arrays["traj"], arrays["dcf"]
    n = meta.get("samples_per_spoke")
    ok = (
        isinstance(n, int)
        and n >= 1
        and tr.ndim == 3
        and w.ndim == 2
        and k.shape[-1] % n == 0
        and tuple(tr.shape[:2]) == (k.shape[0], k.shape[-1])
        and tuple(w.shape) == (k.shape[0], k.shape[-1])
    )
    if not ok:
        raise MrphysError(
            f"{d} holds flattened radial data (kspace {tuple(k.shape)}, traj {tuple(tr.shape)}, "
            f"dcf {tuple(w.shape)}) whose spoke axis cannot be restored: expected traj (T, K, 2), "
            "dcf (T, K) and an integer samples_per_spoke dividing K in acquisition.json."
        )
    t, c, kk = k.shape
    s = kk // n
    log.info("%s: old flattened layout, restored %d spokes of %d samples per frame", d, s, n)
    arrays["kspace"] = k.reshape(t, c, s, n)
    arrays["traj"] = tr.reshape(t, s, n, 2)
    arrays["dcf"] = w.reshape(t, s, n)


def _desc(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        return f"{tuple(x.shape)} {x.dtype}"
    return type(x).__name__


def _load_npy(p: Path) -> np.ndarray:
    from mrphys.io import input_file

    input_file(p, "NumPy file")  # a directory or an unreadable file: one sentence
    try:
        return np.load(p, allow_pickle=False)
    except Exception as e:  # numpy raises ValueError/OSError/EOFError for broken files
        raise MrphysError(f"{p} could not be read as a NumPy array ({type(e).__name__}).") from None


def radial_memory(
    frames: int, im_size: tuple[int, int], spokes: int, coils: int, samples: int
) -> int:
    """Estimated peak bytes of :func:`simulate_radial` (measured 35-56 B per k-space sample and
    112-555 B per trajectory point on the CPU, rounded up), plus the oversampled coil images."""
    k_samples = frames * coils * spokes * samples
    points = frames * spokes * samples
    coil_pixels = frames * coils * im_size[0] * im_size[1]
    return 64 * k_samples + 160 * points + 64 * coil_pixels


def _check_simulation(
    series: Any, spokes: int, coils: int, oversampling: int, snr: float | None
) -> torch.Tensor:
    """The checks :func:`simulate_radial` and :func:`simulate_raw` share; returns the series."""
    series = torch.as_tensor(series)
    check(
        series.ndim == 3 and min(series.shape) >= 1,
        f"series must have shape (T, Y, X); got {tuple(series.shape)}.",
    )
    check_finite("series", series)
    check(int(spokes) >= 1, f"spokes per frame must be a positive integer; got {spokes}.")
    check(int(coils) >= 1, f"coils must be a positive integer; got {coils}.")
    check(int(oversampling) >= 1, f"oversampling must be a positive integer; got {oversampling}.")
    if snr is not None and not math.isinf(float(snr)):
        check(
            math.isfinite(float(snr)) and float(snr) > 0,
            f"snr must be a positive number (or None for no noise); got {snr}.",
        )
    return series


def simulate_radial(
    series: torch.Tensor,
    spokes: int,
    coils: int = 8,
    snr: float | None = None,
    seed: int = 0,
    oversampling: int = 2,
    backend: str = "auto",
) -> RadialData:
    """Simulate a multi-coil continuous golden-angle radial acquisition of an image series.

    Spoke ``s`` of the whole series lies at ``s * 111.246`` deg; frame ``t`` gets spokes
    ``t*S .. t*S + S - 1``. Each spoke has ``oversampling * N`` samples (``N = max(Y, X)``) over
    ``[-pi, pi)`` rad/pixel. Coil maps are :func:`~.coils.birdcage_maps`; the density
    compensation is :func:`~.nufft.radial_dcf`.

    Noise: complex white Gaussian noise with standard deviation ``sigma`` (``sigma / sqrt 2`` in
    the real and the imaginary part), where **SNR = mean |noise-free k-space sample| / sigma**
    over all frames, coils and samples (:func:`~.noise.sigma_mean`, drawn by
    :func:`~.noise.add_complex_noise` with ``draw="interleaved"``, which the stored numbers were
    made with). ``snr=None`` (or inf) adds no noise.

    Args:
        series: ``(T, Y, X)`` image series (complex or real), e.g. from
            :func:`mrphys.tissue.dynamic.load_series`; it becomes ``truth`` (complex64, same
            scale: the reconstructions estimate it directly).
        spokes: spokes per frame ``S >= 1`` (acceleration ``N / S``).
        coils: number of receive coils ``C >= 1``.
        snr: signal-to-noise ratio as defined above (> 0), or None for noise-free data.
        seed: seed of the noise.
        oversampling: readout samples per spoke per image pixel (2 in the INR paper).
        backend: NUFFT backend (see :class:`~.nufft.RadialNUFFT`).

    An acquisition whose estimated memory (:func:`radial_memory`) exceeds the available memory
    is refused before any work (:func:`mrphys.resources.check_memory`).

    Returns:
        :class:`RadialData` on the device of ``series``: kspace ``(T, C, S, N)``, traj
        ``(T, S, N, 2)``, dcf ``(T, S, N)`` with ``N = oversampling * max(Y, X)``.
    """
    series = _check_simulation(series, spokes, coils, oversampling, snr)
    t, ny, nx = series.shape
    n_samples = int(oversampling) * max(ny, nx)
    check_memory(
        radial_memory(t, (ny, nx), int(spokes), int(coils), n_samples),
        f"a radial acquisition of {t} frames x {spokes} spokes x {coils} coils of {ny}x{nx}",
        "--spokes, --frames or --coils",
    )
    truth = series.to(torch.complex64)
    dev = truth.device
    traj = golden_angle_radial(t, int(spokes), n_samples).to(dev)
    maps = birdcage_maps(int(coils), (ny, nx), device=dev)
    dcf = radial_dcf(traj, im_size=(ny, nx)).to(dev)
    op = SenseOp(maps, RadialNUFFT(traj, (ny, nx), backend=backend))
    with torch.no_grad():
        k = op.forward(truth)  # (T, C, S, N)
    sigma = sigma_mean(k, snr)
    if sigma > 0:
        g = torch.Generator(device=dev).manual_seed(int(seed))
        k = add_complex_noise(k, sigma, generator=g, draw="interleaved")
    meta = {
        "spokes_per_frame": int(spokes),
        "samples_per_spoke": n_samples,
        "oversampling": int(oversampling),
        "golden_angle_deg": GOLDEN_ANGLE_DEG,
        "acceleration": max(ny, nx) / int(spokes),
        "n_coils": int(coils),
        "coil_maps": "birdcage, radius 1.5 half-FOV, sum |S|^2 = 1",
        "snr": None if snr is None or math.isinf(float(snr)) else float(snr),
        "snr_definition": "mean |noise-free k-space sample| / complex noise std",
        "noise_std": sigma,
        "seed": int(seed),
    }
    return RadialData(
        kspace=k.to(torch.complex64), traj=traj, maps=maps, dcf=dcf, truth=truth, meta=meta
    )


# --------------------------------------------------------------------------------------------
# honest simulation: no inverse crime
# --------------------------------------------------------------------------------------------


@dataclass
class RawSimulation:
    """An acquisition simulated without the inverse crime (:func:`simulate_raw`).

    Attributes:
        data: the spokes with the **nominal** trajectory (what a scanner records) as
            :class:`RadialData`; its ``maps`` are the true maps on the reconstruction grid and
            its ``truth`` the object on that grid (both for evaluation only).
        noise: ``(C, M)`` noise-scan samples (same coil covariance as the data noise).
        covariance: ``(C, C)`` complex noise covariance of one sample.
        gradient_delay: ``(delay_x, delay_y)`` readout samples of the x and y gradient axes.
    """

    data: RadialData
    noise: torch.Tensor
    covariance: torch.Tensor
    gradient_delay: tuple[float, float]


def delayed_trajectory(traj: torch.Tensor, delay_x: float, delay_y: float) -> torch.Tensor:
    """Where the samples of a nominal radial ``traj (T, S, N, 2)`` really lie under gradient delays
    of ``delay_x``, ``delay_y`` readout samples on the x and y gradient axes.

    A delay of the x gradient by ``delay_x`` samples moves every sample's ``kx`` by
    ``delay_x * dk * n_x`` (``n = (n_y, n_x)`` the unit direction of increasing sample index,
    ``dk`` the sample spacing), likewise ``ky``: ``k = k_nominal + S n dk`` with
    ``S = diag(delay_y, delay_x)``, the model RING estimates (Rosenzweig et al. 2019; the delay
    along a spoke at angle ``t`` is ``n^T S n = delay_x cos^2 t + delay_y sin^2 t``). Positive
    delays put the samples further along the readout direction than the nominal trajectory says.
    """
    tr = traj.to(torch.float64)
    d = tr[..., -1, :] - tr[..., 0, :]  # (T, S, 2)
    length = torch.linalg.vector_norm(d, dim=-1, keepdim=True).clamp_min(1e-12)
    n = d / length
    dk = length / (tr.shape[-2] - 1)  # sample spacing (rad/pixel)
    s = torch.tensor([float(delay_y), float(delay_x)], dtype=torch.float64, device=tr.device)
    return (tr + (n * s * dk)[..., None, :]).to(traj.dtype)


def _background_phase(im_size: tuple[int, int], g: torch.Generator) -> torch.Tensor:
    """A smooth random background phase (rad, up to about +-1.5): a 2nd-order polynomial."""
    ny, nx = im_size
    y = ((torch.arange(ny, dtype=torch.float64) - ny // 2) / (ny / 2))[:, None]
    x = ((torch.arange(nx, dtype=torch.float64) - nx // 2) / (nx / 2))[None, :]
    a = (torch.rand(6, generator=g, dtype=torch.float64) - 0.5) * 1.0
    return a[0] + a[1] * y + a[2] * x + a[3] * x * y + a[4] * y**2 + a[5] * x**2


def coil_noise_covariance(n_coils: int, correlation: float, seed: int = 0) -> torch.Tensor:
    """A ``(C, C)`` complex coil noise covariance with mean variance 1: neighbouring coils
    correlated by ``correlation ** |i - j|`` (magnitude), random coil gains in ``[0.7, 1.4]`` and
    random phases of the cross terms (``diag(g e^{i p}) R diag(g e^{-i p})``, positive definite
    for ``|correlation| < 1``)."""
    check(0 <= correlation < 1, f"correlation must lie in [0, 1); got {correlation}.")
    g = torch.Generator().manual_seed(int(seed) + 7919)
    c = int(n_coils)
    i = torch.arange(c, dtype=torch.float64)
    r = float(correlation) ** (i[:, None] - i[None, :]).abs()
    gains = 0.7 + 0.7 * torch.rand(c, generator=g, dtype=torch.float64)
    ph = torch.polar(gains, 2 * math.pi * torch.rand(c, generator=g, dtype=torch.float64))
    cov = ph[:, None] * r.to(torch.complex128) * ph.conj()[None, :]
    return cov / cov.diagonal().real.mean()


def simulate_raw(
    series: torch.Tensor,
    spokes: int,
    coils: int = 8,
    snr: float | None = None,
    seed: int = 0,
    *,
    factor: int = 2,
    oversampling: int = 2,
    gradient_delay: float | tuple[float, float] = 0.0,
    noise_correlation: float = 0.3,
    noise_samples: int = 2048,
    background_phase: bool = True,
    backend: str = "auto",
) -> RawSimulation:
    """Simulate a golden-angle radial acquisition of ``series`` without the inverse crime.

    - **Object off the grid**: ``series`` ``(T, Yf, Xf)`` is the object on a grid ``factor``
      times finer than the reconstruction grid ``(Yf/factor, Xf/factor)``; the k-space is the
      NUFFT of the fine object at the trajectory in fine-grid units (``k / factor``) divided by
      ``factor`` (so the same object has the same units on both grids), never the
      reconstruction operator. ``truth`` is the fine object Fourier-cropped to the reconstruction
      grid (its band limit), in the same units.
    - **Coil maps** of :func:`~.coils.loop_coil_maps` (Biot-Savart loops, seeded by ``seed``),
      evaluated on the fine grid for the data and on the reconstruction grid for ``data.maps``.
    - **Noise** correlated between coils (:func:`coil_noise_covariance` with
      ``noise_correlation``), ``SNR = mean |noise-free k| / sigma`` with ``sigma^2`` the mean coil
      noise variance; a noise scan of ``noise_samples`` samples per coil with the same covariance.
    - **Gradient delay** ``gradient_delay`` readout samples (one number: isotropic; a pair
      ``(x, y)``: per gradient axis; :func:`delayed_trajectory`); the nominal trajectory is
      stored.
    - **Background phase**: a smooth random 2nd-order polynomial phase on the object (and in
      ``truth``).

    Args:
        series: ``(T, Yf, Xf)`` object (complex or real), ``Yf`` and ``Xf`` multiples of
            ``factor``.
        spokes, coils, snr, seed, oversampling, backend: as for :func:`simulate_radial` (samples
            per spoke ``oversampling * max(Y, X)`` of the reconstruction grid).
        factor: fine-grid factor (>= 1; 1 puts the object on the reconstruction grid, which
            only the tests of this function use).
    """
    from mrphys.physics.coils import loop_coil_maps
    from mrphys.physics.fourier import fft2c, ifft2c
    from mrphys.physics.noise import correlated_complex_noise

    series = _check_simulation(series, spokes, coils, oversampling, snr)
    check(int(factor) >= 1, f"factor must be a positive integer; got {factor}.")
    t, yf, xf = series.shape
    f = int(factor)
    check(
        yf % f == 0 and xf % f == 0 and yf // f >= 4 and xf // f >= 4,
        f"the object grid {yf}x{xf} must be a multiple of factor {f} (and at least 4 pixels "
        "after dividing).",
    )
    delay = (
        (float(gradient_delay), float(gradient_delay))
        if isinstance(gradient_delay, (int, float))
        else tuple(float(v) for v in gradient_delay)
    )
    check(
        len(delay) == 2 and all(math.isfinite(v) and abs(v) <= 5 for v in delay),
        f"gradient_delay must be one number or a pair (x, y) within +-5 samples; got "
        f"{gradient_delay}.",
    )
    ny, nx = yf // f, xf // f
    n_samples = int(oversampling) * max(ny, nx)
    check_memory(
        radial_memory(t, (yf, xf), int(spokes), int(coils), n_samples),
        f"a radial acquisition of {t} frames x {spokes} spokes x {coils} coils of {yf}x{xf}",
        "--spokes, --frames or --coils",
    )
    dev = series.device
    g = torch.Generator().manual_seed(int(seed))
    obj = series.to(torch.complex64)
    if background_phase:
        ph = _background_phase((yf, xf), g)
        obj = obj * torch.polar(torch.ones_like(ph), ph).to(obj)
    traj = golden_angle_radial(t, int(spokes), n_samples).to(dev)
    true_traj = delayed_trajectory(traj, *delay)
    maps_fine = loop_coil_maps(int(coils), (yf, xf), seed=seed, device=dev)
    maps = loop_coil_maps(int(coils), (ny, nx), seed=seed, device=dev)
    op = SenseOp(maps_fine, RadialNUFFT(true_traj / f, (yf, xf), backend=backend))
    with torch.no_grad():
        k = op.forward(obj) / f  # (T, C, S, N)
    # truth: the object's band on the reconstruction grid (orthonormal FFTs: / f keeps units)
    spec = fft2c(obj)
    y0, x0 = yf // 2 - ny // 2, xf // 2 - nx // 2
    truth = ifft2c(spec[..., y0 : y0 + ny, x0 : x0 + nx]) / f
    cov = coil_noise_covariance(int(coils), noise_correlation, seed)
    sigma = sigma_mean(k, snr)
    gn = torch.Generator(device=dev).manual_seed(int(seed) + 1)
    cov_s = cov * sigma**2
    if sigma > 0:
        k = k + correlated_complex_noise(k.shape, cov_s, 1, generator=gn, device=dev)
        noise = correlated_complex_noise(
            (int(coils), int(noise_samples)), cov_s, 0, generator=gn, device=dev
        )
    else:
        noise = torch.zeros(int(coils), int(noise_samples), dtype=torch.complex64, device=dev)
    meta = {
        "spokes_per_frame": int(spokes),
        "samples_per_spoke": n_samples,
        "oversampling": int(oversampling),
        "golden_angle_deg": GOLDEN_ANGLE_DEG,
        "acceleration": max(ny, nx) / int(spokes),
        "n_coils": int(coils),
        "coil_maps": "Biot-Savart rectangular loops (loop_coil_maps), sum |S|^2 = 1",
        "object_grid": [yf, xf],
        "object_factor": f,
        "gradient_delay_samples_xy": list(delay),
        "noise_correlation": float(noise_correlation),
        "background_phase": bool(background_phase),
        "snr": None if snr is None or math.isinf(float(snr)) else float(snr),
        "snr_definition": "mean |noise-free k-space sample| / sqrt(mean coil noise variance)",
        "noise_std": sigma,
        "seed": int(seed),
        "inverse_crime": False,
    }
    data = RadialData(
        kspace=k.to(torch.complex64),
        traj=traj,
        maps=maps,
        dcf=radial_dcf(traj, im_size=(ny, nx)).to(dev),
        truth=truth.to(torch.complex64),
        meta=meta,
    )
    return RawSimulation(data, noise, cov_s.to(torch.complex64), delay)  # type: ignore[arg-type]
