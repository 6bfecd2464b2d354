"""BIDS in and out for pc-bSSFP relaxometry: the BIDS-App ``mrphys relax bids``.

Input naming (BIDS has no suffix for phase-cycled bSSFP yet; this is the one mrphys reads)::

    sub-<label>/[ses-<label>/]anat/sub-<label>[_ses-<label>]_acq-pcbssfp[_run-<i>]_bSSFP.nii.gz
        4-D complex (X, Y, Z, N), or a pair with _part-mag_/_part-phase_ (phase in rad) or
        _part-real_/_part-imag_; sidecar .json with RepetitionTimeExcitation (s), EchoTime (s),
        FlipAngle (deg), PhaseIncrements (deg, one per volume), inherited from the dataset,
        subject and session levels as BIDS's inheritance principle says
    sub-<label>/[ses-<label>/]fmap/*_TB1map.nii.gz
        transmit field in percent of nominal (a ratio near 1 is detected and accepted); on
        another grid it is interpolated onto the series (trilinear). Several: the one whose
        sidecar's IntendedFor names the series.

Output, a BIDS derivatives dataset (one folder per subject, written whole or not at all)::

    OUT/dataset_description.json
    OUT/sub-<label>/[ses-<label>/]anat/<source entities>_T1map.nii.gz   (s)
                                     .../_T2map.nii.gz   (s)
                                     .../_B0map.nii.gz   (Hz, complex methods)
                                     .../_desc-<field>_<...>.nii.gz   (further RelaxMaps fields)
                                     .../_desc-fit_mask.nii.gz   (voxels fitted)
    OUT/sub-<label>/sub-<label>_report.html   (maps, histograms per tissue mask, fit quality)

Every map has a JSON sidecar: ``Units``, ``Description``, ``Method``, ``ModelVersion``, the
protocol, ``Sources`` and ``SoftwareVersion``. The maps written are the fields of
:class:`mrphys.relax.volume.RelaxMaps` that the fit fills, so new fields appear without a
change here (:data:`MAP_NAMES` names the known ones; the others are named from their field).

Subjects are processed one at a time by :func:`fit_subject` (one function per subject, so that
a batch runner can call it); :func:`run_participant` finds them, checks every input and output
before any work, and loops.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mrphys.errors import MrphysError
from mrphys.io import (
    MARKER,
    check_output,
    claim_output,
    load_json,
    load_nifti,
    output_dir,
    save_json,
    save_nifti_raw,
)
from mrphys.relax.inputs import (
    OFFSET_BLIND,
    PcBssfpVolume,
    SeriesProtocol,
    load_network,
    load_series,
)

log = logging.getLogger(__name__)

__all__ = [
    "BIDS_VERSION",
    "MAP_NAMES",
    "BidsOptions",
    "Series",
    "Subject",
    "SubjectResult",
    "check_series",
    "find_subjects",
    "fit_subject",
    "map_files",
    "parse_name",
    "run_participant",
    "write_dataset_description",
]

PathLike = str | os.PathLike

#: the BIDS version the derivatives follow (when the input dataset states none)
BIDS_VERSION = "1.10.0"
SUFFIX, ACQ = "bSSFP", "pcbssfp"
#: the entity order of BIDS file names (the ones that can occur here)
ENTITIES = ("sub", "ses", "task", "acq", "ce", "rec", "dir", "run", "echo", "flip", "part", "chunk")
#: known RelaxMaps fields -> (name part, scale to the file's unit, unit, description)
MAP_NAMES: dict[str, tuple[str, float, str, str]] = {
    "t1": ("T1map", 1.0, "s", "longitudinal relaxation time T1"),
    "t2": ("T2map", 1.0, "s", "transverse relaxation time T2"),
    "db0": ("B0map", 1.0, "Hz", "off-resonance frequency, theta = -2 pi dB0 TR (mrphys sign)"),
    "no_signal": ("desc-nosignal_mask", 1.0, "", "1 where every phase cycle is 0 (not fitted)"),
}
_NAME = re.compile(r"^(?P<stem>[^.]+)\.(?P<ext>nii\.gz|nii|json)$")


def parse_name(name: str) -> tuple[dict[str, str], str, str] | None:
    """``(entities, suffix, extension)`` of a BIDS file name, or None for another name.

    ``sub-01_ses-1_acq-pcbssfp_bSSFP.nii.gz`` -> ``({"sub": "01", "ses": "1", "acq":
    "pcbssfp"}, "bSSFP", "nii.gz")``.
    """
    m = _NAME.match(name)
    if not m:
        return None
    parts = m["stem"].split("_")
    ents: dict[str, str] = {}
    for p in parts[:-1]:
        k, sep, v = p.partition("-")
        if not sep or not v or not k:
            return None
        ents[k] = v
    if "-" in parts[-1]:
        return None
    return ents, parts[-1], m["ext"]


def _stem(ents: dict[str, str]) -> str:
    order = [k for k in ENTITIES if k in ents] + sorted(k for k in ents if k not in ENTITIES)
    return "_".join(f"{k}-{ents[k]}" for k in order)


@dataclass
class Series:
    """One pc-bSSFP series of a subject and the files it is fitted from.

    Attributes:
        entities: the series' BIDS entities (``sub``, ``ses``, ``acq``, ``run`` ...; no
            ``part``), which its derivatives keep.
        files: the 4-D complex file, or the magnitude / real part of a pair.
        other: the phase (rad) or imaginary part of a pair, else None.
        other_kind: ``"phase"``, ``"imag"`` or None.
        sidecar: the merged JSON sidecar (BIDS inheritance), or None.
        sidecar_name: the sidecar files read, for messages and provenance.
        b1: the TB1map of the series.
        folder: the series' folder relative to the subject (``anat`` or ``ses-1/anat``).
    """

    entities: dict[str, str]
    files: list[Path]
    other: Path | None
    other_kind: str | None
    sidecar: dict[str, Any] | None
    sidecar_name: str | None
    b1: Path
    folder: str
    tissue_masks: dict[str, Path] = field(default_factory=dict)
    brain_mask: Path | None = None

    @property
    def stem(self) -> str:
        return _stem(self.entities)


@dataclass
class Subject:
    """A subject's label (without ``sub-``) and its pc-bSSFP series."""

    label: str
    series: list[Series]


