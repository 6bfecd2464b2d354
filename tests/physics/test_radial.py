"""Golden-angle radial acquisition simulation and the RadialData contract."""

import json
import math

import numpy as np
import pytest
import torch

from mrphys.errors import MrphysError
from mrphys.physics.radial import RadialData, simulate_radial
from mrphys.tissue.dynamic import synthetic_cine


@pytest.fixture(scope="module")
def series():
    return synthetic_cine(3, 16, seed=0)


def test_simulate_shapes_and_noise_free_consistency(series):
    d = simulate_radial(series, spokes=5, coils=4)
    assert d.kspace.shape == (3, 4, 5, 32) and d.kspace.dtype == torch.complex64  # (T, C, S, N)
    assert d.traj.shape == (3, 5, 32, 2) and d.traj.dtype == torch.float32
    assert d.maps.shape == (4, 16, 16) and d.dcf.shape == (3, 5, 32)
    assert d.spoke_shape == (5, 32)
    assert torch.equal(d.truth, series)
    assert d.meta["acceleration"] == pytest.approx(16 / 5)
    # noise free: k-space is exactly the encoding of the truth
    k = d.operator().forward(d.truth)
    assert torch.allclose(k, d.kspace, atol=1e-6)


def test_noise_matches_the_stated_snr(series):
    clean = simulate_radial(series, spokes=8, coils=4)
    noisy = simulate_radial(series, spokes=8, coils=4, snr=5.0, seed=3)
    n = noisy.kspace - clean.kspace
    sigma = float(clean.kspace.abs().mean()) / 5.0
    assert noisy.meta["noise_std"] == pytest.approx(sigma, rel=1e-5)
    assert float(n.abs().pow(2).mean().sqrt()) == pytest.approx(sigma, rel=0.05)
    assert float(n.real.std()) == pytest.approx(sigma / math.sqrt(2), rel=0.07)
    again = simulate_radial(series, spokes=8, coils=4, snr=5.0, seed=3)
    assert torch.equal(again.kspace, noisy.kspace)
    # the draw that stored data sets were made with: (re, im) pairs from one seeded randn call
    g = torch.Generator().manual_seed(3)
    pairs = torch.randn(clean.kspace.shape + (2,), generator=g)
    old = clean.kspace + (sigma / math.sqrt(2)) * torch.view_as_complex(pairs)
    assert torch.equal(noisy.kspace, old)
    other = simulate_radial(series, spokes=8, coils=4, snr=5.0, seed=4)
    assert not torch.equal(other.kspace, noisy.kspace)


def test_save_load_roundtrip(series, tmp_path):
    d = simulate_radial(series, spokes=3, coils=2, snr=20.0)
    d.save(tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "acquisition.json", "dcf.npy", "kspace.npy", "maps.npy", "traj.npy", "truth.npy",
    ]  # fmt: skip
    assert np.load(tmp_path / "truth.npy").dtype == np.complex64
    assert json.loads((tmp_path / "acquisition.json").read_text())["snr"] == 20.0
    e = RadialData.load(tmp_path)
    for f in ("kspace", "traj", "maps", "dcf", "truth"):
        assert torch.equal(getattr(e, f), getattr(d, f))
    (tmp_path / "dcf.npy").unlink()
    with pytest.raises(MrphysError, match="dcf.npy"):
        RadialData.load(tmp_path)


def test_old_flattened_folders_still_load(series, tmp_path):
    d = simulate_radial(series, spokes=3, coils=2, snr=20.0)
    d.save(tmp_path)
    t, c, s, n = d.kspace.shape
    # the layout written before the spoke axis was kept: (T, C, K), (T, K, 2), (T, K)
    np.save(tmp_path / "kspace.npy", d.kspace.numpy().reshape(t, c, s * n))
    np.save(tmp_path / "traj.npy", d.traj.numpy().reshape(t, s * n, 2))
    np.save(tmp_path / "dcf.npy", d.dcf.numpy().reshape(t, s * n))
    info = json.loads((tmp_path / "acquisition.json").read_text())
    for key in ("spokes_per_frame", "layout"):
        info.pop(key)
    (tmp_path / "acquisition.json").write_text(json.dumps(info))
    e = RadialData.load(tmp_path)
    for f in ("kspace", "traj", "maps", "dcf", "truth"):
        assert torch.equal(getattr(e, f), getattr(d, f))
    info["samples_per_spoke"] = 7  # does not divide K = 96
    (tmp_path / "acquisition.json").write_text(json.dumps(info))
    with pytest.raises(MrphysError, match="spoke axis cannot be restored"):
        RadialData.load(tmp_path)
    info.pop("samples_per_spoke")
    (tmp_path / "acquisition.json").write_text(json.dumps(info))
    with pytest.raises(MrphysError, match="samples_per_spoke"):
        RadialData.load(tmp_path)


def test_bad_input(series):
    with pytest.raises(MrphysError, match="spokes"):
        simulate_radial(series, spokes=-1)
    with pytest.raises(MrphysError, match="snr"):
        simulate_radial(series, spokes=2, snr=-3)
    with pytest.raises(MrphysError, match="shape"):
        simulate_radial(series[0], spokes=2)
    d = simulate_radial(series, spokes=2, coils=2)
    with pytest.raises(MrphysError, match="traj"):
        RadialData(d.kspace, d.traj[:, :-1], d.maps, d.dcf)
    with pytest.raises(MrphysError, match=r"kspace must be a complex tensor \(T, C, S, N\)"):
        RadialData(d.kspace.flatten(2), d.traj.flatten(1, 2), d.maps, d.dcf.flatten(1))
    with pytest.raises(MrphysError, match="dcf"):
        RadialData(d.kspace, d.traj, d.maps, d.dcf[..., :-1])
