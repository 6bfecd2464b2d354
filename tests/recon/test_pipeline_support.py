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


def test_support_cuts_estimated_and_given_maps_alike_and_keeps_the_object(scan) -> None:
    out, data = scan
    raw, info = read_mrd(out / "raw.h5")
    steps = CalibrationSteps(support_threshold=0.1, support_taper=False)
    est = calibrate(raw, info.noise, steps)
    given = calibrate(raw, info.noise, steps, maps=data.maps)
    full = calibrate(raw, info.noise, CalibrationSteps(support_threshold=0.0))
    frac = est.report["support_fraction"]
    assert 0.2 < frac < 0.95 and given.report["support_fraction"] == frac
    assert full.report["support_fraction"] == 1.0
    inside = est.data.maps.abs().pow(2).sum(0) > 0
    assert float(inside.float().mean()) == pytest.approx(frac)
    # the same data-derived mask for the given maps, and the image is zero outside it
    assert torch.equal(inside, given.data.maps.abs().pow(2).sum(0) > 0)
    assert float(est.intensity[~inside].abs().max()) == 0.0
    # never the object: every pixel of every frame above 5 % of the peak is inside (the
    # truth, Fourier-cropped from the finer grid, rings at up to 3 % around it)
    truth = data.truth.abs()
    assert bool(inside[(truth > 0.05 * truth.amax()).any(0)].all())
    # inside, the maps are those of the step without the support
    torch.testing.assert_close(est.data.maps[:, inside], full.data.maps[:, inside])
    # the taper: the same maps inside, weights in (0, 1) outside, never zero
    taper = calibrate(raw, info.noise, CalibrationSteps(support_threshold=0.1))
    assert taper.report["support_fraction"] == frac
    norm = taper.data.maps.abs().pow(2).sum(0).sqrt()
    torch.testing.assert_close(taper.data.maps[:, inside], full.data.maps[:, inside])
    assert float(norm[~inside].max()) < 1.0 and float(norm.min()) > 0.0
    assert taper.report["support_mean_weight"] == pytest.approx(float(norm.mean()), rel=1e-4)
    assert frac < taper.report["support_mean_weight"] < 1.0


def test_support_is_reported_and_checked(scan, tmp_path) -> None:
    out, _ = scan
    steps = CalibrationSteps(support_threshold=0.1)
    m = recon_to_folder(tmp_path / "rec", out, "gridding", {}, steps=steps)
    written = json.loads((tmp_path / "rec" / "metrics.json").read_text())
    assert written["support_fraction"] == m["support_fraction"] < 1.0
    assert written["calibration"]["steps"]["support_threshold"] == 0.1
    with pytest.raises(MrphysError, match="support_threshold"):
        CalibrationSteps(support_threshold=1.0).validate()
