"""pc-bSSFP volumes in and out of NIfTI files, and the protocol in the units of the command line.

:func:`load_pc_bssfp` reads a 4-D phase-cycled bSSFP volume (or one 3-D file per phase cycle)
from its parts (complex, real and imaginary, or magnitude and phase), a B1 map (relative, or in
percent of nominal as BIDS ``TB1map`` holds it) and an optional mask, checks that they fit together
and returns a :class:`PcBssfpVolume`. :func:`load_series` adds the protocol: read from the BIDS
JSON sidecar beside the input (:func:`sidecar_protocol`: ``RepetitionTimeExcitation`` and
``EchoTime`` in s, ``FlipAngle`` and ``PhaseIncrements`` in degrees), completed by the options,
which must agree with it (:func:`resolve_protocol`). :func:`write_volume` writes a simulated volume
(:func:`mrphys.relax.volume.simulate_volume`) as the files :func:`load_pc_bssfp` reads.

Every check raises :class:`~mrphys.errors.MrphysError` with one sentence that starts with the name
of the input it is about (``input``, ``b1``, ``mask``, ``tr_ms`` ...).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mrphys.errors import MrphysError
from mrphys.io import load_json, load_nifti, save_nifti_raw
from mrphys.relax.data import NETWORK_METHODS, Protocol
from mrphys.relax.train import TR_RANGE_MS

log = logging.getLogger(__name__)

__all__ = [
    "B1_LIMITS",
    "B1_UNITS",
    "OFFSET_BLIND",
    "PcBssfpVolume",
    "SeriesProtocol",
    "load_network",
    "foreground_mask",
    "load_pc_bssfp",
    "load_series",
    "protocol_from_ms",
    "protocol_ms",
    "read_sidecar",
    "resolve_protocol",
    "sidecar_path",
    "sidecar_protocol",
    "write_volume",
]

#: plausible relative B1; outside means wrong units or a broken map
B1_LIMITS = (0.3, 2.0)
#: the B1 range the networks are trained on (outside it a warning is logged)
B1_TRAINED = (0.7, 1.3)

#: how a B1 file is scaled: ``ratio`` (1 = nominal), ``percent`` (100 = nominal, BIDS
#: ``TB1map``), ``auto`` (percent when the median inside the mask lies in 30..200, else ratio)
B1_UNITS = ("auto", "ratio", "percent")
#: methods that see only the magnitudes of the SSFP configurations, which a common offset of the
#: phase increments (an off-resonance shift) leaves unchanged: they accept such an offset
OFFSET_BLIND = ("miracle", "svnn", "pinn")
#: relative tolerance between an option and the sidecar value it repeats
PROTOCOL_RTOL = 1e-3

PathLike = str | os.PathLike
Inputs = PathLike | Sequence[PathLike]


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


def _resample(arr: np.ndarray, src_affine: np.ndarray, shape: tuple, affine: np.ndarray):
    """``arr`` (voxels of ``src_affine``) at the voxel centres of the grid ``shape``/``affine``:
    trilinear in world coordinates (mm), the nearest edge value outside ``arr``. Returns
    float32 ``shape``."""
    from scipy.ndimage import map_coordinates

    ijk = np.indices(shape, dtype=np.float64).reshape(3, -1)
    world = affine[:3, :3] @ ijk + affine[:3, 3:4]
    src = np.linalg.solve(src_affine[:3, :3], world - src_affine[:3, 3:4])
    out = map_coordinates(np.asarray(arr, dtype=np.float64), src, order=1, mode="nearest")
    return out.reshape(shape).astype(np.float32)


def _companion(
    name: str, path: PathLike, shape: tuple, affine: np.ndarray, resample: bool = False
) -> np.ndarray:
    """A 3-D map (B1 or mask) that must match the input's voxels and affine (or, with
    ``resample``, is interpolated onto them)."""
    arr, aff = load_nifti(path)
    arr = np.squeeze(arr) if arr.ndim > 3 else arr
    if arr.ndim == 2:
        arr = arr[:, :, None]
    same = arr.shape == shape and _same_affine(affine, aff)
    if not same and resample and arr.ndim == 3 and not np.iscomplexobj(arr):
        log.info("%s %s resampled onto the input's voxels (trilinear)", name, path)
        return _resample(arr, aff, shape, affine)
    if arr.shape != shape:
        raise MrphysError(f"{name} has shape {arr.shape} but the input volume is {shape}.")
    if not _same_affine(affine, aff):
        raise MrphysError(
            f"{name} has a different affine (orientation or voxel size) from the input."
        )
    return arr


def _paths(x: Inputs | None) -> list[PathLike]:
    if x is None:
        return []
    if isinstance(x, (str, os.PathLike)):
        return [x]
    return list(x)


def _stack(name: str, paths: list[PathLike]) -> tuple[np.ndarray, np.ndarray]:
    """``(X, Y, Z, N)`` from one 4-D file, or from one file per phase cycle (3-D, or 4-D with
    several cycles), stacked on the 4th axis in the order given; and the affine."""
    if len(paths) == 1:
        data, aff = load_nifti(paths[0])
        if data.ndim != 4:
            raise MrphysError(
                f"{name} must be a 4-D NIfTI with phase cycles on the 4th axis (or one file per "
                f"phase cycle); got shape {data.shape}."
            )
        return data, aff
    parts: list[np.ndarray] = []
    aff0 = np.eye(4)
    for p in paths:
        d, a = load_nifti(p)
        if d.ndim == 3:
            d = d[..., None]
        if d.ndim != 4:
            raise MrphysError(
                f"{name} {p} must be a 3-D NIfTI (one phase cycle) or 4-D; got shape {d.shape}."
            )
        if parts:
            if d.shape[:3] != parts[0].shape[:3]:
                raise MrphysError(
                    f"{name} {p} has {d.shape[:3]} voxels but {paths[0]} has "
                    f"{parts[0].shape[:3]}; every phase cycle needs the same grid."
                )
            if not _same_affine(aff0, a):
                raise MrphysError(f"{name} {p} has a different affine from {paths[0]}.")
            if np.iscomplexobj(d) != np.iscomplexobj(parts[0]):
                raise MrphysError(f"{name} {p} and {paths[0]} mix complex and real data.")
        else:
            aff0 = a
        parts.append(d)
    return np.concatenate(parts, axis=3), aff0


def _complex_input(
    input: Inputs, input_imag: Inputs | None, input_phase: Inputs | None
) -> tuple[np.ndarray, np.ndarray]:
    data, aff = _stack("input", _paths(input))
    other_paths = _paths(input_imag) or _paths(input_phase)
    if not other_paths:
        if not np.iscomplexobj(data):
            raise MrphysError(
                "input is real-valued; give a complex NIfTI, or the real part with input_imag, "
                "or the magnitude with input_phase."
            )
        return data, aff
    if np.iscomplexobj(data):
        raise MrphysError("input is complex; input_imag/input_phase need a real input.")
    name = "input_imag" if input_imag else "input_phase"
    other_path = other_paths[0] if len(other_paths) == 1 else ", ".join(map(str, other_paths))
    other, aff2 = _stack(name, other_paths)
    if np.iscomplexobj(other):
        part = "imaginary part" if input_imag else "phase"
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
    lo, hi = float(np.nanmin(phase)), float(np.nanmax(phase))
    if hi - lo > 2 * math.pi + 0.1:
        if -4097 <= lo and hi <= 4097 and hi - lo > 6000:  # Siemens: -4096..4095 = -pi..pi
            log.warning("input_phase spans [%g, %g]: read as -4096..4096 = -pi..pi", lo, hi)
            phase = phase * np.float32(math.pi / 4096)
        else:
            raise MrphysError(
                f"input_phase must hold the phase in rad (or the -4096..4095 scale of Siemens "
                f"phase images); it spans [{lo:g}, {hi:g}]."
            )
    out.real, out.imag = np.cos(phase), np.sin(phase)
    out *= np.asarray(data, dtype=np.float32)
    return out, aff


def _b1_ratio(b1_map: np.ndarray, sel: np.ndarray, units: str) -> np.ndarray:
    """The B1 map as a ratio (1 = nominal): divided by 100 when in percent (``units``, or for
    ``auto`` a median inside the mask in 30..200, which no plausible ratio has)."""
    if units not in B1_UNITS:
        raise MrphysError(f"b1_units must be one of {', '.join(B1_UNITS)}; got {units!r}.")
    percent = units == "percent"
    if units == "auto":
        med = float(np.median(b1_map[sel]))
        percent = 100 * B1_LIMITS[0] <= med <= 100 * B1_LIMITS[1]
        if percent:
            log.info("b1 is in percent of nominal (median %.4g inside the mask): / 100", med)
    return (np.asarray(b1_map, dtype=np.float32) / 100) if percent else b1_map


def foreground_mask(signals: np.ndarray) -> np.ndarray:
    """Voxels with signal: the mean magnitude over the phase cycles above Otsu's threshold of
    its histogram (at most a fifth of its 99th percentile, so bright fluid does not claim
    the tissue as background). ``signals`` complex ``(X, Y, Z, N)``; returns bool ``(X, Y, Z)``."""
    mag = np.abs(signals).mean(axis=3)
    finite = mag[np.isfinite(mag)]
    if finite.size == 0 or not finite.any():
        return np.zeros(mag.shape, dtype=bool)
    hi = float(np.percentile(finite, 99))
    hist, edges = np.histogram(np.clip(finite, 0, hi), bins=256, range=(0, hi))
    w = np.cumsum(hist).astype(np.float64)
    centres = (edges[:-1] + edges[1:]) / 2
    mu = np.cumsum(hist * centres)
    total, wt = mu[-1], w[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (total * w - mu * wt) ** 2 / (w * (wt - w))
    between[~np.isfinite(between)] = -1
    thr = min(float(centres[int(np.argmax(between))]), 0.2 * hi)
    return np.nan_to_num(mag) > thr


def load_pc_bssfp(
    input: Inputs,
    b1: PathLike,
    *,
    input_imag: Inputs | None = None,
    input_phase: Inputs | None = None,
    mask: PathLike | str | None = None,
    phase_cycles: int | None = None,
    b1_units: str = "ratio",
    resample_b1: bool = False,
) -> PcBssfpVolume:
    """Read and check a pc-bSSFP volume, its B1 map and mask from NIfTI files.

    Args:
        input: 4-D NIfTI ``(X, Y, Z, N)``, or a list of files, one per phase cycle (3-D, stacked
            on the 4th axis in the order given): complex, or the real part (with
            ``input_imag``), or the magnitude (with ``input_phase``, in rad).
        b1: B1 map ``(X, Y, Z)``, within :data:`B1_LIMITS` in the mask once scaled to a ratio.
        input_imag, input_phase: the second part of a real ``input``, as many files as it (at
            most one of them).
        mask: NIfTI ``(X, Y, Z)``, non-zero = fit (default: every voxel), or ``"foreground"``:
            the voxels with signal (:func:`foreground_mask`).
        phase_cycles: expected N (checked against the input's 4th axis).
        b1_units: ``ratio`` (1 = nominal), ``percent`` (100 = nominal, BIDS ``TB1map``) or
            ``auto`` (:data:`B1_UNITS`).
        resample_b1: interpolate a B1 map on another grid (voxel size, field of view,
            orientation) onto the input's voxels (trilinear) instead of refusing it.
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
    b1_map = _companion("b1", b1, spatial, aff, resample=resample_b1)
    sel = np.ones(spatial, dtype=bool)
    if isinstance(mask, str) and mask == "foreground":
        if not np.isfinite(data).all():
            raise MrphysError("input contains NaN or infinite values.")
        sel = foreground_mask(data)
        if not sel.any():
            raise MrphysError("input has no voxel with signal (all phase cycles 0).")
    elif mask is not None:
        m = _companion("mask", mask, spatial, aff)
        if not np.isfinite(m).all():
            raise MrphysError("mask contains NaN or infinite values.")
        sel = m != 0
        if not sel.any():
            raise MrphysError("mask selects no voxel.")
    # the data: all voxels without a mask (no copy), the foreground was checked whole above
    if mask is None and not np.isfinite(data).all():
        raise MrphysError("input contains NaN or infinite values inside the mask.")
    if mask is not None and not isinstance(mask, str) and not np.isfinite(data[sel]).all():
        raise MrphysError("input contains NaN or infinite values inside the mask.")
    if not np.isfinite(b1_map if mask is None else b1_map[sel]).all():
        raise MrphysError("b1 contains NaN or infinite values inside the mask.")
    b1_map = _b1_ratio(b1_map, sel, b1_units)
    lo, hi = float(b1_map[sel].min()), float(b1_map[sel].max())
    if lo < B1_LIMITS[0] or hi > B1_LIMITS[1]:
        raise MrphysError(
            f"b1 must be a relative flip-angle scale (1 = nominal) in [{B1_LIMITS[0]}, "
            f"{B1_LIMITS[1]}]; it spans [{lo:g}, {hi:g}] (percent or degrees given? see "
            "b1_units)."
        )
    if lo < B1_TRAINED[0] or hi > B1_TRAINED[1]:
        log.warning("B1 spans [%.2f, %.2f]; networks were trained on [0.7, 1.3].", lo, hi)
    return PcBssfpVolume(data, b1_map, sel, aff)


def sidecar_path(nifti: PathLike) -> Path:
    """The BIDS JSON sidecar beside a NIfTI file: ``x.nii.gz`` -> ``x.json``."""
    p = Path(nifti)
    for ext in (".nii.gz", ".nii"):
        if p.name.endswith(ext):
            return p.with_name(p.name[: -len(ext)] + ".json")
    return p.with_suffix(".json")


def read_sidecar(nifti: PathLike) -> dict[str, Any] | None:
    """The JSON object of the sidecar beside ``nifti`` (:func:`sidecar_path`), None without
    one; a sidecar that is no JSON object is refused (one sentence naming it)."""
    path = sidecar_path(nifti)
    if not path.is_file():
        return None
    obj = load_json(path)
    if not isinstance(obj, dict):
        raise MrphysError(f"sidecar {path} must hold a JSON object; got {type(obj).__name__}.")
    return obj


def _number(side: Mapping[str, Any], key: str, where: str) -> float | None:
    v = side.get(key)
    if v is None:
        return None
    if isinstance(v, list) and len(v) == 1:
        v = v[0]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise MrphysError(f"{key} in {where} must be one finite number; got {v!r}.")
    return float(v)


def sidecar_protocol(side: Mapping[str, Any], where: str = "the sidecar") -> dict[str, Any]:
    """The protocol keys a BIDS sidecar gives, in the units of the options.

    Reads ``RepetitionTimeExcitation`` (s; BIDS's ``RepetitionTime`` is the volume TR and is not
    used), ``EchoTime`` (s, one echo), ``FlipAngle`` (deg) and ``PhaseIncrements`` (deg, one per
    volume). Returns those present as ``tr_ms``, ``te_ms``, ``flip_deg``, ``increments_deg``.
    A time above 1 s is refused as given in ms.
    """
    out: dict[str, Any] = {}
    for key, name in (("RepetitionTimeExcitation", "tr_ms"), ("EchoTime", "te_ms")):
        if isinstance(side.get(key), list) and len(side[key]) > 1:
            raise MrphysError(f"{key} in {where} lists {len(side[key])} values; expected one.")
        v = _number(side, key, where)
        if v is not None:
            if not 0 < v < 1:
                raise MrphysError(
                    f"{key} in {where} must be in seconds as BIDS says, in (0, 1); got {v:g} (ms?)."
                )
            out[name] = v * 1e3
    flip = _number(side, "FlipAngle", where)
    if flip is not None:
        out["flip_deg"] = flip
    inc = side.get("PhaseIncrements")
    if inc is not None:
        inc = inc if isinstance(inc, list) else [inc]
        if not inc or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
            for x in inc
        ):
            raise MrphysError(
                f"PhaseIncrements in {where} must be a list of numbers in degrees, one per "
                f"volume; got {side['PhaseIncrements']!r}."
            )
        out["increments_deg"] = [float(x) for x in inc]
    return out


