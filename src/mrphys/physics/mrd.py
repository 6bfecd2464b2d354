"""Radial raw data in ISMRMRD / MRD ``.h5`` files: read into :class:`~.radial.RadialData`, write.

Reading (:func:`read_mrd`)
--------------------------
An MRD file holds an XML header (``/dataset/xml``) and one record per acquisition
(``/dataset/data``: header, trajectory, samples). For radial MRI one acquisition is one spoke of
``N`` samples on ``C`` channels. :func:`read_mrd` returns the imaging spokes as a
:class:`~.radial.RadialData` (``kspace (T, C, S, N)``, ``traj (T, S, N, 2)`` rad/pixel ``(ky,
kx)``, ramp ``dcf``, **placeholder** maps ``1/sqrt(C)``: estimate them with
:func:`mrphys.recon.calib.estimate_maps`) and a :class:`RawInfo` with what the file says.

- **Trajectory units.** The per-acquisition trajectory (``trajectory_dimensions >= 2``, columns
  ``(kx, ky[, weight])``) comes in one of two common units: cycles/pixel in ``[-0.5, 0.5)``
  (Gadgetron) or 1/FOV units up to ``matrix/2`` (BART). The unit is detected from the largest
  ``|k|`` (at most 0.5: cycles/pixel; at most ``matrix/2``: 1/FOV) and reported in
  ``RawInfo.traj_units``; ``traj_units=`` forces it. Converted to rad/pixel:
  ``k_rad = 2 pi k_cycles = 2 pi k_fov / matrix`` (per axis, the reconstruction matrix).
- **No trajectory** (``trajectory_dimensions == 0``): spoke ``s`` lies at ``s * increment`` from
  the ``kx`` axis with ``s`` the acquisition's ``idx.kspace_encode_step_1`` (or its order among the
  imaging acquisitions when that counter is always 0), ``increment`` = ``angle_increment_deg``,
  else the header's user parameter ``angle_increment_deg``, else the golden angle 111.246 deg;
  sample ``i`` at radius ``(i - center_sample) * 2 pi / N`` rad/pixel (the readout spans
  ``[-pi, pi)`` of the reconstruction matrix, i.e. ``N = oversampling * matrix``).
- **Frames.** From ``idx.phase`` (cine) when it takes more than one value, else from
  ``idx.repetition``, else one frame (static radial). ``spokes_per_frame=S`` instead rebins the
  stream of spokes in acquisition order into frames of ``S`` consecutive spokes, advancing by
  ``frame_step`` (default ``S``; smaller: a sliding window with shared spokes). Frames of a
  counter with unequal spoke counts keep the first ``min`` spokes each (the rest is reported in
  ``RawInfo.dropped_spokes``).
- **Noise** acquisitions (flag ``ACQ_IS_NOISE_MEASUREMENT``) are never reconstructed; their
  samples are ``RawInfo.noise`` ``(C, M)`` for prewhitening. Navigator, phase-correction,
  dummy-scan, feedback and calibration-only acquisitions are skipped (counted in
  ``RawInfo.skipped``).
- **Refused** (one-sentence :class:`~mrphys.errors.MrphysError`): not an HDF5/MRD file,
  Cartesian or EPI encoding, several slices, imaging acquisitions with different sample or channel
  counts, fewer active channels than the header's receiver channels, a trajectory beyond both
  unit ranges.

The file is read with h5py (no pickle, no code); the XML header is parsed by the standard library
after refusing any DTD or entity declaration.

Writing (:func:`write_mrd`)
---------------------------
Used by ``mrphys dynamic simulate``: one acquisition per spoke (frames in ``idx.phase`` or
``idx.repetition``, the global spoke number in ``idx.kspace_encode_step_1``), noise acquisitions
first, the trajectory in cycles/pixel, 1/FOV units or left out, and a standard ISMRMRD header
(``ismrmrd.xsd``) with the matrix, field of view, channels and the angle increment.
"""

from __future__ import annotations

import logging
import math
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mrphys.errors import MrphysError, check
from mrphys.physics.nufft import GOLDEN_ANGLE_DEG, radial_dcf

log = logging.getLogger(__name__)

