"""PLANET: closed-form T1, T2 and off-resonance from the bSSFP ellipse."""

from __future__ import annotations

import math

import pytest
import torch

from mrphys.errors import MrphysError
from mrphys.physics.ssfp import pc_bssfp_signal
from mrphys.relax.data import METHODS_LIST, Protocol, sample_parameters
from mrphys.relax.evaluate import offresonance_sweep
from mrphys.relax.planet import planet_fit
from mrphys.relax.volume import fit_signals


def _signals(pr: Protocol, n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    p = sample_parameters(n, "uniform", True, g, dtype=torch.float64)
    s = pc_bssfp_signal(p["t1"], p["t2"], p["b1"], p["theta"], **pr.signal_kwargs())
    # arbitrary receive phase and gain: PLANET must not depend on them
    rx = torch.polar(
        torch.full((n,), 2.5, dtype=torch.float64),
        6 * torch.rand(n, generator=g, dtype=torch.float64),
    )
    return s * rx[:, None], p


@pytest.mark.parametrize("n_cycles", [6, 8, 12])
def test_planet_exact_on_noiseless_data(n_cycles: int) -> None:
    pr = Protocol(n_cycles)
    s, p = _signals(pr, 4000)
    r = planet_fit(s, p["b1"], tr=pr.tr, flip=pr.flip, phases=pr.phases())
    assert bool(r.ok.all())
    # bar: within 1 % of truth; the closed form is exact to rounding
    assert float(((r.t1 - p["t1"]) / p["t1"]).abs().max()) < 1e-6
    assert float(((r.t2 - p["t2"]) / p["t2"]).abs().max()) < 1e-6
    dth = torch.remainder(r.theta - p["theta"] + math.pi, 2 * math.pi) - math.pi
    assert float(dth.abs().max()) < 1e-6


def test_planet_general_increments_and_large_flip() -> None:
    # unequally spaced increments, a flip angle where b > a can occur
    inc = [0.1, 0.9, 1.7, 2.9, 3.6, 4.4, 5.2, 6.0]
    pr = Protocol.custom(inc, math.radians(50.0))
    s, p = _signals(pr, 2000, seed=3)
    r = planet_fit(s, p["b1"], tr=pr.tr, flip=pr.flip, phases=pr.phases())
    ok = r.ok
    assert float(ok.float().mean()) > 0.99
    assert float(((r.t1 - p["t1"]) / p["t1"])[ok].abs().max()) < 1e-5
    assert float(((r.t2 - p["t2"]) / p["t2"])[ok].abs().max()) < 1e-5


def test_planet_method_in_fit_signals_and_sweep() -> None:
    assert "planet" in METHODS_LIST
    pr = Protocol(12)
    s, p = _signals(pr, 500, seed=1)
    maps = fit_signals(s.to(torch.complex64), p["b1"].float(), "planet", pr)
    # theta = -2 pi dB0 TR (mrphys.physics.bloch)
    db0 = -p["theta"] / (2 * math.pi * pr.tr)
    assert float(((maps.t1 - p["t1"]) / p["t1"]).abs().max()) < 1e-3
    assert float((maps.db0 - db0).abs().max()) < 0.05  # Hz
    sw = offresonance_sweep("planet", pr, None)
    assert max(abs(v) for v in sw["t1_rel_err_pct"] + sw["t2_rel_err_pct"]) < 1e-3


def test_planet_refuses_too_few_cycles_and_magnitudes() -> None:
    pr = Protocol(4)
    s, p = _signals(pr, 10)
    with pytest.raises(MrphysError, match="at least 6 phase cycles"):
        planet_fit(s, p["b1"], tr=pr.tr, flip=pr.flip, phases=pr.phases())
    pr6 = Protocol(6)
    s6, p6 = _signals(pr6, 10)
    with pytest.raises(MrphysError, match="complex signals"):
        planet_fit(s6.abs(), p6["b1"], tr=pr6.tr, flip=pr6.flip, phases=pr6.phases())
    with pytest.raises(MrphysError, match="varies it"):
        fit_signals(
            s6, p6["b1"], "planet", Protocol.custom(pr6.phases().tolist(), [0.2] * 5 + [0.3])
        )


@pytest.mark.slow  # about 10 s on the busy machine (the figures)
def test_planet_in_the_evaluation(tmp_path) -> None:
    from mrphys.relax.evaluate import evaluate_method

    res = evaluate_method(
        "planet", Protocol(6), None, tmp_path, grid=8, n_mc=4, snrs=[math.inf], n_invivo=0
    )
    assert res["summary"]["cod_t1_snrinf"] > 0.9999
    assert res["offresonance_sweep"]["t1_max_abs_rel_err_pct"] < 1e-3
    assert (tmp_path / "offres_sweep.png").is_file() and (tmp_path / "cod_vs_snr.png").is_file()
