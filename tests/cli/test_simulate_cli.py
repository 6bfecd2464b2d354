"""`mrphys simulate`: outputs, scale of image and truth, and bad input (exit 2, nothing written)."""

from __future__ import annotations

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from mrphys.cli import main


def _run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as e:  # argparse errors
        return int(e.code)


def test_spin_echo_outputs(tmp_path):
    out = tmp_path / "se"
    rc = _run(
        ["simulate", "--sequence", "spin-echo", "--matrix", "32", "--seed", "3", "--out", str(out)]
    )
    assert rc == 0
    names = {p.name for p in out.iterdir()}
    assert {
        "kspace.npy",
        "truth.nii.gz",
        "image.nii.gz",
        "phantom.npz",
        "sequence.seq",
        "config.json",
        "preview.png",
    } <= names
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


def test_same_seed_same_kspace(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        assert (
            _run(
                [
                    "simulate",
                    "--sequence",
                    "gre",
                    "--matrix",
                    "32",
                    "--seed",
                    "5",
                    "--noise-pct",
                    "1",
                    "--out",
                    str(d),
                ]
            )
            == 0
        )
    assert np.array_equal(np.load(a / "kspace.npy"), np.load(b / "kspace.npy"))


@pytest.mark.parametrize(
    "argv",
    [
        ["--sequence", "spin-echo", "--matrix", "-4"],
        ["--sequence", "spin-echo", "--phantom", "brain"],
        ["--sequence", "fse"],
        ["--sequence", "gre", "--noise-pct", "-1"],
        ["--sequence", "gre", "--te-ms", "60", "--tr-ms", "50"],
        ["--sequence", "gre", "--matrix", "abc"],
    ],
)
def test_bad_input_exit_2_nothing_written(tmp_path, argv, capsys):
    out = tmp_path / "out"
    assert _run(["simulate", *argv, "--out", str(out)]) == 2
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []
    err = capsys.readouterr().err.strip()
    assert err and "Traceback" not in err and len(err.splitlines()) == 1


def test_existing_output_needs_overwrite(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert _run(["simulate", "--sequence", "gre", "--matrix", "16", "--out", str(out)]) == 2
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert "--overwrite" in capsys.readouterr().err


def test_console_exit_code():
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "mrphys",
            "simulate",
            "--sequence",
            "gre",
            "--matrix",
            "0",
            "--out",
            "/nonexistent/never",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "--matrix" in r.stderr
