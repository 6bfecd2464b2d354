"""The one trainer: exact resume, refusal of non-plain checkpoints, early stopping, schedules."""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass

import pytest
import torch
import torch.nn as nn

from mrphys import __version__
from mrphys.errors import MrphysError
from mrphys.train import CHECKPOINT_FORMAT, Record, Trainer, load_checkpoint, save_checkpoint

X = torch.linspace(-1, 1, 64)[:, None]
Y = torch.sin(3 * X)


def _run(path, units: int, *, stop_at: int | None = None, resume: bool = False, **kw):
    """A small regression whose minibatches come from a generator carried across units
    (the hardest case for an exact resume: its state must travel in the checkpoint)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(1)
    cfg = {"lr": 1e-2, "units": units, "hidden": 8}
    tr = Trainer(
        model,
        opt,
        cfg,
        units=units,
        checkpoint=path,
        generators={"batches": gen},
        resume_ignore=("units",),
        **kw,
    )
    if resume:
        tr.resume(path)

    def unit(u: int) -> dict:
        if stop_at is not None and u == stop_at:
            raise KeyboardInterrupt  # the run is killed during this unit
        tot = 0.0
        for _ in range(4):
            idx = torch.randperm(64, generator=gen)[:16]
            loss = (model(X[idx]) - Y[idx]).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            tr.step += 1
            tot += float(loss.detach())
        with torch.no_grad():
            val = float((model(X) - Y).square().mean())
        return {"epoch": u + 1, "loss": tot / 4, "val": val}

    tr.run(unit)
    return model, tr


def test_resume_after_a_stop_or_a_kill_is_bitwise_the_uninterrupted_run(tmp_path) -> None:
    straight, t_straight = _run(None, 6)
    _run(tmp_path / "a.pt", 3)  # stopped after 3 of 6 units
    resumed, t_resumed = _run(tmp_path / "a.pt", 6, resume=True)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "b.pt", 6, stop_at=4)  # killed in unit 5: units 1-4 are on disk
    assert load_checkpoint(tmp_path / "b.pt")["epoch"] == 4
    killed, _ = _run(tmp_path / "b.pt", 6, resume=True)
    for m in (resumed, killed):
        for a, b in zip(straight.parameters(), m.parameters(), strict=True):
            assert torch.equal(a, b)
    assert t_resumed.history == t_straight.history and t_resumed.step == 24
    # and the generator did matter: without its state the resumed run would differ
    assert t_straight.history[0]["loss"] > t_straight.history[-1]["loss"]


def test_checkpoint_holds_the_run_and_plain_json_config(tmp_path) -> None:
    _run(tmp_path / "c.pt", 2, normalisation={"mean": torch.ones(3), "std": 2.0})
    ck = load_checkpoint(tmp_path / "c.pt")
    assert ck["format"] == CHECKPOINT_FORMAT and ck["version"] == __version__
    assert ck["epoch"] == 2 and ck["step"] == 8 and ck["stop_reason"] == "max_epochs"
    assert set(ck["rng"]) == {"batches"} and ck["rng"]["batches"].dtype == torch.uint8
    assert set(ck["model"]) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    assert "state" in ck["optimizer"] and len(ck["history"]) == 2
    assert ck["world_size"] == 1  # processes of the torchrun job (tests/test_ddp.py: 2)
    assert torch.equal(ck["normalisation"]["mean"], torch.ones(3))
    assert json.loads(json.dumps(ck["config"])) == ck["config"]


class _Payload:
    """Unpickling this runs code (it would append to a file)."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "a"))


def test_a_checkpoint_that_would_run_code_is_refused_not_executed(tmp_path) -> None:
    marker = tmp_path / "executed"
    bad = tmp_path / "bad.pt"
    torch.save({"model": {}, "config": {}, "evil": _Payload(marker)}, bad)
    with pytest.raises(MrphysError, match="objects other than tensors and plain values"):
        load_checkpoint(bad)
    assert not marker.exists()
    # the same file read without the guard would have run it (so the test can fail)
    torch.load(bad, weights_only=False)
    assert marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_unreadable_or_foreign_files_are_refused_with_one_sentence(tmp_path) -> None:
    with pytest.raises(MrphysError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(MrphysError, match="not a readable checkpoint"):
        load_checkpoint(junk)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(MrphysError, match="no model weights and config"):
        load_checkpoint(other)
    pickled = tmp_path / "plain.pkl"
    pickled.write_bytes(pickle.dumps({"model": {}, "config": {}}))
    with pytest.raises(MrphysError, match="not a readable checkpoint"):
        load_checkpoint(pickled)


def test_resume_with_other_settings_names_them(tmp_path) -> None:
    _run(tmp_path / "d.pt", 2)
    model = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1))
    tr = Trainer(model, torch.optim.Adam(model.parameters()), {"lr": 0.1, "hidden": 8}, units=3)
    with pytest.raises(MrphysError, match=r"other settings \(lr, units\)"):
        tr.resume(tmp_path / "d.pt")