@dataclass
class BidsOptions:
    """The options of ``mrphys relax bids`` (those of ``relax fit``).

    Attributes:
        method: miracle, svnn, pinn, svnn-complex or pinn-complex.
        model: network checkpoint (None: the cached default model for each protocol).
        tr_ms, te_ms, flip_deg: protocol options (None: from the sidecar); given beside a
            sidecar value they must agree with it.
        b1_units: ``auto``, ``percent`` or ``ratio`` for the TB1map files.
        device: compute device; seed: the default model's seed; overwrite: replace a
            subject's derivatives written before.
        report: write the per-subject HTML report.
        sidecar: read the JSON sidecars (False: the protocol from the options alone).
    """

    method: str = "miracle"
    model: PathLike | None = None
    tr_ms: float | None = None
    te_ms: float | None = None
    flip_deg: float | None = None
    b1_units: str = "auto"
    device: str | torch.device = "cpu"
    seed: int = 0
    overwrite: bool = False
    report: bool = True
    sidecar: bool = True


@dataclass
class SeriesResult:
    """One fitted series: its maps' files, the protocol, counts and fit time."""

    stem: str
    files: list[str]
    protocol: dict[str, Any]
    voxels_fitted: int
    seconds: float


@dataclass
class SubjectResult:
    """What :func:`fit_subject` wrote for one subject."""

    label: str
    folder: Path
    series: list[SeriesResult]
    report: Path | None


def _sidecar_chain(root: Path, nifti: Path, ents: dict[str, str], suffix: str) -> list[Path]:
    """The JSON files that apply to ``nifti`` by BIDS inheritance, least specific first: in
    the folders from the dataset root down to the file's, with the same suffix and entities
    that are a subset of the file's."""
    rel = nifti.parent.relative_to(root)
    folders = [root] + [root.joinpath(*rel.parts[: i + 1]) for i in range(len(rel.parts))]
    chain: list[tuple[int, int, Path]] = []
    for depth, folder in enumerate(folders):
        for j in sorted(folder.glob("*.json")):
            parsed = parse_name(j.name)
            if not parsed or parsed[1] != suffix:
                continue
            if all(ents.get(k) == v for k, v in parsed[0].items()):
                chain.append((depth, len(parsed[0]), j))
    return [p for _, _, p in sorted(chain)]


