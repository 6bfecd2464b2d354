"""`mrphys dynamic simulate|recon`: tiny end-to-end run; bad input exits 2, writes nothing."""

from __future__ import annotations

import json

import h5py
import nibabel as nib
import numpy as np
import pytest
import scipy.io

SIMULATE, RECON = ["dynamic", "simulate"], ["dynamic", "recon"]


@pytest.fixture
def series_mat(tmp_path):
    """A tiny (Y, X, frames) = (16, 16, 4) magnitude series stored like the shared files."""
    yy, xx = np.meshgrid(np.arange(16) - 8, np.arange(16) - 8, indexing="ij")
    frames = [np.exp(-(yy**2 + xx**2) / (10.0 + 3 * t)) * 5.0 for t in range(4)]
    p = tmp_path / "tiny.mat"
    scipy.io.savemat(p, {"cine": np.stack(frames, axis=-1)})
    return p


def test_simulate_then_gridding_end_to_end(tmp_path, series_mat, cli):
    """simulate writes raw.h5 (+ truth apart); recon needs nothing but that and scores it."""
    sim, rec = tmp_path / "sim", tmp_path / "rec"
    argv = ["--series", series_mat, "--spokes", "24", "--coils", "3", "--snr", "50", "--seed", "1"]
    cli.ok(*SIMULATE, *argv, "--gradient-delay", "0.3,0.1", "--out", sim)
    assert not (sim / "kspace.npy").exists()
    with h5py.File(sim / "raw.h5", "r") as f:
        assert f["dataset/data"].shape == (4 * 24 + 2048 // 256,)  # spokes + noise scan
    assert np.load(sim / "maps_true.npy").shape == (3, 8, 8)  # 16x16 object -> 8x8 grid
    truth = np.load(sim / "truth.npy")
    assert truth.shape == (4, 8, 8) and truth.dtype == np.complex64
    acq = json.loads((sim / "acquisition.json").read_text())
    assert acq["snr"] == 50.0 and acq["gradient_delay_samples_xy"] == [0.3, 0.1]

    r = cli.ok(*RECON, "--input", sim, "--method", "gridding", "--out", rec)
    assert "gradient delay 0.2" in r.out
    x = np.load(rec / "recon.npy")
    assert x.shape == (4, 8, 8) and x.dtype == np.complex64
    mag = np.asarray(nib.load(rec / "recon.nii.gz").dataobj)
    assert mag.shape == (8, 8, 4)  # NIfTI order (X, Y, T)
    m = json.loads((rec / "metrics.json").read_text())
    assert len(m["psnr_db_per_frame"]) == 4 and len(m["ssim_per_frame"]) == 4
    assert m["psnr_db"] == pytest.approx(np.mean(m["psnr_db_per_frame"]))
    assert m["psnr_db"] > 15 and m["seconds"] >= 0
    assert m["gradient_delay_samples"] == pytest.approx(0.2, abs=0.1)
    assert m["coil_map_method"].startswith("espirit") and m["noise_covariance_condition"] > 1
    assert (rec / "frames.png").stat().st_size > 0 and (rec / "frames.gif").stat().st_size > 0
    assert np.load(rec / "maps.npy").shape == (3, 8, 8)


def test_gridding_interference_combination_from_the_command_line(tmp_path, series_mat, cli):
    sim = tmp_path / "sim"
    cli.ok(*SIMULATE, "--series", series_mat, "--spokes", "6", "--coils", "4", "--snr", "50",
           "--out", sim)  # fmt: skip
    scores = {}
    for combine in ("maps", "interference"):
        rec = tmp_path / combine
        cli.ok(*RECON, "--input", sim, "--method", "gridding", "--combine", combine, "--out", rec)
        assert np.load(rec / "recon.npy").shape == (4, 8, 8)
        scores[combine] = json.loads((rec / "metrics.json").read_text())["psnr_db"]
    assert scores["interference"] != scores["maps"]  # the option reaches the method


def test_recon_switches_reach_the_calibration(tmp_path, series_mat, cli):
    sim, rec = tmp_path / "sim", tmp_path / "rec"
    cli.ok(*SIMULATE, "--series", series_mat, "--spokes", "16", "--coils", "4", "--snr", "30",
           "--traj-units", "none", "--out", sim)  # fmt: skip
    argv = ["--no-prewhiten", "--no-delay-correction", "--coils", "2", "--dcf", "pipe-menon",
            "--maps-method", "walsh", "--no-smooth-maps", "--out", rec]  # fmt: skip
    cli.ok(*RECON, "--input", sim / "raw.h5", "--method", "gridding", *argv)
    m = json.loads((rec / "metrics.json").read_text())
    assert m["gradient_delay_samples"] is None and m["noise_covariance_condition"] is None
    assert m["compressed_coils"] == 2 and m["coil_map_method"] == "walsh"
    assert m["coil_map_smoothing"] == "fill_dark"
    assert m["calibration"]["dcf"] == "pipe-menon" and m["raw"]["traj_units"] == "computed"
    assert "psnr_db" not in m  # a bare .h5: no truth
    rec2 = tmp_path / "rec2"
    cli.ok(*RECON, "--input", sim, "--method", "gridding", "--maps", sim / "maps_true.npy",
           "--truth", sim / "truth.npy", "--out", rec2)  # fmt: skip
    m = json.loads((rec2 / "metrics.json").read_text())
    assert m["coil_map_method"] == "given" and "psnr_db" in m
    assert m["coil_map_smoothing"] is None


def test_recon_runs_the_registry_method_with_its_options(tmp_path, series_mat, cli):
    """--iterations reaches an iterative method (more CG iterations, closer to the truth)."""
    sim = tmp_path / "sim"
    cli.ok(*SIMULATE, "--series", series_mat, "--spokes", "4", "--coils", "3", "--out", sim)
    psnr = {}
    for it in (1, 8):
        rec = tmp_path / f"cg{it}"
        cli.ok(*RECON, "--input", sim, "--method", "cg-sense", "--iterations", it, "--out", rec)
        m = json.loads((rec / "metrics.json").read_text())
        assert m["method"] == "cg-sense" and m["config"]["iterations"] == it
        psnr[it] = m["psnr_db"]
    assert psnr[8] > psnr[1] + 1.0


def test_bad_simulate_input(tmp_path, series_mat, cli):
    out = tmp_path / "o"
    flat = tmp_path / "flat.mat"
    scipy.io.savemat(flat, {"img": np.ones((8, 8))})
    cases = {  # arguments besides --spokes 4: what the error names
        ("--series", tmp_path / "no.mat"): "does not exist",
        ("--series", series_mat, "--spokes", "-2"): "--spokes",
        ("--series", flat): "3-D",
        ("--series", series_mat, "--variable", "nope"): "nope",
        ("--series", series_mat, "--snr", "-1"): "--snr",
        ("--series", series_mat, "--coils", "65"): "--coils",
    }
    for argv, says in cases.items():
        cli.fails(*SIMULATE, "--spokes", "4", *argv, "--out", out, out=out, says=says)


def test_existing_output_needs_overwrite(tmp_path, series_mat, cli):
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    argv = [*SIMULATE, "--series", series_mat, "--spokes", "4", "--out", out]
    cli.fails(*argv, out=out, says="--overwrite")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    (out / ".mrphys-output").write_text("{}")  # replaced only as an output mrphys wrote
    cli.ok(*argv, "--overwrite")
    assert (out / "raw.h5").is_file() and not (out / "keep.txt").exists()


def test_bad_recon_input(tmp_path, cli):
    out = tmp_path / "r"
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = {  # arguments: what the error names
        ("--input", tmp_path / "none", "--method", "gridding"): "does not exist",
        ("--input", empty, "--method", "cg-sense"): "kspace.npy",
        (
            "--input",
            empty,
            "--method",
            "grasp",
            "--frames-out",
            "9",
        ): "only available with --method inr",
        ("--input", empty, "--method", "gridding", "--iterations", "5"): "--iterations",
        ("--input", empty, "--method", "cg-sense", "--combine", "maps"): "--combine",
        ("--input", empty, "--method", "ls", "--iterations", "0"): "--iterations",
        ("--input", empty, "--method", "magic"): "--method",
    }
    for argv, says in cases.items():
        cli.fails(*RECON, *argv, "--out", out, out=out, says=says)


def test_sizes_beyond_memory_are_refused_before_any_work(tmp_path, series_mat, cli, monkeypatch):
    monkeypatch.setenv("MRPHYS_MEMORY_LIMIT_GB", "16")
    out = tmp_path / "o"
    synthetic = ("--series", "synthetic", "--spokes", "8")
    cli.fails(*SIMULATE, *synthetic, "--frames", "10000000", "--out", out, out=out,
              says="synthetic cine of 10000000 frames")  # fmt: skip
    cli.fails(*SIMULATE, "--series", series_mat, "--spokes", "100000000", "--out", out, out=out,
              says="reduce --spokes, --frames or --coils")  # fmt: skip
    sim = tmp_path / "sim"
    cli.ok(*SIMULATE, "--series", series_mat, "--spokes", "4", "--coils", "2", "--out", sim)
    rec = tmp_path / "rec"
    for flag, n in (("--frames-out", "100000000"), ("--matrix-out", "1000000")):
        cli.fails(*RECON, "--input", sim, "--method", "inr", flag, n, "--out", rec, out=rec,
                      says="reduce --frames-out or --matrix-out")  # fmt: skip


def test_unreadable_recon_inputs_name_the_file(tmp_path, series_mat, cli):
    sim = tmp_path / "sim"
    cli.ok(*SIMULATE, "--series", series_mat, "--spokes", "4", "--coils", "2", "--out", sim)
    rec = tmp_path / "rec"
    argv = ("--method", "gridding", "--out", rec)
    cli.fails(*RECON, "--input", series_mat, *argv, out=rec, says="tiny.mat is not an HDF5 file")
    cli.fails(*RECON, "--input", sim, "--maps", tmp_path / "no.npy", *argv, out=rec,
              says="no.npy does not exist")  # fmt: skip
    cli.fails(*RECON, "--input", sim, "--coils", "2", "--coil-energy", "0.9", *argv, out=rec,
              says="at most one of coils")  # fmt: skip
    cli.fails(*RECON, "--input", sim, "--spokes-per-frame", "1000", *argv, out=rec,
              says="exceeds the 16 imaging spokes")  # fmt: skip
    (sim / "raw.h5").write_bytes((sim / "raw.h5").read_bytes()[:100])  # truncated
    cli.fails(*RECON, "--input", sim, *argv, out=rec, says="raw.h5 is not an HDF5 file")
    (sim / "raw.h5").unlink()
    cli.fails(*RECON, "--input", sim, *argv, out=rec, says="holds neither raw.h5 nor kspace.npy")
    sim2 = tmp_path / "sim2"
    cli.fails(*SIMULATE, "--series", series_mat, "--spokes", "4", "--gradient-delay", "a,b,c",
              "--out", sim2, out=sim2, says="--gradient-delay must be one number")  # fmt: skip
