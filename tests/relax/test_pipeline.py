"""mrphys.relax.pipeline: a simulated volume written, fitted and its maps written."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from mrphys.relax.inputs import protocol_from_ms
from mrphys.relax.pipeline import fit_to_folder, simulate_to_folder


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    out = tmp_path_factory.mktemp("pipeline") / "sim"
    protocol = protocol_from_ms(6, 4.8, None, 15.0)
    simulate_to_folder(out, protocol, matrix=16, slices=1, snr=200.0, device="cpu", nii=True)
    return out


def test_simulate_writes_volume_maps_and_config(sim) -> None:
    names = {p.name for p in sim.iterdir()}
    assert {"pc_bssfp.nii", "b1.nii", "t1.nii", "t2.nii", "mask.nii", "config.json"} <= names
    cfg = json.loads((sim / "config.json").read_text())
    assert cfg["command"] == "relax simulate" and cfg["matrix"] == 16 and cfg["slices"] == 1
    assert cfg["device"] == "cpu" and cfg["protocol"]["n_cycles"] == 6


def test_fit_miracle_maps_near_truth_and_counts_voxels(sim, tmp_path) -> None:
    out = tmp_path / "fit"
    inputs = (sim / "pc_bssfp.nii", sim / "b1.nii")
    res = fit_to_folder(out, *inputs, "miracle", mask=sim / "mask.nii", device="cpu")
    mask = np.asarray(nib.load(str(sim / "mask.nii")).dataobj) > 0
    assert res.voxels_fitted == mask.sum() and res.voxels_without_signal == 0
    assert res.seconds >= 0 and not (out / "no_signal.nii.gz").exists()
    t1 = np.asarray(nib.load(str(out / "t1.nii.gz")).dataobj)  # ms
    truth = np.asarray(nib.load(str(sim / "t1.nii")).dataobj)
    assert np.median(np.abs(t1[mask] - truth[mask]) / truth[mask]) < 0.1
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["command"] == "relax fit" and cfg["voxels_fitted"] == res.voxels_fitted
    assert cfg["model"] is None
    units = cfg["units"]
    assert units["t1"] == units["t2"] == units["t1_sd"] == units["t2_sd"] == "ms"
    assert "db0" not in units and "no_signal" not in units  # magnitude method, every voxel fitted
    for name in ("t1_sd", "t2_sd", "residual", "quality"):
        assert (out / f"{name}.nii.gz").exists()
    sd = np.asarray(nib.load(str(out / "t1_sd.nii.gz")).dataobj)
    assert np.all(sd[mask] > 0)


def test_fit_marks_voxels_without_signal(sim, tmp_path) -> None:
    img = nib.load(str(sim / "pc_bssfp.nii"))
    data = np.asarray(img.dataobj).copy()
    data[:4] = 0  # four rows without signal
    inp = tmp_path / "pc.nii"
    nib.save(nib.Nifti1Image(data, img.affine), str(inp))
    out = tmp_path / "fit"
    res = fit_to_folder(out, inp, sim / "b1.nii", "miracle", device="cpu", nii=True)
    assert res.voxels_without_signal == 4 * data.shape[1] * data.shape[2]
    assert res.voxels_fitted == data[..., 0].size - res.voxels_without_signal
    no_signal = np.asarray(nib.load(str(out / "no_signal.nii")).dataobj)
    assert no_signal[:4].all() and not no_signal[4:].any()
