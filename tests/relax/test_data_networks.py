"""Training distributions, features and the SVNN/PINN networks."""

from __future__ import annotations

import math

import pytest
import torch

from mrphys.errors import MrphysError
from mrphys.nets import mlp
from mrphys.physics.noise import sigma_relax
from mrphys.relax.data import (
    METHODS_LIST,
    NETWORK_METHODS,
    Protocol,
    add_relax_noise,
    evaluation_grid,
    features,
    parameter_box,
    sample_parameters,
    simulate_signals,
)
from mrphys.relax.networks import build_network, model_features


@pytest.mark.parametrize("dist", ["uniform", "extended", "invivo"])
def test_distributions_stay_in_box_and_are_seeded(dist: str) -> None:
    p = sample_parameters(5000, dist, True, torch.Generator().manual_seed(1))
    q = sample_parameters(5000, dist, True, torch.Generator().manual_seed(1))
    assert torch.equal(p["t1"], q["t1"])
    lo, hi = parameter_box(dist, True)
    for i, k in enumerate(("t1", "t2", "theta")):
        assert float(p[k].min()) >= float(lo[i]) - 1e-6 and float(p[k].max()) <= float(hi[i]) + 1e-6
    assert bool((p["t1"] > p["t2"]).all())
    assert 0.7 <= float(p["b1"].min()) and float(p["b1"].max()) <= 1.3


def test_invivo_density_concentrates_on_brain_tissue() -> None:
    p = sample_parameters(20000, "invivo", False, torch.Generator().manual_seed(2))
    u = sample_parameters(20000, "uniform", False, torch.Generator().manual_seed(2))

    # most mass between WM and GM (T1 0.7-1.5 s, T2 50-100 ms); the uniform box has ~40 %
    def frac(d):
        return float(
            ((d["t1"] > 0.7) & (d["t1"] < 1.5) & (d["t2"] > 0.05) & (d["t2"] < 0.1)).double().mean()
        )

    assert frac(p) > 0.8 and frac(u) < 0.25
    assert bool((p["theta"] == 0).all())


def test_relax_noise_level_order_and_per_sample_snr() -> None:
    s = torch.zeros(20000, 4, dtype=torch.complex128)
    n = add_relax_noise(s, 10.0, torch.Generator().manual_seed(0))
    # METHODS 3: 0.074 / (sqrt 2 SNR) per channel, i.e. complex std sigma_relax = 0.074 / SNR
    per_channel = sigma_relax(10.0) / math.sqrt(2)
    for part in (n.real, n.imag):
        assert abs(float(part.std()) - per_channel) < 0.03 * per_channel
    # all real parts are drawn first, then all imaginary parts (the stored data sets' order)
    g = torch.Generator().manual_seed(0)
    re = torch.randn(s.shape, generator=g, dtype=torch.float64)
    assert torch.equal(n.real, re * (0.074 / (math.sqrt(2) * 10.0)))
    assert add_relax_noise(s, math.inf) is s
    # a tensor SNR sets each sample's level; inf leaves that sample noise-free
    snr = torch.tensor([math.inf, 5.0]).repeat(10000)
    m = add_relax_noise(s, snr, torch.Generator().manual_seed(1))
    assert bool((m[0::2] == 0).all())
    assert abs(float(m[1::2].real.std()) / (0.074 / (math.sqrt(2) * 5.0)) - 1) < 0.03
    with pytest.raises(MrphysError, match="SNR must be positive"):
        add_relax_noise(s, -1.0)


def test_method_lists() -> None:
    assert METHODS_LIST == ("miracle", "planet", *NETWORK_METHODS)
    assert all(build_network(m) is not None for m in NETWORK_METHODS)


def test_features_shapes_and_phase_convention() -> None:
    pr = Protocol(6)
    p = sample_parameters(100, "uniform", True, torch.Generator().manual_seed(0), torch.float64)
    s = simulate_signals(p, pr)
    fm = features(s, p["b1"], 6, False)
    fc = features(s, p["b1"], 6, True)
    assert fm.shape == (100, 4) and fc.shape == (100, 6)
    assert torch.allclose(fc[:, -1], p["b1"]) and torch.allclose(fm[:, -1], p["b1"])
    assert bool((fc[:, 1] > 0).all())  # F0 real positive after the common-phase removal


@pytest.mark.parametrize("cplx", [False, True])
@pytest.mark.parametrize("n", [12, 4])
def test_pinn_encoder_equals_signal_model(cplx: bool, n: int) -> None:
    pr = Protocol(n)
    p = sample_parameters(200, "extended", cplx, torch.Generator().manual_seed(5), torch.float64)
    f = features(simulate_signals(p, pr), p["b1"], n, cplx)
    cols = [p["t1"], p["t2"]] + ([p["theta"]] if cplx else [])
    enc = model_features(torch.stack(cols, -1), p["b1"], pr, cplx)
    assert torch.allclose(enc, f[:, :-1], atol=1e-12)


def test_pinn_encoder_gradcheck() -> None:
    pr = Protocol(4)
    params = torch.tensor(
        [[0.9, 0.06, 0.4], [1.5, 0.1, -2.0]], dtype=torch.float64, requires_grad=True
    )
    b1 = torch.tensor([0.9, 1.2], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: model_features(x, b1, pr, True), (params,))


@pytest.mark.parametrize(
    "method, count",
    [("svnn", 4610), ("pinn", 4610), ("svnn-complex", 68355), ("pinn-complex", 68355)],
)
def test_parameter_counts_and_box(method: str, count: int) -> None:
    net = build_network(method)
    assert sum(p.numel() for p in net.parameters()) == count
    x = torch.randn(64, 6 if "complex" in method else 4) * 10
    y = net(x)
    assert bool((y >= net.lo).all()) and bool((y <= net.hi).all())
    if "complex" in method:
        assert math.isclose(float(net.hi[2]), 0.9 * math.pi, rel_tol=1e-6)


def test_grid_layout() -> None:
    t1, t2 = evaluation_grid(5)
    assert t1.shape == (5, 5) and math.isclose(float(t1[0, 0]), 0.36)
    assert math.isclose(float(t1[-1, 0]), 2.08) and math.isclose(float(t2[0, -1]), 0.12)


@pytest.mark.parametrize("method", ["svnn", "pinn-complex"])
def test_predict_equals_forward(method: str, monkeypatch) -> None:
    torch.manual_seed(0)
    net = build_network(method).eval()
    net.set_normalisation(torch.rand(net.feat_mean.numel()), 0.5 + torch.rand(net.feat_std.numel()))
    x = torch.randn(5000, net.feat_mean.numel())
    with torch.no_grad():
        ref = net(x)
    out = net.predict(x)
    assert out.shape == ref.shape and not out.requires_grad
    assert torch.allclose(out, ref, rtol=1e-5, atol=1e-6 * float(net.hi.abs().max()))
    monkeypatch.setattr(mlp, "_FUSED_OK", False)  # where oneDNN's fused op is missing
    assert torch.equal(net.predict(x), ref)