def _merged_sidecar(root: Path, nifti: Path) -> tuple[dict[str, Any] | None, str | None]:
    parsed = parse_name(nifti.name)
    assert parsed is not None
    chain = _sidecar_chain(root, nifti, parsed[0], parsed[1])
    if not chain:
        return None, None
    merged: dict[str, Any] = {}
    for j in chain:
        obj = load_json(j)
        if not isinstance(obj, dict):
            raise MrphysError(f"sidecar {j} must hold a JSON object; got {type(obj).__name__}.")
        merged.update(obj)
    return merged, ", ".join(str(j.relative_to(root)) for j in chain)


def _niftis(folder: Path) -> list[tuple[Path, dict[str, str], str]]:
    out = []
    if folder.is_dir():
        for p in sorted(folder.iterdir()):
            parsed = parse_name(p.name)
            if parsed and parsed[2] != "json":
                out.append((p, parsed[0], parsed[1]))
    return out


def _pick_b1(root: Path, fmap: Path, series: list[Path], sub: str) -> Path:
    """The TB1map for a series: the only one in ``fmap``, or the one whose IntendedFor names
    the series."""
    maps = [p for p, _, suffix in _niftis(fmap) if suffix == "TB1map"]
    if not maps:
        raise MrphysError(
            f"sub-{sub} has no B1 map: expected {fmap.relative_to(root)}/*_TB1map.nii.gz (the "
            "transmit field, which MIRACLE and the networks need)."
        )
    if len(maps) == 1:
        return maps[0]
    # IntendedFor: paths from the subject folder, or BIDS URIs bids::<path from the root>
    rels = [p.relative_to(root).as_posix() for p in series]
    names = {r.split("/", 1)[1] for r in rels} | {f"bids::{r}" for r in rels}
    chosen = []
    for p in maps:
        side, _ = _merged_sidecar(root, p)
        intended = (side or {}).get("IntendedFor", [])
        intended = [intended] if isinstance(intended, str) else intended
        if any(str(i) in names for i in intended):
            chosen.append(p)
    if len(chosen) != 1:
        listed = ", ".join(p.name for p in maps)
        raise MrphysError(
            f"sub-{sub} has {len(maps)} B1 maps ({listed}) and IntendedFor names {len(chosen)} "
            f"of them for {rels[0]}; list the series in the IntendedFor of exactly one."
        )
    return chosen[0]


def _masks(deriv: Path | None, sub: str, ses: str | None) -> tuple[dict[str, Path], Path | None]:
    """Tissue masks (``*_label-<tissue>_mask``) and the brain mask (``*_desc-brain_mask``) of
    a subject in a derivatives folder."""
    if deriv is None:
        return {}, None
    folder = deriv / f"sub-{sub}" / (f"ses-{ses}" if ses else "") / "anat"
    tissues: dict[str, Path] = {}
    brain = None
    for p, ents, suffix in _niftis(folder):
        if suffix != "mask" or ents.get("sub") != sub or ents.get("ses") != ses:
            continue
        if "label" in ents:
            tissues[ents["label"]] = p
        elif ents.get("desc") == "brain":
            brain = p
    return tissues, brain