@dataclass
class SeriesProtocol:
    """The protocol of a pc-bSSFP series and where each of its values came from.

    Attributes:
        protocol: the :class:`~mrphys.relax.data.Protocol` the fit uses (s, rad).
        increments_deg: the RF phase increment of each volume in deg, in the file's order.
        source: ``tr_ms``, ``te_ms``, ``flip_deg``, ``increments`` -> ``sidecar``, ``option``
            or ``default``.
        sidecar: the sidecar file(s) read, or None.
        order: the volumes' order that gives the increments ``180 (2j - 1) / N`` deg, j = 1..N,
            or None when they are in that order already.
        offset_deg: the common offset of the increments from those (0, or accepted for a
            magnitude method: :func:`resolve_protocol`).
    """

    protocol: Protocol
    increments_deg: list[float]
    source: dict[str, str] = field(default_factory=dict)
    sidecar: str | None = None
    order: list[int] | None = None
    offset_deg: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """For JSON: the protocol in ms and degrees, the increments, sources and sidecar."""
        return protocol_ms(self.protocol) | {
            "phase_increments_deg": self.increments_deg,
            "phase_offset_deg": self.offset_deg,
            "source": self.source,
            "sidecar": self.sidecar,
        }


def _methods_increments(n: int) -> list[float]:
    return [180.0 * (2 * j - 1) / n for j in range(1, n + 1)]


