"""Trust per voxel: residual, quality mask, noise estimate and calibrated uncertainty."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from mrphys.errors import MrphysError
from mrphys.physics.noise import sigma_relax
from mrphys.relax.data import Protocol, add_relax_noise, sample_parameters, simulate_signals
from mrphys.relax.networks import build_network
from mrphys.relax.train import TrainConfig, load_model, training_loss
from mrphys.relax.uncertainty import (
    noise_from_fit,
    noise_from_residuals,
    refine_fit,
    resimulate,
)
from mrphys.relax.volume import (
    RelaxMaps,
    fit_signals,
    fit_volume,
    shipped_model_path,
    simulate_volume,
)


def _invivo(pr: Protocol, n: int, snr: float, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    p = sample_parameters(n, "invivo", True, g, dtype=torch.float64)
    s = simulate_signals(p, pr)
    return add_relax_noise(s, snr, g), p


def test_resimulation_of_the_truth_fits_and_finds_theta() -> None:
    pr = Protocol(12)
    s, p = _invivo(pr, 300, math.inf)
    s = s * torch.polar(torch.full((300,), 0.3, dtype=torch.float64), p["t1"])[:, None]
    r = resimulate(s, p["b1"], p["t1"], p["t2"], None, pr)
    assert float(r["residual"].max()) < 1e-3  # theta found to 1e-3 rad
    dth = torch.remainder(r["theta"] - p["theta"] + math.pi, 2 * math.pi) - math.pi
    assert float(dth.abs().max()) < 2e-3


def test_miracle_trust_maps_are_calibrated_at_snr50() -> None:
    """The issue's bar: the 95 % interval covers 90-99 % of the true T1 and T2 (MIRACLE)."""
    pr = Protocol(12)
    s, p = _invivo(pr, 3000, 50.0, seed=1)
    maps = fit_signals(s, p["b1"], "miracle", pr, trust=True)
    q = maps.quality
    assert float(q.float().mean()) > 0.95
    for k in ("t1", "t2"):
        est, sd = getattr(maps, k).double(), getattr(maps, k + "_sd").double()
        z = ((est - p[k]) / sd)[q]
        cover = float((z.abs() < 1.96).double().mean())
        assert 0.90 <= cover <= 0.99, (k, cover)


def test_noise_estimate_from_residuals() -> None:
    pr = Protocol(12)
    s, p = _invivo(pr, 3000, 30.0, seed=2)
    true_sd = sigma_relax(30.0, per_channel=True)
    fit = fit_signals(s, p["b1"], "miracle", pr)
    r = resimulate(s, p["b1"], fit.t1, fit.t2, None, pr)
    # MIRACLE's own residual overstates the noise (it is not the least-squares fit) ...
    assert noise_from_residuals(r["sq"], pr.n_cycles) > 1.03 * true_sd
    # ... the least-squares refinement of a sample of voxels does not
    sd = noise_from_fit(s, p["b1"], fit.t1, fit.t2, r["theta"], r["m0"], pr, n_voxels=1000)
    assert sd == pytest.approx(true_sd, rel=0.04)


