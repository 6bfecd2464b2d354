"""Short training runs: the loss goes down, checkpoints resume, models reload."""

from __future__ import annotations

import pytest
import torch

from mrphys import __version__
from mrphys.relax.train import TrainConfig, load_model, train


def test_short_training_lowers_the_loss(tmp_path) -> None:
    for method in ("svnn", "pinn"):
        cfg = TrainConfig(method=method, n_samples=2500, max_epochs=3, batch_size=64, lr=3e-3)
        res = train(cfg, tmp_path / f"{method}.pt")
        val = [h["val_loss"] for h in res.history]
        assert len(val) == 3
        assert val[-1] < 0.5 * val[0], val


def test_noisy_complex_training_runs_and_is_seeded() -> None:
    cfg = TrainConfig(method="pinn-complex", n_samples=1000, max_epochs=2, snr=25.0, n_cycles=6)
    a, b = train(cfg), train(cfg)
    assert a.history[-1]["val_loss"] == b.history[-1]["val_loss"]


def test_checkpoint_contents_and_resume(tmp_path) -> None:
    path = tmp_path / "m.pt"
    cfg = TrainConfig(method="svnn", n_samples=2000, max_epochs=2)
    r1 = train(cfg, path)
    ck = torch.load(path, weights_only=False)
    for key in (
        "model",
        "best_model",
        "optimizer",
        "config",
        "normalisation",
        "step",
        "epoch",
        "version",
    ):
        assert key in ck
    assert ck["version"] == __version__ and ck["epoch"] == 2
    assert ck["step"] == 2 * ((1200 + 127) // 128)
    assert torch.allclose(ck["normalisation"]["mean"], r1.model.feat_mean)
    cfg3 = TrainConfig(method="svnn", n_samples=2000, max_epochs=3)
    r2 = train(cfg3, path)
    assert len(r2.history) == 3 and r2.history[:2] == r1.history
    model, c = load_model(path)
    x = torch.rand(10, 4)
    assert c.method == "svnn" and torch.allclose(model(x), r2.model(x))


def test_early_stopping_stops(tmp_path) -> None:
    cfg = TrainConfig(method="svnn", n_samples=500, max_epochs=50, patience=1, lr=1e-9)
    res = train(cfg)
    assert res.stop_reason == "early_stopping" and len(res.history) < 50


def _expected_lrs(history: list[dict], lr: float, lr_patience: int, decay: float) -> list[float]:
    """The learning rate after each epoch, recomputed from the validation losses."""
    best, bad, out = float("inf"), 0, []
    for h in history:
        if h["val_loss"] < best:
            best, bad = h["val_loss"], 0
        else:
            bad += 1
            if bad % lr_patience == 0:
                lr *= decay
        out.append(lr)
    return out


def test_lr_decays_on_plateau_and_the_resume_keeps_it(tmp_path) -> None:
    # lr 1e-9 hardly moves the weights: most epochs are no better than the best one
    path = tmp_path / "p.pt"
    base = dict(method="svnn", n_samples=500, patience=20, lr=1e-9, lr_patience=2, lr_decay=0.5)
    res = train(TrainConfig(max_epochs=6, **base), path)
    assert res.history[-1]["lr"] < 1e-9  # it did decay
    res = train(TrainConfig(max_epochs=9, **base), path)  # resumed
    lrs = [h["lr"] for h in res.history]
    assert lrs == pytest.approx(_expected_lrs(res.history, 1e-9, 2, 0.5), rel=1e-6)
    # off by default: the paper's constant learning rate
    res = train(TrainConfig(method="svnn", n_samples=500, max_epochs=4, patience=10, lr=1e-9))
    assert {h["lr"] for h in res.history} == {1e-9}
