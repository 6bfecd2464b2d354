"""`mrphys dynamic simulate --cfl` / `dynamic recon --input kspace.cfl`: BART files in and out."""

from __future__ import annotations

import json

import numpy as np
import pytest

SIMULATE, RECON = ["dynamic", "simulate"], ["dynamic", "recon"]


@pytest.fixture
def sim(tmp_path, cli):
    out = tmp_path / "sim"
    argv = ["--series", "synthetic", "--frames", "3", "--matrix", "16", "--spokes", "8"]
    argv += ["--coils", "3", "--snr", "30", "--gradient-delay", "0.3", "--cfl", "--out", out]
    cli.ok(*SIMULATE, *argv)
    return out


def test_simulate_cfl_then_recon_from_bart_files_equals_recon_from_mrd(tmp_path, sim, cli) -> None:
    for name in ("kspace", "traj", "noise"):
        assert (sim / f"{name}.cfl").is_file() and (sim / f"{name}.hdr").is_file()
    a, b = tmp_path / "a", tmp_path / "b"
    r = cli.ok(*RECON, "--input", sim / "kspace.cfl", "--traj", sim / "traj.cfl", "--noise",
               sim / "noise.cfl", "--truth", sim / "truth.npy", "--method", "gridding",
               "--out", a)  # fmt: skip
    assert "BART radial k-space: 32 samples x 8 spokes x 3 coils x 3 frames" in r.out
    cli.ok(*RECON, "--input", sim / "raw.h5", "--truth", sim / "truth.npy", "--method",
           "gridding", "--out", b)  # fmt: skip
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    assert ma["raw"]["traj_units"] == "1/FOV" and ma["raw"]["noise_samples"] == [3, 2048]
    assert ma["gradient_delay_samples"] == pytest.approx(mb["gradient_delay_samples"], abs=1e-3)
    assert ma["psnr_db"] == pytest.approx(mb["psnr_db"], abs=0.01) and ma["psnr_db"] > 15
    np.testing.assert_allclose(np.load(a / "recon.npy"), np.load(b / "recon.npy"), atol=1e-4)
    # a folder holding the BART files alone (traj.cfl and noise.cfl found beside kspace.cfl)
    from mrphys.recon.pipeline import load_input

    (sim / "raw.h5").unlink()
    data, info, raw = load_input(sim)
    assert raw and info.traj_units == "1/FOV" and info.noise is not None
    assert data.truth is not None and tuple(data.kspace.shape) == (3, 3, 8, 32)


def test_bart_input_mistakes_exit_2(tmp_path, sim, cli) -> None:
    out = tmp_path / "out"
    (tmp_path / "lone").mkdir()
    for name in ("kspace.cfl", "kspace.hdr"):
        (tmp_path / "lone" / name).write_bytes((sim / name).read_bytes())
    cases = [
        (["--input", tmp_path / "lone" / "kspace.cfl"], "no trajectory was given"),
        (["--input", sim / "kspace.cfl", "--traj", sim / "noise.cfl"], "coordinate rows"),
        (["--input", sim / "traj.cfl", "--traj", sim / "traj.cfl"], "Cartesian readout"),
        (["--input", sim / "kspace.cfl", "--spokes-per-frame", "4"], "applies to MRD input"),
        (["--input", sim / "raw.h5", "--traj", sim / "traj.cfl"], "apply to BART k-space"),
        (["--input", sim / "kspace.cfl", "--matrix", "4"], "give a larger matrix"),
    ]
    for argv, says in cases:
        cli.fails(*RECON, *argv, "--method", "gridding", "--out", out, out=out, says=says)