def test_volume_trust_maps_flat_and_masked() -> None:
    pr = Protocol(6)
    vol = simulate_volume(pr, matrix=24, n_slices=1, snr=50.0)
    maps = fit_volume(vol["signals"], vol["b1"], "planet", pr, mask=vol["mask"])
    for f in dataclasses.fields(RelaxMaps):
        v = getattr(maps, f.name)
        assert v is None or (isinstance(v, torch.Tensor) and v.shape == (24, 24, 1)), f.name
    m = vol["mask"]
    assert maps.quality.dtype == torch.bool and not bool(maps.quality[~m].any())
    assert float(maps.quality[m].float().mean()) > 0.5
    assert bool((maps.t1_sd[maps.quality] > 0).all())
    assert bool(torch.isfinite(maps.t2_sd[maps.quality]).all())
    # a voxel whose signal the model cannot produce fails the quality mask
    bad = vol["signals"].clone()
    i, j = (int(v) for v in m[..., 0].nonzero()[len(m.nonzero()) // 2])
    bad[i, j, 0] = torch.tensor([1, -1, 1, -1, 1, -1], dtype=bad.dtype) * bad[i, j, 0].abs().max()
    bad_maps = fit_volume(bad, vol["b1"], "miracle", pr, mask=m)
    assert bool(bad_maps.residual[i, j, 0] > 0.1) and not bool(bad_maps.quality[i, j, 0])


def test_trust_off_leaves_maps_none_and_networks_get_sd() -> None:
    pr = Protocol(12)
    s, p = _invivo(pr, 200, 50.0)
    assert fit_signals(s, p["b1"], "miracle", pr).t1_sd is None
    net = build_network("svnn").eval()
    maps = fit_signals(s, p["b1"], "svnn", pr, net, trust=True)
    assert maps.quality is not None and maps.t1_sd.shape == (200,)


def test_heteroscedastic_svnn_reports_its_own_sd() -> None:
    cfg = TrainConfig(method="svnn", heteroscedastic=True, snr=50.0)
    net = build_network("svnn", heteroscedastic=True).eval()
    assert net.lo.numel() == 4
    feats = torch.randn(16, 4)
    tgt = torch.stack([torch.full((16,), 1.0), torch.full((16,), 0.06)], -1)
    assert torch.isfinite(training_loss(net, cfg, feats, tgt))
    pr = Protocol(12)
    s, p = _invivo(pr, 50, 50.0)
    maps = fit_signals(s, p["b1"], "svnn", pr, net, trust=True)
    lo, hi = net.lo[0], net.hi[0]
    assert bool((maps.t1_sd > 0).all()) and bool((maps.t1_sd <= (hi - lo) * 1.0001).all())
    with pytest.raises(MrphysError, match="need labels"):
        TrainConfig(method="pinn", heteroscedastic=True)


def test_refinement_converges_from_a_nearby_start() -> None:
    pr = Protocol(12)
    s, p = _invivo(pr, 300, math.inf, seed=4)
    g = torch.Generator().manual_seed(1)
    t1 = p["t1"] * (1 + 0.05 * torch.randn(300, generator=g, dtype=torch.float64))
    t2 = p["t2"] * (1 + 0.05 * torch.randn(300, generator=g, dtype=torch.float64))
    th = p["theta"] + 0.05 * torch.randn(300, generator=g, dtype=torch.float64)
    sim = resimulate(s, p["b1"], t1, t2, th, pr)
    r = refine_fit(s, p["b1"], t1, t2, th, sim["m0"], pr, iterations=6)
    assert float(((r["t1"] - p["t1"]) / p["t1"]).abs().max()) < 1e-4
    assert float(((r["t2"] - p["t2"]) / p["t2"]).abs().max()) < 1e-4


def test_shipped_complex_pinn_with_refinement_meets_the_sweep_bar() -> None:
    from mrphys.relax.evaluate import offresonance_sweep

    path = shipped_model_path("pinn-complex", 12)
    if not path.is_file():
        pytest.skip("no shipped pinn-complex model for 12 cycles")
    net, _ = load_model(path)
    sw = offresonance_sweep("pinn-complex", Protocol(12), net, refine=2)
    assert max(abs(v) for v in sw["t1_rel_err_pct"] + sw["t2_rel_err_pct"]) < 1.0


def test_default_model_prefers_the_shipped_file(tmp_path, monkeypatch) -> None:
    from mrphys.relax.volume import default_model

    path = shipped_model_path("svnn", 12)
    if not path.is_file():
        pytest.skip("no shipped svnn model for 12 cycles")
    monkeypatch.setenv("MRPHYS_CACHE", str(tmp_path))
    ck = torch.load(path, weights_only=True)  # plain tensors and values only
    assert ck["config"]["method"] == "svnn" and path.stat().st_size < 1_000_000
    net, where = default_model("svnn", Protocol(12), progress=False)
    assert where == path and not any(tmp_path.iterdir())  # nothing trained or cached
    # another protocol has no shipped model: the cache is used (not trained here)
    assert shipped_model_path("svnn", 5).is_file() is False
