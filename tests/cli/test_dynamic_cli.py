"""`mrphys dynamic simulate|recon`: tiny end-to-end run; bad input exits 2, writes nothing."""

from __future__ import annotations

import json

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
    sim, rec = tmp_path / "sim", tmp_path / "rec"
    argv = ["--series", series_mat, "--spokes", "24", "--coils", "3", "--snr", "50", "--seed", "1"]
    cli.ok(*SIMULATE, *argv, "--out", sim)
    k = np.load(sim / "kspace.npy")
    assert k.shape == (4, 3, 24, 32) and k.dtype == np.complex64
    assert np.load(sim / "traj.npy").shape == (4, 24, 32, 2)
    assert np.load(sim / "maps.npy").shape == (3, 16, 16)
    assert np.load(sim / "dcf.npy").shape == (4, 24, 32)
    truth = np.load(sim / "truth.npy")
    assert truth.shape == (4, 16, 16) and truth.dtype == np.complex64
    assert np.abs(truth).max() == pytest.approx(1.0)
    assert json.loads((sim / "acquisition.json").read_text())["snr"] == 50.0

    cli.ok(*RECON, "--input", sim, "--method", "gridding", "--out", rec)
    x = np.load(rec / "recon.npy")
    assert x.shape == (4, 16, 16) and x.dtype == np.complex64
    mag = np.asarray(nib.load(rec / "recon.nii.gz").dataobj)
    assert mag.shape == (16, 16, 4)  # NIfTI order (X, Y, T)
    m = json.loads((rec / "metrics.json").read_text())
    assert len(m["psnr_db_per_frame"]) == 4 and len(m["ssim_per_frame"]) == 4
    assert m["psnr_db"] == pytest.approx(np.mean(m["psnr_db_per_frame"]))
    assert m["psnr_db"] > 25 and m["seconds"] >= 0
    assert (rec / "frames.png").stat().st_size > 0


def test_recon_runs_the_registry_method_with_its_options(tmp_path, series_mat, cli):
    """--iterations reaches an iterative method (more CG iterations, closer to the truth)."""
    sim = tmp_path / "sim"
    cli.ok(*SIMULATE, "--series", series_mat, "--spokes", "8", "--coils", "3", "--out", sim)
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
    assert (out / "kspace.npy").is_file() and not (out / "keep.txt").exists()


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
        ("--input", empty, "--method", "ls", "--iterations", "0"): "--iterations",
        ("--input", empty, "--method", "magic"): "--method",
    }
    for argv, says in cases.items():
        cli.fails(*RECON, *argv, "--out", out, out=out, says=says)