def _increment_order(
    inc: list[float], where: str, offset_ok: bool = False
) -> tuple[list[int] | None, float]:
    """The volumes' order that gives the METHODS increments ``180 (2j - 1) / N`` (None: as
    they are), and the offset of equally spaced increments from them in deg (0 for the METHODS
    set; any other only with ``offset_ok``)."""
    n = len(inc)
    step, base = 360.0 / n, 180.0 / n
    r = [(x - base) % step for x in inc]
    d = r[0] if r[0] <= step / 2 else r[0] - step  # the offset in (-step/2, step/2]
    order: list[int | None] = [None] * n
    for i, x in enumerate(inc):
        pos = ((x - d - base) % 360.0) / step
        k = int(round(pos)) % n
        if abs(pos - round(pos)) * step > 1e-2 or order[k] is not None:
            order = []
            break
        order[k] = i
    ref = ", ".join(f"{x:g}" for x in _methods_increments(n))
    if len(order) != n:
        raise MrphysError(
            f"PhaseIncrements in {where} are {inc} deg, not equally spaced over 360 deg; the "
            f"fits need the increments 180 (2j - 1) / N deg ({ref}), in any order."
        )
    if abs(d) > 1e-2 and not offset_ok:
        raise MrphysError(
            f"PhaseIncrements in {where} are {d:+g} deg from 180 (2j - 1) / N deg ({ref}); the "
            f"methods that estimate the off-resonance need these (the magnitude methods "
            f"{', '.join(OFFSET_BLIND)} accept any common offset)."
        )
    idx = [int(k) for k in order]  # type: ignore[arg-type]
    return (None if idx == list(range(n)) else idx), (d if abs(d) > 1e-2 else 0.0)


