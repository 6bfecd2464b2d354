"""Analytic phase-cycled bSSFP model against METHODS section 3 reference values."""

from __future__ import annotations

import math

import pytest
import torch

from mrphys.errors import MrphysError
from mrphys.physics.ssfp import (
    configurations,
    pc_bssfp_signal,
    phase_increments,
    remove_common_phase,
)

PROTO = dict(tr=4.8e-3, te=2.4e-3, flip=math.radians(15))

REFERENCE = [
    (12, 0.0, (0.62031, 0.73501, 0.27382)),
    (6, 0.0, (0.61948, 0.73224, 0.28295)),
    (4, 0.0, (0.61353, 0.71490, 0.33539)),
    (4, 0.9 * math.pi, (0.61661, 0.72573, 0.30515)),
]


@pytest.mark.parametrize("n, theta, expected", REFERENCE)
def test_reference_configurations(n: int, theta: float, expected: tuple) -> None:
    s = pc_bssfp_signal(
        torch.tensor(0.939, dtype=torch.float64), 0.062, 1.0, theta, n_cycles=n, **PROTO
    )
    f = configurations(s, n).abs()
    assert torch.allclose(f, torch.tensor(expected, dtype=torch.float64), atol=1e-4)


def test_phase_increments() -> None:
    phi = phase_increments(4)
    assert torch.allclose(phi, torch.tensor([1, 3, 5, 7], dtype=torch.float64) * math.pi / 4)


def test_configuration_phases_after_correction() -> None:
    theta = torch.tensor([-2.0, -0.5, 0.0, 0.7, 2.5], dtype=torch.float64)
    s = pc_bssfp_signal(0.9, 0.06, 1.1, theta, n_cycles=12, remove_common_phase=True, **PROTO)
    assert s.shape == (5, 12)
    f = configurations(s, 12)
    # F_0 real positive; F_1 ~ exp(i theta); F_-1 ~ -exp(-i theta)
    assert torch.allclose(f[:, 1].imag, torch.zeros(5, dtype=torch.float64), atol=1e-12)
    assert bool((f[:, 1].real > 0).all())
    assert torch.allclose(torch.angle(f[:, 2]), theta, atol=0.05)
    assert torch.allclose(torch.angle(-f[:, 0]), -theta, atol=0.05)
    # normalisation
    assert torch.allclose(f.abs().pow(2).sum(-1), torch.ones(5, dtype=torch.float64))


def test_on_resonance_matches_closed_form_bssfp() -> None:
    # N = 1 gives the single increment phi = pi (alternating RF phase): at theta = 0 and
    # TE = TR/2 the magnitude is the textbook steady state of METHODS section 1.
    t1, t2, a = 0.8, 0.05, math.radians(30)
    t1t = torch.tensor(t1, dtype=torch.float64)
    s = pc_bssfp_signal(t1t, t2, 1.0, 0.0, n_cycles=1, tr=5e-3, te=2.5e-3, flip=a)
    e1, e2 = math.exp(-5e-3 / t1), math.exp(-5e-3 / t2)
    ref = (1 - e1) * math.sin(a) * math.sqrt(e2) / (1 - (e1 - e2) * math.cos(a) - e1 * e2)
    assert abs(float(s.abs()[0]) - ref) < 1e-10


def test_broadcasting_and_dtype() -> None:
    t1 = torch.full((3, 1), 1.0)
    t2 = torch.full((1, 4), 0.05)
    s = pc_bssfp_signal(t1, t2, 1.0, 0.0, n_cycles=6, **PROTO)
    assert s.shape == (3, 4, 6) and s.dtype == torch.complex64
    s64 = pc_bssfp_signal(t1.double(), t2.double(), 1.0, 0.0, n_cycles=6, **PROTO)
    assert s64.dtype == torch.complex128
    assert torch.allclose(s.to(torch.complex128), s64, atol=1e-6)


