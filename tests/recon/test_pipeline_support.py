"""calibrate's support step (issue 14): the maps are weighted by (or cut to) where the data show
an object, estimated and given maps alike, and metrics.json says how much of the field is kept."""

from __future__ import annotations

import json

import pytest
import torch

from mrphys.errors import MrphysError
from mrphys.physics.mrd import read_mrd
from mrphys.recon.pipeline import CalibrationSteps, calibrate, recon_to_folder, simulate_to_folder

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    """6 frames of 32x32 (object on 64x64), 10 spokes, 4 coils, correlated noise, a delay."""
    out = tmp_path_factory.mktemp("support") / "sim"
    data = simulate_to_folder(out, "synthetic", 10, frames=6, matrix=32, coils=4, snr=30,
                              seed=3, gradient_delay=0.3)  # fmt: skip
    return out, data


def test_support_weighs_estimated_and_given_maps_alike_and_keeps_the_object(scan) -> None:
    out, data = scan
    raw, info = read_mrd(out / "raw.h5")
    steps = CalibrationSteps(support_threshold=0.3)
    est = calibrate(raw, info.noise, steps)
    given = calibrate(raw, info.noise, steps, maps=data.maps)
    full = calibrate(raw, info.noise, CalibrationSteps(support_threshold=0.0))
    assert full.report["support_fraction"] == full.report["support_mean_weight"] == 1.0
    # the maps had unit norm: their norm now is the weight, the same for the given maps
    w = est.data.maps.abs().pow(2).sum(0).sqrt()
    torch.testing.assert_close(w, given.data.maps.abs().pow(2).sum(0).sqrt())
    inside = w >= 1 - 1e-5
    assert est.report["support_fraction"] == pytest.approx(float(inside.float().mean()), abs=1e-3)
    assert est.report["support_mean_weight"] == pytest.approx(float(w.mean()), rel=1e-4)
    assert 0.0 < float(w.min()) < 0.5 and 0.1 < est.report["support_fraction"] < 0.9
    # inside the support the maps are those without the step; the image carries the weight
    torch.testing.assert_close(est.data.maps[:, inside], full.data.maps[:, inside])
    torch.testing.assert_close(est.intensity, full.intensity * w, rtol=1e-4, atol=1e-6)
    # never the object: every pixel of every frame above 5 % of the peak keeps 0.3 of its weight
    # (the truth, Fourier-cropped from the finer grid, rings at up to 3 % around it)
    truth = data.truth.abs()
    assert float(w[(truth > 0.05 * truth.amax()).any(0)].min()) >= 0.3


def test_support_is_reported_and_checked(scan, tmp_path) -> None:
    out, _ = scan
    m = recon_to_folder(tmp_path / "rec", out, "gridding", {})  # on by default
    written = json.loads((tmp_path / "rec" / "metrics.json").read_text())
    assert written["support_fraction"] == m["support_fraction"] < 1.0
    assert m["support_fraction"] < written["support_mean_weight"] < 1.0
    assert written["calibration"]["steps"]["support_threshold"] == 0.3
    with pytest.raises(MrphysError, match="support_threshold"):
        CalibrationSteps(support_threshold=1.0).validate()
