"""SPIN settings that make no sense, and data sets that would take weeks or all the memory."""

from __future__ import annotations

import math

import pytest

from mrphys.design.data import Acquisition, make_data
from mrphys.design.optimize import FDConfig, JointConfig
from mrphys.design.train import TrainConfig
from mrphys.errors import MrphysError


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (FDConfig(step=math.inf), "step must be a positive number of deg"),
        (FDConfig(step=math.nan), "step must be a positive number of deg"),
        (JointConfig(learn=()), "learn names nothing; give one or more of flip1"),
        (JointConfig(lr_seq=math.inf), "lr_seq must be a finite number"),
        (JointConfig(start_flip1_deg=math.nan), "start_flip1_deg must be a finite number"),
        (TrainConfig(lr=math.inf), "learning rate must be a positive number"),
    ],
)
def test_nonsense_settings_are_one_sentence(config, message: str) -> None:
    with pytest.raises(MrphysError, match=message):
        config.check()


def test_the_defaults_pass() -> None:
    for config in (FDConfig(), JointConfig(), TrainConfig()):
        config.check()


def test_a_billion_phantoms_are_refused_with_the_time_estimate(monkeypatch) -> None:
    def never(*args, **kwargs):
        raise AssertionError("the simulator ran")

    acq = Acquisition(matrix=32)
    # `spin train --phantoms 1000000000` at 32 x 32: thousands of hours of simulation alone
    with pytest.raises(MrphysError, match=r"would take about 2,844 hours.*reduce --phantoms"):
        make_data(10**9, 0, acq, simulator=never)
    monkeypatch.setenv("MRPHYS_MEMORY_LIMIT_GB", "1")  # 50,000 phantoms of 64 x 64: 13 GB
    with pytest.raises(MrphysError, match=r"needs about 13.1 GB of memory but 1 GB"):
        make_data(50_000, 0, Acquisition(), simulator=never)
