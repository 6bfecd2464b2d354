"""Sequence representation and builders: timing, k-space trajectory from the gradients,
differentiable parameters, loops, bad inputs."""

from __future__ import annotations

import json
import math

import pytest
import torch

from mrphys.errors import MrphysError
from mrphys.physics.sequence import (
    ADC,
    GAMMABAR,
    Block,
    Loop,
    RFPulse,
    Sequence,
    bssfp,
    gre,
    spin_echo,
)


def trajectory(seq: Sequence) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(kx, ky, t) of every ADC sample in 1/m and s, following the 180-degree sign flips."""
    kx = ky = 0.0
    t = 0.0
    out = []
    for b in seq.blocks:
        if b.rf is not None:  # a refocusing pulse conjugates the phase, an excitation starts at 0
            kx, ky = (-kx, -ky) if abs(float(b.rf.flip) - math.pi) < 1e-6 else (0.0, 0.0)
        gx = 0.0 if b.gx is None else float(b.gx)
        gy = 0.0 if b.gy is None else float(b.gy)
        if b.adc is not None:
            for k in range(b.adc.num):
                ts = float(b.adc.delay) + (k + 0.5) * float(b.adc.dwell)
                out.append((kx + GAMMABAR * gx * ts, ky + GAMMABAR * gy * ts, t + ts))
        kx += GAMMABAR * gx * float(b.duration)
        ky += GAMMABAR * gy * float(b.duration)
        t += float(b.duration)
    return tuple(torch.tensor(v, dtype=torch.float64) for v in zip(*out, strict=True))


@pytest.mark.parametrize(
    "build,n",
    [
        (lambda: spin_echo(matrix=8, fov=0.064, n_dummy=2), 8),
        (lambda: gre(matrix=8, fov=0.064, n_dummy=3), 8),
        (lambda: bssfp(matrix=8, fov=0.064, n_cycles=1, n_dummy=3), 8),
    ],
)
def test_cartesian_trajectory_from_fov_and_matrix(build, n):
    seq = build()
    kx, ky, _ = trajectory(seq)
    kx, ky = kx.reshape(n, n), ky.reshape(n, n)
    dk = 1 / 0.064
    idx = torch.arange(n, dtype=torch.float64) - n // 2
    assert torch.allclose(kx, idx[None, :].expand(n, n) * dk, atol=1e-3 * dk)
    assert torch.allclose(ky, idx[:, None].expand(n, n) * dk, atol=1e-3 * dk)


def test_spin_echo_timing_matches_spin_paper():
    seq = spin_echo(matrix=64, fov=0.064, n_dummy=0)
    _, _, t = trajectory(seq)
    t = t.reshape(64, 64)
    # readout 36.8 .. 43.1 ms (64 samples at 10 kHz), sample 32 at TE = 40 ms, TR 10 s
    assert float(t[0, 32]) == pytest.approx(0.040, abs=1e-9)
    assert float(t[0, 0]) == pytest.approx(0.0368, abs=1e-9)
    assert float(t[1, 32] - t[0, 32]) == pytest.approx(10.0, abs=1e-6)
    # readout gradient from FOV: 1/(gammabar FOV dt) = 3.67 mT/m
    g_ro = float(seq.blocks[3].gx)
    assert g_ro == pytest.approx(1 / (GAMMABAR * 0.064 * 1e-4), rel=1e-6)
    assert g_ro == pytest.approx(3.67e-3, rel=2e-3)
    # prephase 16.8 - 20 ms, 180 at 20 ms
    assert float(seq.blocks[0].duration) == pytest.approx(0.0168, abs=1e-9)
    assert float(seq.blocks[1].duration) == pytest.approx(0.0032, abs=1e-9)
    assert seq.duration == pytest.approx(64 * 10.0, rel=1e-6)
    assert seq.kspace_shape == (64, 64) and seq.adc_count == 4096


def test_bssfp_gradients_are_balanced_and_phases_cycle():
    seq = bssfp(matrix=8, fov=0.032, n_cycles=2, n_dummy=0)
    blocks = seq.blocks
    for i in range(0, len(blocks), 3):  # every TR: zero net moment on both axes
        mx = sum(float(b.gx or 0.0) * float(b.duration) for b in blocks[i : i + 3])
        my = sum(float(b.gy or 0.0) * float(b.duration) for b in blocks[i : i + 3])
        assert abs(mx) < 1e-12 and abs(my) < 1e-12
    ph = [float(b.rf.phase) for b in blocks if b.rf is not None]
    inc = [math.pi / 2, 3 * math.pi / 2]  # pi (2j-1)/N for N = 2
    for r in range(1, 8):
        d = (ph[r] - ph[r - 1] - inc[0]) % (2 * math.pi)
        assert min(d, 2 * math.pi - d) < 1e-5
    d = (ph[9] - ph[8] - inc[1]) % (2 * math.pi)
    assert min(d, 2 * math.pi - d) < 1e-5
    assert seq.kspace_shape == (2, 8, 8)


def test_loop_expand_and_counts():
    d = torch.tensor(1e-3)
    inc = torch.tensor(0.3, requires_grad=True)
    rf = RFPulse(torch.tensor(0.5), torch.tensor(0.1))
    loop = Loop([Block(d, rf=rf), Block(d)], 5, inc)
    seq = Sequence(
        [loop, Block(d, adc=ADC(4, torch.tensor(1e-4), torch.tensor(0.0), torch.tensor(0.0)))]
    )
    assert seq.n_blocks == 11 and seq.adc_count == 4 and seq.duration == pytest.approx(11e-3)
    phases = [b.rf.phase for b in loop.expand() if b.rf is not None]
    assert [float(p.detach()) for p in phases] == pytest.approx(
        [0.1 + 0.3 * r for r in range(5)], abs=1e-6
    )
    phases[-1].backward()
    assert float(inc.grad) == pytest.approx(4.0)
    json.dumps(seq.describe())
    assert len(seq.parameters()) == 7  # d, flip, phase, dwell, delay, adc phase, inc (by identity)


def test_builder_parameters_can_require_grad_and_move():
    flip = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    seq = spin_echo(matrix=4, fov=0.004, flip1=flip, n_dummy=2)
    assert any(p is flip for p in seq.parameters())
    moved = seq.to(dtype=torch.float32)
    assert all(p.dtype == torch.float32 for p in moved.parameters())
    assert moved.blocks[0].rf.flip.grad_fn is not None  # differentiable copy


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: spin_echo(matrix=0), "matrix must be a positive integer"),
        (lambda: spin_echo(fov=64.0), r"fov must be in m, in \(0, 2\); got 64.0"),  # mm given
        (lambda: spin_echo(te=0.004), "must start after TE/2; TE too short"),
        (lambda: spin_echo(tr=0.03), "TR 0.03 s is too short for TE 0.04 s"),
        (lambda: spin_echo(tr=float("nan")), "tr must be finite; got nan"),
        (lambda: spin_echo(flip1=torch.ones(2)), r"flip1 must be a number .* got shape \(2,\)"),
        (lambda: spin_echo(flip1="ninety"), "flip1 must be a number .* got str"),
        (lambda: bssfp(te=6e-3, tr=5e-3), r"te must lie in \(0, tr\)"),
        (lambda: bssfp(n_cycles=0), "n_cycles must be a positive integer; got 0"),
        (lambda: bssfp(matrix=512, tr=4.8e-3), "te is too short for the readout"),
        (lambda: gre(spoiling="perfect"), "spoiling must be 'ideal', 'rf' or 'none'"),
        (lambda: gre(te=0.5, tr=0.1), "tr is too short for te and the readout"),
        (lambda: Sequence([Block(torch.tensor(-1.0))]), "block durations must be >= 0 s"),
        (
            lambda: Sequence(
                [
                    Block(
                        torch.tensor(1e-3),
                        adc=ADC(10, torch.tensor(1e-3), torch.tensor(0.0), torch.tensor(0.0)),
                    )
                ]
            ),
            "must end inside its block",
        ),
        (
            lambda: Sequence([Block(torch.tensor(1e-3))], kspace_shape=(3,)),
            "does not hold the 0 ADC samples",
        ),
    ],
)
def test_bad_inputs_raise(call, message):
    with pytest.raises(MrphysError, match=message):
        call()
