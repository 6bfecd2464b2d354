"""`mrphys relax`: simulate -> fit round trip, train, and bad input (exit 2, nothing written)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from mrphys.cli import main

FIT, TRAIN, SIMULATE = ["relax", "fit"], ["relax", "train"], ["relax", "simulate"]


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    out = tmp_path_factory.mktemp("relax") / "sim"
    argv = ["--matrix", "16", "--slices", "2", "--phase-cycles", "6", "--snr", "200"]
    assert main([*SIMULATE, *argv, "--out", str(out)]) == 0
    return out


def _save(path, arr, aff=None):
    nib.save(nib.Nifti1Image(arr, np.eye(4) if aff is None else aff), str(path))
    return str(path)


def _cut(path, source) -> str:
    """A truncated copy of ``source`` (the first 400 bytes)."""
    path.write_bytes(source.read_bytes()[:400])
    return str(path)


def _data(sim, name: str) -> np.ndarray:
    return np.asarray(nib.load(str(sim / name)).dataobj)


def test_simulate_outputs(sim) -> None:
    names = {p.name for p in sim.iterdir()}
    maps = ["b1.nii.gz", "t1.nii.gz", "t2.nii.gz", "db0.nii.gz", "mask.nii.gz"]
    assert {"pc_bssfp.nii.gz", *maps, "config.json"} <= names
    img = nib.load(str(sim / "pc_bssfp.nii.gz"))
    assert img.shape == (16, 16, 2, 6) and np.iscomplexobj(np.asarray(img.dataobj))
    cfg = json.loads((sim / "config.json").read_text())
    assert cfg["protocol"] == pytest.approx(
        {"n_cycles": 6, "tr_ms": 4.8, "te_ms": 2.4, "flip_deg": 15.0}, rel=1e-12
    )
    assert cfg["files"]["t1.nii.gz"] == "ms"


def test_fit_miracle_round_trip_keeps_affine(sim, tmp_path, cli) -> None:
    aff = np.diag([1.3, 1.3, 1.3, 1.0])
    aff[:3, 3] = [10, -5, 3]
    data = _data(sim, "pc_bssfp.nii.gz")
    inp = _save(tmp_path / "pc.nii.gz", data, aff)
    b1 = _save(tmp_path / "b1.nii.gz", _data(sim, "b1.nii.gz"), aff)
    mask = _save(tmp_path / "m.nii.gz", _data(sim, "mask.nii.gz"), aff)
    out = tmp_path / "fit"
    common = ["--b1", b1, "--mask", mask, "--method", "miracle"]
    cli.ok(*FIT, "--input", inp, *common, "--phase-cycles", "6", "--out", out)
    t1 = nib.load(str(out / "t1.nii.gz"))
    assert np.allclose(t1.affine, aff) and t1.shape == (16, 16, 2)
    m = np.asarray(nib.load(mask).dataobj) > 0
    truth = _data(sim, "t1.nii.gz")
    sel = m & (truth < 2080)
    # 6 cycles: MIRACLE is biased by a few percent (METHODS 3); values are in ms
    assert np.median(np.abs(np.asarray(t1.dataobj)[sel] / truth[sel] - 1)) < 0.1
    assert json.loads((out / "config.json").read_text())["units"]["t1"] == "ms"
    # magnitude/phase pair gives the same input
    out2 = tmp_path / "fit2"
    mag = _save(tmp_path / "mag.nii.gz", np.abs(data).astype(np.float32), aff)
    pha = _save(tmp_path / "pha.nii.gz", np.angle(data).astype(np.float32), aff)
    cli.ok(*FIT, "--input", mag, "--input-phase", pha, *common, "--out", out2)
    t1b = np.asarray(nib.load(str(out2 / "t1.nii.gz")).dataobj)
    assert np.allclose(t1b, np.asarray(t1.dataobj), rtol=1e-3, atol=1e-2)


def test_train_then_fit_network(sim, tmp_path, cli) -> None:
    ck = tmp_path / "svnn.pt"
    argv = ["--method", "svnn-complex", "--phase-cycles", "6", "--samples", "2000"]
    cli.ok(*TRAIN, *argv, "--max-epochs", "1", "--out", ck)
    assert ck.is_file()
    out = tmp_path / "fitnet"
    inputs = ["--input", sim / "pc_bssfp.nii.gz", "--b1", sim / "b1.nii.gz", "--model", ck]
    cli.ok(*FIT, *inputs, "--method", "svnn-complex", "--out", out)
    assert {"t1.nii.gz", "t2.nii.gz", "db0.nii.gz"} <= {p.name for p in out.iterdir()}
    assert json.loads((out / "config.json").read_text())["model"] == str(ck)
    # a model for another method, or another protocol, is refused
    bad = tmp_path / "bad"
    cli.fails(*FIT, *inputs, "--method", "pinn-complex", "--out", bad, out=bad, says="network")
    argv = ["--method", "svnn-complex", "--tr-ms", "5.0"]
    cli.fails(*FIT, *inputs, *argv, "--out", bad, out=bad, says="TR")


def _bad_cases(sim, tmp_path):
    data = _data(sim, "pc_bssfp.nii.gz")
    b1 = _data(sim, "b1.nii.gz")
    nan = data.copy()
    nan[3, 3, 0, 1] = np.nan
    inp, b1p = str(sim / "pc_bssfp.nii.gz"), str(sim / "b1.nii.gz")
    shifted = np.eye(4)
    shifted[0, 3] = 5.0
    zeros = _save(tmp_path / "m0.nii.gz", np.zeros(b1.shape, np.uint8))
    return {  # name: (arguments, what the error names)
        "cycles": (["--input", inp, "--b1", b1p, "--phase-cycles", "12"], "phase_cycles is 12"),
        "three_d": (["--input", _save(tmp_path / "3d.nii.gz", data[..., 0]), "--b1", b1p], "4-D"),
        "two_cycles": (
            ["--input", _save(tmp_path / "2c.nii.gz", data[..., :2]), "--b1", b1p],
            "at least 3",
        ),  # fmt: skip
        "real_only": (
            ["--input", _save(tmp_path / "re.nii.gz", data.real.copy()), "--b1", b1p],
            "real-valued",
        ),  # fmt: skip
        "nan": (["--input", _save(tmp_path / "nan.nii.gz", nan), "--b1", b1p], "NaN"),
        "b1_shape": (["--input", inp, "--b1", _save(tmp_path / "b1s.nii.gz", b1[:8])], "--b1"),
        "b1_percent": (
            [
                "--input",
                inp,
                "--b1",
                _save(tmp_path / "b1p.nii.gz", b1 * 100),
                "--b1-units",
                "ratio",
            ],
            "percent",
        ),  # fmt: skip
        "b1_nan": (["--input", inp, "--b1", _save(tmp_path / "b1n.nii.gz", b1 * np.nan)], "NaN"),
        "affine": (
            ["--input", inp, "--b1", _save(tmp_path / "b1a.nii.gz", b1, shifted)],
            "affine",
        ),  # fmt: skip
        "empty_mask": (["--input", inp, "--b1", b1p, "--mask", zeros], "no voxel"),
        "missing": (["--input", str(tmp_path / "nope.nii.gz"), "--b1", b1p], "does not exist"),
        "te_gt_tr": (["--input", inp, "--b1", b1p, "--te-ms", "6"], "--te-ms"),
        "flip": (["--input", inp, "--b1", b1p, "--flip-deg", "0"], "--flip-deg"),
        "model_for_miracle": (["--input", inp, "--b1", b1p, "--model", b1p], "--model"),
        "complex_imag": (  # the imaginary part of a complex --input-imag would be dropped
            [
                "--input",
                _save(tmp_path / "re2.nii.gz", data.real.copy()),
                "--input-imag",
                inp,
                "--b1",
                b1p,
            ],
            "--input-imag",
        ),  # fmt: skip
        "input_directory": (["--input", str(tmp_path), "--b1", b1p], "is a directory"),
        "truncated": (
            ["--input", _cut(tmp_path / "cut.nii.gz", sim / "pc_bssfp.nii.gz"), "--b1", b1p],
            "cut.nii.gz could not be read as NIfTI",
        ),  # fmt: skip
        "bad_model": (
            ["--input", inp, "--b1", b1p, "--method", "pinn", "--model", b1p],
            "checkpoint",
        ),  # fmt: skip
    }


def test_bad_fit_inputs_exit_2_and_write_nothing(sim, tmp_path, cli) -> None:
    for name, (argv, says) in _bad_cases(sim, tmp_path).items():
        out = tmp_path / f"out_{name}"
        if "--method" not in argv:
            argv = [*argv, "--method", "miracle"]
        cli.fails(*FIT, *argv, "--out", out, out=out, says=says)


def test_existing_output_needs_overwrite(sim, tmp_path, cli) -> None:
    out = tmp_path / "exists"
    out.mkdir()
    argv = ["--input", sim / "pc_bssfp.nii.gz", "--b1", sim / "b1.nii.gz", "--method", "miracle"]
    cli.fails(*FIT, *argv, "--out", out, out=out, says="--overwrite")
    assert list(out.iterdir()) == []


def test_bad_train_and_simulate_options(tmp_path, cli) -> None:
    a, b, c = tmp_path / "a.pt", tmp_path / "b.pt", tmp_path / "c.pt"
    cli.fails(*TRAIN, "--method", "svnn", "--samples", "10", "--out", a, out=a, says="--samples")
    argv = ["--method", "svnn", "--phase-cycles", "2"]
    cli.fails(*TRAIN, *argv, "--out", b, out=b, says="--phase-cycles")
    cli.fails(*TRAIN, "--method", "miracle", "--out", c, out=c, says="--method")
    cli.fails(*TRAIN, "--method", "svnn", "--threads", "0", "--out", c, out=c, says="--threads")
    cli.fails(*TRAIN, "--method", "svnn", "--out", tmp_path, out=c, says="directory")
    s = tmp_path / "s"
    cli.fails(*SIMULATE, "--matrix", "4", "--out", s, out=s, says="--matrix")
    cli.fails(*SIMULATE, "--snr", "0", "--out", s, out=s, says="SNR")
    assert not any(tmp_path.iterdir())


def test_default_model_trained_once_and_cached(sim, tmp_path, monkeypatch, cli) -> None:
    import mrphys.relax.volume as vol

    monkeypatch.setenv("MRPHYS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(vol, "DEFAULT_MODEL_EPOCHS", 1)
    monkeypatch.setattr(vol, "DEFAULT_MODEL_SAMPLES", 2000)
    monkeypatch.setattr(vol, "_shipped_model", lambda *a, **k: None)  # the cache, not the package
    argv = [*FIT, "--input", sim / "pc_bssfp.nii.gz", "--b1", sim / "b1.nii.gz", "--method", "pinn"]
    cli.ok(*argv, "--out", tmp_path / "a")
    cached = list((tmp_path / "cache" / "relax").glob("pinn-N6-*.pt"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    cli.ok(*argv, "--out", tmp_path / "b")
    assert cached[0].stat().st_mtime_ns == stamp  # reused, not retrained
    a = np.asarray(nib.load(str(tmp_path / "a" / "t1.nii.gz")).dataobj)
    b = np.asarray(nib.load(str(tmp_path / "b" / "t1.nii.gz")).dataobj)
    assert np.array_equal(a, b)


@pytest.mark.slow
def test_evaluate_cli(tmp_path, cli) -> None:
    out = tmp_path / "ev"
    argv = ["--method", "miracle", "--grid", "5", "--mc", "3", "--snrs", "inf,25"]
    cli.ok("relax", "evaluate", *argv, "--invivo", "20", "--phase-cycles", "6", "--out", out)
    data = json.loads((out / "metrics.json").read_text())
    assert data["protocol"]["n_cycles"] == 6 and len(data["snr_rows"]) == 2
    assert (out / "offres_sweep.png").is_file()
    bad = tmp_path / "ev2"
    argv = ["--method", "miracle", "--snrs", "0,x", "--out", bad]
    cli.fails("relax", "evaluate", *argv, out=bad, says="--snrs")


def test_an_all_zero_volume_is_warned_about_and_marked(sim, tmp_path, cli, caplog) -> None:
    zeros = _save(tmp_path / "z.nii.gz", np.zeros_like(_data(sim, "pc_bssfp.nii.gz")))
    out = tmp_path / "fitz"
    with caplog.at_level("WARNING"):
        r = cli.ok(*FIT, "--input", zeros, "--b1", sim / "b1.nii.gz", "--method", "miracle",
                   "--out", out)  # fmt: skip
    assert "512 of 512 voxels to fit have no signal" in caplog.text
    assert "512 without signal" in r.out
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["voxels_without_signal"] == 512 and cfg["voxels_fitted"] == 0
    assert _data(out, "no_signal.nii.gz").all() and not _data(out, "t1.nii.gz").any()


def test_resource_limits_and_nonsense_options(tmp_path, cli, monkeypatch) -> None:
    import torch

    monkeypatch.setenv("MRPHYS_MEMORY_LIMIT_GB", "16")
    o = tmp_path / "o"
    cli.fails(*SIMULATE, "--matrix", "512", "--slices", "256", "--out", o, out=o,
              says="reduce --matrix, --slices or --phase-cycles")  # fmt: skip
    pt = tmp_path / "m.pt"
    train = [*TRAIN, "--method", "svnn", "--out", pt]
    cli.fails(*train, "--phase-cycles", "100000", out=pt, says="reduce --samples or --phase-cycles")
    for minutes in ("-1", "nan", "0", "inf"):
        cli.fails(*train, "--max-minutes", minutes, out=pt, says="--max-minutes must be a positive")
    cli.fails(*train, "--tr-ms", "1e-6", out=pt, says="--tr-ms must lie in [1, 100] ms")
    evaluate = ["relax", "evaluate", "--method", "miracle", "--model", pt, "--out", o]
    cli.fails(*evaluate, out=o, says="--model is for network methods; MIRACLE needs no model")
    if torch.cuda.is_available():
        cli.ok(*SIMULATE, "--matrix", "16", "--slices", "1", "--device", "cuda", "--out", o)
        assert json.loads((o / "config.json").read_text())["device"].startswith("cuda")
    else:  # not ignored: the request is refused
        cli.fails(*SIMULATE, "--device", "cuda", "--out", o, out=o, says="no CUDA device")


def test_fit_reads_the_bids_sidecar_and_options_must_agree(sim, tmp_path, cli) -> None:
    inp = tmp_path / "sub-01_acq-pcbssfp_bSSFP.nii.gz"
    inp.write_bytes((sim / "pc_bssfp.nii.gz").read_bytes())
    side = {"RepetitionTimeExcitation": 0.0048, "EchoTime": 0.0024, "FlipAngle": 15,
            "PhaseIncrements": [30.0, 90.0, 150.0, 210.0, 270.0, 330.0]}  # fmt: skip
    (tmp_path / "sub-01_acq-pcbssfp_bSSFP.json").write_text(json.dumps(side))
    b1 = str(sim / "b1.nii.gz")
    out = tmp_path / "fit"
    cli.ok(*FIT, "--input", inp, "--b1", b1, "--method", "miracle", "--tr-ms", "4.8", "--out", out)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["protocol"] == pytest.approx({"n_cycles": 6, "tr_ms": 4.8, "te_ms": 2.4,
                                              "flip_deg": 15.0})  # fmt: skip
    src = cfg["protocol_source"]
    assert src["tr_ms"] == "option" and src["flip_deg"] == "sidecar" and src["sidecar"]
    side["FlipAngle"] = 20
    (tmp_path / "sub-01_acq-pcbssfp_bSSFP.json").write_text(json.dumps(side))
    bad = tmp_path / "bad"
    argv = ["--input", inp, "--b1", b1, "--method", "miracle", "--flip-deg", "15"]
    cli.fails(*FIT, *argv, "--out", bad, out=bad,
              says="--flip-deg 15 deg disagrees with FlipAngle 20 deg")  # fmt: skip
    # the options alone, the sidecar ignored: the maps of the sidecar-free fit
    cli.ok(*FIT, *argv, "--no-sidecar", "--out", bad)
    assert np.array_equal(_data(bad, "t1.nii.gz"), _data(out, "t1.nii.gz"))


def test_fit_one_file_per_phase_cycle(sim, tmp_path, cli) -> None:
    data = _data(sim, "pc_bssfp.nii.gz")
    files = [_save(tmp_path / f"cycle{k}.nii.gz", data[..., k]) for k in range(data.shape[3])]
    b1 = str(sim / "b1.nii.gz")
    out1, out2 = tmp_path / "one", tmp_path / "many"
    cli.ok(*FIT, "--input", sim / "pc_bssfp.nii.gz", "--b1", b1, "--method", "miracle",
           "--out", out1)  # fmt: skip
    cli.ok(*FIT, "--input", *files, "--b1", b1, "--method", "miracle", "--out", out2)
    assert np.array_equal(_data(out1, "t1.nii.gz"), _data(out2, "t1.nii.gz"))
    mags = [_save(tmp_path / f"m{k}.nii.gz", np.abs(data[..., k])) for k in range(6)]
    phases = [_save(tmp_path / f"p{k}.nii.gz", np.angle(data[..., k])) for k in range(5)]
    bad = tmp_path / "bad"
    cli.fails(*FIT, "--input", *mags, "--input-phase", *phases, "--b1", b1, "--method",
              "miracle", "--out", bad, out=bad, says="has shape")  # fmt: skip


def test_cli_method_lists_are_the_library_lists() -> None:
    from mrphys.cli import relax as cli_relax
    from mrphys.relax.data import METHODS_LIST, NETWORK_METHODS

    assert tuple(cli_relax.METHODS) == METHODS_LIST
    assert tuple(cli_relax.NET_METHODS) == NETWORK_METHODS