def test_early_stopping_keeps_the_best_weights_and_decays_the_rate() -> None:
    model = nn.Linear(1, 1, bias=False)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    vals = [3.0, 1.0, 2.0, 2.5, 0.5]  # best at unit 2; patience 2 stops after unit 4
    tr = Trainer(model, opt, {}, units=5, monitor="val", patience=2, lr_patience=1, lr_decay=0.5)

    def unit(u: int) -> dict:
        with torch.no_grad():
            model.weight.fill_(float(u))
        return {"val": vals[u]}

    assert tr.run(unit) == "early_stopping"
    assert [h["lr"] for h in tr.history] == [1.0, 1.0, 0.5, 0.25]
    tr.load_best()
    assert float(model.weight.detach()) == 1.0


def test_schedule_sets_each_group_with_its_scale_and_time_budget_stops() -> None:
    a, b = nn.Linear(1, 1), nn.Linear(1, 1)
    opt = torch.optim.SGD(
        [{"params": a.parameters(), "lr_scale": 0.1}, {"params": b.parameters()}], lr=1.0
    )
    seen = []
    tr = Trainer(nn.ModuleList([a, b]), opt, {}, units=3, schedule=lambda u: 2.0**-u)
    tr.run(lambda u: seen.append([g["lr"] for g in opt.param_groups]) or {})
    assert seen == [[0.1, 1.0], [0.05, 0.5], [0.025, 0.25]]
    tr = Trainer(a, opt, {}, units=100, max_seconds=0.0)
    assert tr.run(lambda u: {}) == "time_budget" and tr.epoch == 0


def test_progress_bar_is_shown(capsys) -> None:
    model = nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    tr = Trainer(model, opt, {}, units=2, progress=True, desc="fitting", unit="it")
    tr.run(lambda u: {"loss": 1.0})
    err = capsys.readouterr().err
    assert "fitting" in err and "2/2" in err


def test_save_checkpoint_is_atomic(tmp_path) -> None:
    path = tmp_path / "e.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(1)}, "config": {}})

    class Boom:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    with pytest.raises(RuntimeError, match="cannot pickle"):
        save_checkpoint(path, {"model": {"w": torch.zeros(1)}, "config": {}, "x": Boom()})
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(1))
    assert [p.name for p in tmp_path.iterdir()] == ["e.pt"]  # no temporary file left


@dataclass
class _Rec(Record):
    loss: list[float]
    images: torch.Tensor | None = None
    note: str | None = None


def test_record_json_form() -> None:
    r = _Rec([1.0, 2.0], torch.zeros(2, 3))
    assert r.to_dict() == {"loss": [1.0, 2.0]}  # tensors and None left out
    with pytest.raises(TypeError, match="not subscriptable"):  # a typed result, not a dict
        r["loss"]


def test_seeds_take_0_to_2_pow_63_minus_1_and_derived_seeds_never_overflow() -> None:
    from mrphys.utils import SEED_MAX, check_seed, derived_seed

    assert check_seed(0) == 0 and check_seed(SEED_MAX) == 2**63 - 1
    for bad in (2**63, 2**64, -1):
        with pytest.raises(MrphysError, match=r"seed must lie in 0 \.\. 2\^63 - 1; got"):
            check_seed(bad)
    for bad in (1.5, "3", True):
        with pytest.raises(MrphysError, match=r"seed must be an integer in 0 \.\. 2\^63 - 1"):
            check_seed(bad)
    # below 2^64 a derived seed is the plain arithmetic (the numbers of every working seed stay)
    for seed, k, u in ((0, 100003, 5), (12345, 7919, 2), (2**64 // 100003 - 1, 100003, 9)):
        assert derived_seed(seed, k, u) == seed * k + u
    # beyond it the plain arithmetic overflows the generator; the derived seed does not
    raw = SEED_MAX * 100003 + 10**6
    with pytest.raises((RuntimeError, ValueError), match="verflow"):
        torch.Generator().manual_seed(raw)
    torch.Generator().manual_seed(derived_seed(SEED_MAX, 100003, 10**6))
    assert derived_seed(SEED_MAX, 100003, 1) != derived_seed(SEED_MAX, 100003, 2)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("cut", [0, 10, 200, -40, "flip"])
def test_a_truncated_or_damaged_checkpoint_is_one_sentence_on_resume(tmp_path, cut) -> None:
    _run(tmp_path / "c.pt", 2)
    data = (tmp_path / "c.pt").read_bytes()
    if cut == "flip":  # one damaged byte inside the pickled dict
        i = data.index(b"data.pkl") + 60
        data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]
    else:
        data = data[:cut]
    (tmp_path / "c.pt").write_bytes(data)
    with pytest.raises(MrphysError, match=r"c\.pt is not (a readable|an mrphys) checkpoint"):
        _run(tmp_path / "c.pt", 3, resume=True)