def find_subjects(
    bids_dir: PathLike,
    labels: list[str] | None = None,
    tissue_masks: PathLike | None = None,
) -> list[Subject]:
    """Find every subject's pc-bSSFP series, their sidecars and B1 maps in a BIDS dataset.

    Args:
        bids_dir: the dataset's root folder.
        labels: participant labels (with or without ``sub-``); None: every subject.
        tissue_masks: a derivatives folder with ``sub-<label>/[ses-<label>/]anat/
            *_label-<tissue>_mask.nii.gz`` (histograms per tissue in the report) and
            ``*_desc-brain_mask.nii.gz`` (the voxels to fit).
    Raises:
        MrphysError: a missing folder, subject, series part or B1 map (one sentence naming it).
    """
    root = Path(bids_dir)
    if not root.is_dir():
        raise MrphysError(f"the BIDS dataset {root} is not a folder.")
    if not (root / "dataset_description.json").is_file():
        log.warning("%s has no dataset_description.json; reading it as BIDS anyway", root)
    deriv = None if tissue_masks is None else Path(tissue_masks)
    if deriv is not None and not deriv.is_dir():
        raise MrphysError(f"tissue_masks {deriv} is not a folder.")
    present = sorted(p.name[4:] for p in root.glob("sub-*") if p.is_dir())
    if labels:
        wanted = [x.removeprefix("sub-") for x in labels]
        missing = [x for x in wanted if x not in present]
        if missing:
            raise MrphysError(
                f"participant_label {', '.join(missing)} is not in {root} (it has "
                f"{', '.join(present) or 'no subject'})."
            )
        present = list(dict.fromkeys(wanted))
    if not present:
        raise MrphysError(f"the BIDS dataset {root} has no sub-* folder.")
    subjects = []
    for sub in present:
        sdir = root / f"sub-{sub}"
        sessions = sorted(p.name[4:] for p in sdir.glob("ses-*") if p.is_dir()) or [None]
        series: list[Series] = []
        for ses in sessions:
            base = sdir / f"ses-{ses}" if ses else sdir
            series += _find_series(root, base, sub, ses, deriv)
        if not series:
            raise MrphysError(
                f"sub-{sub} has no pc-bSSFP series: expected sub-{sub}/[ses-*/]anat/"
                f"sub-{sub}[_ses-*]_acq-{ACQ}_{SUFFIX}.nii.gz."
            )
        subjects.append(Subject(sub, series))
    return subjects


def _find_series(
    root: Path, base: Path, sub: str, ses: str | None, deriv: Path | None
) -> list[Series]:
    groups: dict[str, dict[str, Path]] = {}
    for p, ents, suffix in _niftis(base / "anat"):
        if suffix != SUFFIX or ents.get("acq") != ACQ:
            continue
        part = ents.pop("part", "complex")
        groups.setdefault(_stem(ents), {})[part] = p
    out = []
    for stem, parts in sorted(groups.items()):
        ents = parse_name(stem + "_x.nii")[0]  # type: ignore[index]
        if "complex" in parts:
            files, other, kind = [parts["complex"]], None, None
        elif {"mag", "phase"} <= set(parts):
            files, other, kind = [parts["mag"]], parts["phase"], "phase"
        elif {"real", "imag"} <= set(parts):
            files, other, kind = [parts["real"]], parts["imag"], "imag"
        else:
            have = ", ".join(f"part-{k}" for k in sorted(parts))
            raise MrphysError(
                f"{stem}_{SUFFIX} has only {have}; a pair needs part-mag with part-phase or "
                "part-real with part-imag (or give one complex file without part)."
            )
        side, side_name = _merged_sidecar(root, files[0])
        if side is None:
            log.warning("%s has no JSON sidecar; the protocol comes from the options", stem)
        rel = files[0].relative_to(root)
        folder = str(rel.parent.relative_to(f"sub-{sub}"))
        b1 = _pick_b1(root, base / "fmap", [*files, *([other] if other else [])], sub)
        tissues, brain = _masks(deriv, sub, ses)
        out.append(Series(ents, files, other, kind, side, side_name, b1, folder, tissues, brain))
    return out


def _describe_field(name: str) -> str:
    """The description of a RelaxMaps field from its docstring: the text after ``name:`` (or
    after ``a, name: ``, fields documented together)."""
    from mrphys.relax.volume import RelaxMaps

    doc = RelaxMaps.__doc__ or ""
    entry = re.compile(r"^\s+((?:\w+, )*\w+): (.+?)(?=^\s+(?:\w+, )*\w+: |\Z)", re.M | re.S)
    for m in entry.finditer(doc):
        if name in m[1].split(", "):
            return " ".join(m[2].split())
    return name


