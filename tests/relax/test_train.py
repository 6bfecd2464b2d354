"""Short training runs: the loss goes down, checkpoints resume exactly, models reload safely."""

from __future__ import annotations

import math

import pytest
import torch

from mrphys import __version__
from mrphys.errors import MrphysError
from mrphys.relax.networks import build_network
from mrphys.relax.train import EpochRecord, TrainConfig, load_model, train
from mrphys.train import load_checkpoint


def test_short_training_lowers_the_loss(tmp_path) -> None:
    for method in ("svnn", "pinn"):
        cfg = TrainConfig(method=method, n_samples=2500, max_epochs=3, batch_size=64, lr=3e-3)
        res = train(cfg, tmp_path / f"{method}.pt")
        val = [h.val_loss for h in res.history]
        assert len(val) == 3
        assert val[-1] < 0.5 * val[0], val
        assert all(isinstance(h, EpochRecord) and h.samples == 1500 for h in res.history)
        assert math.isfinite(res.test_loss) and res.stop_reason == "max_epochs"


def test_noisy_complex_training_runs_and_is_seeded() -> None:
    cfg = TrainConfig(method="pinn-complex", n_samples=1000, max_epochs=2, snr=25.0, n_cycles=6)
    a, b = train(cfg), train(cfg)
    assert a.history[-1].val_loss == b.history[-1].val_loss
    c = train(TrainConfig(**{**cfg.__dict__, "seed": 1}))
    assert c.history[-1].val_loss != a.history[-1].val_loss


