"""The general pc-bSSFP protocol: per-acquisition flips and increments, records, keys."""

from __future__ import annotations

import math

import pytest
import torch

from mrphys.errors import MrphysError
from mrphys.relax.data import Protocol, sample_parameters, simulate_signals


def test_default_protocol_is_standard_and_simulates_as_before():
    p = Protocol(6)
    assert p.is_standard and p.flips is None and p.increments is None
    q = Protocol.custom(p.phases().tolist(), p.flip, tr=p.tr, te=p.te)
    assert q.is_standard
    params = sample_parameters(
        50, "uniform", complex_=True, generator=torch.Generator().manual_seed(0)
    )
    torch.testing.assert_close(simulate_signals(params, p), simulate_signals(params, q))


def test_custom_protocol_round_trips_through_its_record():
    p = Protocol.custom([0.1, 1.0, 2.5, 4.0], [0.2, 0.3, 0.4, 0.5], tr=5e-3)
    assert not p.is_standard and p.te == pytest.approx(2.5e-3) and p.n_cycles == 4
    rec = p.record()
    assert rec["flip_deg"][0] == pytest.approx(math.degrees(0.2))
    assert len(rec["phase_increment_deg"]) == 4 and rec["scan_time_s"] == pytest.approx(0.02)
    back = Protocol.from_record(rec)
    assert back.flips == pytest.approx(p.flips) and back.increments == pytest.approx(p.increments)
    assert (back.tr, back.te, back.n_cycles) == pytest.approx((p.tr, p.te, p.n_cycles))
    assert Protocol.from_record(Protocol(12).record()) == Protocol(12)
    assert p.key() != Protocol(4, 5e-3, 2.5e-3, p.flip).key()


def test_custom_protocol_signals_follow_each_acquisitions_flip():
    p = Protocol.custom([1.0, 1.0, 1.0], [0.1, 0.2, 0.3])
    params = {
        k: torch.tensor([v], dtype=torch.float64)
        for k, v in {"t1": 1.0, "t2": 0.1, "b1": 1.0, "theta": 0.0}.items()
    }
    s = simulate_signals(params, p).abs()[0]
    for j, f in enumerate((0.1, 0.2, 0.3)):
        one = Protocol.custom([1.0] * 3, f)
        assert s[j].item() == pytest.approx(simulate_signals(params, one).abs()[0, 0].item())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_cycles": 4, "increments": (0.1, 0.2)}, "one value per acquisition"),
        ({"n_cycles": 3, "flips": (0.1, 0.2, 4.0)}, "every flip angle"),
        ({"n_cycles": 3, "increments": (0.1, float("nan"), 0.2)}, "finite"),
    ],
)
def test_bad_protocols_are_refused(kwargs, match):
    with pytest.raises(MrphysError, match=match):
        Protocol(**kwargs)


def test_bad_records_are_refused():
    with pytest.raises(MrphysError, match="no 'tr_ms'"):
        Protocol.from_record({"flip_deg": 15})
    with pytest.raises(MrphysError, match="malformed"):
        Protocol.from_record({"tr_ms": "x", "flip_deg": 15})
