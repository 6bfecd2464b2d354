"""pc-bSSFP volumes in and out of NIfTI files, and the protocol in the units of the command line.

:func:`load_pc_bssfp` reads a 4-D phase-cycled bSSFP volume from its parts (complex, real and
imaginary, or magnitude and phase), a relative B1 map and an optional mask, checks that they fit
together and returns a :class:`PcBssfpVolume`. :func:`write_volume` writes a simulated volume
(:func:`mrphys.relax.volume.simulate_volume`) as the files :func:`load_pc_bssfp` reads.

Every check raises :class:`~mrphys.errors.MrphysError` with one sentence that starts with the name
of the input it is about (``input``, ``b1``, ``mask``, ``tr_ms`` ...).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mrphys.errors import MrphysError
from mrphys.io import load_nifti, save_nifti_raw
from mrphys.relax.data import Protocol
from mrphys.relax.train import TR_RANGE_MS

log = logging.getLogger(__name__)

__all__ = [
    "B1_LIMITS",
    "PcBssfpVolume",
    "load_network",
    "load_pc_bssfp",
    "protocol_from_ms",
    "protocol_ms",
    "write_volume",
]

#: plausible relative B1; outside means wrong units or a broken map
B1_LIMITS = (0.3, 2.0)
#: the B1 range the networks are trained on (outside it a warning is logged)
B1_TRAINED = (0.7, 1.3)

PathLike = str | os.PathLike


@dataclass
class PcBssfpVolume:
    """A pc-bSSFP volume ready to fit, in NIfTI axis order.

    Attributes:
        signals: complex ``(X, Y, Z, N)`` (complex64 as written by mrphys, as read: no
            conversion), N phase cycles on the last axis.
        b1: relative B1 (1 = nominal flip angle), ``(X, Y, Z)``.
        mask: bool ``(X, Y, Z)``, True where to fit (all True without a mask file).
        affine: ``(4, 4)`` voxel-to-world affine of the input (mm).
    """

    signals: np.ndarray
    b1: np.ndarray
    mask: np.ndarray
    affine: np.ndarray

    @property
    def n_cycles(self) -> int:
        return int(self.signals.shape[3])

    def tensors(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, ...]:
        """``(signals complex64, b1 float32, mask bool)`` as tensors on ``device``.

        Arrays already in these dtypes are not converted; the one copy made is torch's
        (multithreaded) reordering of NIfTI's Fortran order into C order, because the fits read
        each voxel's phase cycles together: on a 128 x 128 x 64 x 12 volume (2 cores) the copy
        and the fit take 0.4 + 0.6 s, a fit on the strided array 1.3 s.
        """
        sig = torch.from_numpy(np.asarray(self.signals, dtype=np.complex64)).contiguous()
        b1 = torch.from_numpy(np.asarray(self.b1, dtype=np.float32)).contiguous()
        return sig.to(device), b1.to(device), torch.from_numpy(self.mask).to(device)


def protocol_from_ms(
    n_cycles: int, tr_ms: float = 4.8, te_ms: float | None = None, flip_deg: float = 15.0
) -> Protocol:
    """A :class:`~mrphys.relax.data.Protocol` from times in ms and the flip angle in degrees.

    Args:
        n_cycles: phase cycles N (at least 3).
        tr_ms: repetition time in [1, 100] ms (:data:`~mrphys.relax.train.TR_RANGE_MS`).
        te_ms: echo time in (0, TR) ms (default TR / 2).
        flip_deg: nominal flip angle in (0, 180) degrees.
    """
    te_ms = tr_ms / 2 if te_ms is None else te_ms
    lo, hi = TR_RANGE_MS
    if not lo <= tr_ms <= hi:
        raise MrphysError(f"tr_ms must lie in [{lo:g}, {hi:g}] ms (a bSSFP TR); got {tr_ms}.")
    if not 0 < te_ms < tr_ms:
        raise MrphysError(f"te_ms must be positive and below the TR ({tr_ms} ms); got {te_ms}.")
    if not 0 < flip_deg < 180:
        raise MrphysError(f"flip_deg must lie in (0, 180) degrees; got {flip_deg}.")
    if n_cycles < 3:
        raise MrphysError(f"phase_cycles must be at least 3; got {n_cycles}.")
    return Protocol(int(n_cycles), tr_ms * 1e-3, te_ms * 1e-3, math.radians(flip_deg))


def protocol_ms(protocol: Protocol) -> dict[str, float]:
    """The protocol as config files hold it: ``n_cycles``, ``tr_ms``, ``te_ms``, ``flip_deg``."""
    return {
        "n_cycles": protocol.n_cycles,
        "tr_ms": protocol.tr * 1e3,
        "te_ms": protocol.te * 1e3,
        "flip_deg": math.degrees(protocol.flip),
    }


def _same_affine(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.allclose(a, b, atol=1e-3, rtol=1e-4))


def _companion(name: str, path: PathLike, shape: tuple, affine: np.ndarray) -> np.ndarray:
    """A 3-D map (B1 or mask) that must match the input's voxels and affine."""
    arr, aff = load_nifti(path)
    arr = np.squeeze(arr) if arr.ndim > 3 else arr
    if arr.shape != shape:
        raise MrphysError(f"{name} has shape {arr.shape} but the input volume is {shape}.")
    if not _same_affine(affine, aff):
        raise MrphysError(
            f"{name} has a different affine (orientation or voxel size) from the input."
        )
    return arr


