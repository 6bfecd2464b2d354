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


#: what a bad file holds, and what the refusal says
KINDS = {
    "payload": "refusing to load it as a",
    "truncated": "is not a readable",
    "text": "is not a readable",
}


@pytest.fixture(params=list(KINDS))
def bad(request, tmp_path: Path):
    """``plant(path) -> path``: writes a file of one bad kind there; ``.says`` is the sentence
    a refusal contains, ``.marker`` where the payload would create a file."""

    class Bad:
        kind, says, marker = request.param, KINDS[request.param], tmp_path / "PAYLOAD_RAN"

        def __call__(self, path: Path) -> Path:
            _plant(path, self.marker)
            if self.kind == "truncated":  # a run killed while writing, a copy cut short
                path.write_bytes(path.read_bytes()[:300])
            elif self.kind == "text":
                path.write_text("model weights, see the e-mail\n")
            return path

    return Bad()


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


def _refused(cli, bad, out: Path, *argv: str | Path) -> None:
    err = cli.fails(*argv, "--out", out, out=out)
    assert bad.says in err, err
    assert not bad.marker.exists(), "the payload ran"


def test_relax_fit_model(bad, sim, tmp_path, cli) -> None:
    fit = ["relax", "fit", "--input", sim / "pc_bssfp.nii.gz", "--b1", sim / "b1.nii.gz"]
    _refused(
        cli, bad, tmp_path / "fit", *fit, "--method", "pinn", "--model", bad(tmp_path / "m.pt")
    )


def test_relax_train_resume(bad, tmp_path, cli) -> None:
    ck = bad(tmp_path / "model.pt")
    before = ck.read_bytes()
    argv = ["relax", "train", "--method", "svnn", "--samples", "1000", "--max-epochs", "1"]
    r = cli(*argv, "--out", ck)
    assert r.rc == 2 and bad.says in r.err and len(r.err.strip().splitlines()) == 1, r.err
    assert not bad.marker.exists() and ck.read_bytes() == before


def test_spin_train_resume(bad, tmp_path, cli) -> None:
    ck = bad(tmp_path / "ck.pt")
    _refused(cli, bad, tmp_path / "tr", "spin", "train", *SPIN_TINY, *SPIN_NET, "--resume", ck)


def test_spin_train_planted_running_checkpoint(bad, tmp_path, cli) -> None:
    """A file planted where an interrupted run keeps its checkpoint (OUT.checkpoint.pt)."""
    bad(tmp_path / "tr.checkpoint.pt")
    _refused(cli, bad, tmp_path / "tr", "spin", "train", *SPIN_TINY, *SPIN_NET)


@pytest.mark.parametrize("method", ["finite-difference", "autograd"])
def test_spin_optimize_checkpoint(bad, method, tmp_path, cli) -> None:
    ck = bad(tmp_path / "ck.pt")
    argv = ["spin", "optimize", "--method", method, *SPIN_TINY, "--checkpoint", ck]
    _refused(cli, bad, tmp_path / "opt", *argv)


def test_spin_optimize_planted_running_checkpoint(bad, tmp_path, cli) -> None:
    bad(tmp_path / "opt.checkpoint.pt")
    argv = ["spin", "optimize", "--method", "autograd", *SPIN_TINY, "--iterations", "1"]
    _refused(cli, bad, tmp_path / "opt", *argv)


def test_planted_default_model_is_retrained(bad, sim, tmp_path, monkeypatch, cli, caplog) -> None:
    """A bad default-model cache file: a warning, then a new model in its place (no crash)."""
    import mrphys.relax.volume as vol

    monkeypatch.setenv("MRPHYS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(vol, "DEFAULT_MODEL_EPOCHS", 1)
    monkeypatch.setattr(vol, "DEFAULT_MODEL_SAMPLES", 1000)
    monkeypatch.setattr(vol, "_shipped_model", lambda *a, **k: None)  # the cache, not the package
    protocol = vol.Protocol(6, 4.8e-3, 2.4e-3, np.radians(15.0))
    planted = bad(tmp_path / "cache" / "relax" / f"pinn-{protocol.key()}-uniform-s0.pt")
    fit = ["relax", "fit", "--input", sim / "pc_bssfp.nii.gz", "--b1", sim / "b1.nii.gz"]
    with caplog.at_level(logging.WARNING, logger="mrphys.relax.volume"):
        cli.ok(*fit, "--method", "pinn", "--out", tmp_path / "fit")
    assert bad.says in caplog.text and "Training the default model anew" in caplog.text
    assert not bad.marker.exists()
    from mrphys.train import load_checkpoint

    assert load_checkpoint(planted)["stop_reason"]  # replaced by a trained default model
    assert (tmp_path / "fit" / "t1.nii.gz").is_file()


@pytest.fixture(scope="module")
def spin_cache(tmp_path_factory) -> tuple[Path, dict]:
    """A SPIN data cache filled by a tiny run: ``(folder, file -> its tensors)``."""
    root = tmp_path_factory.mktemp("spin")
    argv = ["spin", "train", *SPIN_TINY, *SPIN_NET, "--cache", str(root / "cache")]
    assert main([*argv, "--out", str(root / "a")]) == 0
    files = sorted((root / "cache").glob("spin-*.pt"))
    assert len(files) == 2  # training and test data
    return root, {f: torch.load(f, weights_only=True)["tensors"] for f in files}


def test_planted_spin_data_cache_is_rebuilt(bad, spin_cache, tmp_path, cli, caplog) -> None:
    root, good = spin_cache
    for f in good:
        bad(f)
    argv = ["spin", "train", *SPIN_TINY, *SPIN_NET, "--cache", root / "cache"]
    with caplog.at_level(logging.WARNING, logger="mrphys.design.data"):
        cli.ok(*argv, "--out", tmp_path / "b")
    assert caplog.text.count(f"{bad.says} SPIN data cache") == 2, caplog.text
    assert not bad.marker.exists()
    for f, tensors in good.items():  # rebuilt: the same data as before
        again = torch.load(f, weights_only=True)["tensors"]
        assert all(torch.equal(again[k], v) for k, v in tensors.items())
    a = torch.load(root / "a" / "checkpoint.pt", weights_only=True)["model"]
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
