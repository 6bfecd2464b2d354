"""The posterior (Bayes) estimator of benchmarks/protocol_bayes.py: the bar's best estimator."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mrphys.relax import protocol_design as pd
from mrphys.relax.data import add_relax_noise, sample_parameters

D = torch.float64


@pytest.fixture(scope="module")
def pb(load_benchmark):
    return load_benchmark("protocol_bayes")


def test_prior_density_is_the_samplers(pb):
    # the written-out in vivo density against a histogram of the sampler's draws (chi^2 per bin
    # near 1), and zero outside the box
    g = torch.Generator().manual_seed(1)
    p = sample_parameters(400_000, "invivo", False, g, D)
    h, xe, ye = np.histogram2d(
        p["t1"].numpy(), p["t2"].numpy(), bins=[20, 20], range=[[0.36, 2.08], [0.02, 0.12]]
    )
    sub = 5  # integrate the density over each bin on a 5 x 5 sub-grid
    xs = np.linspace(0.36, 2.08, 20 * sub + 1)
    ys = np.linspace(0.02, 0.12, 20 * sub + 1)
    xx, yy = np.meshgrid((xs[1:] + xs[:-1]) / 2, (ys[1:] + ys[:-1]) / 2, indexing="ij")
    dens = pb.log_prior_t1_t2(torch.tensor(xx), torch.tensor(yy), "invivo").exp().numpy()
    dens = dens.reshape(20, sub, 20, sub).sum((1, 3))
    dens = dens / dens.sum() * h.sum()
    ok = dens > 20
    chi2 = (((h - dens) / np.sqrt(dens))[ok] ** 2).mean()
    assert 0.7 < chi2 < 1.4
    out = pb.log_prior_t1_t2(torch.tensor([0.3, 1.0]), torch.tensor([0.05, 0.13]), "invivo")
    assert bool(torch.isinf(out).all())


def _data(protocol, n: int, snr: float, seed: int = 5):
    g = torch.Generator().manual_seed(seed)
    t = sample_parameters(n, "invivo", True, g, D)
    s = pd.pc_bssfp_signal(t["t1"], t["t2"], t["b1"], t["theta"], **protocol.signal_kwargs())
    return t, add_relax_noise(s, snr, torch.Generator().manual_seed(seed + 1))


def test_posterior_mean_is_consistent_at_high_snr_and_ignores_the_receive_phase(pb):
    # SNR 1000: the (tempered) sampler still finds the narrow posterior, and the estimate is
    # within 1 % of the truth (the bound at this SNR: about 0.7 % of a 4-cycle scan)
    p = pd.paper_protocol(4)
    t, y = _data(p, 4, snr=1000.0)
    kw = dict(snr=1000.0, b1=t["b1"], n_dict=5_000, n_samples=256, seed=3)
    est = pb.posterior_estimates(y, p, **kw)
    assert est["mean"].shape == (4, 3) and bool((est["ess"] > 30).all())
    rel = (est["mean"][:, :2] - torch.stack([t["t1"], t["t2"]], -1)).abs()
    assert float((rel / torch.stack([t["t1"], t["t2"]], -1)).max()) < 0.01
    assert float((est["mean"][:, 2] - t["theta"]).abs().max()) < 0.005
    # a receive phase (complex M0) changes nothing: it is profiled out
    turned = pb.posterior_estimates(y * complex(math.cos(0.7), math.sin(0.7)), p, **kw)
    torch.testing.assert_close(turned["mean"], est["mean"], rtol=1e-6, atol=1e-9)


def test_without_b1_one_flip_leaves_b1_to_the_prior_and_two_flips_identify_it(pb):
    # one flip angle for all: B1 and T1 cannot be told apart, the posterior of B1 stays wide
    # (its estimate falls back towards the prior); a no-B1 protocol estimates B1 well
    nob1 = pd.Protocol.custom(
        np.radians([178.6, 27.8, 276.6, 178.7]).tolist(), np.radians([89.9, 8.3, 11.5, 38.7])
    )
    errs = {}
    for name, p in (("one flip", pd.paper_protocol(4)), ("no-B1", nob1)):
        t, y = _data(p, 12, snr=200.0)
        est = pb.posterior_estimates(y, p, snr=200.0, n_dict=5_000, n_samples=256, seed=3)
        assert est["mean"].shape == (12, 4)
        errs[name] = float(((est["mean"][:, 3] - t["b1"]).abs() / t["b1"]).median())
    assert errs["no-B1"] < 0.03 < errs["one flip"]


def test_t1_t2_log_density_lives_with_the_sampler(pb) -> None:
    """The prior of the Bayes benchmark is the sampler's own density (one home, relax.data);
    an unknown distribution is refused in one sentence."""
    from mrphys.errors import MrphysError
    from mrphys.relax.data import t1_t2_log_density

    assert pb.log_prior_t1_t2 is t1_t2_log_density
    flat = t1_t2_log_density(torch.tensor([0.8, 1.5]), torch.tensor([0.06, 0.09]), "uniform")
    assert torch.equal(flat, torch.zeros(2))
    with pytest.raises(MrphysError, match="invivo or uniform"):
        t1_t2_log_density(torch.tensor([0.8]), torch.tensor([0.06]), "extended")