def resolve_protocol(
    n_cycles: int,
    *,
    tr_ms: float | None = None,
    te_ms: float | None = None,
    flip_deg: float | None = None,
    sidecar: Mapping[str, Any] | None = None,
    where: str = "the sidecar",
    offset_ok: bool = False,
) -> SeriesProtocol:
    """The protocol of a series from its sidecar and the options.

    A value comes from the option where given, else from the sidecar, else the default (TR
    4.8 ms, TE = TR / 2, flip 15 deg, increments ``180 (2j - 1) / N``). An option given beside
    a sidecar value must agree with it (relative :data:`PROTOCOL_RTOL`); otherwise the error
    names both values (to use the options alone, read no sidecar).

    Args:
        n_cycles: volumes N of the series.
        tr_ms, te_ms, flip_deg: the options (None: not given).
        sidecar: the BIDS sidecar's JSON object (None: none).
        where: the sidecar's name, for messages.
        offset_ok: accept equally spaced increments with a common offset from the METHODS
            ones (for magnitude methods: the offset acts as an off-resonance shift, to which
            the magnitudes of the SSFP configurations are blind; complex methods would report
            the off-resonance shifted by it).
    """
    side = sidecar_protocol(sidecar, where) if sidecar else {}
    keys = (("tr_ms", tr_ms, "RepetitionTimeExcitation", 1e-3, "s", "ms"),
            ("te_ms", te_ms, "EchoTime", 1e-3, "s", "ms"),
            ("flip_deg", flip_deg, "FlipAngle", 1.0, "deg", "deg"))  # fmt: skip
    values: dict[str, float | None] = {}
    source: dict[str, str] = {}
    for name, opt, key, scale, side_unit, unit in keys:
        sv = side.get(name)
        if opt is not None and sv is not None and not math.isclose(opt, sv, rel_tol=PROTOCOL_RTOL):
            same = f" ({sv:g} {unit})" if side_unit != unit else ""
            raise MrphysError(
                f"{name} {opt:g} {unit} disagrees with {key} {sv * scale:g} {side_unit}{same} "
                f"in {where}; leave the option out, correct the one that is wrong, or read no "
                "sidecar."
            )
        values[name] = opt if opt is not None else sv
        source[name] = "option" if opt is not None else ("sidecar" if sv is not None else "default")
    tr = 4.8 if values["tr_ms"] is None else values["tr_ms"]
    flip = 15.0 if values["flip_deg"] is None else values["flip_deg"]
    protocol = protocol_from_ms(n_cycles, tr, values["te_ms"], flip)
    inc = side.get("increments_deg")
    order, offset = None, 0.0
    if inc is None:
        inc, source["increments"] = _methods_increments(n_cycles), "default"
    else:
        if len(inc) != n_cycles:
            raise MrphysError(
                f"PhaseIncrements in {where} lists {len(inc)} values but the input has "
                f"{n_cycles} volumes; give one increment per volume."
            )
        order, offset = _increment_order(inc, where, offset_ok)
        source["increments"] = "sidecar"
    return SeriesProtocol(protocol, list(inc), source, where if sidecar else None, order, offset)