def map_files() -> dict[str, tuple[str, float, str, str]]:
    """Every :class:`~mrphys.relax.volume.RelaxMaps` field -> ``(name part, scale, unit,
    description)``: :data:`MAP_NAMES` for the known ones; a new field ``x`` becomes
    ``desc-x_mask`` (bool, on writing), ``desc-<rest>_T1map``/``T2map`` (``t1_<rest>``,
    ``t2_<rest>``, in s) or ``desc-x_map``, its description and unit from the field's
    docstring (the unit where it says ``in s``, ``in Hz`` ..., ``1`` where it says
    dimensionless)."""
    from mrphys.relax.volume import RelaxMaps

    out = {}
    for f in dataclasses.fields(RelaxMaps):
        if f.name in MAP_NAMES:
            out[f.name] = MAP_NAMES[f.name]
            continue
        desc = _describe_field(f.name)
        um = re.search(r"\bin (s|ms|Hz|rad|%)\b", desc)
        unit = um[1] if um else ("1" if "dimensionless" in desc else "")
        scale = 1.0
        label = re.sub(r"[^A-Za-z0-9]", "", f.name)
        m = re.fullmatch(r"(t1|t2)_?(.+)", f.name)
        if m:
            part = f"desc-{re.sub(r'[^A-Za-z0-9]', '', m[2])}_{m[1].upper()}map"
            if unit == "ms":
                scale, unit = 1e-3, "s"
        else:
            part = f"desc-{label}_map"
        out[f.name] = (part, scale, unit, desc)
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _model_info(method: str, model_path: Path | None) -> dict[str, Any]:
    import mrphys

    if model_path is None:
        return {"ModelVersion": f"MIRACLE closed form, mrphys {mrphys.__version__}"}
    return {"ModelVersion": f"sha256:{_sha256(model_path)[:16]}", "Model": str(model_path)}


def _load(series: Series, opts: BidsOptions) -> tuple[PcBssfpVolume, SeriesProtocol]:
    kw: dict[str, Any] = {"input_phase": series.other} if series.other_kind == "phase" else {}
    if series.other_kind == "imag":
        kw = {"input_imag": series.other}
    mask = series.brain_mask if series.brain_mask is not None else "foreground"
    return load_series(series.files, series.b1, **kw, mask=mask,
                       tr_ms=opts.tr_ms, te_ms=opts.te_ms, flip_deg=opts.flip_deg,
                       sidecar=series.sidecar if opts.sidecar else None,
                       sidecar_name=series.sidecar_name,
                       read_sidecars=False, b1_units=opts.b1_units, resample_b1=True,
                       offset_ok=opts.method in OFFSET_BLIND)  # fmt: skip


def _write_maps(
    folder: Path,
    series: Series,
    maps: Any,
    affine: np.ndarray,
    common: dict[str, Any],
    names: dict[str, tuple[str, float, str, str]],
) -> tuple[list[str], dict[str, tuple[np.ndarray, str, str]]]:
    """Write every filled field of ``maps`` (a RelaxMaps) as NIfTI + JSON sidecar; returns the
    files (relative to the subject) and the arrays as written, for the report."""
    written: list[str] = []
    shown: dict[str, tuple[np.ndarray, str, str]] = {}
    for f in dataclasses.fields(maps):
        value = getattr(maps, f.name)
        if not isinstance(value, torch.Tensor):
            continue
        part, scale, unit, desc = names[f.name]
        arr = value.detach().cpu().numpy()
        if arr.dtype == np.bool_:
            part = part if part.endswith("_mask") else part.rsplit("_", 1)[0] + "_mask"
            arr, unit = arr.astype(np.uint8), ""
        elif scale != 1.0:
            arr = arr * scale
        name = f"{series.stem}_{part}"
        save_nifti_raw(folder / f"{name}.nii.gz", arr, affine)
        save_json(folder / f"{name}.json", {"Units": unit, "Description": desc, **common})
        written.append(f"{series.folder}/{name}.nii.gz")
        shown[f.name] = (arr, unit, desc)
    return written, shown


