"""A learned SPIN sequence goes to the scanner: a .seq that passes check_timing() with the learned
values in its definitions."""

from __future__ import annotations

import math

import pytest
import torch

from mrphys.design.data import Acquisition
from mrphys.design.optimize import FDHistory, JointHistory
from mrphys.design.run import _export_sequence
from mrphys.physics import pulseq_io


def _defs(path) -> dict[str, str]:
    out, on = {}, False
    for line in path.read_text().splitlines():
        if line.startswith("["):
            on = line.strip() == "[DEFINITIONS]"
        elif on and line.strip():
            k, _, v = line.partition(" ")
            out[k] = v.strip()
    return out


def test_finite_difference_result_is_exported(tmp_path):
    acq = Acquisition(matrix=16, fov=0.032)
    hist = FDHistory(flip_angle_deg=[30.0, 71.5])
    _export_sequence(tmp_path / "s.seq", hist, acq, "finite-difference")
    assert pulseq_io.check_timing(tmp_path / "s.seq") == []
    d = _defs(tmp_path / "s.seq")
    assert float(d["LearnedFlip1Deg"]) == pytest.approx(71.5)
    assert d["LearnedMethod"] == "finite-difference"
    seq = pulseq_io.read_seq(tmp_path / "s.seq")
    assert float(seq.blocks[0].rf.flip) == pytest.approx(math.radians(71.5), rel=1e-4)


def test_joint_result_keeps_te_tr_and_line_weights(tmp_path):
    acq = Acquisition(matrix=16, fov=0.032, tr=2.0)
    hist = JointHistory(flip_angle_deg=[90.0, 80.0], flip2_deg=[180.0, 170.0],
                        te_ms=[40.0, 31.3], tr_ms=[2000.0, 1500.0],
                        line_weights=torch.rand(2, 16))  # fmt: skip
    _export_sequence(tmp_path / "j.seq", hist, acq, "autograd")
    assert pulseq_io.check_timing(tmp_path / "j.seq") == []
    d = _defs(tmp_path / "j.seq")
    assert float(d["LearnedTEms"]) == pytest.approx(31.3)
    assert len(d["LearnedLineWeights"].split()) == 16
    seq = pulseq_io.read_seq(tmp_path / "j.seq")
    assert seq.duration == pytest.approx(1.5 * (2 + 16), rel=1e-3)
