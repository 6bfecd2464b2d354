"""Closed-form steady-state signals: reference values, consistency, gradcheck, bad inputs."""

from __future__ import annotations

import math

import pytest
import torch

from mrphys.errors import MrphysError
from mrphys.physics import signal
from mrphys.physics.ssfp import pc_bssfp_signal
from mrphys.tissue import Phantom, spin_shepp_logan

F64 = torch.float64


def test_spin_echo_90_180_is_the_methods_formula():
    rho, t1, t2, tr, te = 0.98, 4.2, 1.99, 10.0, 0.04
    s = signal.spin_echo_steady_state(rho, t1, t2, tr, te)
    ref = rho * (1 - 2 * math.exp(-(tr - te / 2) / t1) + math.exp(-tr / t1)) * math.exp(-te / t2)
    assert float(s) == pytest.approx(ref, rel=1e-6)
    eq13 = signal.spin_echo_steady_state(rho, t1, t2, tr, te, exact=False)
    # METHODS: Eq. 13 is off by about 0.1 % for CSF at TR 10 s, TE 40 ms
    assert 0.0005 < abs(float(eq13) / ref - 1) < 0.002


def test_spin_echo_consistent_with_phantom_image():
    ph = spin_shepp_logan(2, matrix=32, fov=0.032)
    for exact in (True, False):
        a = signal.spin_echo_steady_state(ph.rho, ph.t1, ph.t2, 10.0, 0.04, exact=exact)
        b = signal.spin_echo_image(ph, 10.0, 0.04, exact=exact)
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7)


def test_spin_echo_image_closed_forms():
    ph = Phantom(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]]), torch.tensor([[0.1, 0.0]]))
    eq13 = signal.spin_echo_image(ph, tr=2.0, te=0.05)
    assert float(eq13[0, 0]) == pytest.approx((1 - math.exp(-2.0)) * math.exp(-0.5), rel=1e-6)
    assert float(eq13[0, 1]) == 0.0  # background
    ex = signal.spin_echo_image(ph, tr=2.0, te=0.05, exact=True)
    expect = (1 - 2 * math.exp(-(2.0 - 0.025)) + math.exp(-2.0)) * math.exp(-0.5)
    assert float(ex[0, 0]) == pytest.approx(expect, rel=1e-6)


def test_spin_echo_general_flips():
    # 180 refocusing, any excitation: sin(f1) (1 - E) / (1 + cos(f1) E) form for TE -> 0
    t1, tr = 0.8, 0.5
    f1 = torch.tensor([0.3, 1.0, math.pi / 2, 2.5], dtype=F64)
    s = signal.spin_echo_steady_state(1.0, t1, 1.0, tr, 0.0, flip1=f1)
    e1 = math.exp(-tr / t1)
    ref = torch.sin(f1) * (1 - e1) / (1 + torch.cos(f1) * e1)
    assert torch.allclose(s, ref, rtol=1e-12)


def test_bssfp_on_resonance_magnitude():
    t1, t2, tr, a = 0.939, 0.062, 4.8e-3, math.radians(35.0)
    s = signal.bssfp_steady_state(1.0, t1, t2, tr, tr / 2, a)
    e1, e2 = math.exp(-tr / t1), math.exp(-tr / t2)
    ref = (1 - e1) * math.sin(a) * math.sqrt(e2) / (1 - (e1 - e2) * math.cos(a) - e1 * e2)
    assert abs(float(s.imag)) < 1e-7 and float(s.real) == pytest.approx(ref, rel=1e-5)


def test_bssfp_matches_phase_cycled_model():
    t1 = torch.tensor([0.939, 0.5], dtype=F64)[:, None]
    t2 = torch.tensor([0.062, 0.04], dtype=F64)[:, None]
    theta = torch.tensor([0.0, 0.9 * math.pi], dtype=F64)[:, None]
    phi = math.pi * (2 * torch.arange(1, 7, dtype=F64) - 1) / 6
    s = signal.bssfp_steady_state(
        1.0, t1, t2, 4.8e-3, 2.4e-3, math.radians(15.0), phase_increment=phi, theta=theta
    )
    ref = pc_bssfp_signal(
        t1[:, 0],
        t2[:, 0],
        1.0,
        theta[:, 0],
        tr=4.8e-3,
        te=2.4e-3,
        flip=math.radians(15.0),
        n_cycles=6,
    )
    assert torch.allclose(s, ref, rtol=1e-10, atol=1e-12)
    # off_resonance_hz is theta = -2 pi df TR
    df = torch.tensor(30.0, dtype=F64)
    a = signal.bssfp_steady_state(1.0, 0.9, 0.08, 5e-3, 2.5e-3, 0.4, off_resonance_hz=df)
    b = signal.bssfp_steady_state(
        1.0, 0.9, 0.08, 5e-3, 2.5e-3, 0.4, theta=torch.tensor(-2 * math.pi * 30 * 5e-3, dtype=F64)
    )
    assert torch.allclose(a, b)


