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
