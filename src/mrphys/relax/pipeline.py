"""``mrphys relax fit`` as one function: load a pc-bSSFP volume, fit it, write the maps.

:func:`fit_to_folder` reads the inputs (:func:`mrphys.relax.inputs.load_pc_bssfp`), loads the
network (:func:`mrphys.relax.inputs.load_network`), fits every voxel
(:func:`mrphys.relax.volume.fit_volume`) and writes ``t1``, ``t2`` (ms), ``db0`` (Hz, complex
methods), ``no_signal`` (voxels whose phase cycles are all 0, when there are any) and
``config.json`` into an output folder (:func:`mrphys.io.output_dir`). :func:`simulate_to_folder`
writes a simulated test volume and its true maps (``mrphys relax simulate``).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mrphys.io import output_dir, save_json, save_nifti_raw
from mrphys.relax.data import Protocol
from mrphys.relax.inputs import (
    OFFSET_BLIND,
    Inputs,
    load_network,
    load_series,
    protocol_ms,
    write_volume,
)
from mrphys.relax.volume import fit_volume, simulate_volume
from mrphys.utils import resolve_device

PathLike = str | os.PathLike


@dataclass
class FitSummary:
    """What :func:`fit_to_folder` did."""

    voxels_fitted: int
    """voxels fitted (inside the mask, with signal)"""
    voxels_without_signal: int
    """voxels inside the mask whose phase cycles are all 0 (not fitted, maps 0)"""
    seconds: float
    """time of the fit alone, s"""


#: units of the maps ``relax fit`` writes (``inf`` in an sd map: not determined by the data)
MAP_UNITS = {
    "t1": "ms",
    "t2": "ms",
    "db0": "Hz",
    "t1_sd": "ms",
    "t2_sd": "ms",
    "residual": "relative misfit ||S - S_fit|| / ||S||",
    "quality": "mask: converged, inside the parameter box, residual <= max_residual",
    "no_signal": "mask: all phase cycles 0, not fitted",
}


def fit_to_folder(
    out: PathLike,
    input: Inputs,
    b1: PathLike,
    method: str,
    *,
    input_imag: Inputs | None = None,
    input_phase: Inputs | None = None,
    mask: PathLike | None = None,
    phase_cycles: int | None = None,
    model: PathLike | None = None,
    tr_ms: float | None = None,
    te_ms: float | None = None,
    flip_deg: float | None = None,
    sidecar: bool = True,
    b1_units: str = "ratio",
    seed: int = 0,
    device: str | torch.device = "auto",
    overwrite: bool = False,
    nii: bool = False,
) -> FitSummary:
    """Fit T1/T2 (and off-resonance) maps to a pc-bSSFP volume and write them into ``out``.

    Args:
        out: output folder (new, or replaced with ``overwrite``).
        input, input_imag, input_phase, b1, mask, phase_cycles: the inputs, as for
            :func:`mrphys.relax.inputs.load_pc_bssfp`.
        method: ``miracle``, ``svnn``, ``pinn``, ``svnn-complex`` or ``pinn-complex``.
        model: network checkpoint (default: the cached model for the protocol).
        tr_ms, te_ms, flip_deg: the protocol in ms and degrees; None: from the BIDS sidecar
            beside the input, else 4.8 ms, TR/2, 15 deg (:func:`~mrphys.relax.inputs.load_series`).
        sidecar: read the JSON sidecar beside the input (False: the options alone).
        b1_units: ``ratio``, ``percent`` or ``auto`` (:data:`mrphys.relax.inputs.B1_UNITS`).
        nii: write uncompressed ``.nii`` files instead of ``.nii.gz``.

    Returns:
        the numbers of voxels fitted and without signal and the fit time.
    """
    vol, series = load_series(input, b1, input_imag=input_imag, input_phase=input_phase, mask=mask,
                              phase_cycles=phase_cycles, tr_ms=tr_ms, te_ms=te_ms,
                              flip_deg=flip_deg, read_sidecars=sidecar, b1_units=b1_units,
                              offset_ok=method in OFFSET_BLIND)  # fmt: skip
    protocol = series.protocol
    device = resolve_device(device)
    net, model_path = load_network(method, protocol, model, device=device, seed=seed)
    signals, b1_map, fit_mask = vol.tensors(device)
    t0 = time.perf_counter()
    maps = fit_volume(signals, b1_map, method, protocol, net, fit_mask)
    seconds, n_vox = time.perf_counter() - t0, int(vol.mask.sum())
    n_empty = int(maps.no_signal.sum())  # voxels without signal: not fitted, maps 0
    ext = ".nii" if nii else ".nii.gz"
    with output_dir(out, overwrite=overwrite) as tmp:
        every = maps.maps()  # every map the fit returned
        written = [n for n in every if n != "no_signal" or n_empty]

        def write(name: str) -> None:
            arr = every[name].cpu().numpy()
            if arr.dtype == np.bool_:  # quality, no_signal: masks
                arr = arr.astype(np.uint8)
            elif MAP_UNITS.get(name) == "ms":  # t1, t2, t1_sd, t2_sd in s -> ms
                arr = arr * np.float32(1e3)
            save_nifti_raw(tmp / f"{name}{ext}", arr, vol.affine)

        # gzip and the conversions release the GIL: the maps are written side by side
        with ThreadPoolExecutor(max_workers=min(len(written), os.cpu_count() or 1)) as pool:
            list(pool.map(write, written))
        config: dict[str, Any] = {
            "command": "relax fit",
            "method": method,
            "input": input,
            "input_imag": input_imag,
            "input_phase": input_phase,
            "b1": b1,
            "mask": mask,
            "model": model_path and str(model_path),
            "protocol": protocol_ms(protocol),
            "protocol_source": series.source | {"sidecar": series.sidecar},
            "voxels_fitted": n_vox - n_empty,
            "voxels_without_signal": n_empty,
            "fit_seconds": seconds,
            "device": str(device),
            "units": {k: MAP_UNITS[k] for k in written},
        }
        save_json(tmp / "config.json", config)
    return FitSummary(n_vox - n_empty, n_empty, seconds)


def simulate_to_folder(
    out: PathLike,
    protocol: Protocol,
    *,
    matrix: int = 128,
    slices: int = 4,
    snr: float = 50.0,
    seed: int = 0,
    device: str | torch.device = "auto",
    overwrite: bool = False,
    nii: bool = False,
) -> None:
    """Write a simulated brain-like pc-bSSFP volume (:func:`mrphys.relax.volume.simulate_volume`,
    computed on ``device``) as the files :func:`fit_to_folder` reads, its true maps and
    ``config.json`` into the new folder ``out``."""
    device = resolve_device(device)
    vol = simulate_volume(
        protocol, matrix=matrix, n_slices=slices, snr=snr, seed=seed, device=device
    )
    with output_dir(out, overwrite=overwrite) as tmp:
        files = write_volume(tmp, vol, ext=".nii" if nii else ".nii.gz")
        config = {
            "command": "relax simulate",
            "matrix": matrix,
            "slices": slices,
            "snr": snr,
            "seed": seed,
            "device": str(device),
            "protocol": protocol_ms(protocol),
            "files": files,
        }
        save_json(tmp / "config.json", config)
