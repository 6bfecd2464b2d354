"""SPIN data in chunks: shard jobs and a stopped run fill the same cache as one run, and the
chunks drawn by each are the one-process data bitwise."""

from __future__ import annotations

import pytest
import torch

from mrphys.design import data
from mrphys.design.data import Acquisition, make_data, simulate_shard

ACQ = Acquisition(matrix=16)
N, SEED = 5, 3  # three chunks of 2, 2, 1 phantoms (CHUNK made 2 here)


def fake_simulator(ph, flip1, flip2, te, acq):
    """A stand-in for the Bloch simulator (fast; the test is the chunking, not the physics)."""
    return torch.fft.fft2(ph.rho.to(torch.complex64)) * float(flip1)


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(data, "CHUNK", 2)


def _same(a, b) -> None:
    for k in ("rho", "t1", "t2", "sigma", "z", "kspace", "target"):
        assert torch.equal(getattr(a, k), getattr(b, k)), k


def test_shard_jobs_fill_the_cache_with_the_one_run_data(tmp_path) -> None:
    one = make_data(N, SEED, ACQ, simulator=fake_simulator)
    assert not simulate_shard(N, SEED, (1, 2), ACQ, fake_simulator, cache_dir=tmp_path)
    parts = list(tmp_path.glob("spin-*.parts/chunk-*.pt"))
    assert sorted(p.name for p in parts) == ["chunk-000000.pt", "chunk-000002.pt"]
    assert simulate_shard(N, SEED, (2, 2), ACQ, fake_simulator, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("spin-*.pt"))) == 1 and not list(tmp_path.glob("*.parts"))

    def never(*a, **k):
        raise AssertionError("simulated although cached")

    never.__module__, never.__qualname__ = fake_simulator.__module__, fake_simulator.__qualname__
    _same(make_data(N, SEED, ACQ, simulator=never, cache_dir=tmp_path), one)
    _same(make_data(4, SEED, ACQ, simulator=fake_simulator), one.subset(4))


def test_a_stopped_run_resumes_with_the_missing_chunks(tmp_path) -> None:
    calls: list[int] = []
    stop = [True]

    def stops(ph, *a):
        calls.append(ph.rho.shape[0])
        if stop[0] and len(calls) == 2:
            raise KeyboardInterrupt
        return fake_simulator(ph, *a)

    stops.__module__, stops.__qualname__ = fake_simulator.__module__, fake_simulator.__qualname__
    with pytest.raises(KeyboardInterrupt):
        make_data(N, SEED, ACQ, simulator=stops, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("spin-*.parts/chunk-*.pt"))) == 1  # chunk 0 was kept
    calls.clear()
    stop[0] = False
    resumed = make_data(N, SEED, ACQ, simulator=stops, cache_dir=tmp_path)
    assert calls == [2, 1]  # chunks 1 and 2 only
    _same(resumed, make_data(N, SEED, ACQ, simulator=fake_simulator))


def test_a_shard_is_checked() -> None:
    from mrphys.errors import MrphysError

    with pytest.raises(MrphysError, match="shard must satisfy"):
        simulate_shard(N, SEED, (3, 2), ACQ, fake_simulator)


def test_spin_simulate_command_fills_the_cache_that_training_reads(tmp_path, cli) -> None:
    data.CHUNK = 100  # the real chunks (the fixture's 2 is undone after the test)
    cache = tmp_path / "cache"
    size = ["--phantoms", "3", "--test-phantoms", "2", "--matrix", "16", "--cache", cache]
    r = cli.ok("spin", "simulate", *size, "--shard", "2/2")  # no chunk of these tiny sets
    assert "waiting for the other shards" in r.out and not list(cache.glob("spin-*.pt"))
    assert "complete" in cli.ok("spin", "simulate", *size, "--shard", "1/2").out
    assert len(list(cache.glob("spin-*.pt"))) == 2  # training and test data
    cli.fails("spin", "simulate", *size[:-2], "--shard", "1/2", out=tmp_path / "none",
              says="--cache must name a folder")  # fmt: skip
