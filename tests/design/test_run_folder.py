"""mrphys.design.run: the running checkpoint of a run (open, keep, remove) and the train folder."""

from __future__ import annotations

import json

import pytest

from mrphys.design.run import (
    DataConfig,
    keep_running,
    open_running,
    running_checkpoint,
    train_to_folder,
)
from mrphys.design.train import TrainConfig
from mrphys.errors import MrphysError
from mrphys.train import save_checkpoint


def test_open_running_reads_resumes_or_discards(tmp_path) -> None:
    out = tmp_path / "run"
    ck = running_checkpoint(out)
    assert open_running(out) == (ck, None)  # nothing to continue
    save_checkpoint(ck, {"model": {}, "config": {}, "epoch": 3})
    assert open_running(out) == (ck, 3) and ck.is_file()
    assert open_running(out, overwrite=True) == (ck, None) and not ck.exists()


def test_open_running_refuses_a_broken_checkpoint(tmp_path) -> None:
    out = tmp_path / "run"
    running_checkpoint(out).write_bytes(b"not a checkpoint")
    with pytest.raises(MrphysError, match="not a readable checkpoint"):
        open_running(out)


def test_keep_running_removes_on_success_and_keeps_on_interrupt(tmp_path) -> None:
    ck = tmp_path / "run.checkpoint.pt"
    said: list[str] = []
    with pytest.raises(KeyboardInterrupt), keep_running(ck, said.append):
        raise KeyboardInterrupt
    assert said == ["interrupted before the first epoch ended: nothing to continue\n"]
    ck.write_bytes(b"x")
    with pytest.raises(KeyboardInterrupt), keep_running(ck, said.append):
        raise KeyboardInterrupt
    assert said[-1] == f"interrupted: the same command continues from {ck}\n" and ck.is_file()
    with keep_running(ck, said.append):
        pass
    assert not ck.exists() and len(said) == 2


def test_train_to_folder_writes_config_and_metrics(tmp_path) -> None:
    data = DataConfig(n_train=16, n_test=8, matrix=16)
    cfg = TrainConfig(net="unet", matrix=16, width=2, epochs=1, batch_size=8)
    out = tmp_path / "ref"
    hist = train_to_folder(out, data, cfg)
    assert len(hist) == 1 and (out / "checkpoint.pt").is_file()
    config = json.loads((out / "config.json").read_text())
    assert config["data"]["n_train"] == 16 and config["train"]["epochs"] == 1
    assert set(config["normalisation"]) and json.loads((out / "metrics.json").read_text())
