"""`mrphys simulate`: outputs, scale of image and truth, and bad input (exit 2, nothing written)."""

from __future__ import annotations

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

SIM = ["simulate", "--sequence"]


def test_spin_echo_outputs(tmp_path, cli):
    out = tmp_path / "se"
    cli.ok(*SIM, "spin-echo", "--matrix", "32", "--seed", "3", "--out", out)
    names = {p.name for p in out.iterdir()}
    expected = ["kspace.npy", "truth.nii.gz", "image.nii.gz", "phantom.npz", "sequence.seq"]
    assert {*expected, "config.json", "preview.png"} <= names
    k = np.load(out / "kspace.npy")
    assert k.dtype == np.complex64 and k.shape == (32, 32)
    truth = np.asarray(nib.load(out / "truth.nii.gz").dataobj)
    image = np.asarray(nib.load(out / "image.nii.gz").dataobj)
    assert truth.shape == image.shape
    # same scale: the noise-free inverse FFT matches the Eq. 13 image closely
    err = np.abs(image - truth).max() / truth.max()
    assert err < 0.05
    ph = np.load(out / "phantom.npz")
    assert {"rho", "t1", "t2"} <= set(ph.files)
    assert 0 < ph["t1"].max() < 10  # seconds, not ms
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["metrics"]["psnr_db"] > 35
    assert cfg["seed"] == 3


def test_same_seed_same_kspace(tmp_path, cli):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        cli.ok(*SIM, "gre", "--matrix", "32", "--seed", "5", "--noise-pct", "1", "--out", d)
    assert np.array_equal(np.load(a / "kspace.npy"), np.load(b / "kspace.npy"))


def test_overwrite_an_output_named_like_an_option_word(tmp_path, cli, monkeypatch):
    """`--sequence bssfp --out bssfp` twice: the word bssfp is no input file, so the earlier
    output is replaced (it was refused as 'holds the input bssfp')."""
    monkeypatch.chdir(tmp_path)
    cli.ok(*SIM, "bssfp", "--matrix", "32", "--out", "bssfp")
    cli.ok(*SIM, "bssfp", "--matrix", "32", "--seed", "1", "--out", "bssfp", "--overwrite")
    assert json.loads((tmp_path / "bssfp" / "config.json").read_text())["seed"] == 1


@pytest.mark.parametrize(
    "argv, says",
    [
        (["spin-echo", "--matrix", "-4"], "--matrix"),
        (["spin-echo", "--phantom", "brain"], "--phantom"),
        (["fse"], "--sequence"),
        (["gre", "--noise-pct", "-1"], "--noise-pct"),
        (["gre", "--te-ms", "60", "--tr-ms", "50"], "--te-ms"),
        (["gre", "--matrix", "abc"], "--matrix"),
        (["bssfp", "--tr-ms", "inf"], "--tr-ms must lie in (0, 100000] ms; got inf"),
        (["bssfp", "--tr-ms", "nan"], "--tr-ms must lie in (0, 100000] ms; got nan"),
        (["spin-echo", "--tr-ms", "1e9"], "--tr-ms must lie in (0, 100000] ms"),
    ],
)
def test_bad_input_exit_2_nothing_written(tmp_path, argv, says, cli):
    out = tmp_path / "out"
    cli.fails(*SIM, *argv, "--out", out, out=out, says=says)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_overwrite(tmp_path, cli):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    cli.fails(*SIM, "gre", "--matrix", "16", "--out", out, out=out, says="--overwrite")
    assert (out / "keep.txt").read_text() == "x"


def test_console_exit_code():
    argv = [*SIM, "gre", "--matrix", "0", "--out", "/nonexistent/never"]
    r = subprocess.run([sys.executable, "-m", "mrphys", *argv], capture_output=True, text=True)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "--matrix" in r.stderr