def fit_subject(
    subject: Subject,
    out_dir: PathLike,
    opts: BidsOptions,
    *,
    bids_dir: PathLike | None = None,
    networks: dict[str, Any] | None = None,
) -> SubjectResult:
    """Fit every series of one subject and write its derivatives folder ``OUT/sub-<label>``
    (claimed, written in a temporary folder, renamed into place when complete).

    Args:
        subject: from :func:`find_subjects`.
        out_dir: the derivatives dataset's root.
        opts: method, model and protocol options.
        bids_dir: the input dataset (for the sources named in the sidecars; never replaced).
        networks: a cache of loaded networks by protocol key, shared between subjects.
    Returns:
        the files written per series and the report's path.
    """
    import mrphys
    from mrphys.relax.report import SeriesReport, write_report
    from mrphys.relax.volume import fit_volume

    networks = {} if networks is None else networks
    root = Path(bids_dir) if bids_dir is not None else None
    final = Path(out_dir) / f"sub-{subject.label}"
    results: list[SeriesResult] = []
    reports: list[SeriesReport] = []
    names = map_files()
    with claim_output(final, inputs=[root] if root else ()), \
            output_dir(final, overwrite=opts.overwrite) as tmp:  # fmt: skip
        for s in subject.series:
            vol, sp = _load(s, opts)
            protocol = sp.protocol
            key = protocol.key()
            if key not in networks:
                networks[key] = load_network(opts.method, protocol, opts.model,
                                             device=opts.device, seed=opts.seed)  # fmt: skip
            net, model_path = networks[key]
            sig, b1, mask = vol.tensors(opts.device)
            t0 = time.perf_counter()
            maps = fit_volume(sig, b1, opts.method, protocol, net, mask)
            seconds = time.perf_counter() - t0
            folder = tmp / s.folder
            folder.mkdir(parents=True, exist_ok=True)
            sources = [
                f"bids:raw:{p.relative_to(root).as_posix()}" if root else str(p)
                for p in [*s.files, *([s.other] if s.other else []), s.b1]
            ]
            common = {"Method": opts.method, **_model_info(opts.method, model_path),
                      "Protocol": sp.as_dict(), "Sources": sources,
                      "SoftwareName": "mrphys", "SoftwareVersion": mrphys.__version__}  # fmt: skip
            written, shown = _write_maps(folder, s, maps, vol.affine, common, names)
            fit_name = f"{s.stem}_desc-fit_mask"
            save_nifti_raw(folder / f"{fit_name}.nii.gz", vol.mask.astype(np.uint8), vol.affine)
            how = "the brain mask" if s.brain_mask else "mean magnitude above Otsu's threshold"
            save_json(folder / f"{fit_name}.json",
                      {"Description": f"voxels fitted ({how})", **common})  # fmt: skip
            written.append(f"{s.folder}/{fit_name}.nii.gz")
            n_fit = int(vol.mask.sum()) - (
                int(maps.no_signal.sum()) if maps.no_signal is not None else 0
            )
            results.append(SeriesResult(s.stem, written, sp.as_dict(), n_fit, seconds))
            tissues = {"fitted": vol.mask}
            for label, path in s.tissue_masks.items():
                arr, _ = load_nifti(path)
                if arr.shape[:3] != vol.mask.shape:
                    raise MrphysError(
                        f"tissue mask {path} has shape {arr.shape} but the series has "
                        f"{vol.mask.shape} voxels."
                    )
                tissues[label] = np.asarray(arr).reshape(vol.mask.shape) != 0
            reports.append(SeriesReport(s.stem, shown, tissues, {
                "method": opts.method, "voxels fitted": n_fit,
                "voxels without signal": int(vol.mask.sum()) - n_fit,
                "fit time (s)": round(seconds, 3), **{
                    f"protocol {k}": v for k, v in sp.as_dict().items() if k != "source"},
                "model": common["ModelVersion"]}))  # fmt: skip
        report = None
        if opts.report:
            report_name = f"sub-{subject.label}_report.html"
            write_report(tmp / report_name, f"sub-{subject.label}", reports)
            report = final / report_name
    return SubjectResult(subject.label, final, results, report)


