"""The command line chooses how OpenMP threads wait, unless the user already chose; `import mrphys`
changes nothing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mrphys import runtime


@pytest.fixture
def env(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    return monkeypatch


def test_quiet_machine_spins_briefly(env) -> None:
    env.setattr(os, "getloadavg", lambda: (1.0, 1.0, 1.0))
    runtime.openmp_wait_defaults()
    assert os.environ["GOMP_SPINCOUNT"] == "10000" and "OMP_WAIT_POLICY" not in os.environ


def test_busy_machine_sleeps(env) -> None:
    env.setattr(os, "getloadavg", lambda: (3.5, 3.0, 3.0))  # above 1.5x the 2 cores
    runtime.openmp_wait_defaults()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE" and "GOMP_SPINCOUNT" not in os.environ


def test_no_load_average_counts_as_quiet(env) -> None:
    def no_load():
        raise OSError

    env.setattr(os, "getloadavg", no_load)
    runtime.openmp_wait_defaults()
    assert os.environ["GOMP_SPINCOUNT"] == "10000"


@pytest.mark.parametrize("name", ["OMP_WAIT_POLICY", "GOMP_SPINCOUNT"])
def test_user_setting_wins(env, name: str) -> None:
    env.setenv(name, "ACTIVE" if name == "OMP_WAIT_POLICY" else "5")
    env.setattr(os, "getloadavg", lambda: (9.0, 9.0, 9.0))
    runtime.openmp_wait_defaults()
    other = "GOMP_SPINCOUNT" if name == "OMP_WAIT_POLICY" else "OMP_WAIT_POLICY"
    assert os.environ[name] in ("ACTIVE", "5") and other not in os.environ


def test_import_has_no_side_effects() -> None:
    """`import mrphys` sets no environment variable and does not load torch."""
    code = (
        "import os, sys; before = dict(os.environ); import mrphys, mrphys.errors, mrphys.cli; "
        "assert dict(os.environ) == before, 'environment changed'; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