def test_checkpoint_contents_and_resume(tmp_path) -> None:
    path = tmp_path / "m.pt"
    cfg = TrainConfig(method="svnn", n_samples=2000, max_epochs=2)
    r1 = train(cfg, path)
    ck = load_checkpoint(path)  # plain tensors and values: loads with weights_only=True
    for key in ("model", "best_model", "optimizer", "config", "normalisation", "history"):
        assert key in ck
    assert ck["version"] == __version__ and ck["epoch"] == 2
    assert ck["step"] == 2 * ((1200 + 127) // 128)
    assert ck["config"]["method"] == "svnn" and ck["config"]["snr"] == math.inf
    assert torch.equal(ck["normalisation"]["mean"], r1.model.feat_mean)
    cfg3 = TrainConfig(method="svnn", n_samples=2000, max_epochs=3)
    r2 = train(cfg3, path)
    assert len(r2.history) == 3 and r2.history[:2] == r1.history
    model, c = load_model(path)
    x = torch.rand(10, 4)
    assert c.method == "svnn" and torch.equal(model(x), r2.model(x))
    with pytest.raises(MrphysError, match=r"other settings \(n_samples\)"):
        train(TrainConfig(method="svnn", n_samples=3000, max_epochs=3), path)


def test_resumed_training_is_bitwise_the_uninterrupted_run(tmp_path) -> None:
    """Noisy PINN (noise drawn per batch): stopped after 2 epochs and resumed to 4 equals 4
    epochs in one go, weights and losses."""
    base = dict(method="pinn", n_samples=600, batch_size=64, snr=30.0, lr=3e-3, lr_patience=1)
    straight = train(TrainConfig(max_epochs=4, **base))
    train(TrainConfig(max_epochs=2, **base), tmp_path / "r.pt")
    resumed = train(TrainConfig(max_epochs=4, **base), tmp_path / "r.pt")
    for k, v in straight.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    assert [h.train_loss for h in resumed.history] == [h.train_loss for h in straight.history]
    assert [h.lr for h in resumed.history] == [h.lr for h in straight.history]


def test_checkpoints_of_the_earlier_format_still_load(tmp_path) -> None:
    """The flat dict written before the one trainer (as in a user's model cache)."""
    cfg = TrainConfig(method="svnn", n_samples=500)
    torch.manual_seed(3)
    net = build_network("svnn")
    net.set_normalisation(torch.rand(4), 1 + torch.rand(4))
    old = {
        "model": net.state_dict(),
        "best_model": net.state_dict(),
        "optimizer": torch.optim.Adam(net.parameters()).state_dict(),
        "config": cfg.__dict__,
        "normalisation": {"mean": net.feat_mean, "std": net.feat_std},
        "version": __version__,
        "epoch": 3,
        "step": 12,
        "best_val": 0.1,
        "bad_epochs": 0,
        "history": [{"epoch": 1, "train_loss": 0.2, "samples": 300, "val_loss": 0.1}],
        "stop_reason": "max_epochs",
    }
    torch.save(old, tmp_path / "old.pt")
    model, c = load_model(tmp_path / "old.pt")
    x = torch.rand(5, 4)
    assert c == cfg and torch.equal(model(x), net.eval()(x))


class _RunsCode:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_load_model_refuses_what_is_not_a_plain_checkpoint(tmp_path, capsys) -> None:
    with pytest.raises(MrphysError, match="does not exist"):
        load_model(tmp_path / "none.pt")
    torch.save({"model": {}, "config": {}, "best_model": _RunsCode()}, tmp_path / "x.pt")
    with pytest.raises(MrphysError, match="objects other than tensors and plain values"):
        load_model(tmp_path / "x.pt")
    assert "must never run" not in capsys.readouterr().out
    torch.save({"model": {}, "config": {"method": "svnn"}}, tmp_path / "y.pt")
    with pytest.raises(MrphysError, match="not an mrphys relax checkpoint"):
        load_model(tmp_path / "y.pt")


def test_early_stopping_stops(tmp_path) -> None:
    cfg = TrainConfig(method="svnn", n_samples=500, max_epochs=50, patience=1, lr=1e-9)
    res = train(cfg)
    assert res.stop_reason == "early_stopping" and len(res.history) < 50


def _expected_lrs(history: list, lr: float, lr_patience: int, decay: float) -> list[float]:
    """The learning rate after each epoch, recomputed from the validation losses."""
    best, bad, out = float("inf"), 0, []
    for h in history:
        if h.val_loss < best:
            best, bad = h.val_loss, 0
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
    assert res.history[-1].lr < 1e-9  # it did decay
    res = train(TrainConfig(max_epochs=9, **base), path)  # resumed
    lrs = [h.lr for h in res.history]
    assert lrs == pytest.approx(_expected_lrs(res.history, 1e-9, 2, 0.5), rel=1e-6)
    # off by default: the paper's constant learning rate
    res = train(TrainConfig(method="svnn", n_samples=500, max_epochs=4, patience=10, lr=1e-9))
    assert {h.lr for h in res.history} == {1e-9}


def test_result_json_form_keeps_the_history_keys() -> None:
    res = train(TrainConfig(method="svnn", n_samples=500, max_epochs=1))
    d = res.to_dict()
    assert set(d["history"][0]) == {"epoch", "train_loss", "samples", "val_loss", "lr", "seconds"}
    assert d["config"]["method"] == "svnn" and d["stop_reason"] == "max_epochs"
    assert d["history"][0]["val_loss"] == res.history[0].val_loss


def test_the_largest_seed_trains_and_a_larger_one_is_one_sentence(cli, tmp_path) -> None:
    """Seed 2^63 - 1 used to overflow in the per-epoch seeds (seed * 100003 + epoch)."""
    cfg = TrainConfig(method="pinn", n_samples=500, max_epochs=2, snr=30.0, seed=2**63 - 1)
    a, b = train(cfg), train(cfg)
    assert math.isfinite(a.history[-1].val_loss)
    assert a.history[-1].val_loss == b.history[-1].val_loss  # still seeded
    with pytest.raises(MrphysError, match=r"seed must lie in 0 \.\. 2\^63 - 1; got 9223372036"):
        TrainConfig(seed=2**63)
    r = cli("relax", "train", "--method", "svnn", "--seed", str(2**64), "--out", tmp_path / "x.pt")
    assert r.rc == 2 and "--seed must lie in 0 .. 2^63 - 1" in r.err and "Traceback" not in r.err
    assert not (tmp_path / "x.pt").exists()