def _complex_input(
    input: PathLike, input_imag: PathLike | None, input_phase: PathLike | None
) -> tuple[np.ndarray, np.ndarray]:
    data, aff = load_nifti(input)
    if data.ndim != 4:
        raise MrphysError(
            f"input must be a 4-D NIfTI with phase cycles on the 4th axis; got shape {data.shape}."
        )
    other_path = input_imag or input_phase
    if other_path is None:
        if not np.iscomplexobj(data):
            raise MrphysError(
                "input is real-valued; give a complex NIfTI, or the real part with input_imag, "
                "or the magnitude with input_phase."
            )
        return data, aff
    if np.iscomplexobj(data):
        raise MrphysError("input is complex; input_imag/input_phase need a real input.")
    other, aff2 = load_nifti(other_path)
    if np.iscomplexobj(other):
        name, part = ("input_imag", "imaginary part") if input_imag else ("input_phase", "phase")
        raise MrphysError(
            f"{name} {other_path} is complex but must hold the {part} as real numbers (a "
            "complex volume is given as input alone)."
        )
    if other.shape != data.shape:
        raise MrphysError(f"{other_path} has shape {other.shape} but the input has {data.shape}.")
    if not _same_affine(aff, aff2):
        raise MrphysError(f"{other_path} has a different affine from the input.")
    # complex64 from the start: the fit runs in single precision
    out = np.empty(data.shape, np.complex64, order="F")
    if input_imag:
        out.real, out.imag = data, other
        return out, aff
    if np.nanmin(data) < 0:
        raise MrphysError("input must be a non-negative magnitude when input_phase is given.")
    phase = np.asarray(other, dtype=np.float32)
    out.real, out.imag = np.cos(phase), np.sin(phase)
    out *= np.asarray(data, dtype=np.float32)
    return out, aff


