"""Cramer-Rao bounds: closed forms, a Monte Carlo fit, identifiability, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from mrphys.physics.crlb import cramer_rao, fisher_information, jacobian
from mrphys.physics.ssfp import pc_bssfp_cramer_rao, pc_bssfp_signal, phase_increments

D = torch.float64


def test_linear_model_matches_least_squares_covariance():
    # s = A p with complex A: cov of the LS estimate is sigma^2 (Re A^H A)^-1
    g = torch.Generator().manual_seed(0)
    a = torch.randn(7, 3, dtype=torch.complex128, generator=g)
    p = torch.randn(3, dtype=D, generator=g)
    sigma = 0.3
    r = cramer_rao(lambda q: (a @ q.to(a.dtype).unsqueeze(-1)).squeeze(-1), p, sigma)
    expect = torch.diagonal(torch.linalg.inv((a.conj().T @ a).real)) * sigma**2
    torch.testing.assert_close(r.variance, expect)
    torch.testing.assert_close(r.fisher, (a.conj().T @ a).real / sigma**2)


def test_vectorised_over_voxels_and_per_voxel_sigma():
    t = torch.linspace(0.01, 0.2, 8, dtype=D)
    p = torch.tensor([[1.0, 0.05], [2.0, 0.08], [0.5, 0.1]], dtype=D)

    def model(q):
        return q[..., :1] * torch.exp(-t / q[..., 1:])

    sig = torch.tensor([0.01, 0.02, 0.03], dtype=D)
    r = cramer_rao(model, p, sig)
    for i in range(3):
        ri = cramer_rao(model, p[i], float(sig[i]))
        torch.testing.assert_close(r.variance[i], ri.variance)
    assert jacobian(model, p).shape == (3, 8, 2)


def test_bound_matches_monte_carlo_of_an_unbiased_fit_at_high_snr():
    # mono-exponential, Gauss-Newton fits of 4000 noisy draws: variance -> the bound
    t = torch.linspace(0.0, 0.3, 12, dtype=D)
    truth = torch.tensor([1.0, 0.08], dtype=D)
    sigma = 0.01

    def model(q):
        return q[..., :1] * torch.exp(-t / q[..., 1:])

    g = torch.Generator().manual_seed(1)
    y = model(truth) + sigma * torch.randn(4000, t.numel(), dtype=D, generator=g)
    q = truth.expand(4000, 2).clone()
    for _ in range(8):
        j = jacobian(model, q)
        r = (y - model(q)).unsqueeze(-1)
        q = q + torch.linalg.solve(j.transpose(-1, -2) @ j, j.transpose(-1, -2) @ r).squeeze(-1)
    bound = cramer_rao(model, truth, sigma).variance
    assert torch.allclose(q.var(0), bound, rtol=0.1)


def test_non_identified_parameters_get_an_infinite_bound():
    # s = (a + b) * t: only a + b is identified
    t = torch.linspace(0, 1, 5, dtype=D)
    r = cramer_rao(
        lambda q: (q[..., :1] + q[..., 1:2]) * t + q[..., 2:3], torch.ones(3, dtype=D), 1
    )
    assert torch.isinf(r.variance[:2]).all() and torch.isfinite(r.variance[2])


def test_pc_bssfp_without_b1_map_and_one_flip_cannot_identify_t1():
    kw = dict(sigma=0.01, tr=4.8e-3, te=2.4e-3, flip=math.radians(15), n_cycles=4)
    t1, t2 = torch.tensor(0.85, dtype=D), torch.tensor(0.062, dtype=D)
    one, zero = torch.tensor(1.0, dtype=D), torch.tensor(0.3, dtype=D)
    known = pc_bssfp_cramer_rao(t1, t2, one, zero, **kw)
    unknown = pc_bssfp_cramer_rao(t1, t2, one, zero, b1_known=False, **kw)
    assert torch.isfinite(known.variance).all()
    assert torch.isinf(unknown.variance[0])  # T1 and B1 trade off
    # two flip angles encode B1: everything identified
    flips = torch.tensor([0.1, 0.1, 0.5, 0.5], dtype=D)
    kw2 = dict(kw, flip=flips, n_cycles=None, increments=phase_increments(4))
    assert torch.isfinite(
        pc_bssfp_cramer_rao(t1, t2, one, zero, b1_known=False, **kw2).variance
    ).all()


def test_pc_bssfp_bound_is_differentiable_in_the_protocol():
    t1 = torch.tensor([0.85, 1.3], dtype=D)
    t2 = torch.tensor([0.06, 0.09], dtype=D)
    b1 = torch.ones(2, dtype=D)
    th = torch.tensor([0.2, -1.0], dtype=D)

    def f(flips, incs):
        r = pc_bssfp_cramer_rao(
            t1, t2, b1, th, sigma=0.01, tr=4.8e-3, te=2.4e-3, flip=flips, increments=incs
        )
        return r.std[..., :2].sum()

    flips = torch.tensor([0.2, 0.25, 0.3, 0.35], dtype=D, requires_grad=True)
    incs = (phase_increments(4) + 0.1).requires_grad_(True)
    assert torch.autograd.gradcheck(f, (flips, incs))


def test_fisher_rejects_bad_sigma():
    from mrphys.errors import MrphysError

    with pytest.raises(MrphysError, match="sigma must be positive"):
        fisher_information(torch.ones(2, 3, 1, dtype=D), 0.0)


def test_general_protocol_signal_equals_default_for_default_values():
    t1, t2 = torch.tensor([0.8, 1.2], dtype=D), torch.tensor([0.05, 0.1], dtype=D)
    b1, th = torch.tensor([0.9, 1.1], dtype=D), torch.tensor([0.3, -2.0], dtype=D)
    a = pc_bssfp_signal(t1, t2, b1, th, tr=5e-3, te=2.5e-3, flip=0.3, n_cycles=6)
    b = pc_bssfp_signal(
        t1,
        t2,
        b1,
        th,
        tr=5e-3,
        te=2.5e-3,
        flip=torch.full((6,), 0.3, dtype=D),
        increments=phase_increments(6),
    )
    torch.testing.assert_close(a, b, rtol=0, atol=0)
