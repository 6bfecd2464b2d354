"""`mrphys dynamic recon --support-threshold`: the support step from the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.io

SIMULATE, RECON = ["dynamic", "simulate"], ["dynamic", "recon"]


@pytest.fixture
def scan(tmp_path, cli):
    """A small Gaussian blob (16 x 16, 4 frames) simulated into raw.h5: most of the field dark."""
    yy, xx = np.meshgrid(np.arange(16) - 8, np.arange(16) - 8, indexing="ij")
    frames = [np.exp(-(yy**2 + xx**2) / (6.0 + t)) * 5.0 for t in range(4)]
    mat = tmp_path / "blob.mat"
    scipy.io.savemat(mat, {"cine": np.stack(frames, axis=-1)})
    sim = tmp_path / "sim"
    cli.ok(*SIMULATE, "--series", mat, "--spokes", "16", "--coils", "3", "--snr", "40",
           "--out", sim)  # fmt: skip
    return sim


def test_support_threshold_reaches_the_calibration_and_is_reported(tmp_path, scan, cli):
    rec, off = tmp_path / "rec", tmp_path / "off"
    cli.ok(*RECON, "--input", scan, "--method", "gridding", "--support-threshold", "0.3",
           "--out", rec)  # fmt: skip
    m = json.loads((rec / "metrics.json").read_text())
    assert m["calibration"]["steps"]["support_threshold"] == 0.3
    assert 0 < m["support_fraction"] < m["support_mean_weight"] < 1
    weights = np.sqrt((np.abs(np.load(rec / "maps.npy")) ** 2).sum(0))  # unit-norm maps, weighted
    assert weights.mean() == pytest.approx(m["support_mean_weight"], rel=1e-3)
    cli.ok(*RECON, "--input", scan, "--method", "gridding", "--support-threshold", "0",
           "--out", off)  # fmt: skip
    assert json.loads((off / "metrics.json").read_text())["support_fraction"] == 1.0
    bad = tmp_path / "bad"
    cli.fails(*RECON, "--input", scan, "--method", "gridding", "--support-threshold", "1.5",
              "--out", bad, out=bad, says="--support-threshold")  # fmt: skip
