"""`mrphys dynamic simulate|recon`: tiny end-to-end run; bad input exits 2, writes nothing."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import scipy.io

from mrphys.cli import main


def _run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as e:  # argparse errors
        return int(e.code)


@pytest.fixture
def series_mat(tmp_path):
    """A tiny (Y, X, frames) = (16, 16, 4) magnitude series stored like the shared files."""
    yy, xx = np.meshgrid(np.arange(16) - 8, np.arange(16) - 8, indexing="ij")
    frames = [np.exp(-(yy**2 + xx**2) / (10.0 + 3 * t)) * 5.0 for t in range(4)]
    p = tmp_path / "tiny.mat"
    scipy.io.savemat(p, {"cine": np.stack(frames, axis=-1)})
    return p


def test_simulate_then_gridding_end_to_end(tmp_path, series_mat):
    sim, rec = tmp_path / "sim", tmp_path / "rec"
    argv = ["dynamic", "simulate", "--series", str(series_mat), "--spokes", "24", "--coils", "3"]
    assert _run(argv + ["--snr", "50", "--seed", "1", "--out", str(sim)]) == 0
    k = np.load(sim / "kspace.npy")
    assert k.shape == (4, 3, 24, 32) and k.dtype == np.complex64
    assert np.load(sim / "traj.npy").shape == (4, 24, 32, 2)
    assert np.load(sim / "maps.npy").shape == (3, 16, 16)
    assert np.load(sim / "dcf.npy").shape == (4, 24, 32)
    truth = np.load(sim / "truth.npy")
    assert truth.shape == (4, 16, 16) and truth.dtype == np.complex64
    assert np.abs(truth).max() == pytest.approx(1.0)
    assert json.loads((sim / "acquisition.json").read_text())["snr"] == 50.0

    assert _run(["dynamic", "recon", "--input", str(sim), "--method", "gridding",
                 "--out", str(rec)]) == 0  # fmt: skip
    x = np.load(rec / "recon.npy")
    assert x.shape == (4, 16, 16) and x.dtype == np.complex64
    mag = np.asarray(nib.load(rec / "recon.nii.gz").dataobj)
    assert mag.shape == (16, 16, 4)  # NIfTI order (X, Y, T)
    m = json.loads((rec / "metrics.json").read_text())
    assert len(m["psnr_db_per_frame"]) == 4 and len(m["ssim_per_frame"]) == 4
    assert m["psnr_db"] == pytest.approx(np.mean(m["psnr_db_per_frame"]))
    assert m["psnr_db"] > 25 and m["seconds"] >= 0
    assert (rec / "frames.png").stat().st_size > 0


def _assert_fails(argv, out, capsys, words):
    assert _run(argv) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}.tmp-*"))


def test_bad_simulate_input(tmp_path, series_mat, capsys):
    out = tmp_path / "o"
    base = ["dynamic", "simulate", "--out", str(out)]
    _assert_fails(base + ["--series", str(tmp_path / "no.mat"), "--spokes", "4"], out, capsys,
                  "does not exist")  # fmt: skip
    _assert_fails(base + ["--series", str(series_mat), "--spokes", "-2"], out, capsys, "--spokes")
    flat = tmp_path / "flat.mat"
    scipy.io.savemat(flat, {"img": np.ones((8, 8))})
    _assert_fails(base + ["--series", str(flat), "--spokes", "4"], out, capsys, "3-D")
    _assert_fails(base + ["--series", str(series_mat), "--variable", "nope", "--spokes", "4"],
                  out, capsys, "nope")  # fmt: skip
    _assert_fails(base + ["--series", str(series_mat), "--spokes", "4", "--snr", "-1"], out,
                  capsys, "--snr")  # fmt: skip


def test_existing_output_needs_overwrite(tmp_path, series_mat, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    argv = ["dynamic", "simulate", "--series", str(series_mat), "--spokes", "4", "--out", str(out)]
    assert _run(argv) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert _run(argv + ["--overwrite"]) == 0
    assert (out / "kspace.npy").is_file() and not (out / "keep.txt").exists()


def test_bad_recon_input(tmp_path, capsys):
    out = tmp_path / "r"
    base = ["dynamic", "recon", "--out", str(out)]
    _assert_fails(base + ["--input", str(tmp_path / "none"), "--method", "gridding"], out, capsys,
                  "does not exist")  # fmt: skip
    empty = tmp_path / "empty"
    empty.mkdir()
    _assert_fails(base + ["--input", str(empty), "--method", "cg-sense"], out, capsys, "kspace.npy")
    _assert_fails(base + ["--input", str(empty), "--method", "grasp", "--frames-out", "9"], out,
                  capsys, "inr")  # fmt: skip
    _assert_fails(base + ["--input", str(empty), "--method", "ls", "--iterations", "0"], out,
                  capsys, "--iterations")  # fmt: skip
    _assert_fails(base + ["--input", str(empty), "--method", "magic"], out, capsys, "--method")
