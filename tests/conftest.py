"""Shared test fixtures."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of tiny problems: extra threads only add wake-up latency
    (severe on a busy 2-core machine). Use with ``pytestmark = pytest.mark.usefixtures(...)``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def load_benchmark() -> Callable[[str], ModuleType]:
    """``load_benchmark(name)``: the module of ``benchmarks/<name>.py`` (benchmarks are scripts,
    not a package, so tests that check a benchmark's own code load it by path)."""

    def load(name: str) -> ModuleType:
        path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod

    return load


@dataclass
class CliRun:
    """What one ``mrphys`` call returned: exit code, standard output and standard error."""

    rc: int
    out: str
    err: str


class Cli:
    """Runs the ``mrphys`` command in-process (``main(argv)``) and checks user-mistake exits."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self._capsys = capsys

    def __call__(self, *argv: str | Path) -> CliRun:
        """Run ``mrphys ARGV...``; argparse's ``SystemExit`` becomes the exit code."""
        from mrphys.cli import main

        self._capsys.readouterr()  # drop what earlier calls printed
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as e:
            rc = int(e.code)
        out, err = self._capsys.readouterr()
        return CliRun(rc, out, err)

    def ok(self, *argv: str | Path) -> CliRun:
        """Run and assert exit code 0 (the error text in the failure message)."""
        r = self(*argv)
        assert r.rc == 0, f"mrphys {' '.join(map(str, argv))} exited {r.rc}: {r.err}"
        return r

    def fails(self, *argv: str | Path, out: Path, says: str | None = None) -> str:
        """Run and assert a user mistake: exit 2, one sentence on stderr (containing ``says``),
        no traceback, and nothing written: ``out`` absent (or as it was) and no temporary
        sibling left. Returns the error line."""
        before = sorted(p.name for p in out.iterdir()) if out.is_dir() else None
        r = self(*argv)
        err = r.err.strip()
        assert r.rc == 2, f"exit {r.rc}, stderr: {err}"
        assert err and len(err.splitlines()) == 1 and "Traceback" not in err, err
        if says is not None:
            assert says in err, err
        if before is None:
            assert not out.exists(), f"{out} was written"
        else:
            assert sorted(p.name for p in out.iterdir()) == before, f"{out} was changed"
        assert not list(out.parent.glob(f".{out.name}.tmp-*")), "a temporary output was left"
        return err


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    """Run ``mrphys`` in-process: ``cli(*argv)``, ``cli.ok(*argv)``, ``cli.fails(*argv, out=,
    says=)`` (exit 2, one sentence, nothing written)."""
    return Cli(capsys)