def _series_sidecar(paths: list[PathLike]) -> tuple[dict[str, Any] | None, str | None]:
    """The sidecar of a series: beside its one file, or merged from one per phase-cycle file
    (equal scalar keys; ``PhaseIncrements`` joined in file order)."""
    sides = [(Path(p), read_sidecar(p)) for p in paths]
    have = [(p, s) for p, s in sides if s is not None]
    if not have:
        return None, None
    if len(have) < len(sides):
        miss = next(p for p, s in sides if s is None)
        raise MrphysError(
            f"input {miss} has no JSON sidecar but {have[0][0]} has one; give a sidecar for "
            "every file of the series or for none."
        )
    if len(have) == 1:
        return have[0][1], str(sidecar_path(have[0][0]))
    merged: dict[str, Any] = {}
    inc: list[Any] = []
    for p, s in have:
        for k, v in s.items():
            if k == "PhaseIncrements":
                inc += v if isinstance(v, list) else [v]
            elif k in merged and merged[k] != v and k in _PROTOCOL_KEYS:
                raise MrphysError(
                    f"{k} is {merged[k]!r} in {sidecar_path(have[0][0])} but {v!r} in "
                    f"{sidecar_path(p)}; the phase cycles of a series share their protocol."
                )
            else:
                merged.setdefault(k, v)
    if inc:
        merged["PhaseIncrements"] = inc
    return merged, ", ".join(str(sidecar_path(p)) for p, _ in have)


