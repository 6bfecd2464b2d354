"""Nothing read from a file runs: a pickled payload given on every path that reads a checkpoint or
a cache is refused with one sentence (exit 2) or replaced by a rebuild, and never executed."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from mrphys.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


class _CreatesFile:
    """Unpickling this calls ``open(marker, "w")``: the file appears if the pickle is run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _plant(path: Path, marker: Path) -> Path:
    """A checkpoint-shaped file (``torch.save`` zip) whose ``model`` entry is the payload."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": "mrphys-checkpoint", "model": _CreatesFile(marker), "config": {}}, path)
    return path


@pytest.fixture
def payload(tmp_path: Path) -> tuple[Path, Path]:
    """``(payload file, marker)``; the marker is where the payload would create a file."""
    marker = tmp_path / "PAYLOAD_RAN"
    return _plant(tmp_path / "evil.pt", marker), marker


def test_the_payload_is_real(tmp_path: Path) -> None:
    """Loaded the unsafe way, the payload does create its file (so the tests below can fail)."""
    marker = tmp_path / "ran"
    path = _plant(tmp_path / "p.pt", marker)
    torch.load(path, weights_only=False)
    assert marker.exists()
    marker.unlink()
    pickle.loads(pickle.dumps(_CreatesFile(marker)))
    assert marker.exists()


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sec") / "sim"
    argv = ["--matrix", "16", "--slices", "1", "--phase-cycles", "6", "--out", str(out)]
    assert main(["relax", "simulate", *argv]) == 0
    return out


SPIN_TINY = ["--phantoms", "10", "--test-phantoms", "4", "--matrix", "16", "--width", "2"]
SPIN_NET = ["--net", "unet", "--batch-size", "5", "--epochs", "1", "--device", "cpu"]


def _refused(cli, out: Path, marker: Path, *argv: str | Path) -> None:
    err = cli.fails(*argv, "--out", out, out=out)
    assert "refusing to load" in err and "objects other than tensors" in err, err
    assert not marker.exists(), "the payload ran"


def test_relax_fit_model(payload, sim, tmp_path, cli) -> None:
    evil, marker = payload
    fit = ["relax", "fit", "--input", sim / "pc_bssfp.nii.gz", "--b1", sim / "b1.nii.gz"]
    _refused(cli, tmp_path / "fit", marker, *fit, "--method", "pinn", "--model", evil)


def test_relax_train_resume(payload, tmp_path, cli) -> None:
    evil, marker = payload
    argv = ["relax", "train", "--method", "svnn", "--samples", "1000", "--max-epochs", "1"]
    r = cli(*argv, "--out", evil)
    assert r.rc == 2 and "refusing to load" in r.err and len(r.err.strip().splitlines()) == 1
    assert not marker.exists()


def test_spin_train_resume(payload, tmp_path, cli) -> None:
    evil, marker = payload
    out = tmp_path / "tr"
    _refused(cli, out, marker, "spin", "train", *SPIN_TINY, *SPIN_NET, "--resume", evil)


def test_spin_train_planted_running_checkpoint(tmp_path, cli) -> None:
    """A payload planted where an interrupted run keeps its checkpoint (OUT.checkpoint.pt)."""
    marker = tmp_path / "PAYLOAD_RAN"
    out = tmp_path / "tr"
    _plant(tmp_path / "tr.checkpoint.pt", marker)
    _refused(cli, out, marker, "spin", "train", *SPIN_TINY, *SPIN_NET)


def test_spin_optimize_checkpoint(payload, tmp_path, cli) -> None:
    evil, marker = payload
    argv = ["spin", "optimize", "--method", "finite-difference", *SPIN_TINY, "--checkpoint", evil]
    _refused(cli, tmp_path / "opt", marker, *argv)


def test_planted_default_model_is_retrained(sim, tmp_path, monkeypatch, cli, caplog) -> None:
    import mrphys.relax.volume as vol

    marker = tmp_path / "PAYLOAD_RAN"
    monkeypatch.setenv("MRPHYS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(vol, "DEFAULT_MODEL_EPOCHS", 1)
    monkeypatch.setattr(vol, "DEFAULT_MODEL_SAMPLES", 1000)
    protocol = vol.Protocol(6, 4.8e-3, 2.4e-3, np.radians(15.0))
    planted = tmp_path / "cache" / "relax" / f"pinn-{protocol.key()}-uniform-s0.pt"
    _plant(planted, marker)
    fit = ["relax", "fit", "--input", sim / "pc_bssfp.nii.gz", "--b1", sim / "b1.nii.gz"]
    with caplog.at_level(logging.WARNING, logger="mrphys.relax.volume"):
        cli.ok(*fit, "--method", "pinn", "--out", tmp_path / "fit")
    assert "refusing to load it" in caplog.text and "Training the default model anew" in caplog.text
    assert not marker.exists()
    from mrphys.train import load_checkpoint

    assert load_checkpoint(planted)["stop_reason"]  # replaced by a trained default model
    assert (tmp_path / "fit" / "t1.nii.gz").is_file()


def test_planted_spin_data_cache_is_rebuilt(tmp_path, cli, caplog) -> None:
    marker = tmp_path / "PAYLOAD_RAN"
    cache = tmp_path / "cache"
    argv = ["spin", "train", *SPIN_TINY, *SPIN_NET, "--cache", cache]
    cli.ok(*argv, "--out", tmp_path / "a")
    files = sorted(cache.glob("spin-*.pt"))
    assert len(files) == 2  # training and test data
    good = {f: torch.load(f, weights_only=True)["tensors"] for f in files}
    for f in files:
        _plant(f, marker)
    with caplog.at_level(logging.WARNING, logger="mrphys.design.data"):
        cli.ok(*argv, "--out", tmp_path / "b")
    assert caplog.text.count("refusing to load it as a SPIN data cache") == 2
    assert not marker.exists()
    for f, tensors in good.items():  # rebuilt: the same data as before
        again = torch.load(f, weights_only=True)["tensors"]
        assert all(torch.equal(again[k], v) for k, v in tensors.items())
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_every_torch_load_in_the_package_is_weights_only() -> None:
    """A source scan: no ``torch.load`` in ``src`` without ``weights_only=True``."""
    import re

    import mrphys

    root = Path(mrphys.__file__).parent
    calls = []
    for f in root.rglob("*.py"):
        text = f.read_text()
        for m in re.finditer(r"torch\.load\(", text):
            end = text.index(")", m.end())
            calls.append((f.name, text[m.start() : end + 1]))
    assert calls, "the scan found no torch.load at all"
    unsafe = [c for c in calls if "weights_only=True" not in c[1]]
    assert not unsafe, unsafe