def write_dataset_description(out_dir: PathLike, bids_dir: PathLike | None = None) -> Path:
    """Write (or update) ``dataset_description.json`` of the derivatives dataset: Name,
    BIDSVersion (the input dataset's, else :data:`BIDS_VERSION`), DatasetType ``derivative``,
    GeneratedBy (mrphys and its version), SourceDatasets. One written by another program is
    refused."""
    import mrphys

    path = Path(out_dir) / "dataset_description.json"
    if path.is_file():
        old = load_json(path)
        gen = old.get("GeneratedBy", []) if isinstance(old, dict) else []
        if not any(isinstance(g, dict) and g.get("Name") == "mrphys" for g in gen):
            raise MrphysError(
                f"the derivatives folder {out_dir} holds the dataset_description.json of another "
                "dataset; choose a new folder for the mrphys derivatives."
            )
    version = BIDS_VERSION
    if bids_dir is not None and (Path(bids_dir) / "dataset_description.json").is_file():
        src = load_json(Path(bids_dir) / "dataset_description.json")
        if isinstance(src, dict) and isinstance(src.get("BIDSVersion"), str):
            version = src["BIDSVersion"]
    desc = {
        "Name": "mrphys relaxometry: T1, T2 (and off-resonance) maps from phase-cycled bSSFP",
        "BIDSVersion": version,
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "mrphys", "Version": mrphys.__version__,
                         "Description": "mrphys relax bids (MIRACLE, SVNN, PINN fits)"}],
    }  # fmt: skip
    if bids_dir is not None:
        desc["SourceDatasets"] = [{"URL": Path(bids_dir).resolve().as_uri()}]
    save_json(path, desc)
    return path


def run_participant(
    bids_dir: PathLike,
    out_dir: PathLike,
    opts: BidsOptions,
    labels: list[str] | None = None,
    tissue_masks: PathLike | None = None,
) -> list[SubjectResult]:
    """The participant level of the BIDS-App: find the subjects (:func:`find_subjects`),
    check every output before any work, write ``dataset_description.json`` and fit each
    subject (:func:`fit_subject`), one after another.

    A subject's derivatives that exist are replaced only with ``opts.overwrite`` (and only
    when mrphys wrote them).
    """
    src, out = Path(bids_dir).resolve(), Path(out_dir)
    inside = out.resolve().is_relative_to(src)
    if inside and (
        out.resolve() == src or out.resolve().relative_to(src).parts[0] != "derivatives"
    ):
        raise MrphysError(
            f"the derivatives folder {out_dir} is inside the raw dataset {bids_dir}; use "
            f"{Path(bids_dir) / 'derivatives' / 'mrphys'} or a folder outside it."
        )
    if out.exists() and not out.is_dir():
        raise MrphysError(f"the derivatives folder {out_dir} exists and is not a folder.")
    if out.is_dir() and (out / MARKER).exists():
        raise MrphysError(
            f"the derivatives folder {out_dir} is an mrphys output folder, not a dataset."
        )
    subjects = find_subjects(bids_dir, labels, tissue_masks)
    networks: dict[str, Any] = {}
    for s in subjects:
        check_output(out / f"sub-{s.label}", opts.overwrite, inputs=[bids_dir])
        for series in s.series:
            protocol = check_series(series, opts).protocol
            if opts.model is not None and protocol.key() not in networks:
                # a given checkpoint is checked against every protocol before any work
                kw = {"device": opts.device, "seed": opts.seed}
                networks[protocol.key()] = load_network(opts.method, protocol, opts.model, **kw)
    if (out / "dataset_description.json").is_file():
        write_dataset_description(out, bids_dir)  # refuses another program's dataset
    results = []
    for s in subjects:
        log.info("sub-%s: %d series", s.label, len(s.series))
        results.append(fit_subject(s, out, opts, bids_dir=bids_dir, networks=networks))
        if len(results) == 1:  # the folder exists now (made by the first subject's claim)
            write_dataset_description(out, bids_dir)
    return results


def check_series(series: Series, opts: BidsOptions) -> SeriesProtocol:
    """The protocol of a series from its sidecar, the options and the NIfTI header alone (no
    voxels read): every series is checked before any work, so that a protocol mistake stops
    the run before it writes anything."""
    import nibabel as nib

    from mrphys.relax.inputs import resolve_protocol

    try:
        shape = nib.load(str(series.files[0])).shape
    except Exception as e:  # nibabel raises many types for broken files
        raise MrphysError(f"{series.files[0]} could not be read as NIfTI ({e}).") from None
    if len(shape) != 4:
        raise MrphysError(
            f"{series.files[0]} must be a 4-D NIfTI with phase cycles on the 4th axis; got shape "
            f"{shape}."
        )
    return resolve_protocol(shape[3], tr_ms=opts.tr_ms, te_ms=opts.te_ms, flip_deg=opts.flip_deg,
                            sidecar=series.sidecar if opts.sidecar else None,
                            where=series.sidecar_name or "the sidecar",
                            offset_ok=opts.method in OFFSET_BLIND)  # fmt: skip
