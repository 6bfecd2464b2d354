"""mrphys.recon.pipeline: a radial acquisition simulated into a folder and reconstructed."""

from __future__ import annotations

import json

import numpy as np
import torch

from mrphys.recon.pipeline import recon_to_folder, simulate_to_folder, truth_metrics


def test_truth_metrics() -> None:
    x = torch.rand(2, 8, 8, dtype=torch.complex64)
    assert truth_metrics(x, None) == {}
    assert truth_metrics(x, x[:1])["note"].startswith("no metrics: reconstruction (2, 8, 8)")
    m = truth_metrics(x + 0.01, x)
    assert len(m["psnr_db_per_frame"]) == 2 and m["psnr_db"] > 30 and m["ssim"] > 0.9
    assert truth_metrics(x[..., :6, :6], x[..., :6, :6])["ssim"] is None  # under 7 x 7


def test_simulate_then_recon_writes_the_files(tmp_path) -> None:
    sim, out = tmp_path / "sim", tmp_path / "rec"
    data = simulate_to_folder(sim, "synthetic", 8, frames=3, matrix=16, coils=2, config={"a": 1})
    assert data.kspace.shape[:2] == (3, 2) and data.meta["frames"] == 3
    assert json.loads((sim / "config.json").read_text()) == {"a": 1}
    m = recon_to_folder(out, sim, "gridding", {}, config={"b": 2})
    assert m["method"] == "gridding" and m["shape"] == [3, 16, 16] and m["config"] == {"b": 2}
    assert np.isfinite(m["psnr_db"]) and len(m["psnr_db_per_frame"]) == 3
    assert np.load(out / "recon.npy").shape == (3, 16, 16)
    assert {"recon.nii.gz", "metrics.json", "frames.png"} <= {p.name for p in out.iterdir()}
