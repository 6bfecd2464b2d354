"""mrphys.resources: the memory probe, its override, and the sentences that refuse a run."""

from __future__ import annotations

import pytest

from mrphys import resources
from mrphys.errors import MrphysError
from mrphys.resources import LIMIT_ENV, available_memory, check_memory, check_time


def test_probe_reads_the_machine_and_the_variable_overrides_it(monkeypatch) -> None:
    monkeypatch.delenv(LIMIT_ENV, raising=False)
    probed = available_memory()
    assert 1 << 26 < probed < 1 << 62  # between 64 MiB and "unknown": a real reading
    assert available_memory() == probed  # read once per process
    monkeypatch.setenv(LIMIT_ENV, "2.5")
    assert available_memory() == 2_500_000_000


def test_sysconf_fallback_without_proc_meminfo(monkeypatch) -> None:
    monkeypatch.delenv(LIMIT_ENV, raising=False)
    real_open = open

    def no_meminfo(path, *args, **kwargs):
        if str(path) == "/proc/meminfo":
            raise FileNotFoundError(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", no_meminfo)
    resources._probe_memory.cache_clear()
    try:
        assert resources._probe_memory() > 1 << 20
    finally:
        monkeypatch.undo()
        resources._probe_memory.cache_clear()


@pytest.mark.parametrize("text", ["0", "-1", "nan", "inf", "lots"])
def test_a_bad_limit_variable_is_a_sentence(monkeypatch, text: str) -> None:
    monkeypatch.setenv(LIMIT_ENV, text)
    with pytest.raises(MrphysError, match=f"{LIMIT_ENV} must be a positive number of GB"):
        available_memory()


def test_check_memory_names_estimate_limit_and_option(monkeypatch) -> None:
    monkeypatch.setenv(LIMIT_ENV, "1")
    check_memory(0.9e9, "a small job", "--size")  # fits: no error
    with pytest.raises(MrphysError) as e:
        check_memory(77.3e9, "a simulated volume", "--matrix or --slices")
    msg = str(e.value)
    assert "a simulated volume needs about 77.3 GB of memory but 1 GB is available" in msg
    assert msg.endswith("reduce --matrix or --slices.") and LIMIT_ENV in msg


def test_check_time_refuses_runs_longer_than_a_week() -> None:
    check_time(167.0, "training", "--phantoms")
    with pytest.raises(MrphysError, match="training would take about 2,845 hours.*--phantoms"):
        check_time(2845.0, "training", "--phantoms")
