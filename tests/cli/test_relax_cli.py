"""`mrphys relax`: simulate -> fit round trip, train, and bad input (exit 2, nothing written)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from mrphys.cli import main


def _run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as e:  # argparse errors
        return int(e.code)


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    out = tmp_path_factory.mktemp("relax") / "sim"
    rc = _run(
        [
            "relax",
            "simulate",
            "--matrix",
            "16",
            "--slices",
            "2",
            "--phase-cycles",
            "6",
            "--snr",
            "200",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    return out


def _save(path, arr, aff=None):
    nib.save(nib.Nifti1Image(arr, np.eye(4) if aff is None else aff), str(path))
    return str(path)


def test_simulate_outputs(sim) -> None:
    names = {p.name for p in sim.iterdir()}
    assert {
        "pc_bssfp.nii.gz",
        "b1.nii.gz",
        "t1.nii.gz",
        "t2.nii.gz",
        "db0.nii.gz",
        "mask.nii.gz",
        "config.json",
    } <= names
    img = nib.load(str(sim / "pc_bssfp.nii.gz"))
    assert img.shape == (16, 16, 2, 6) and np.iscomplexobj(np.asarray(img.dataobj))


def test_fit_miracle_round_trip_keeps_affine(sim, tmp_path) -> None:
    aff = np.diag([1.3, 1.3, 1.3, 1.0])
    aff[:3, 3] = [10, -5, 3]
    data = np.asarray(nib.load(str(sim / "pc_bssfp.nii.gz")).dataobj)
    inp = _save(tmp_path / "pc.nii.gz", data, aff)
    b1 = _save(tmp_path / "b1.nii.gz", np.asarray(nib.load(str(sim / "b1.nii.gz")).dataobj), aff)
    mask = _save(tmp_path / "m.nii.gz", np.asarray(nib.load(str(sim / "mask.nii.gz")).dataobj), aff)
    out = tmp_path / "fit"
    rc = _run(
        [
            "relax",
            "fit",
            "--input",
            inp,
            "--b1",
            b1,
            "--mask",
            mask,
            "--method",
            "miracle",
            "--phase-cycles",
            "6",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    t1 = nib.load(str(out / "t1.nii.gz"))
    assert np.allclose(t1.affine, aff) and t1.shape == (16, 16, 2)
    m = np.asarray(nib.load(mask).dataobj) > 0
    truth = np.asarray(nib.load(str(sim / "t1.nii.gz")).dataobj)
    sel = m & (truth < 2080)
    # 6 cycles: MIRACLE is biased by a few percent (METHODS 3); values are in ms
    assert np.median(np.abs(np.asarray(t1.dataobj)[sel] / truth[sel] - 1)) < 0.1
    assert json.loads((out / "config.json").read_text())["units"]["t1"] == "ms"
    # magnitude/phase pair gives the same input
    out2 = tmp_path / "fit2"
    mag = _save(tmp_path / "mag.nii.gz", np.abs(data).astype(np.float32), aff)
    pha = _save(tmp_path / "pha.nii.gz", np.angle(data).astype(np.float32), aff)
    rc = _run(
        [
            "relax",
            "fit",
            "--input",
            mag,
            "--input-phase",
            pha,
            "--b1",
            b1,
            "--mask",
            mask,
            "--method",
            "miracle",
            "--out",
            str(out2),
        ]
    )
    assert rc == 0
    assert np.allclose(
        np.asarray(nib.load(str(out2 / "t1.nii.gz")).dataobj),
        np.asarray(t1.dataobj),
        rtol=1e-3,
        atol=1e-2,
    )


def test_train_then_fit_network(sim, tmp_path) -> None:
    ck = tmp_path / "svnn.pt"
    rc = _run(
        [
            "relax",
            "train",
            "--method",
            "svnn-complex",
            "--phase-cycles",
            "6",
            "--samples",
            "2000",
            "--max-epochs",
            "1",
            "--out",
            str(ck),
        ]
    )
    assert rc == 0 and ck.is_file()
    out = tmp_path / "fitnet"
    rc = _run(
        [
            "relax",
            "fit",
            "--input",
            str(sim / "pc_bssfp.nii.gz"),
            "--b1",
            str(sim / "b1.nii.gz"),
            "--method",
            "svnn-complex",
            "--model",
            str(ck),
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    assert {"t1.nii.gz", "t2.nii.gz", "db0.nii.gz"} <= {p.name for p in out.iterdir()}
    # a model for another method, or another protocol, is refused
    for extra in (["--method", "pinn-complex"], ["--method", "svnn-complex", "--tr-ms", "5.0"]):
        bad = tmp_path / "bad"
        rc = _run(
            [
                "relax",
                "fit",
                "--input",
                str(sim / "pc_bssfp.nii.gz"),
                "--b1",
                str(sim / "b1.nii.gz"),
                "--model",
                str(ck),
                "--out",
                str(bad),
                *extra,
            ]
        )
        assert rc == 2 and not bad.exists()


def _bad_cases(sim, tmp_path):
    data = np.asarray(nib.load(str(sim / "pc_bssfp.nii.gz")).dataobj)
    b1 = np.asarray(nib.load(str(sim / "b1.nii.gz")).dataobj)
    nan = data.copy()
    nan[3, 3, 0, 1] = np.nan
    inp, b1p = str(sim / "pc_bssfp.nii.gz"), str(sim / "b1.nii.gz")
    shifted = np.eye(4)
    shifted[0, 3] = 5.0
    return {
        "cycles": ["--input", inp, "--b1", b1p, "--phase-cycles", "12"],
        "three_d": ["--input", _save(tmp_path / "3d.nii.gz", data[..., 0]), "--b1", b1p],
        "two_cycles": ["--input", _save(tmp_path / "2c.nii.gz", data[..., :2]), "--b1", b1p],
        "real_only": ["--input", _save(tmp_path / "re.nii.gz", data.real.copy()), "--b1", b1p],
        "nan": ["--input", _save(tmp_path / "nan.nii.gz", nan), "--b1", b1p],
        "b1_shape": ["--input", inp, "--b1", _save(tmp_path / "b1s.nii.gz", b1[:8])],
        "b1_percent": ["--input", inp, "--b1", _save(tmp_path / "b1p.nii.gz", b1 * 100)],
        "b1_nan": ["--input", inp, "--b1", _save(tmp_path / "b1n.nii.gz", b1 * np.nan)],
        "affine": ["--input", inp, "--b1", _save(tmp_path / "b1a.nii.gz", b1, shifted)],
        "empty_mask": [
            "--input",
            inp,
            "--b1",
            b1p,
            "--mask",
            _save(tmp_path / "m0.nii.gz", np.zeros(b1.shape, np.uint8)),
        ],
        "missing": ["--input", str(tmp_path / "nope.nii.gz"), "--b1", b1p],
        "te_gt_tr": ["--input", inp, "--b1", b1p, "--te-ms", "6"],
        "flip": ["--input", inp, "--b1", b1p, "--flip-deg", "0"],
        "model_for_miracle": ["--input", inp, "--b1", b1p, "--model", b1p],
        "bad_model": ["--input", inp, "--b1", b1p, "--method", "pinn", "--model", b1p],
    }


def test_bad_fit_inputs_exit_2_and_write_nothing(sim, tmp_path, capsys) -> None:
    for name, argv in _bad_cases(sim, tmp_path).items():
        out = tmp_path / f"out_{name}"
        if "--method" not in argv:
            argv = [*argv, "--method", "miracle"]
        rc = _run(["relax", "fit", *argv, "--out", str(out)])
        err = capsys.readouterr().err
        assert rc == 2, name
        assert not out.exists(), name
        assert "Traceback" not in err and err.strip(), name


def test_existing_output_needs_overwrite(sim, tmp_path) -> None:
    out = tmp_path / "exists"
    out.mkdir()
    rc = _run(
        [
            "relax",
            "fit",
            "--input",
            str(sim / "pc_bssfp.nii.gz"),
            "--b1",
            str(sim / "b1.nii.gz"),
            "--method",
            "miracle",
            "--out",
            str(out),
        ]
    )
    assert rc == 2 and list(out.iterdir()) == []


def test_bad_train_and_simulate_options(tmp_path) -> None:
    assert (
        _run(
            [
                "relax",
                "train",
                "--method",
                "svnn",
                "--samples",
                "10",
                "--out",
                str(tmp_path / "a.pt"),
            ]
        )
        == 2
    )
    assert (
        _run(
            [
                "relax",
                "train",
                "--method",
                "svnn",
                "--phase-cycles",
                "2",
                "--out",
                str(tmp_path / "b.pt"),
            ]
        )
        == 2
    )
    assert _run(["relax", "train", "--method", "miracle", "--out", str(tmp_path / "c.pt")]) == 2
    assert _run(["relax", "simulate", "--matrix", "4", "--out", str(tmp_path / "s")]) == 2
    assert not any(tmp_path.iterdir())


def test_default_model_trained_once_and_cached(sim, tmp_path, monkeypatch) -> None:
    import mrphys.relax.volume as vol

    monkeypatch.setenv("MRPHYS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(vol, "DEFAULT_MODEL_EPOCHS", 1)
    monkeypatch.setattr(vol, "DEFAULT_MODEL_SAMPLES", 2000)
    argv = [
        "relax",
        "fit",
        "--input",
        str(sim / "pc_bssfp.nii.gz"),
        "--b1",
        str(sim / "b1.nii.gz"),
        "--method",
        "pinn",
    ]
    assert _run([*argv, "--out", str(tmp_path / "a")]) == 0
    cached = list((tmp_path / "cache" / "relax").glob("pinn-N6-*.pt"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    assert _run([*argv, "--out", str(tmp_path / "b")]) == 0
    assert cached[0].stat().st_mtime_ns == stamp  # reused, not retrained
    a = np.asarray(nib.load(str(tmp_path / "a" / "t1.nii.gz")).dataobj)
    b = np.asarray(nib.load(str(tmp_path / "b" / "t1.nii.gz")).dataobj)
    assert np.array_equal(a, b)


@pytest.mark.slow
def test_evaluate_cli(tmp_path) -> None:
    out = tmp_path / "ev"
    rc = _run(
        [
            "relax",
            "evaluate",
            "--method",
            "miracle",
            "--grid",
            "5",
            "--mc",
            "3",
            "--snrs",
            "inf,25",
            "--invivo",
            "20",
            "--phase-cycles",
            "6",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    data = json.loads((out / "metrics.json").read_text())
    assert data["protocol"]["n_cycles"] == 6 and len(data["snr_rows"]) == 2
    assert (out / "offres_sweep.png").is_file()
    assert (
        _run(
            [
                "relax",
                "evaluate",
                "--method",
                "miracle",
                "--snrs",
                "0,x",
                "--out",
                str(tmp_path / "ev2"),
            ]
        )
        == 2
    )
    assert not (tmp_path / "ev2").exists()
