"""`import mrphys` chooses how OpenMP threads wait, unless the user already chose."""

from __future__ import annotations

import os

import pytest

import mrphys


@pytest.fixture
def env(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    return monkeypatch


def test_quiet_machine_spins_briefly(env) -> None:
    env.setattr(os, "getloadavg", lambda: (1.0, 1.0, 1.0))
    mrphys._openmp_wait_defaults()
    assert os.environ["GOMP_SPINCOUNT"] == "10000" and "OMP_WAIT_POLICY" not in os.environ


def test_busy_machine_sleeps(env) -> None:
    env.setattr(os, "getloadavg", lambda: (3.5, 3.0, 3.0))  # above 1.5x the 2 cores
    mrphys._openmp_wait_defaults()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE" and "GOMP_SPINCOUNT" not in os.environ


def test_no_load_average_counts_as_quiet(env) -> None:
    def no_load():
        raise OSError

    env.setattr(os, "getloadavg", no_load)
    mrphys._openmp_wait_defaults()
    assert os.environ["GOMP_SPINCOUNT"] == "10000"


@pytest.mark.parametrize("name", ["OMP_WAIT_POLICY", "GOMP_SPINCOUNT"])
def test_user_setting_wins(env, name: str) -> None:
    env.setenv(name, "ACTIVE" if name == "OMP_WAIT_POLICY" else "5")
    env.setattr(os, "getloadavg", lambda: (9.0, 9.0, 9.0))
    mrphys._openmp_wait_defaults()
    other = "GOMP_SPINCOUNT" if name == "OMP_WAIT_POLICY" else "OMP_WAIT_POLICY"
    assert os.environ[name] in ("ACTIVE", "5") and other not in os.environ