_PROTOCOL_KEYS = ("RepetitionTimeExcitation", "EchoTime", "FlipAngle")


def load_series(
    input: Inputs,
    b1: PathLike,
    *,
    input_imag: Inputs | None = None,
    input_phase: Inputs | None = None,
    mask: PathLike | str | None = None,
    phase_cycles: int | None = None,
    tr_ms: float | None = None,
    te_ms: float | None = None,
    flip_deg: float | None = None,
    sidecar: Mapping[str, Any] | None = None,
    sidecar_name: str | None = None,
    read_sidecars: bool = True,
    b1_units: str = "ratio",
    resample_b1: bool = False,
    offset_ok: bool = False,
) -> tuple[PcBssfpVolume, SeriesProtocol]:
    """A pc-bSSFP volume (:func:`load_pc_bssfp`) and its protocol (:func:`resolve_protocol`).

    The protocol comes from ``sidecar`` when given (the BIDS-App passes the merged, inherited
    one), else from the JSON beside each ``input`` file (with ``read_sidecars``), and the
    options. Volumes whose ``PhaseIncrements`` are the METHODS increments in another order are
    put into that order.

    Returns:
        ``(volume, SeriesProtocol)``.
    """
    vol = load_pc_bssfp(input, b1, input_imag=input_imag, input_phase=input_phase, mask=mask,
                        phase_cycles=phase_cycles, b1_units=b1_units,
                        resample_b1=resample_b1)  # fmt: skip
    where = sidecar_name or "the sidecar"
    if sidecar is None and read_sidecars:
        sidecar, found = _series_sidecar(_paths(input))
        where = found or where
    sp = resolve_protocol(vol.n_cycles, tr_ms=tr_ms, te_ms=te_ms, flip_deg=flip_deg,
                          sidecar=sidecar, where=where, offset_ok=offset_ok)  # fmt: skip
    if sp.offset_deg:
        log.info(
            "phase increments offset by %g deg: fitted as an off-resonance shift", sp.offset_deg
        )
    if sp.order is not None:
        log.info("volumes reordered by their PhaseIncrements: %s", sp.order)
        vol.signals = np.take(vol.signals, sp.order, axis=3)
    return vol, sp


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

    if method not in NETWORK_METHODS:
        if model is not None:
            raise MrphysError(f"model is for network methods; {method.upper()} needs no model.")
        return None, None
    if model is None:
        return default_model(method, protocol, device=device, seed=seed)
    net, cfg = load_model(model, device)
    check_model_protocol(cfg, method, protocol, str(model))
    return net, Path(model)