def test_spoiled_gre_is_largest_at_the_ernst_angle():
    t1, tr = 1.2, 0.01
    ae = float(signal.ernst_angle(t1, tr))
    assert ae == pytest.approx(math.acos(math.exp(-tr / t1)))
    flips = torch.linspace(0.01, 1.5, 500, dtype=F64)
    s = signal.spoiled_gre_steady_state(1.0, t1, 0.1, tr, 0.0, flips)
    assert abs(float(flips[s.argmax()]) - ae) < 0.004
    # full recovery limit TR >> T1: sin(a)
    full = signal.spoiled_gre_steady_state(1.0, 0.01, 0.1, 5.0, 0.0, 0.7)
    assert float(full) == pytest.approx(math.sin(0.7), rel=1e-6)


def test_background_is_zero_with_finite_gradients():
    t1 = torch.tensor([0.0, 0.8], dtype=F64, requires_grad=True)
    t2 = torch.tensor([0.0, 0.07], dtype=F64, requires_grad=True)
    for f in (
        lambda: signal.spin_echo_steady_state(1.0, t1, t2, 1.0, 0.02),
        lambda: signal.bssfp_steady_state(1.0, t1, t2, 5e-3, 2.5e-3, 0.5).abs(),
        lambda: signal.spoiled_gre_steady_state(1.0, t1, t2, 0.01, 0.004, 0.3),
    ):
        s = f()
        assert float(s[0].detach()) == 0.0 and float(s[1].detach()) > 0
        (g1, g2) = torch.autograd.grad(s.sum(), (t1, t2))
        assert bool(torch.isfinite(g1).all()) and bool(torch.isfinite(g2).all())


def test_gradcheck_all_models():
    def mk(*v):
        return tuple(torch.tensor(x, dtype=F64, requires_grad=True) for x in v)

    rho, t1, t2, tr, te, a = mk([1.0, 0.7], [0.8, 1.3], [0.07, 0.1], 0.9, 0.03, [0.9, 1.6])
    (a2,) = mk([2.8, 2.0])
    assert torch.autograd.gradcheck(signal.spin_echo_steady_state, (rho, t1, t2, tr, te, a, a2))
    tr2, te2, df = mk(5e-3, 2e-3, [10.0, -40.0])

    def bs(rho, t1, t2, tr, te, a, df):
        return torch.view_as_real(signal.bssfp_steady_state(rho, t1, t2, tr, te, a, df))

    assert torch.autograd.gradcheck(bs, (rho, t1, t2, tr2, te2, a, df))
    assert torch.autograd.gradcheck(signal.spoiled_gre_steady_state, (rho, t1, t2, tr2, te2, a))


def test_bad_inputs_raise():
    with pytest.raises(MrphysError, match=r"t1 and t2 must be >= 0 s"):
        signal.spin_echo_steady_state(1.0, -0.1, 0.05, 1.0, 0.02)
    with pytest.raises(MrphysError, match=r"milliseconds given"):
        signal.spin_echo_steady_state(1.0, 800.0, 70.0, 1.0, 0.02)
    with pytest.raises(MrphysError, match=r"te must lie in \[0, tr\]"):
        signal.spoiled_gre_steady_state(1.0, 0.8, 0.05, 0.01, 0.02, 0.3)  # TE > TR
    with pytest.raises(MrphysError, match=r"tr must be > 0 s"):
        signal.bssfp_steady_state(1.0, 0.8, 0.05, -5e-3, 2e-3, 0.3)
    with pytest.raises(MrphysError, match=r"NaN or infinite"):
        signal.bssfp_steady_state(1.0, float("nan"), 0.05, 5e-3, 2e-3, 0.3)
