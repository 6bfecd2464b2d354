"""MIRACLE against the METHODS section 3 reference fits, and its two solvers against each other."""

from __future__ import annotations

import math

import pytest
import torch

from mrphys.physics.ssfp import configurations, pc_bssfp_signal
from mrphys.relax.data import add_relax_noise
from mrphys.relax.miracle import MiracleResult, _t1_closed_form, golden_section, miracle_fit

TR, TE, FLIP = 4.8e-3, 2.4e-3, math.radians(15)

# (cycles, theta, T1 ms, T2 ms, tolerance ms) from METHODS 3
REFERENCE = [
    (12, 0.0, 938.9, 62.01, (0.1, 0.01)),
    (6, 0.0, 907.2, 64.98, (0.1, 0.01)),
    (4, 0.0, 749.8, 87.0, (0.1, 0.05)),
]


def _features(t1, t2, b1, theta, n):
    s = pc_bssfp_signal(
        t1, t2, b1, theta, tr=TR, te=TE, flip=FLIP, n_cycles=n, remove_common_phase=True
    )
    return configurations(s, n).abs()


@pytest.mark.parametrize("solver", ["profile", "alternating"])
@pytest.mark.parametrize("n, theta, t1_ref, t2_ref, tol", REFERENCE)
def test_reference_fits(solver, n, theta, t1_ref, t2_ref, tol) -> None:
    f = _features(torch.tensor([0.939], dtype=torch.float64), 0.062, 1.0, theta, n)
    fit = miracle_fit(f, 1.0, tr=TR, flip=FLIP, solver=solver)
    assert isinstance(fit, MiracleResult) and fit.t1.shape == (1,) and fit.rounds >= 1
    assert abs(float(fit.t1) * 1e3 - t1_ref) < tol[0]
    assert abs(float(fit.t2) * 1e3 - t2_ref) < tol[1]


def test_solvers_agree_on_noisy_voxels() -> None:
    g = torch.Generator().manual_seed(3)
    m = 300
    t1 = 0.4 + 1.6 * torch.rand(m, generator=g, dtype=torch.float64)
    t2 = 0.02 + 0.1 * torch.rand(m, generator=g, dtype=torch.float64)
    b1 = 0.7 + 0.6 * torch.rand(m, generator=g, dtype=torch.float64)
    s = pc_bssfp_signal(
        t1, t2, b1, 0.0, tr=TR, te=TE, flip=FLIP, n_cycles=12, remove_common_phase=True
    )
    f = configurations(add_relax_noise(s, 25.0, g), 12).abs()
    a = miracle_fit(f, b1, tr=TR, flip=FLIP, solver="profile")
    b = miracle_fit(f, b1, tr=TR, flip=FLIP, solver="alternating", chunk=128)
    assert float(((a.t1 - b.t1) / b.t1).abs().max()) < 1e-3
    assert float(((a.t2 - b.t2) / b.t2).abs().max()) < 1e-3
    # the alternating scheme needs several rounds on noisy voxels (chunks of 128: the most)
    assert 1 < b.rounds <= 200


def test_noise_free_12_cycles_accurate_on_brain_range() -> None:
    t1 = torch.tensor([0.6, 0.85, 1.2, 1.8], dtype=torch.float64)
    t2 = torch.tensor([0.05, 0.06, 0.08, 0.1], dtype=torch.float64)
    b1 = torch.tensor([0.8, 1.0, 1.15, 1.3], dtype=torch.float64)
    f = _features(t1, t2, b1, 0.0, 12)
    fit = miracle_fit(f, b1, tr=TR, flip=FLIP)
    assert float(((fit.t1 - t1) / t1).abs().max()) < 0.01
    assert float(((fit.t2 - t2) / t2).abs().max()) < 0.01
    assert fit.t1.shape == (4,) and fit.t2.dtype == torch.float64


def test_closed_form_t1_step_zeroes_residual() -> None:
    e2 = torch.tensor([0.9, 0.95, 0.99], dtype=torch.float64)
    ca = torch.cos(torch.tensor([0.2, 0.26, 0.3], dtype=torch.float64))
    e1 = torch.tensor([0.99, 0.995, 0.998], dtype=torch.float64)
    p = 1 - e1 * ca - e2**2 * (e1 - ca)
    q = e2 * (1 - e1) * (1 + ca)
    r = torch.sqrt(p * p - q * q)
    x = (p - r) / q
    assert torch.allclose(_t1_closed_form(x, e2, ca), e1, rtol=1e-10)


def test_golden_section_vectorised() -> None:
    target = torch.tensor([0.3, 1.7, 4.2], dtype=torch.float64)
    x = golden_section(
        lambda v: (v - target) ** 2,
        torch.zeros(3, dtype=torch.float64),
        torch.full((3,), 5.0, dtype=torch.float64),
        1e-6,
    )
    assert torch.allclose(x, target, atol=1e-6)