# ISMRMRD acquisition flags (bit numbers from 1, as in ismrmrd/constants.py)
_FLAG_NOISE = 19
_FLAGS_SKIPPED = {
    "calibration": 20,  # ACQ_IS_PARALLEL_CALIBRATION (without _AND_IMAGING)
    "navigator": 23,
    "phase correction": 24,
    "rt feedback": 25,
    "hp feedback": 26,
    "dummy scan": 27,
    "coil correction scan": 28,
    "phase stabilisation reference": 29,
    "phase stabilisation": 30,
}
TRAJ_UNITS = ("auto", "cycles/pixel", "1/FOV")
FRAME_SOURCES = ("auto", "phase", "repetition", "none")


def _flag(flags: np.ndarray, bit: int) -> np.ndarray:
    return (flags & np.uint64(1 << (bit - 1))) != 0


@dataclass
class RawInfo:
    """What an MRD file says besides the spokes.

    Attributes:
        path: the file.
        matrix: reconstruction matrix ``(Y, X)`` (header ``reconSpace``; ``encodedSpace`` when
            that is missing).
        fov_mm: field of view ``(x, y, z)`` in mm (header ``reconSpace``), or None.
        n_coils: channels of the imaging acquisitions.
        samples_per_spoke: ``N``.
        traj_units: ``"cycles/pixel"``, ``"1/FOV"`` (stored, detected or forced) or
            ``"computed"`` (no trajectory in the file).
        traj_max: the largest stored ``|k|`` in the stored unit (None when computed).
        angle_increment_deg: the increment used for a computed trajectory (None otherwise), and
            the header's value when it has one.
        frames_from: ``"phase"``, ``"repetition"``, ``"spokes_per_frame"`` or ``"single"``.
        noise: ``(C, M)`` complex64 noise-scan samples, or None without a noise scan.
        n_noise_acquisitions: noise acquisitions read.
        skipped: non-imaging acquisitions skipped, by kind.
        dropped_spokes: spokes left out to give every frame the same count.
        header_trajectory: the header's ``encoding/trajectory`` (``radial``, ``goldenangle``, ...).
        system: header facts kept for the record (vendor, field strength, ...).
    """

    path: str
    matrix: tuple[int, int]
    fov_mm: tuple[float, float, float] | None
    n_coils: int
    samples_per_spoke: int
    traj_units: str
    traj_max: float | None
    angle_increment_deg: float | None
    frames_from: str
    noise: torch.Tensor | None = None
    n_noise_acquisitions: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    dropped_spokes: int = 0
    header_trajectory: str | None = None
    system: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The facts as a JSON-able dict (the noise as its shape)."""
        out = {k: v for k, v in self.__dict__.items() if k != "noise"}
        out["noise_samples"] = None if self.noise is None else list(self.noise.shape)
        out["matrix"] = list(self.matrix)
        out["fov_mm"] = None if self.fov_mm is None else list(self.fov_mm)
        return out


# ------------------------------------------------------------------------------------------
# XML header
# ------------------------------------------------------------------------------------------


def _parse_header(text: bytes | str, path: Path) -> ET.Element | None:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if re.search(r"<!(DOCTYPE|ENTITY)", text, flags=re.IGNORECASE):
        raise MrphysError(
            f"{path}: the XML header declares a DTD or entities, which are refused (an MRD "
            "header never needs them)."
        )
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        raise MrphysError(f"{path}: the XML header is not valid XML ({e}).") from None
    for el in root.iter():  # drop namespaces: {http://www.ismrm.org/ISMRMRD}encoding -> encoding
        if isinstance(el.tag, str) and "}" in el.tag:
            el.tag = el.tag.split("}", 1)[1]
    return root


def _text(root: ET.Element | None, path: str) -> str | None:
    if root is None:
        return None
    el = root.find(path)
    return None if el is None or el.text is None else el.text.strip()


def _num(root: ET.Element | None, path: str, kind=float) -> Any:
    t = _text(root, path)
    if t is None:
        return None
    try:
        return kind(float(t))
    except ValueError:
        return None


def _user_double(root: ET.Element | None, name: str) -> float | None:
    if root is None:
        return None
    for p in root.findall("userParameters/userParameterDouble"):
        if _text(p, "name") == name:
            return _num(p, "value")
    return None


# ------------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------------


def read_mrd(
    path: str | os.PathLike,
    *,
    spokes_per_frame: int | None = None,
    frame_step: int | None = None,
    frames_from: str = "auto",
    angle_increment_deg: float | None = None,
    traj_units: str = "auto",
    dataset: str = "dataset",
) -> tuple[Any, RawInfo]:
    """Read the radial spokes and the noise scan of an MRD file (see the module doc).

    Args:
        path: the ``.h5`` file.
        spokes_per_frame: rebin the spoke stream into frames of this many consecutive spokes
            (instead of the ``phase``/``repetition`` counters).
        frame_step: spokes between the starts of consecutive rebinned frames (default
            ``spokes_per_frame``; smaller gives a sliding window).
        frames_from: ``"auto"``, ``"phase"``, ``"repetition"`` or ``"none"`` (one frame).
        angle_increment_deg: angle between consecutive spokes for a file without trajectory.
        traj_units: ``"auto"`` (detect), ``"cycles/pixel"`` or ``"1/FOV"``.
        dataset: the HDF5 group holding ``xml`` and ``data``.

    Returns:
        ``(data, info)``: :class:`~.radial.RadialData` (placeholder maps ``1/sqrt(C)``, ramp DCF
        :func:`~.nufft.radial_dcf`, no truth) and :class:`RawInfo`.
    """
    import h5py

    from mrphys.io import input_file
    from mrphys.physics.radial import RadialData

    p = input_file(path, "MRD file")
    check(traj_units in TRAJ_UNITS, f"traj_units must be one of {TRAJ_UNITS}; got {traj_units!r}.")
    check(
        frames_from in FRAME_SOURCES,
        f"frames_from must be one of {FRAME_SOURCES}; got {frames_from!r}.",
    )
    if spokes_per_frame is not None:
        check(
            int(spokes_per_frame) >= 1,
            f"spokes_per_frame must be a positive integer; got {spokes_per_frame}.",
        )
    if frame_step is not None:
        check(
            spokes_per_frame is not None and int(frame_step) >= 1,
            f"frame_step must be a positive integer and needs spokes_per_frame; got {frame_step}.",
        )
    if angle_increment_deg is not None:
        check(
            math.isfinite(float(angle_increment_deg)),
            f"angle_increment_deg must be a finite number; got {angle_increment_deg}.",
        )
    try:
        f = h5py.File(p, "r")
    except OSError:
        raise MrphysError(f"{p} is not an HDF5 file; expected an ISMRMRD/MRD .h5 file.") from None
    with f:
        if dataset not in f or "data" not in f[dataset]:
            groups = ", ".join(sorted(f.keys())) or "nothing"
            raise MrphysError(
                f"{p} has no /{dataset}/data (it holds {groups}); expected an ISMRMRD/MRD file "
                "with acquisitions."
            )
        g = f[dataset]
        root = _parse_header(g["xml"][0], p) if "xml" in g else None
        try:
            acqs = g["data"][()]
            heads = acqs["head"]
        except (ValueError, KeyError, TypeError):
            raise MrphysError(
                f"{p}: /{dataset}/data is not an ISMRMRD acquisition table."
            ) from None
    return _assemble(
        p,
        root,
        acqs,
        heads,
        RadialData,
        spokes_per_frame=spokes_per_frame,
        frame_step=frame_step,
        frames_from=frames_from,
        angle_increment_deg=angle_increment_deg,
        traj_units=traj_units,
    )


def _assemble(
    p: Path,
    root: ET.Element | None,
    acqs: np.ndarray,
    heads: np.ndarray,
    RadialData: type,  # noqa: N803 (the class, imported where torch is already loaded)
    **opt: Any,
) -> tuple[Any, RawInfo]:
    """The spokes, trajectory, frames and noise of the acquisition table (see :func:`read_mrd`)."""
    header_traj = _text(root, "encoding/trajectory")
    if header_traj is not None and header_traj.lower() in ("cartesian", "epi"):
        raise MrphysError(
            f"{p} holds {header_traj} data (header encoding/trajectory); mrphys reads radial "
            "MRD files only."
        )
    flags = heads["flags"].astype(np.uint64)
    noise_mask = _flag(flags, _FLAG_NOISE)
    skip = np.zeros(len(heads), dtype=bool)
    skipped: dict[str, int] = {}
    for name, bit in _FLAGS_SKIPPED.items():
        m = _flag(flags, bit) & ~noise_mask & ~skip
        if m.any():
            skipped[name] = int(m.sum())
        skip |= m
    img = np.flatnonzero(~noise_mask & ~skip)
    check(img.size > 0, f"{p} holds no imaging acquisitions (only noise or calibration scans).")

    # -- sizes and channels ----------------------------------------------------------------
    ns = heads["number_of_samples"][img].astype(int)
    nc = heads["active_channels"][img].astype(int)
    if len(set(ns.tolist())) > 1:
        raise MrphysError(
            f"{p}: the imaging acquisitions have different sample counts ({sorted(set(ns))}); "
            "expected one spoke length."
        )
    if len(set(nc.tolist())) > 1:
        raise MrphysError(
            f"{p}: missing channels: the imaging acquisitions have different active channel "
            f"counts ({sorted(set(nc))})."
        )
    n, c = int(ns[0]), int(nc[0])
    check(n >= 2 and c >= 1, f"{p}: spokes of {n} samples on {c} channels cannot be read.")
    receivers = _num(root, "acquisitionSystemInformation/receiverChannels", int)
    if receivers is not None and c < receivers:
        raise MrphysError(
            f"{p}: missing channels: the acquisitions hold {c} of the header's {receivers} "
            "receiver channels."
        )
    masks = heads["channel_mask"][img]
    if masks.any():  # a writer that fills the mask: its active channels must be c
        bits = np.array([sum(bin(int(w)).count("1") for w in row) for row in masks[:1]])
        if int(bits[0]) != c:
            raise MrphysError(
                f"{p}: missing channels: the channel mask enables {int(bits[0])} channels but "
                f"the acquisitions hold {c}."
            )
    slices = np.unique(heads["idx"]["slice"][img])
    if slices.size > 1:
        raise MrphysError(
            f"{p} holds {slices.size} slices; mrphys reconstructs one 2-D slice (split the file)."
        )
    try:
        samples = np.stack([np.asarray(acqs["data"][i], dtype=np.float32) for i in img])
        samples = samples.view(np.complex64).reshape(img.size, c, n)
    except ValueError:
        raise MrphysError(f"{p}: acquisition data do not match their sample counts.") from None

    # -- header facts ------------------------------------------------------------------------
    mx = _num(root, "encoding/reconSpace/matrixSize/x", int)
    my = _num(root, "encoding/reconSpace/matrixSize/y", int)
    if not mx or not my:
        mx = _num(root, "encoding/encodedSpace/matrixSize/x", int)
        my = _num(root, "encoding/encodedSpace/matrixSize/y", int)
    if not mx or not my:
        mx = my = n // 2
        log.warning("%s: no matrix size in the header; using N/2 = %d", p, mx)
    fov = tuple(_num(root, f"encoding/reconSpace/fieldOfView_mm/{a}") for a in ("x", "y", "z"))
    fov_mm = None if None in fov else tuple(float(v) for v in fov)  # type: ignore[arg-type]
    header_inc = _user_double(root, "angle_increment_deg")

    # -- trajectory --------------------------------------------------------------------------
    dims = heads["trajectory_dimensions"][img].astype(int)
    check(
        len(set(dims.tolist())) == 1,
        f"{p}: the imaging acquisitions have different trajectory dimensions "
        f"({sorted(set(dims))}).",
    )
    d = int(dims[0])
    inc_used = None
    traj_max = None
    if d == 0:
        if header_traj is not None and header_traj.lower() not in ("radial", "goldenangle"):
            raise MrphysError(
                f"{p} has a {header_traj} trajectory without stored coordinates; only radial "
                "spokes can be computed from their index."
            )
        step1 = heads["idx"]["kspace_encode_step_1"][img].astype(np.float64)
        spoke_idx = step1 if step1.any() else np.arange(img.size, dtype=np.float64)
        inc_used = float(
            opt["angle_increment_deg"]
            if opt["angle_increment_deg"] is not None
            else header_inc
            if header_inc is not None
            else GOLDEN_ANGLE_DEG
        )
        centre = heads["center_sample"][img].astype(np.float64)
        centre = np.where(centre > 0, centre, n // 2)
        theta = np.remainder(spoke_idx * math.radians(inc_used), 2 * math.pi)
        r = (np.arange(n)[None, :] - centre[:, None]) * (2 * math.pi / n)  # (A, N)
        traj = np.stack([r * np.sin(theta)[:, None], r * np.cos(theta)[:, None]], axis=-1)
        units = "computed"
    else:
        check(d >= 2, f"{p}: a {d}-D trajectory cannot describe 2-D radial spokes.")
        try:
            raw = np.stack([np.asarray(acqs["traj"][i], dtype=np.float64) for i in img])
            raw = raw.reshape(img.size, n, d)[..., :2]  # (A, N, (kx, ky))
        except ValueError:
            raise MrphysError(f"{p}: trajectories do not match their sample counts.") from None
        check(bool(np.isfinite(raw).all()), f"{p}: the trajectory holds NaN or infinity.")
        traj_max = float(np.abs(raw).max())
        units = opt["traj_units"]
        if units == "auto":
            if traj_max <= 0.5 * (1 + 1e-3):
                units = "cycles/pixel"
            elif traj_max <= 0.5 * max(mx, my) * 1.05 + 0.5:
                units = "1/FOV"
            else:
                raise MrphysError(
                    f"{p}: the trajectory reaches |k| = {traj_max:g}, beyond both cycles/pixel "
                    f"(0.5) and 1/FOV units (matrix/2 = {max(mx, my) / 2:g})."
                )
        log.info("%s: trajectory in %s (max |k| %.4g)", p, units, traj_max)
        scale_x, scale_y = (1.0, 1.0) if units == "cycles/pixel" else (1.0 / mx, 1.0 / my)
        traj = 2 * math.pi * np.stack([raw[..., 1] * scale_y, raw[..., 0] * scale_x], axis=-1)
        # +pi is -pi on the periodic grid; the NUFFT takes [-pi, pi]
        traj = np.clip(traj, -math.pi, math.pi)

    # -- frames ------------------------------------------------------------------------------
    groups, frames_from, dropped = _frames(p, heads["idx"][img], img.size, opt)
    s = len(groups[0])
    kspace = np.stack([samples[g] for g in groups])  # (T, S, C, N)
    kspace = np.ascontiguousarray(kspace.transpose(0, 2, 1, 3))
    traj_t = np.stack([traj[g] for g in groups]).astype(np.float32)  # (T, S, N, 2)

    # -- noise -------------------------------------------------------------------------------
    noise = None
    nidx = np.flatnonzero(noise_mask)
    if nidx.size:
        parts = []
        for i in nidx:
            h = heads[i]
            cc, nn = int(h["active_channels"]), int(h["number_of_samples"])
            if cc != c:
                raise MrphysError(
                    f"{p}: missing channels: a noise acquisition holds {cc} channels, the "
                    f"imaging acquisitions {c}."
                )
            parts.append(np.asarray(acqs["data"][i], dtype=np.float32).view(np.complex64))
            parts[-1] = parts[-1].reshape(cc, nn)
        noise = torch.from_numpy(np.concatenate(parts, axis=1))
    tr = torch.from_numpy(traj_t)
    k = torch.from_numpy(kspace)
    t = k.shape[0]
    maps = torch.full((c, my, mx), 1.0 / math.sqrt(c), dtype=torch.complex64)
    info = RawInfo(
        path=str(p),
        matrix=(int(my), int(mx)),
        fov_mm=fov_mm,
        n_coils=c,
        samples_per_spoke=n,
        traj_units=units,
        traj_max=traj_max,
        angle_increment_deg=inc_used if inc_used is not None else header_inc,
        frames_from=frames_from,
        noise=noise,
        n_noise_acquisitions=int(nidx.size),
        skipped=skipped,
        dropped_spokes=dropped,
        header_trajectory=header_traj,
        system={
            k: _text(root, f"acquisitionSystemInformation/{k}")
            for k in ("systemVendor", "systemModel", "systemFieldStrength_T")
            if _text(root, f"acquisitionSystemInformation/{k}") is not None
        },
    )
    meta = {
        "source": "mrd",
        "spokes_per_frame": s,
        "samples_per_spoke": n,
        "n_coils": c,
        "maps": "placeholder 1/sqrt(C): estimate them",
        "raw": info.summary(),
    }
    log.info("%s: %d frames x %d spokes x %d samples, %d coils (%s)", p, t, s, n, c, frames_from)
    data = RadialData(
        kspace=k, traj=tr, maps=maps, dcf=radial_dcf(tr, im_size=(my, mx)), truth=None, meta=meta
    )
    return data, info


def _frames(p: Path, idx: np.ndarray, a: int, opt: dict) -> tuple[list[np.ndarray], str, int]:
    """Spoke indices (into the imaging acquisitions) of every frame, the source, spokes dropped."""
    spf, step = opt["spokes_per_frame"], opt["frame_step"]
    if spf is not None:
        spf = int(spf)
        step = int(step) if step is not None else spf
        check(
            spf <= a,
            f"spokes_per_frame ({spf}) exceeds the {a} imaging spokes in {p}.",
        )
        n_frames = (a - spf) // step + 1
        groups = [np.arange(t * step, t * step + spf) for t in range(n_frames)]
        dropped = a - (groups[-1][-1] + 1)
        return groups, "spokes_per_frame", int(dropped)
    source = opt["frames_from"]
    if source == "auto":
        source = (
            "phase"
            if np.unique(idx["phase"]).size > 1
            else "repetition"
            if np.unique(idx["repetition"]).size > 1
            else "none"
        )
    if source == "none":
        return [np.arange(a)], "single", 0
    counter = idx[source].astype(int)
    values = np.unique(counter)
    groups = [np.flatnonzero(counter == v) for v in values]
    s = min(len(g) for g in groups)
    dropped = sum(len(g) - s for g in groups)
    if dropped:
        log.warning("%s: frames hold %d..%d spokes; keeping %d each", p, s,
                    max(len(g) for g in groups), s)  # fmt: skip
    return [g[:s] for g in groups], source, int(dropped)


# ------------------------------------------------------------------------------------------
# writing
# ------------------------------------------------------------------------------------------


def write_mrd(
    path: str | os.PathLike,
    data: Any,
    noise: torch.Tensor | np.ndarray | None = None,
    *,
    traj_units: str = "cycles/pixel",
    frames_in: str = "phase",
    fov_mm: float = 256.0,
    angle_increment_deg: float = GOLDEN_ANGLE_DEG,
    noise_samples_per_acquisition: int = 256,
) -> None:
    """Write the spokes of ``data`` (a :class:`~.radial.RadialData`) as a new MRD file.

    Args:
        path: the new ``.h5`` file (an existing one is refused).
        data: ``kspace (T, C, S, N)`` and ``traj (T, S, N, 2)`` rad/pixel are written; maps,
            DCF and truth are not.
        noise: ``(C, M)`` noise-scan samples, written first as noise acquisitions of
            ``noise_samples_per_acquisition`` samples (flag ``ACQ_IS_NOISE_MEASUREMENT``).
        traj_units: ``"cycles/pixel"``, ``"1/FOV"`` or ``"none"`` (no trajectory: spoke ``s`` of
            the whole stream is at ``s * angle_increment_deg``, which must describe ``traj``).
        frames_in: the counter that holds the frame: ``"phase"`` or ``"repetition"``.
        fov_mm: square in-plane field of view in mm (header only).
        angle_increment_deg: stored in the header (user parameter ``angle_increment_deg``).
    """
    import h5py
    from ismrmrd.hdf5 import acquisition_dtype
    from ismrmrd.xsd import ToXML

    check(
        traj_units in ("cycles/pixel", "1/FOV", "none"),
        f"traj_units must be cycles/pixel, 1/FOV or none; got {traj_units!r}.",
    )
    check(frames_in in ("phase", "repetition"), f"frames_in must be phase or repetition; got "
          f"{frames_in!r}.")  # fmt: skip
    p = Path(path)
    check(not p.exists(), f"{p} exists; write_mrd writes a new file.")
    k = data.kspace.detach().cpu().numpy().astype(np.complex64)
    tr = data.traj.detach().cpu().numpy().astype(np.float64)
    t, c, s, n = k.shape
    my, mx = data.im_size
    xml = ToXML(_header(mx, my, n, c, t, s, fov_mm, angle_increment_deg, traj_units))
    records = []
    hd = np.dtype(acquisition_dtype["head"])
    scan = 0
    if noise is not None:
        z = np.asarray(torch.as_tensor(noise).cpu().numpy(), dtype=np.complex64)
        check(z.ndim == 2 and z.shape[0] == c, f"noise must have shape ({c}, M); got {z.shape}.")
        m = int(noise_samples_per_acquisition)
        for j in range(0, z.shape[1], m):
            chunk = np.ascontiguousarray(z[:, j : j + m])
            h = np.zeros((), dtype=hd)
            _fill_head(h, scan, chunk.shape[1], c, 0)
            h["flags"] = np.uint64(1 << (_FLAG_NOISE - 1))
            records.append((h, np.zeros(0, np.float32), chunk.view(np.float32).ravel()))
            scan += 1
    dims = 0 if traj_units == "none" else 2
    for ti in range(t):
        for si in range(s):
            h = np.zeros((), dtype=hd)
            _fill_head(h, scan, n, c, dims)
            h["center_sample"] = n // 2
            h["idx"]["kspace_encode_step_1"] = ti * s + si
            h["idx"][frames_in] = ti
            if dims:
                ky, kx = tr[ti, si, :, 0], tr[ti, si, :, 1]
                if traj_units == "cycles/pixel":
                    xy = np.stack([kx, ky], -1) / (2 * math.pi)
                else:
                    xy = np.stack([kx * mx, ky * my], -1) / (2 * math.pi)
                traj = xy.astype(np.float32).ravel()
            else:
                traj = np.zeros(0, np.float32)
            samples = np.ascontiguousarray(k[ti, :, si, :]).view(np.float32).ravel()
            records.append((h, traj, samples))
            scan += 1
    table = np.empty(len(records), dtype=acquisition_dtype)
    for i, (h, traj, samples) in enumerate(records):
        table[i]["head"] = h
        table[i]["traj"] = traj
        table[i]["data"] = samples
    with h5py.File(p, "w-") as f:
        g = f.create_group("dataset")
        g.create_dataset("xml", data=[xml.encode()], dtype=h5py.special_dtype(vlen=bytes))
        g.create_dataset("data", data=table, maxshape=(None,), chunks=True)
    log.info("wrote %s (%d acquisitions)", p, len(records))


def _fill_head(h: np.ndarray, scan: int, n: int, c: int, dims: int) -> None:
    """The header fields every written acquisition has."""
    h["version"] = 1
    h["scan_counter"] = scan
    h["number_of_samples"] = n
    h["active_channels"] = c
    h["available_channels"] = c
    h["trajectory_dimensions"] = dims
    h["read_dir"] = (1.0, 0.0, 0.0)
    h["phase_dir"] = (0.0, 1.0, 0.0)
    h["slice_dir"] = (0.0, 0.0, 1.0)


def _header(
    mx: int, my: int, n: int, c: int, t: int, s: int, fov_mm: float, inc: float, traj_units: str
) -> Any:
    """The ISMRMRD XML header (``ismrmrd.xsd``) of a written file."""
    from ismrmrd import xsd

    fov = xsd.fieldOfViewMm(x=float(fov_mm), y=float(fov_mm) * my / mx, z=5.0)
    enc_fov = xsd.fieldOfViewMm(x=fov.x * n / mx, y=fov.y, z=5.0)
    lim = xsd.encodingLimitsType(
        kspace_encoding_step_1=xsd.limitType(minimum=0, maximum=t * s - 1, center=0),
        phase=xsd.limitType(minimum=0, maximum=t - 1, center=0),
        repetition=xsd.limitType(minimum=0, maximum=t - 1, center=0),
    )
    enc = xsd.encodingType(
        encodedSpace=xsd.encodingSpaceType(
            matrixSize=xsd.matrixSizeType(x=n, y=my, z=1), fieldOfView_mm=enc_fov
        ),
        reconSpace=xsd.encodingSpaceType(
            matrixSize=xsd.matrixSizeType(x=mx, y=my, z=1), fieldOfView_mm=fov
        ),
        encodingLimits=lim,
        trajectory=xsd.trajectoryType.GOLDENANGLE
        if abs(inc - GOLDEN_ANGLE_DEG) < 1e-6
        else xsd.trajectoryType.RADIAL,
    )
    return xsd.ismrmrdHeader(
        experimentalConditions=xsd.experimentalConditionsType(H1resonanceFrequency_Hz=63_870_000),
        encoding=[enc],
        acquisitionSystemInformation=xsd.acquisitionSystemInformationType(
            systemVendor="mrphys (simulation)", receiverChannels=c
        ),
        userParameters=xsd.userParametersType(
            userParameterDouble=[
                xsd.userParameterDoubleType(name="angle_increment_deg", value=float(inc))
            ],
            userParameterString=[
                xsd.userParameterStringType(name="trajectory_units", value=traj_units)
            ],
        ),
    )
