"""``mrphys dynamic`` as two functions: simulate a radial acquisition into a folder, and
reconstruct one into a folder.

:func:`simulate_to_folder` simulates a golden-angle radial multi-coil acquisition of an image
series (a MATLAB file or the synthetic beating phantom) and writes it
(:meth:`mrphys.physics.radial.RadialData.save`). :func:`recon_to_folder` runs a method of
:mod:`mrphys.recon.registry` on such a folder and writes ``recon.npy``, ``recon.nii.gz``,
``metrics.json`` (:func:`truth_metrics`) and ``frames.png``.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import torch

from mrphys import plot
from mrphys.io import output_dir, save_json, save_nifti
from mrphys.metrics import psnr, ssim
from mrphys.physics.radial import RadialData, simulate_radial
from mrphys.recon.registry import reconstruct
from mrphys.tissue.dynamic import load_series, synthetic_cine

PathLike = str | os.PathLike


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
    device: torch.device | str = "cpu",
    overwrite: bool = False,
    config: dict[str, Any] | None = None,
) -> RadialData:
    """Simulate a radial acquisition of ``series`` and write it into the new folder ``out``.

    Args:
        series: a MATLAB file with a ``(Y, X, frames)`` series, or ``"synthetic"`` for the
            beating phantom (``frames`` frames, default 20, of ``matrix`` x ``matrix``).
        spokes, coils, snr, seed: as for :func:`mrphys.physics.radial.simulate_radial`.
        frames: use the first ``frames`` frames of a file (default: all).
        config: written as ``config.json`` beside the data.

    Returns:
        the simulated data; ``meta`` holds the series, frames, device and seconds.
    """
    if series == "synthetic":
        images = synthetic_cine(frames or 20, matrix, seed=seed)
    else:
        images = load_series(series, variable=variable)[:frames]
    t0 = time.perf_counter()
    data = simulate_radial(images.to(device), spokes, coils=coils, snr=snr, seed=seed)
    data.meta.update(
        series=str(series),
        variable=variable,
        frames=int(images.shape[0]),
        device=str(device),
        seconds=time.perf_counter() - t0,
    )
    with output_dir(out, overwrite=overwrite) as tmp:
        data.save(tmp)
        save_json(tmp / "config.json", config or {})
    return data


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
) -> dict[str, Any]:
    """Reconstruct the folder ``input`` (written by :func:`simulate_to_folder`) with ``method``
    of :mod:`mrphys.recon.registry` (taking ``options``) and write into the new folder ``out``:
    ``recon.npy`` (complex64 ``[T, Y, X]``), ``recon.nii.gz`` (magnitude), ``metrics.json``
    (method, seconds, shape, :func:`truth_metrics` and ``config``) and ``frames.png`` (truth
    below when it has the reconstruction's shape).

    Returns:
        the metrics written.
    """
    data = RadialData.load(input).to(device)
    torch.manual_seed(seed)
    rec = reconstruct(method, data, **options)
    x = rec.image.detach().to("cpu", torch.complex64)
    metrics: dict[str, Any] = {"method": method, "seconds": rec.seconds, "shape": list(x.shape)}
    truth = None if data.truth is None else data.truth.to("cpu", torch.complex64)
    metrics.update(truth_metrics(x, truth))
    if "note" in metrics:
        truth = None
    metrics["config"] = config or {}
    with output_dir(out, overwrite=overwrite) as tmp:
        np.save(tmp / "recon.npy", x.numpy())
        save_nifti(tmp / "recon.nii.gz", x.abs())
        save_json(tmp / "metrics.json", metrics)
        rows = [(method, x)] + ([("truth", truth)] if truth is not None else [])
        plot.frame_grid(tmp / "frames.png", rows)
    return metrics