def load_pc_bssfp(
    input: PathLike,
    b1: PathLike,
    *,
    input_imag: PathLike | None = None,
    input_phase: PathLike | None = None,
    mask: PathLike | None = None,
    phase_cycles: int | None = None,
) -> PcBssfpVolume:
    """Read and check a pc-bSSFP volume, its B1 map and mask from NIfTI files.

    Args:
        input: 4-D NIfTI ``(X, Y, Z, N)``: complex, or the real part (with ``input_imag``), or
            the magnitude (with ``input_phase``, in rad).
        b1: relative B1 map ``(X, Y, Z)`` (1 = nominal flip), within :data:`B1_LIMITS` in the mask.
        input_imag, input_phase: the second part of a real ``input`` (at most one of them).
        mask: NIfTI ``(X, Y, Z)``, non-zero = fit (default: every voxel).
        phase_cycles: expected N (checked against the input's 4th axis).
    Returns:
        a :class:`PcBssfpVolume`; every file has the input's voxel grid and affine.
    """
    if input_imag is not None and input_phase is not None:
        raise MrphysError("input_imag and input_phase exclude each other; give one of them.")
    data, aff = _complex_input(input, input_imag, input_phase)
    n = data.shape[3]
    if phase_cycles is not None and phase_cycles != n:
        raise MrphysError(
            f"input has {n} phase cycles on its 4th axis but phase_cycles is {phase_cycles}."
        )
    if n < 3:
        raise MrphysError(f"input needs at least 3 phase cycles on its 4th axis; got {n}.")
    spatial = data.shape[:3]
    b1_map = _companion("b1", b1, spatial, aff)
    sel = np.ones(spatial, dtype=bool)
    if mask is not None:
        m = _companion("mask", mask, spatial, aff)
        if not np.isfinite(m).all():
            raise MrphysError("mask contains NaN or infinite values.")
        sel = m != 0
        if not sel.any():
            raise MrphysError("mask selects no voxel.")
    inside = (lambda a: a) if mask is None else (lambda a: a[sel])  # no copy without a mask
    if not np.isfinite(inside(data)).all():
        raise MrphysError("input contains NaN or infinite values inside the mask.")
    if not np.isfinite(inside(b1_map)).all():
        raise MrphysError("b1 contains NaN or infinite values inside the mask.")
    lo, hi = float(b1_map[sel].min()), float(b1_map[sel].max())
    if lo < B1_LIMITS[0] or hi > B1_LIMITS[1]:
        raise MrphysError(
            f"b1 must be a relative flip-angle scale (1 = nominal) in [{B1_LIMITS[0]}, "
            f"{B1_LIMITS[1]}]; it spans [{lo:g}, {hi:g}] (percent or degrees given?)."
        )
    if lo < B1_TRAINED[0] or hi > B1_TRAINED[1]:
        log.warning("B1 spans [%.2f, %.2f]; networks were trained on [0.7, 1.3].", lo, hi)
    return PcBssfpVolume(data, b1_map, sel, aff)


def write_volume(
    folder: PathLike, vol: dict[str, torch.Tensor], *, ext: str = ".nii.gz"
) -> dict[str, str]:
    """Write a :func:`~mrphys.relax.volume.simulate_volume` result as NIfTI (1 mm voxels).

    Files: ``pc_bssfp`` (complex64 ``(X, Y, Z, N)``), ``b1`` (relative), ``t1``/``t2`` (ms),
    ``db0`` (Hz), all float32, and ``mask`` (tissue, uint8), each with ``ext``: ``.nii.gz``
    (gzip level :data:`mrphys.io.NIFTI_GZIP_LEVEL`) or ``.nii`` (uncompressed, fastest).
    Returns the file names with their contents, as ``config.json`` lists them.
    """
    if ext not in (".nii.gz", ".nii"):
        raise MrphysError(f"ext must be '.nii.gz' or '.nii'; got {ext!r}.")
    folder, aff = Path(folder), np.eye(4)
    files = {
        "pc_bssfp": ("signals", 1.0, "complex (X, Y, Z, N)"),
        "b1": ("b1", 1.0, "relative"),
        "t1": ("t1", 1e3, "ms"),
        "t2": ("t2", 1e3, "ms"),
        "db0": ("db0", 1.0, "Hz"),
    }
    for name, (key, scale, _) in files.items():
        arr = vol[key].numpy()
        save_nifti_raw(folder / (name + ext), arr * scale if scale != 1.0 else arr, aff)
    save_nifti_raw(folder / ("mask" + ext), vol["mask"].numpy().astype(np.uint8), aff)
    return {name + ext: what for name, (_, _, what) in files.items()} | {"mask" + ext: "tissue"}


def load_network(
    method: str,
    protocol: Protocol,
    model: PathLike | None = None,
    *,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> tuple[torch.nn.Module | None, Path | None]:
    """The network a method fits with: none for MIRACLE, the checkpoint ``model`` (checked
    against the method and protocol), or the cached default model (trained on first use).

    Returns:
        ``(network or None, checkpoint path or None)``.
    """
    from mrphys.relax.train import load_model
    from mrphys.relax.volume import check_model_protocol, default_model

    if method == "miracle":
        if model is not None:
            raise MrphysError("model is for network methods; MIRACLE needs no model.")
        return None, None
    if model is None:
        return default_model(method, protocol, device=device, seed=seed)
    net, cfg = load_model(model, device)
    check_model_protocol(cfg, method, protocol, str(model))
    return net, Path(model)
