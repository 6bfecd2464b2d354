"""``mrphys dynamic`` as two functions: simulate a radial scan into a folder, and reconstruct one
(an MRD raw file or such a folder) into a folder.

:func:`simulate_to_folder` simulates a golden-angle radial multi-coil acquisition of an image
series without the inverse crime (:func:`mrphys.physics.radial.simulate_raw`) and writes it as a
scanner would: ``raw.h5`` (ISMRMRD/MRD, :func:`mrphys.physics.mrd.write_mrd`, with a noise scan),
plus ``truth.npy`` and ``maps_true.npy`` kept beside it for evaluation only.

:func:`recon_to_folder` reads ``raw.h5`` (or any MRD file, or a folder of arrays written by
earlier versions), calibrates from the data alone (:func:`calibrate`: prewhitening, coil
compression, RING gradient-delay correction, density compensation, coil maps, the object's
support; each step can be switched off, and ``maps`` overrides the estimated maps), runs a method of
:mod:`mrphys.recon.registry`, and writes ``recon.npy``, ``recon.nii.gz``, ``maps.npy``,
``metrics.json`` (what was estimated, and :func:`truth_metrics` when a truth is known),
``frames.png`` and ``frames.gif``. It reconstructs a single input; batch front ends call it per
input.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mrphys import plot
from mrphys.errors import MrphysError, check
from mrphys.io import output_dir, save_json, save_nifti
from mrphys.metrics import psnr, ssim
from mrphys.physics.radial import RadialData, simulate_raw
from mrphys.recon.calib import SUPPORT_THRESHOLD
from mrphys.recon.registry import reconstruct
from mrphys.tissue.dynamic import load_series, synthetic_cine

log = logging.getLogger(__name__)

PathLike = str | os.PathLike
RAW_NAME = "raw.h5"


# --------------------------------------------------------------------------------------------
# simulation
# --------------------------------------------------------------------------------------------


def simulate_to_folder(
    out: PathLike,
    series: str,
    spokes: int,
    *,
    variable: str | None = None,
    frames: int | None = None,
    matrix: int = 64,
    coils: int = 8,
    snr: float | None = None,
    seed: int = 0,
    gradient_delay: float | tuple[float, float] = 0.0,
    noise_correlation: float = 0.3,
    factor: int = 2,
    traj_units: str = "cycles/pixel",
    device: torch.device | str = "cpu",
    overwrite: bool = False,
    config: dict[str, Any] | None = None,
    cfl: bool = False,
) -> RadialData:
    """Simulate a raw radial scan of ``series`` and write it into the new folder ``out``:
    ``raw.h5`` (MRD: spokes with the nominal trajectory, a noise scan when ``snr`` is given),
    ``truth.npy`` (complex64 ``[T, Y, X]``) and ``maps_true.npy`` (complex64 ``[C, Y, X]``) for
    evaluation only, ``acquisition.json`` and ``config.json``.

    Args:
        series: a MATLAB file with a ``(Y, X, frames)`` series, or ``"synthetic"`` for the
            beating phantom (``frames`` frames, default 20). The series is the object on a grid
            ``factor`` times finer than the reconstruction (a file of 192 x 192 gives 96 x 96; a
            synthetic phantom is drawn at ``factor * matrix``); sizes that do not divide are
            cropped centrally.
        spokes, coils, snr, seed, gradient_delay, noise_correlation, factor: as for
            :func:`mrphys.physics.radial.simulate_raw`.
        frames: use the first ``frames`` frames of a file (default: all).
        traj_units: how ``raw.h5`` stores the trajectory: ``"cycles/pixel"``, ``"1/FOV"`` or
            ``"none"`` (computed from the spoke index by the reader).
        config: written as ``config.json`` beside the data.
        cfl: also write the same spokes as BART arrays ``kspace.cfl``, ``traj.cfl`` and (with a
            noise scan) ``noise.cfl`` (:func:`mrphys.physics.cfl.write_cfl_radial`).

    Returns:
        the simulated data (nominal trajectory, true maps, truth); ``meta`` holds the series,
        frames, device and seconds.
    """
    from mrphys.physics.mrd import write_mrd

    check(int(factor) >= 1, f"factor must be a positive integer; got {factor}.")
    if series == "synthetic":
        images = synthetic_cine(frames or 20, int(matrix) * int(factor), seed=seed)
    else:
        images = load_series(series, variable=variable)[:frames]
    f = int(factor)
    yf, xf = (images.shape[1] // f) * f, (images.shape[2] // f) * f
    y0, x0 = (images.shape[1] - yf) // 2, (images.shape[2] - xf) // 2
    images = images[:, y0 : y0 + yf, x0 : x0 + xf]
    t0 = time.perf_counter()
    sim = simulate_raw(
        images.to(device),
        spokes,
        coils=coils,
        snr=snr,
        seed=seed,
        factor=f,
        gradient_delay=gradient_delay,
        noise_correlation=noise_correlation,
    )
    data = sim.data
    data.meta.update(
        series=str(series),
        variable=variable,
        frames=int(images.shape[0]),
        device=str(device),
        seconds=time.perf_counter() - t0,
        raw_file=RAW_NAME,
        traj_units=traj_units,
        truth_file="truth.npy (evaluation only; the reconstruction never reads it)",
        maps_file="maps_true.npy (evaluation only)",
        im_size=list(data.im_size),
        n_frames=data.n_frames,
    )
    noise = sim.noise if data.meta["noise_std"] > 0 else None
    with output_dir(out, overwrite=overwrite) as tmp:
        write_mrd(tmp / RAW_NAME, data.to("cpu"), noise=noise, traj_units=traj_units)
        if cfl:
            from mrphys.physics.cfl import write_cfl_radial

            write_cfl_radial(tmp, data.to("cpu"), noise)
        np.save(tmp / "truth.npy", data.truth.detach().cpu().numpy().astype(np.complex64))
        np.save(tmp / "maps_true.npy", data.maps.detach().cpu().numpy().astype(np.complex64))
        save_json(tmp / "acquisition.json", data.meta)
        save_json(tmp / "config.json", config or {})
    return data


# --------------------------------------------------------------------------------------------
# calibration
# --------------------------------------------------------------------------------------------


@dataclass
class CalibrationSteps:
    """The calibration steps :func:`calibrate` runs on raw data, each one switchable.

    Attributes:
        prewhiten: whiten the coil noise (noise scan, else the outer k-space).
        coils: compress to this many virtual coils (PCA), or None.
        coil_energy: compress to the fewest virtual coils keeping this energy fraction, or None.
        delay_correction: estimate the gradient delay by RING and correct the trajectory.
        dcf: ``"ramp"`` (:func:`~mrphys.physics.nufft.radial_dcf`) or ``"pipe-menon"``.
        maps_method: ``"auto"``, ``"espirit"``, ``"walsh"`` or ``"inati"``.
        smooth_maps: refit the estimated maps in a smooth low-order basis over the whole field
            of view (:func:`~mrphys.recon.calib.smooth_maps`); off: the per-pixel estimates with
            :func:`~mrphys.recon.calib.fill_dark` in the dark regions.
        support_threshold: weight the maps (estimated or given) by where the data show an
            object (:func:`~mrphys.recon.calib.support_weights`: 1 on the support, tapering to 0
            where the data show no signal; threshold relative to the robust peak of the
            time-averaged image; default ``calib.SUPPORT_THRESHOLD``, 0.3); 0 turns it off.
    """

    prewhiten: bool = True
    coils: int | None = None
    coil_energy: float | None = None
    delay_correction: bool = True
    dcf: str = "ramp"
    maps_method: str = "auto"
    smooth_maps: bool = True
    support_threshold: float = SUPPORT_THRESHOLD

    def validate(self) -> None:
        check(
            self.coils is None or self.coil_energy is None,
            "give at most one of coils (a count) and coil_energy (a fraction).",
        )
        check(self.dcf in ("ramp", "pipe-menon"), f"dcf must be ramp or pipe-menon; got "
              f"{self.dcf!r}.")  # fmt: skip
        from mrphys.recon.calib import MAP_METHODS

        check(
            self.maps_method in MAP_METHODS,
            f"maps_method must be one of {', '.join(MAP_METHODS)}; got {self.maps_method!r}.",
        )
        check(
            0.0 <= float(self.support_threshold) < 1.0,
            f"support_threshold must lie in [0, 1) (0: no support); got {self.support_threshold}.",
        )


def _noise_level(noise: torch.Tensor) -> float:
    return float((noise.abs() ** 2).mean()) if noise.numel() else 0.0


@dataclass
class Calibrated:
    """What :func:`calibrate` returns.

    Attributes:
        data: whitened/compressed k-space, corrected trajectory, DCF, maps with
            ``sum_c |S_c|^2 = 1`` (where nonzero) in the processed coil space, times the
            support weights when that step runs.
        report: what was estimated (see :func:`calibrate`).
        intensity: ``(Y, X)`` float32: multiply a reconstruction by it to get the object in the
            scanner's coil space (``sqrt(sum_c |(W^-1 P^H S)_c|^2)``, ``W`` the whitening, ``P``
            the compression); 1 without whitening and compression.
    """

    data: RadialData
    report: dict[str, Any]
    intensity: torch.Tensor


def calibrate(
    data: RadialData,
    noise: torch.Tensor | None = None,
    steps: CalibrationSteps | None = None,
    maps: torch.Tensor | None = None,
) -> Calibrated:
    """Calibrate raw radial data from itself: prewhiten -> compress -> RING delay -> DCF -> maps
    -> support.

    Args:
        data: spokes with the nominal trajectory (e.g. from :func:`mrphys.physics.mrd.read_mrd`;
            its maps are ignored unless ``maps`` is given).
        noise: ``(C, M)`` noise-scan samples, or None (then the outer k-space,
            :func:`~mrphys.recon.calib.noise_from_outer_kspace`, when prewhitening).
        steps: which steps run (default :class:`CalibrationSteps`).
        maps: ``(C, Y, X)`` coil maps in the scanner's coil space to use instead of estimating
            them (they get the same whitening and compression as the data).

    The maps (estimated or given) are normalised to ``sum_c |S_c|^2 = 1`` in the processed
    (whitened, compressed) coil space, as every method of :mod:`mrphys.recon.registry` expects
    (then multiplied by the support weights, :func:`~mrphys.recon.calib.support_weights`),
    so a reconstruction returns the object weighted by the whitened coil gains; the returned
    ``intensity`` map undoes that weighting (it is the norm of the normalised maps taken back to
    the scanner's coils), so ``intensity * reconstruction`` is in the object's units whether the
    maps were estimated or given (the scanner-space maps are taken as ``sum |S|^2 = 1``).

    Returns:
        :class:`Calibrated`; its report holds ``noise_covariance_condition``,
        ``noise_source``, ``compressed_coils``, ``energy_kept``, ``gradient_delay_samples``,
        ``ring_components``, ``dcf``, ``coil_map_method``, ``coil_map_smoothing`` (``"smooth
        refit"``, ``"fill_dark"``, or None for given maps), ``support_fraction`` (the fraction of
        the field of view inside the data-derived support, where the maps keep their full
        weight; 1 without the step), ``support_mean_weight`` (the mean weight of the maps over
        the field of view) and the seconds of each step.
    """
    from mrphys.physics.nufft import radial_dcf
    from mrphys.recon import calib

    steps = steps or CalibrationSteps()
    steps.validate()
    k, traj = data.kspace, data.traj
    c = data.n_coils
    report: dict[str, Any] = {"steps": asdict(steps), "n_coils_in": c, "seconds": {}}
    mix = torch.eye(c, dtype=torch.complex64, device=k.device)  # scanner coils -> processed

    def timed(name: str, t0: float) -> None:
        report["seconds"][name] = round(time.perf_counter() - t0, 3)

    # 1. prewhitening
    report["noise_covariance_condition"] = None
    report["noise_source"] = None
    if steps.prewhiten:
        t0 = time.perf_counter()
        source = "noise scan"
        if noise is None or noise.numel() == 0:
            noise = calib.noise_from_outer_kspace(k, traj, coil_axis=1)
            source = "outer k-space (no noise scan)"
        noise = noise.to(k.device)
        if _noise_level(noise) <= 1e-20 * max(float((k.abs() ** 2).mean()), 1e-30):
            report["noise_source"] = f"{source}: no noise found, not prewhitened"
        else:
            w = calib.prewhiten(noise)
            k = w.apply(k, coil_axis=1)
            mix = w.matrix.to(k.device) @ mix
            report["noise_source"] = source
            report["noise_covariance_condition"] = w.condition
        timed("prewhiten", t0)
    # 2. coil compression
    report["compressed_coils"] = None
    if steps.coils is not None or steps.coil_energy is not None:
        t0 = time.perf_counter()
        comp = calib.coil_compress(k, 1, n_coils=steps.coils, energy=steps.coil_energy)
        k = comp.apply(k, coil_axis=1)
        mix = comp.matrix.to(k.device) @ mix
        report["compressed_coils"] = comp.n_coils
        report["energy_kept"] = comp.energy_kept
        timed("compress", t0)
    # 3. gradient delay
    report["gradient_delay_samples"] = None
    report["ring_components"] = None
    traj_used = traj
    if steps.delay_correction:
        t0 = time.perf_counter()
        delay = calib.ring_delay(k, traj, coil_axis=1)
        traj_used = delay.correct(traj)
        report["gradient_delay_samples"] = delay.samples
        report["ring_components"] = delay.components
        report["ring_pairs"] = delay.n_pairs
        report["ring_residual_samples"] = delay.residual
        timed("ring", t0)
    # 4. density compensation (of the nominal trajectory, as the calibration module advises)
    t0 = time.perf_counter()
    if steps.dcf == "pipe-menon":
        dcf = calib.pipe_menon_dcf(traj, data.im_size).to(k.device)
    else:
        dcf = radial_dcf(traj, im_size=data.im_size).to(k.device)
    report["dcf"] = steps.dcf
    timed("dcf", t0)
    # 5. coil maps from the pooled spokes with their own (Voronoi) weights, not the per-frame DCF
    # (estimate_maps' advice); normalised in the processed coil space; the intensity correction
    # takes the image back to the scanner's coils (see the docstring)
    t0 = time.perf_counter()
    if maps is not None:
        maps = torch.as_tensor(maps).to(device=k.device, dtype=torch.complex64)
        check(
            maps.ndim == 3 and maps.shape[0] == c and tuple(maps.shape[1:]) == data.im_size,
            f"maps must have shape ({c}, {data.im_size[0]}, {data.im_size[1]}) to match the "
            f"data; got {tuple(maps.shape)}.",
        )
        est = torch.einsum("dc,cyx->dyx", mix, maps)
        report["coil_map_method"] = "given"
    else:
        est = calib.estimate_maps(
            k,
            traj_used,
            data.im_size,
            coil_axis=1,
            method=steps.maps_method,
            smooth=steps.smooth_maps,
        ).to(k.device)
        report["coil_map_method"] = _map_method_name(steps.maps_method)
    report["coil_map_smoothing"] = (
        ("smooth refit" if steps.smooth_maps else "fill_dark") if maps is None else None
    )
    est = est * _inverse_rss(est)
    timed("maps", t0)
    # 6. support from the data (for given maps too: it is a property of the data)
    report["support_fraction"] = 1.0
    report["support_mean_weight"] = 1.0
    if steps.support_threshold > 0:
        t0 = time.perf_counter()
        from mrphys.physics.nufft import RadialNUFFT

        nufft = RadialNUFFT(traj_used, data.im_size).on_coils(int(k.shape[1]))
        images = nufft.adjoint(k * dcf[:, None].to(k.real.dtype))  # (T, C, Y, X), each frame
        weights = calib.support_weights(images, threshold=steps.support_threshold)
        inside = weights >= 1.0
        est = est * weights.to(est.device)
        report["support_fraction"] = float(inside.float().mean())
        report["support_mean_weight"] = float(weights.mean())
        timed("support", t0)
    back = torch.linalg.pinv(mix.to(torch.complex128)).to(torch.complex64)
    intensity = torch.einsum("cd,dyx->cyx", back, est).abs().pow(2).sum(0).sqrt()
    report["n_coils_out"] = int(k.shape[1])
    meta = dict(data.meta)
    meta["calibration"] = {k_: v for k_, v in report.items() if k_ != "seconds"}
    out = RadialData(
        kspace=k.to(torch.complex64),
        traj=traj_used.to(torch.float32),
        maps=est.to(torch.complex64),
        dcf=dcf.to(torch.float32),
        truth=data.truth,
        meta=meta,
    )
    return Calibrated(out, report, intensity.to(torch.float32))


def _inverse_rss(maps: torch.Tensor) -> torch.Tensor:
    """``1 / sqrt(sum_c |S_c|^2)`` where the maps are nonzero (1e-6 of the largest), else 0."""
    rss = maps.abs().pow(2).sum(0).sqrt()
    return torch.where(rss > 1e-6 * float(rss.max()), 1.0 / rss.clamp_min(1e-30), 0.0)


def _map_method_name(method: str) -> str:
    return "espirit (auto)" if method == "auto" else method


# --------------------------------------------------------------------------------------------
# reconstruction
# --------------------------------------------------------------------------------------------


def truth_metrics(x: torch.Tensor, truth: torch.Tensor | None) -> dict[str, Any]:
    """PSNR and SSIM of the series ``x`` (T, Y, X) against ``truth``, per frame and mean (SSIM
    only for images of at least 7 x 7); a note instead when the shapes differ; ``{}`` without
    truth."""
    if truth is None:
        return {}
    if truth.shape != x.shape:
        shapes = f"reconstruction {tuple(x.shape)} differs from truth {tuple(truth.shape)}"
        return {"note": f"no metrics: {shapes}"}
    p = psnr(x, truth)
    s = ssim(x, truth) if min(x.shape[-2:]) >= 7 else None
    return {
        "psnr_db": float(p.mean()),
        "ssim": None if s is None else float(s.mean()),
        "psnr_db_per_frame": [float(v) for v in p],
        "ssim_per_frame": None if s is None else [float(v) for v in s],
        "reference": "truth.npy (magnitude, data range max |truth| per frame)",
    }


def _load_truth(path: Path) -> torch.Tensor:
    from mrphys.physics.radial import _load_npy

    return torch.from_numpy(_load_npy(path)).to(torch.complex64)


def _cfl_input(p: Path, read: dict[str, Any]) -> tuple[Path, Path, Path | None]:
    """The k-space, trajectory and noise BART arrays of ``--input p`` (a ``.cfl``/``.hdr`` file or a
    folder holding ``kspace.cfl``): ``read["traj"]``/``read["noise"]`` when given, else the
    ``traj.cfl``/``noise.cfl`` beside the k-space."""
    from mrphys.physics.cfl import CFL_NAMES

    folder = p if p.is_dir() else p.parent
    ksp = folder / f"{CFL_NAMES['kspace']}.cfl" if p.is_dir() else p.with_suffix(".cfl")
    traj = read.get("traj")
    if traj is None:
        traj = folder / f"{CFL_NAMES['traj']}.cfl"
        if not traj.is_file():
            raise MrphysError(
                f"{ksp} is BART k-space but no trajectory was given (--traj traj.cfl) and "
                f"{traj.name} is not beside it."
            )
    noise = read.get("noise")
    if noise is None and (folder / f"{CFL_NAMES['noise']}.cfl").is_file():
        noise = folder / f"{CFL_NAMES['noise']}.cfl"
    return ksp, Path(traj), None if noise is None else Path(noise)


#: options of :func:`read_mrd` that a BART input cannot honour (its frames are dim 10)
_MRD_ONLY = {"spokes_per_frame": None, "frame_step": None, "frames_from": "auto",
             "angle_increment_deg": None, "traj_units": "auto"}  # fmt: skip


def load_input(
    input: PathLike,
    *,
    truth: PathLike | None = None,
    read: dict[str, Any] | None = None,
) -> tuple[RadialData, Any, bool]:
    """Read a reconstruction input: an MRD ``.h5`` file, a folder holding ``raw.h5`` (and
    ``truth.npy``), BART radial k-space (a ``kspace.cfl``/``.hdr`` file with its trajectory, or a
    folder holding ``kspace.cfl``, ``traj.cfl`` and optionally ``noise.cfl`` but no ``raw.h5``; see
    :func:`mrphys.physics.cfl.read_cfl_radial`), or a folder of arrays from earlier versions
    (``kspace.npy``, ``traj.npy``, ``maps.npy``, ``dcf.npy``: reconstructed with its own maps, no
    calibration).

    Args:
        truth: a ``(T, Y, X)`` ``.npy`` to score against (default: ``truth.npy`` of the folder).
        read: options of :func:`mrphys.physics.mrd.read_mrd` (frames, trajectory units, ...), and
            for BART input ``traj``/``noise`` (``.cfl`` paths) and ``matrix``.

    Returns:
        ``(data, raw info or None, raw)``: ``raw`` tells whether the data need calibration.
    """
    from mrphys.physics.cfl import CFL_NAMES, read_cfl_radial
    from mrphys.physics.mrd import read_mrd

    p = Path(input)
    read = dict(read or {})
    bart = {k: read.pop(k, None) for k in ("traj", "noise", "matrix")}
    info = None
    is_cfl = p.suffix in (".cfl", ".hdr") or (
        p.is_dir() and not (p / RAW_NAME).is_file() and (p / f"{CFL_NAMES['kspace']}.cfl").is_file()
    )
    if is_cfl:
        for k, default in _MRD_ONLY.items():
            if read.get(k, default) != default:
                raise MrphysError(
                    f"--{k.replace('_', '-')} applies to MRD input; BART k-space keeps its frames "
                    "in dim 10 and its trajectory in 1/FOV units."
                )
        ksp, traj, noise = _cfl_input(p, bart)
        data, info = read_cfl_radial(ksp, traj, noise, matrix=bart["matrix"])
        raw = True
        if truth is None and p.is_dir() and (p / "truth.npy").is_file():
            truth = p / "truth.npy"
    elif any(v is not None for v in bart.values()):
        raise MrphysError(
            "--traj, --noise and --matrix apply to BART k-space input (--input kspace.cfl)."
        )
    elif p.is_dir() and not (p / RAW_NAME).is_file() and (p / "kspace.npy").exists():
        data = RadialData.load(p)  # arrays of earlier versions (their maps are used)
        raw = False
    else:
        h5 = p / RAW_NAME if p.is_dir() else p
        if p.is_dir() and not h5.is_file():
            raise MrphysError(
                f"{p} holds neither {RAW_NAME} nor kspace.npy (nor BART kspace.cfl); expected an "
                "MRD file, BART k-space or a `mrphys dynamic simulate` folder."
            )
        data, info = read_mrd(h5, **read)
        raw = True
        if truth is None and p.is_dir() and (p / "truth.npy").is_file():
            truth = p / "truth.npy"
    if truth is not None:
        data.truth = _load_truth(Path(truth))
        if tuple(data.truth.shape) != (data.n_frames, *data.im_size):
            log.warning("truth %s does not match the data; not scored", truth)
            data.meta["truth_note"] = (
                f"truth {tuple(data.truth.shape)} does not match the reconstruction "
                f"{(data.n_frames, *data.im_size)}"
            )
            data.truth = None
    return data, info, raw


def recon_to_folder(
    out: PathLike,
    input: PathLike,
    method: str,
    options: dict[str, Any],
    *,
    seed: int = 0,
    device: torch.device | str = "cpu",
    overwrite: bool = False,
    config: dict[str, Any] | None = None,
    steps: CalibrationSteps | None = None,
    maps: PathLike | None = None,
    truth: PathLike | None = None,
    read: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Reconstruct one input (see :func:`load_input`) with ``method`` of
    :mod:`mrphys.recon.registry` (taking ``options``) and write into the new folder ``out``:
    ``recon.npy`` (complex64 ``[T, Y, X]``), ``recon.nii.gz`` (magnitude), ``maps.npy`` (the maps
    used, complex64 ``[C, Y, X]`` in the processed coil space), ``metrics.json`` (method,
    seconds, shape, what the calibration estimated, :func:`truth_metrics`, ``config``),
    ``frames.png`` (truth below when known) and ``frames.gif``.

    Raw data are calibrated first (:func:`calibrate` with ``steps``; ``maps`` a ``.npy`` or BART
    ``.cfl`` file of maps in the scanner's coil space overrides the estimate).

    Returns:
        the metrics written.
    """
    from mrphys.physics.cfl import read_maps

    data, info, raw = load_input(input, truth=truth, read=read)
    given = None if maps is None else read_maps(maps)
    metrics: dict[str, Any] = {"method": method}
    if raw:
        t0 = time.perf_counter()
        noise = None if info is None else info.noise
        cal = calibrate(data.to(device), noise, steps, maps=given)
        data, report, intensity = cal.data, cal.report, cal.intensity.cpu()
        metrics.update(
            {
                key: report.get(key)
                for key in (
                    "gradient_delay_samples",
                    "ring_components",
                    "coil_map_method",
                    "coil_map_smoothing",
                    "support_fraction",
                    "support_mean_weight",
                    "compressed_coils",
                    "noise_covariance_condition",
                )
            }
        )
        metrics["calibration"] = report
        metrics["calibration_seconds"] = time.perf_counter() - t0
        metrics["raw"] = None if info is None else info.summary()
    else:
        intensity = None
        data = data.to(device)
        if given is not None:
            check(
                tuple(given.shape) == tuple(data.maps.shape),
                f"maps must have shape {tuple(data.maps.shape)}; got {tuple(given.shape)}.",
            )
            data.maps = given.to(device)
        metrics["coil_map_method"] = "given" if given is not None else "maps.npy of the folder"
    torch.manual_seed(seed)
    rec = reconstruct(method, data, **options)
    x = rec.image.detach().to("cpu", torch.complex64)
    if intensity is not None:
        if tuple(x.shape[-2:]) == tuple(intensity.shape):
            x = x * intensity
            metrics["intensity_correction"] = "applied (maps taken back to the scanner's coils)"
        else:
            metrics["intensity_correction"] = "not applied: rendered on another matrix"
    metrics.update(seconds=rec.seconds, shape=list(x.shape))
    ref = None if data.truth is None else data.truth.to("cpu", torch.complex64)
    metrics.update(truth_metrics(x, ref))
    if "note" in metrics:
        ref = None
    metrics["config"] = config or {}
    with output_dir(out, overwrite=overwrite) as tmp:
        np.save(tmp / "recon.npy", x.numpy())
        np.save(tmp / "maps.npy", data.maps.detach().cpu().numpy().astype(np.complex64))
        save_nifti(tmp / "recon.nii.gz", x.abs())
        save_json(tmp / "metrics.json", metrics)
        rows = [(method, x)] + ([("truth", ref)] if ref is not None else [])
        plot.frame_grid(tmp / "frames.png", rows)
        plot.frames_gif(tmp / "frames.gif", x)
    return metrics