def test_a_batch_of_protocols_broadcasts_against_the_tissues() -> None:
    # C protocols (C, 1, N) against S tissues (S,): row c is protocol c alone, bit for bit
    g = torch.Generator().manual_seed(3)
    t1 = 0.4 + 1.6 * torch.rand(5, generator=g, dtype=torch.float64)
    t2 = 0.02 + 0.1 * torch.rand(5, generator=g, dtype=torch.float64)
    b1 = 0.7 + 0.6 * torch.rand(5, generator=g, dtype=torch.float64)
    theta = -2.8 + 5.6 * torch.rand(5, generator=g, dtype=torch.float64)
    flips = 0.02 + 1.5 * torch.rand(3, 4, generator=g, dtype=torch.float64)
    incs = 6.28 * torch.rand(3, 4, generator=g, dtype=torch.float64)
    kw = dict(tr=4.8e-3, te=2.4e-3)
    s = pc_bssfp_signal(t1, t2, b1, theta, flip=flips[:, None], increments=incs[:, None], **kw)
    assert s.shape == (3, 5, 4)
    for c in range(3):
        one = pc_bssfp_signal(t1, t2, b1, theta, flip=flips[c], increments=incs[c], **kw)
        assert torch.equal(s[c], one)
    with pytest.raises(MrphysError, match="4 angles but the protocol has 3 acquisitions"):
        pc_bssfp_signal(t1, t2, b1, theta, flip=flips[:, None], increments=incs[:, None, :3], **kw)


def test_m0_cancels_in_normalised_configurations() -> None:
    s1 = pc_bssfp_signal(torch.tensor(1.2), 0.08, 0.9, 0.3, n_cycles=6, **PROTO)
    s2 = pc_bssfp_signal(torch.tensor(1.2), 0.08, 0.9, 0.3, n_cycles=6, m0=7.0, **PROTO)
    assert torch.allclose(configurations(s1, 6), configurations(s2, 6), atol=1e-6)


def test_remove_common_phase_makes_sum_real() -> None:
    s = pc_bssfp_signal(torch.tensor([0.7, 1.4]), 0.05, 1.0, 1.0, n_cycles=4, **PROTO)
    c = remove_common_phase(s).sum(-1)
    assert torch.allclose(c.imag, torch.zeros(2), atol=1e-7) and bool((c.real > 0).all())


def test_gradcheck() -> None:
    d = torch.float64
    t1 = torch.tensor([0.9, 1.5], dtype=d, requires_grad=True)
    t2 = torch.tensor([0.05, 0.09], dtype=d, requires_grad=True)
    b1 = torch.tensor([0.8, 1.2], dtype=d, requires_grad=True)
    th = torch.tensor([0.3, -1.0], dtype=d, requires_grad=True)

    def fn(t1, t2, b1, th):
        s = pc_bssfp_signal(t1, t2, b1, th, n_cycles=6, remove_common_phase=True, **PROTO)
        f = configurations(s, 6)
        return torch.view_as_real(f)

    assert torch.autograd.gradcheck(fn, (t1, t2, b1, th))


BLOCH_CASES = [  # (T1 s, T2 s, B1, theta rad)
    (0.939, 0.062, 1.0, 0.0),
    (0.6, 0.045, 0.8, 0.7),
    (1.6, 0.11, 1.25, -2.0),
    (1.1, 0.09, 1.1, 2.6),
]


@pytest.mark.parametrize("n", [12, 4])
def test_matches_bloch_simulation(n: int) -> None:
    """Normalised configurations of the analytic model equal those of an event Bloch simulation
    (one voxel, 3000 dummy repetitions) for several (T1, T2, B1, theta)."""
    from mrphys.physics import bloch
    from mrphys.physics.sequence import bssfp
    from mrphys.tissue import Phantom

    d = torch.float64
    t1, t2, b1, th = (torch.tensor(v, dtype=d) for v in zip(*BLOCH_CASES, strict=True))
    db0 = -th / (2 * math.pi * PROTO["tr"])  # theta = -2 pi dB0 TR
    shape = (len(BLOCH_CASES), 1, 1)
    ph = Phantom(
        torch.ones(shape, dtype=d),
        t1.reshape(shape),
        t2.reshape(shape),
        b1=b1.reshape(shape),
        db0=db0.reshape(shape),
    )
    seq = bssfp(tr=PROTO["tr"], te=PROTO["te"], flip=PROTO["flip"], n_cycles=n, n_dummy=3000)
    s_bloch = bloch.simulate(seq, ph)  # (B, N)
    s_model = pc_bssfp_signal(t1, t2, b1, th, n_cycles=n, **PROTO)
    f_bloch = configurations(remove_common_phase(s_bloch), n)
    f_model = configurations(remove_common_phase(s_model), n)
    assert torch.allclose(f_bloch, f_model, atol=2e-3), (f_bloch - f_model).abs().max()
