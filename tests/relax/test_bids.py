"""BIDS in and out: a held-out BIDS dataset through `mrphys relax bids`, sidecar protocols, B1
in percent, mag/phase pairs, missing files and the derivatives layout.

The datasets here are made by this file alone (numpy, nibabel, json; the signal is METHODS 3's
closed-form bSSFP steady state written out in numpy), never by mrphys writers.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from mrphys.errors import MrphysError
from mrphys.relax.bids import find_subjects, map_files, parse_name
from mrphys.relax.inputs import (
    load_pc_bssfp,
    load_series,
    resolve_protocol,
    sidecar_protocol,
)

BIDS = ["relax", "bids"]
#: (T1 s, T2 s) of the phantom's tissues (3 T, approximate)
TISSUES = {"wm": (0.85, 0.060), "gm": (1.35, 0.085), "deep": (1.15, 0.070), "csf": (3.5, 1.5)}


def _increments(n: int) -> np.ndarray:
    return 180.0 * (2 * np.arange(1, n + 1) - 1) / n


def _bssfp(t1, t2, b1, theta, *, tr, te, flip_deg, inc_deg):
    """Complex bSSFP steady state at TE per RF phase increment (METHODS 3), numpy, (..., N)."""
    e1, e2 = np.exp(-tr / t1)[..., None], np.exp(-tr / t2)[..., None]
    a = (b1 * math.radians(flip_deg))[..., None]
    c = e2 * (e1 - 1) * (1 + np.cos(a))
    d = (1 - e1 * np.cos(a)) - (e1 - np.cos(a)) * e2**2
    v = theta[..., None] - np.radians(inc_deg)
    s = (1 - e1) * np.sin(a) * (1 - e2 * np.exp(-1j * v)) / (c * np.cos(v) + d)
    return s * np.exp(-te / t2[..., None]) * np.exp(1j * theta[..., None] * te / tr)


def _phantom(n: int, nz: int, seed: int):
    """A brain-like slab: WM ellipse, GM ring, deep-GM blobs, ventricles; T1/T2 jittered."""
    rng = np.random.default_rng(seed)
    x, y = np.meshgrid(np.linspace(-1, 1, n), np.linspace(-1, 1, n), indexing="ij")
    r = (x / 0.85) ** 2 + (y / 0.95) ** 2
    label = np.zeros((n, n), int)
    label[r < 1] = 2  # GM
    label[r < 0.7] = 1  # WM
    label[((x - 0.3) ** 2 + y**2) < 0.03] = 3
    label[((x + 0.3) ** 2 + y**2) < 0.03] = 3
    label[(x / 0.12) ** 2 + (y / 0.35) ** 2 < 1] = 4  # ventricles
    label = np.repeat(label[:, :, None], nz, 2)
    t1, t2 = np.ones(label.shape), np.full(label.shape, 0.1)
    for k, name in enumerate(("wm", "gm", "deep", "csf"), start=1):
        sel = label == k
        t1[sel] = TISSUES[name][0] * (1 + 0.05 * rng.standard_normal(sel.sum()))
        t2[sel] = TISSUES[name][1] * (1 + 0.05 * rng.standard_normal(sel.sum()))
    z = np.linspace(-1, 1, nz)[None, None, :] if nz > 1 else 0.0
    b1 = (1.15 - 0.2 * (x**2 + y**2))[:, :, None] - 0.05 * z
    db0 = (40 * x - 25 * y + 15 * (x**2 - y**2))[:, :, None] + 10 * z
    return label, t1, t2, np.broadcast_to(b1, label.shape), np.broadcast_to(db0, label.shape)


def _signals(label, t1, t2, b1, db0, *, tr, te, flip, inc, snr, seed):
    theta = -2 * np.pi * db0 * tr
    s = _bssfp(t1, t2, b1, theta, tr=tr, te=te, flip_deg=flip, inc_deg=inc)
    x = np.linspace(-1, 1, label.shape[0])[:, None, None, None]
    s = s * np.exp(1j * (0.7 * x + 0.3)) * 1000.0 * (label > 0)[..., None]  # rx phase, scale
    rng = np.random.default_rng(seed)
    sigma = 1000.0 * 0.074 / snr / np.sqrt(2)
    s = s + sigma * (rng.standard_normal(s.shape) + 1j * rng.standard_normal(s.shape))
    return s.astype(np.complex64)


def _nii(path: Path, arr, aff) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(arr), aff), str(path))
    return path


def _json(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


AFF = np.diag([1.5, 1.5, 3.0, 1.0])


def _dataset(
    root: Path, n: int = 40, nz: int = 3, cycles: int = 12, snr: float = 100.0, offset: float = 0
):
    """Two subjects: sub-01 (sidecar beside the file, TB1map in percent on the same grid) and
    sub-02 in ses-1 (another protocol, its sidecar inherited from the dataset root, TB1map as a
    ratio on a grid of twice the voxel size). Returns the truth per subject."""
    _json(root / "dataset_description.json", {"Name": "held-out", "BIDSVersion": "1.9.0"})
    truth = {}
    protocols = {"01": (4.8e-3, 2.4e-3, 15.0), "02": (6.0e-3, 3.0e-3, 25.0)}
    for k, (sub, (tr, te, flip)) in enumerate(protocols.items()):
        label, t1, t2, b1, db0 = _phantom(n, nz, seed=k)
        inc = _increments(cycles) + offset
        sig = _signals(label, t1, t2, b1, db0, tr=tr, te=te, flip=flip, inc=inc, snr=snr,
                       seed=10 + k)  # fmt: skip
        side = {"RepetitionTimeExcitation": tr, "EchoTime": te, "FlipAngle": flip,
                "PhaseIncrements": inc.tolist(), "MagneticFieldStrength": 3}  # fmt: skip
        if sub == "01":
            base = root / "sub-01"
            _nii(base / "anat" / "sub-01_acq-pcbssfp_bSSFP.nii.gz", sig, AFF)
            _json(base / "anat" / "sub-01_acq-pcbssfp_bSSFP.json", side)
            _nii(base / "fmap" / "sub-01_TB1map.nii.gz", (100 * b1).astype(np.float32), AFF)
        else:
            base = root / "sub-02" / "ses-1"
            _nii(base / "anat" / "sub-02_ses-1_acq-pcbssfp_bSSFP.nii.gz", sig, AFF)
            _json(root / "acq-pcbssfp_bSSFP.json", side)  # inherited by every subject
            # ...and sub-01's own sidecar overrides it (closer to the file)
            coarse = AFF.copy()
            coarse[:2, :2] *= 2  # every second voxel in x and y
            _nii(base / "fmap" / "sub-02_ses-1_TB1map.nii.gz", b1[::2, ::2].astype(np.float32),
                 coarse)  # fmt: skip
        truth[sub] = {"label": label, "t1": t1, "t2": t2, "b1": b1, "db0": db0}
    return truth


def _tissue_masks(root: Path, truth) -> Path:
    for sub, t in truth.items():
        folder = root / f"sub-{sub}" / ("ses-1" if sub == "02" else "") / "anat"
        ses = "_ses-1" if sub == "02" else ""
        for name, k in (("WM", 1), ("GM", 2)):
            _nii(folder / f"sub-{sub}{ses}_label-{name}_mask.nii.gz",
                 (t["label"] == k).astype(np.uint8), AFF)  # fmt: skip
    return root


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    root = tmp_path_factory.mktemp("bids") / "raw"
    return root, _dataset(root)


def _img(path: Path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj)


def test_held_out_dataset_gives_maps_within_2_percent(held_out, tmp_path, cli) -> None:
    root, truth = held_out
    masks = _tissue_masks(tmp_path / "masks", truth)
    out = tmp_path / "deriv"
    r = cli.ok(*BIDS, root, out, "participant", "--method", "miracle", "--tissue-masks", masks)
    assert "sub-01" in r.out and "sub-02" in r.out
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative" and desc["BIDSVersion"] == "1.9.0"
    assert desc["GeneratedBy"][0]["Name"] == "mrphys" and desc["Name"]
    for sub, t in truth.items():
        anat = out / f"sub-{sub}" / ("ses-1/anat" if sub == "02" else "anat")
        stem = f"sub-{sub}{'_ses-1' if sub == '02' else ''}_acq-pcbssfp"
        tissue = (t["label"] > 0) & (t["label"] < 4)
        for key, suffix in (("t1", "T1map"), ("t2", "T2map")):
            est = _img(anat / f"{stem}_{suffix}.nii.gz")
            assert np.allclose(nib.load(str(anat / f"{stem}_{suffix}.nii.gz")).affine, AFF)
            err = np.median(np.abs(est[tissue] / t[key][tissue] - 1))
            assert err < 0.02, f"sub-{sub} {suffix}: median error {err:.2%}"
            side = json.loads((anat / f"{stem}_{suffix}.json").read_text())
            assert side["Units"] == "s" and side["Method"] == "miracle"
            assert side["SoftwareVersion"] and side["ModelVersion"]
            assert side["Protocol"]["source"]["tr_ms"] == "sidecar"
        assert not (anat / f"{stem}_B0map.nii.gz").exists()  # magnitude method: no B0
        fitted = _img(anat / f"{stem}_desc-fit_mask.nii.gz") > 0
        assert fitted[tissue].mean() > 0.99 and fitted[t["label"] == 0].mean() < 0.05
        html = (out / f"sub-{sub}" / f"sub-{sub}_report.html").read_text()
        assert html.count("data:image/png;base64,") == 2 and "WM" in html and "GM" in html
    side2 = json.loads((out / "sub-02/ses-1/anat/sub-02_ses-1_acq-pcbssfp_T1map.json").read_text())
    assert side2["Protocol"]["tr_ms"] == pytest.approx(6.0)
    assert side2["Protocol"]["flip_deg"] == pytest.approx(25.0)
    # the same dataset again: complete subjects need --overwrite; one subject can be redone
    cli.fails(*BIDS, root, out, "participant", "--method", "miracle", out=out, says="overwrite")
    before = _img(out / "sub-01/anat/sub-01_acq-pcbssfp_T1map.nii.gz")
    argv = ["--participant-label", "sub-01", "--overwrite", "--no-report"]
    cli.ok(*BIDS, root, out, "participant", "--method", "miracle", *argv)
    assert np.array_equal(_img(out / "sub-01/anat/sub-01_acq-pcbssfp_T1map.nii.gz"), before)
    assert not (out / "sub-01" / "sub-01_report.html").exists()
    assert (out / "sub-02" / "sub-02_report.html").exists()


def test_derivatives_layout_and_complex_method_writes_b0(tmp_path, cli, monkeypatch) -> None:
    """Every RelaxMaps field the fit fills is written with a sidecar; a complex method gives a
    B0map in Hz (a checkpoint is trained here, tiny, so nothing is cached)."""
    root = tmp_path / "raw"
    _dataset(root, n=12, nz=1, cycles=4)
    ck = tmp_path / "c.pt"
    cli.ok("relax", "train", "--method", "svnn-complex", "--phase-cycles", "4", "--samples",
           "2000", "--max-epochs", "1", "--threads", "1", "--out", ck)  # fmt: skip
    out = tmp_path / "d"
    cli.ok(*BIDS, root, out, "participant", "--participant-label", "01", "--method",
           "svnn-complex", "--model", ck, "--no-report")  # fmt: skip
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    stem = "sub-01/anat/sub-01_acq-pcbssfp"
    expect = {f"{stem}_{m}.{e}" for m in ("T1map", "T2map", "B0map", "desc-fit_mask")
              for e in ("nii.gz", "json")}  # fmt: skip
    assert expect <= set(files) and "dataset_description.json" in files
    assert not any("sub-02" in f or f.endswith(".html") for f in files)
    assert json.loads((out / f"{stem}_B0map.json").read_text())["Units"] == "Hz"
    assert json.loads((out / f"{stem}_T1map.json").read_text())["ModelVersion"].startswith(
        "sha256:"
    )
    # sub-02 has another TR: the checkpoint is refused before anything is written
    cli.fails(*BIDS, root, out, "participant", "--participant-label", "02", "--method",
              "svnn-complex", "--model", ck, out=out, says="trained for TR 4.8 ms")  # fmt: skip
    # every field of RelaxMaps has a file name and a unit
    names = map_files()
    assert names["t1"][0] == "T1map" and names["db0"][2] == "Hz"


def test_relaxmaps_fields_added_later_get_names_from_their_docs(monkeypatch) -> None:
    import dataclasses

    import torch

    from mrphys.relax import volume

    @dataclasses.dataclass
    class Maps(volume.RelaxMaps):
        """Maps.

        Attributes:
            residual: relative misfit of the re-simulated signal ``||S - S_fit|| / ||S||``
                (dimensionless).
            quality: bool, the fit converged.
            t1_sd, t2_sd: standard deviation (uncertainty) of T1 and T2 in s: Cramer-Rao
                bounds at the estimated noise level.
        """

        residual: torch.Tensor | None = None
        quality: torch.Tensor | None = None
        t1_sd: torch.Tensor | None = None
        t2_sd: torch.Tensor | None = None

    monkeypatch.setattr(volume, "RelaxMaps", Maps)
    names = map_files()
    assert names["t1_sd"][:3] == ("desc-sd_T1map", 1.0, "s")
    assert names["t2_sd"][:3] == ("desc-sd_T2map", 1.0, "s") and "Cramer" in names["t2_sd"][3]
    assert names["residual"][:3] == ("desc-residual_map", 1.0, "1")
    assert "misfit" in names["residual"][3]
    assert names["quality"][0] == "desc-quality_map"  # bool data is written as a _mask


def test_mag_phase_pair_equals_the_complex_series(tmp_path) -> None:
    root = tmp_path / "raw"
    _dataset(root, n=12, nz=1, cycles=6)
    anat = root / "sub-01" / "anat"
    img = nib.load(str(anat / "sub-01_acq-pcbssfp_bSSFP.nii.gz"))
    data = np.asarray(img.dataobj)
    ref = find_subjects(root, ["01"])[0].series[0]
    kw = {"b1_units": "auto", "read_sidecars": False}
    a, pa = load_series(ref.files, ref.b1, sidecar=ref.sidecar, **kw)
    for name in ("sub-01_acq-pcbssfp_bSSFP.nii.gz", "sub-01_acq-pcbssfp_bSSFP.json"):
        (anat / name).rename(tmp_path / name)
    _nii(anat / "sub-01_acq-pcbssfp_part-mag_bSSFP.nii.gz", np.abs(data), img.affine)
    _nii(anat / "sub-01_acq-pcbssfp_part-phase_bSSFP.nii.gz", np.angle(data), img.affine)
    _json(anat / "sub-01_acq-pcbssfp_bSSFP.json", json.loads((tmp_path / name).read_text()))
    s = find_subjects(root, ["sub-01"])[0].series[0]
    assert s.other_kind == "phase" and s.stem == "sub-01_acq-pcbssfp" == ref.stem
    assert s.sidecar == ref.sidecar  # inherited by both parts from the part-less sidecar
    b, pb = load_series(s.files, s.b1, input_phase=s.other, sidecar=s.sidecar, **kw)
    assert np.allclose(a.signals, b.signals, atol=1e-3 * np.abs(data).max())
    assert pa.protocol == pb.protocol
    # a phase image on the scanner's -4096..4095 scale is read as -pi..pi
    scaled = (np.angle(data) * 4096 / np.pi).astype(np.float32)
    _nii(anat / "sub-01_acq-pcbssfp_part-phase_bSSFP.nii.gz", scaled, img.affine)
    c, _ = load_series(s.files, s.b1, input_phase=s.other, sidecar=s.sidecar, **kw)
    assert np.allclose(c.signals, b.signals, atol=1e-3 * np.abs(data).max())
    _nii(
        anat / "sub-01_acq-pcbssfp_part-phase_bSSFP.nii.gz", np.degrees(np.angle(data)), img.affine
    )
    with pytest.raises(MrphysError, match="input_phase must hold the phase in rad"):
        load_series(s.files, s.b1, input_phase=s.other, sidecar=s.sidecar, **kw)
    (anat / "sub-01_acq-pcbssfp_part-phase_bSSFP.nii.gz").unlink()
    with pytest.raises(MrphysError, match="has only part-mag; a pair needs part-mag with"):
        find_subjects(root, ["01"])


def test_tb1map_in_percent_or_as_ratio(tmp_path) -> None:
    sig = np.ones((4, 4, 2, 3), np.complex64)
    b1 = np.linspace(0.8, 1.2, 32, dtype=np.float32).reshape(4, 4, 2)
    inp = _nii(tmp_path / "s.nii", sig, np.eye(4))
    pct, ratio = (
        _nii(tmp_path / "p.nii", 100 * b1, np.eye(4)),
        _nii(tmp_path / "r.nii", b1, np.eye(4)),
    )
    for path, units in ((pct, "auto"), (ratio, "auto"), (pct, "percent"), (ratio, "ratio")):
        assert np.allclose(load_pc_bssfp(inp, path, b1_units=units).b1, b1, rtol=1e-6)
    with pytest.raises(MrphysError, match="b1 must be a relative flip-angle scale"):
        load_pc_bssfp(inp, pct, b1_units="ratio")
    with pytest.raises(MrphysError, match="b1 must be a relative"):
        load_pc_bssfp(inp, _nii(tmp_path / "deg.nii", 15 * b1, np.eye(4)), b1_units="auto")
    with pytest.raises(MrphysError, match="b1_units must be one of"):
        load_pc_bssfp(inp, ratio, b1_units="fraction")


def test_b1_on_a_coarser_grid_is_interpolated_in_world_coordinates(tmp_path) -> None:
    """A linear field sampled at 2 mm is reproduced exactly at the 1 mm voxels inside it."""
    fine = np.diag([1.0, 1.0, 2.0, 1.0])
    coarse = np.diag([2.0, 2.0, 2.0, 1.0])
    coarse[:2, 3] = 0.5
    i, j = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
    field = lambda x, y: 1.0 + 0.02 * x - 0.01 * y  # noqa: E731 (x, y in mm)
    b1c = field(2 * i[:4, :4] + 0.5, 2 * j[:4, :4] + 0.5)[:, :, None].astype(np.float32)
    inp = _nii(tmp_path / "s.nii", np.ones((8, 8, 1, 3), np.complex64), fine)
    b1 = _nii(tmp_path / "b1.nii", b1c, coarse)
    with pytest.raises(MrphysError, match="b1 has shape"):
        load_pc_bssfp(inp, b1)
    got = load_pc_bssfp(inp, b1, resample_b1=True).b1[..., 0]
    inner = (slice(1, 7), slice(1, 7))  # between the coarse voxel centres
    assert np.allclose(got[inner], field(i, j)[inner], atol=1e-6)


def test_sidecar_parsing_units_and_disagreement() -> None:
    side = {"RepetitionTimeExcitation": 0.0048, "EchoTime": [0.0024], "FlipAngle": 15,
            "PhaseIncrements": _increments(4).tolist(), "RepetitionTime": 3.2}  # fmt: skip
    got = sidecar_protocol(side)
    assert got["tr_ms"] == pytest.approx(4.8) and got["te_ms"] == pytest.approx(2.4)
    assert got["flip_deg"] == 15 and got["increments_deg"] == [45, 135, 225, 315]
    sp = resolve_protocol(4, sidecar=side, where="x.json", tr_ms=4.8, flip_deg=15.000001)
    assert sp.protocol.tr == pytest.approx(4.8e-3) and sp.order is None
    assert sp.source == {"tr_ms": "option", "te_ms": "sidecar", "flip_deg": "option",
                         "increments": "sidecar"}  # fmt: skip
    # an option that differs from the sidecar: both values named
    msg = r"tr_ms 5 ms disagrees with RepetitionTimeExcitation 0.0048 s \(4.8 ms\) in x.json"
    with pytest.raises(MrphysError, match=msg):
        resolve_protocol(4, sidecar=side, where="x.json", tr_ms=5.0)
    with pytest.raises(MrphysError, match=r"flip_deg 20 deg disagrees with FlipAngle 15 deg"):
        resolve_protocol(4, sidecar=side, where="x.json", flip_deg=20.0)
    # no sidecar: the options, then the defaults
    sp = resolve_protocol(4, te_ms=2.0)
    assert (sp.protocol.tr, sp.protocol.te) == pytest.approx((4.8e-3, 2.0e-3))
    assert sp.source["tr_ms"] == "default" and sp.sidecar is None
    # increments in another order are put in order; others are refused
    perm = dict(side, PhaseIncrements=[225, 45, 315, 135])
    assert resolve_protocol(4, sidecar=perm).order == [1, 3, 0, 2]
    # equally spaced with a common offset: for magnitude methods (an off-resonance shift)
    sp = resolve_protocol(4, sidecar=dict(side, PhaseIncrements=[270, 0, 90, 180]), offset_ok=True)
    assert sp.order == [2, 3, 0, 1] and sp.offset_deg == pytest.approx(45)
    bad = [
        (dict(side, RepetitionTimeExcitation=4.8), "in seconds as BIDS says"),
        (dict(side, EchoTime=[0.002, 0.004]), "EchoTime in x.json lists 2 values"),
        (dict(side, FlipAngle="15"), "FlipAngle in x.json must be one finite number"),
        (dict(side, PhaseIncrements=[0, 90, 180]), "PhaseIncrements in x.json lists 3 values"),
        (dict(side, PhaseIncrements=[0, 90, 180, 270]), r"are \+45 deg from 180 \(2j - 1\)"),
        (dict(side, PhaseIncrements=[0, 90, 180, 260]), "not equally spaced over 360 deg"),
        (dict(side, PhaseIncrements="45"), "PhaseIncrements in x.json must be a list"),
    ]
    for s, message in bad:
        with pytest.raises(MrphysError, match=message):
            resolve_protocol(4, sidecar=s, where="x.json")


def test_one_file_per_phase_cycle_equals_the_4d_series(tmp_path) -> None:
    rng = np.random.default_rng(0)
    sig = (rng.standard_normal((5, 4, 2, 6)) + 1j * rng.standard_normal((5, 4, 2, 6))).astype(
        np.complex64
    )
    b1 = _nii(tmp_path / "b1.nii", np.ones((5, 4, 2), np.float32), np.eye(4))
    inc = _increments(6)
    files = []
    for k in (3, 0, 5, 1, 4, 2):  # any order: the sidecars' increments sort them
        files.append(_nii(tmp_path / f"c{k}.nii", sig[..., k], np.eye(4)))
        _json(tmp_path / f"c{k}.json", {"RepetitionTimeExcitation": 0.005, "FlipAngle": 20,
                                         "PhaseIncrements": [inc[k]]})  # fmt: skip
    vol, sp = load_series(files, b1)
    assert np.array_equal(vol.signals, sig) and sp.protocol.tr == pytest.approx(5e-3)
    assert "c3.json" in sp.sidecar
    _json(tmp_path / "c0.json", {"RepetitionTimeExcitation": 0.006, "PhaseIncrements": [inc[0]]})
    with pytest.raises(MrphysError, match="RepetitionTimeExcitation is 0.005 in .*c3.json but"):
        load_series(files, b1)
    (tmp_path / "c0.json").unlink()
    with pytest.raises(MrphysError, match="c0.nii has no JSON sidecar but .*c3.nii has one"):
        load_series(files, b1)
    with pytest.raises(MrphysError, match=r"input .*c1.nii has \(4, 4, 2\) voxels but"):
        load_series([files[0], _nii(tmp_path / "c1.nii", sig[:4, ..., 0], np.eye(4))], b1)


def test_parse_name() -> None:
    assert parse_name("sub-01_ses-a_acq-pcbssfp_part-mag_bSSFP.nii.gz") == (
        {"sub": "01", "ses": "a", "acq": "pcbssfp", "part": "mag"},
        "bSSFP",
        "nii.gz",
    )
    assert parse_name("acq-pcbssfp_bSSFP.json") == ({"acq": "pcbssfp"}, "bSSFP", "json")
    assert parse_name("README") is None and parse_name("sub-01_x-_T1w.nii") is None


def test_missing_and_wrong_inputs_exit_2_and_write_nothing(tmp_path, cli) -> None:
    root = tmp_path / "raw"
    _dataset(root, n=8, nz=1, cycles=4)
    out = tmp_path / "d"
    run = [*BIDS, root, out]
    cli.fails(*run, "group", "--method", "miracle", out=out, says="group level is not supported")
    cli.fails(*BIDS, tmp_path / "none", out, "participant", "--method", "miracle", out=out,
              says="is not a folder")  # fmt: skip
    cli.fails(*run, "participant", "--method", "miracle", "--participant-label", "03", out=out,
              says="--participant-label 03 is not in")  # fmt: skip
    cli.fails(*run, "participant", "--method", "miracle", "--tr-ms", "5", out=out,
              says="--tr-ms 5 ms disagrees with RepetitionTimeExcitation 0.0048 s")  # fmt: skip
    (root / "sub-02" / "ses-1" / "fmap" / "sub-02_ses-1_TB1map.nii.gz").unlink()
    cli.fails(*run, "participant", "--method", "miracle", out=out,
              says="sub-02 has no B1 map: expected sub-02/ses-1/fmap/*_TB1map.nii.gz")  # fmt: skip
    (root / "sub-01" / "anat" / "sub-01_acq-pcbssfp_bSSFP.nii.gz").unlink()
    cli.fails(*run, "participant", "--method", "miracle", "--participant-label", "01", out=out,
              says="sub-01 has no pc-bSSFP series")  # fmt: skip
    cli.fails(*BIDS, root, root, "participant", "--method", "miracle", out=root / "sub-01",
              says="inside the raw dataset")  # fmt: skip


def test_increments_from_zero_fit_like_the_methods_ones_for_magnitude_methods(tmp_path) -> None:
    """0, 30, ..., 330 deg (a scanner's usual list) is the METHODS set shifted by 15 deg: an
    off-resonance shift for MIRACLE; a complex method refuses it."""
    import torch

    from mrphys.relax.bids import BidsOptions, check_series
    from mrphys.relax.data import Protocol
    from mrphys.relax.volume import fit_volume

    truth = _dataset(tmp_path, n=24, nz=1, offset=-15.0)["01"]
    s = find_subjects(tmp_path, ["01"])[0].series[0]
    assert s.sidecar["PhaseIncrements"][:3] == [0, 30, 60]
    vol, sp = load_series(s.files, s.b1, sidecar=s.sidecar, read_sidecars=False,
                          b1_units="auto", offset_ok=True, mask="foreground")  # fmt: skip
    assert abs(sp.offset_deg) == pytest.approx(15) and sp.protocol == Protocol(12)
    sig, b1, mask = vol.tensors()
    maps = fit_volume(sig, b1, "miracle", sp.protocol, mask=mask)
    tissue = (truth["label"] > 0) & (truth["label"] < 4)
    for key in ("t1", "t2"):
        err = np.median(np.abs(getattr(maps, key).numpy()[tissue] / truth[key][tissue] - 1))
        assert err < 0.02, f"{key}: {err:.2%}"
    with pytest.raises(MrphysError, match="15 deg from 180 .* estimate the off-resonance need"):
        check_series(s, BidsOptions(method="pinn-complex"))
    assert torch.is_tensor(maps.t1)
