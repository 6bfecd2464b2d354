"""`mrphys spin`: bad input gives one sentence and exit 2 with nothing written; a tiny run works."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.usefixtures("one_thread")

FD, AG = ["optimize", "--method", "finite-difference"], ["optimize", "--method", "autograd"]
BAD = [  # (arguments, what the error names)
    (["optimize", "--method", "genetic", "--iterations", "2"], "--method"),
    ([*FD, "--phantoms", "0"], "--phantoms"),
    ([*FD, "--iterations", "0"], "--iterations"),
    ([*FD, "--matrix", "30"], "--matrix"),
    ([*FD, "--start-flip-deg", "200"], "flip angle"),
    ([*FD, "--checkpoint", "/nonexistent/ck.pt"], "--checkpoint"),
    ([*AG, "--learn", "flip1,gradients"], "learn"),
    ([*AG, "--line-fraction", "1.5"], "(0, 1]"),
    (["train", "--epochs", "0"], "--epochs"),
    (["train", "--lr", "2"], "--lr"),
    (["train", "--resume", "/nonexistent/ck.pt"], "--resume"),
    ([*AG, "--iterations", "two"], "--iterations"),
    (["train", "--seed", str(2**63)], "--seed: must lie in 0 .. 2^63 - 1"),
    ([*FD, "--seed", str(2**64)], "--seed: must lie in 0 .. 2^63 - 1"),
    ([*AG, "--seed", "-1"], "--seed: must lie in 0 .. 2^63 - 1"),
]


@pytest.mark.parametrize("argv, says", BAD, ids=[" ".join(a[:3]) for a, _ in BAD])
def test_bad_input_exit_2_nothing_written(argv, says, tmp_path, cli):
    out = tmp_path / "run"
    cli.fails("spin", *argv, "--out", out, out=out, says=says)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_is_not_overwritten(tmp_path, cli):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    cli.fails("spin", *FD, "--out", out, out=out, says="--overwrite")
    assert (out / "keep.txt").read_text() == "x"


def test_no_action_is_an_error(cli):
    r = cli("spin")
    assert r.rc == 2 and "action" in r.err


SMALL = ["--matrix", "16", "--width", "2", "--device", "cpu"]


def test_tiny_finite_difference_run(tmp_path, cli):
    out = tmp_path / "fd"
    argv = ["--phantoms", "20", "--test-phantoms", "4", "--epochs", "1", "--batch-size", "10"]
    cli.ok("spin", *FD, *argv, "--iterations", "2", *SMALL, "--out", out)
    m = json.loads((out / "metrics.json").read_text())
    n = len(m["flip_angle_deg"])
    assert n == 3 and len(m["mse"]) == len(m["ssim"]) == len(m["psnr"]) == n
    assert m["flip_angle_deg"][0] == 30.0
    figures = ["fft_images.png", "network_images.png", "ssim_psnr.png", "mse_vs_flip.png"]
    for name in (*figures, "reference/checkpoint.pt", "config.json"):
        assert (out / name).is_file(), name
    assert not (tmp_path / "fd.checkpoint.pt").exists()  # the running checkpoint is removed


def test_tiny_autograd_run(tmp_path, cli):
    out = tmp_path / "ag"
    argv = ["--phantoms", "12", "--test-phantoms", "4", "--iterations", "1"]
    steps = ["--steps-per-iteration", "2", "--minibatch", "4", "--line-fraction", "0.5"]
    cli.ok("spin", *AG, *argv, *steps, *SMALL, "--out", out)
    m = json.loads((out / "metrics.json").read_text())
    assert len(m["flip_angle_deg"]) == len(m["psnr"]) == 2
    assert m["lines_kept"][-1] == 8
    assert (out / "joint_checkpoint.pt").is_file()
    assert not (tmp_path / "ag.checkpoint.pt").exists()  # the running checkpoint is removed


@pytest.mark.slow
def test_train_then_optimize_from_checkpoint(tmp_path, cli):
    tr, tr2, out, bad = (tmp_path / n for n in ("tr", "tr2", "fd", "bad"))
    common = ["--phantoms", "12", "--test-phantoms", "4", "--matrix", "16", "--width", "2"]
    unet = ["--net", "unet", "--batch-size", "6", "--device", "cpu"]
    cli.ok("spin", "train", *common, *unet, "--epochs", "1", "--out", tr)
    assert (tr / "checkpoint.pt").is_file() and (tr / "train_metrics.json").is_file()
    # resume for one more epoch into a new folder
    resume = ["--resume", tr / "checkpoint.pt"]
    cli.ok("spin", "train", *common, *unet, "--epochs", "2", *resume, "--out", tr2)
    hist = json.loads((tr2 / "train_metrics.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2]
    ck = ["--checkpoint", tr2 / "checkpoint.pt"]
    cli.ok("spin", *FD, *common[:4], "--matrix", "16", *ck, "--iterations", "1", "--out", out)
    m = json.loads((out / "metrics.json").read_text())
    assert len(m["flip_angle_deg"]) == 2 and m["reference_training"] == []
    # a checkpoint of another matrix is refused
    cli.fails("spin", *FD, "--matrix", "32", *ck, "--out", bad, out=bad, says="--matrix 16")


TINY_TRAIN = ["--phantoms", "20", "--test-phantoms", "4", "--batch-size", "5", "--net", "unet"]


def _weights(path):
    from mrphys.train import load_checkpoint

    return load_checkpoint(path)["model"]


def test_ctrl_c_then_rerun_continues_exactly(tmp_path, cli):
    """SIGINT after the first epoch keeps OUT.checkpoint.pt; the same command continues from it
    and ends with bitwise the weights of a run that was never stopped."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import mrphys

    argv = [*TINY_TRAIN, *SMALL, "--epochs", "3", "--cache", str(tmp_path / "cache")]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    cli.ok("spin", "train", *argv, "--out", whole)  # also fills the data cache
    assert not (tmp_path / "whole.checkpoint.pt").exists()  # removed once the run is complete

    running = tmp_path / "cut.checkpoint.pt"
    # one thread, as in this process (the one_thread fixture): the same sums, the same weights
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(mrphys.__file__).parents[1]),
        "OMP_NUM_THREADS": "1",
    }
    cmd = [sys.executable, "-m", "mrphys", "spin", "train", *argv, "--out", str(cut)]
    # a test run started in the background by a shell inherits SIGINT ignored, and Python then
    # installs no KeyboardInterrupt handler: give the child the default disposition
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while not running.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)  # during epoch 2 (or 3): epoch 1 is checkpointed
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err.decode()
    assert f"continues from {running}" in err.decode()
    assert not cut.exists() and not list(tmp_path.glob(".cut.tmp-*"))
    from mrphys.train import load_checkpoint

    done = load_checkpoint(running)["epoch"]
    assert 1 <= done < 3

    r = cli.ok("spin", "train", *argv, "--out", cut)
    assert "continuing the interrupted run" in r.out
    assert not running.exists()
    hist = json.loads((cut / "train_metrics.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    a, b = _weights(whole / "checkpoint.pt"), _weights(cut / "checkpoint.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_overwrite_starts_afresh_instead_of_continuing(tmp_path, cli):
    from mrphys.train import save_checkpoint

    out = tmp_path / "run"
    running = tmp_path / "run.checkpoint.pt"
    save_checkpoint(running, {"model": {}, "config": {"net": "automap"}, "epoch": 7})
    cli.ok("spin", "train", *TINY_TRAIN, *SMALL, "--epochs", "1", "--out", out, "--overwrite")
    assert (out / "checkpoint.pt").is_file() and not running.exists()
    assert json.loads((out / "train_metrics.json").read_text())[0]["epoch"] == 1
    # a file there that mrphys did not write is not deleted
    running.write_bytes(b"my notes")
    argv = ["spin", "train", *TINY_TRAIN, *SMALL, "--epochs", "1", "--overwrite"]
    cli.fails(*argv, "--out", out, out=out, says="not a file mrphys wrote")
    assert running.read_bytes() == b"my notes"


def test_broken_running_checkpoint_is_one_sentence(tmp_path, cli):
    out = tmp_path / "run"
    running = tmp_path / "run.checkpoint.pt"
    running.write_bytes(b"PK\x03\x04 truncated")
    err = cli.fails("spin", "train", *TINY_TRAIN, *SMALL, "--epochs", "1", "--out", out, out=out)
    assert "not a readable checkpoint" in err
    assert running.read_bytes() == b"PK\x03\x04 truncated"  # kept: the user decides


@pytest.mark.slow
def test_optimize_continues_an_interrupted_run_from_its_checkpoint(tmp_path, cli):
    """An autograd run whose OUT.checkpoint.pt holds iteration 1 continues from it and ends with
    the weights and sequence of a run that was never stopped."""
    import shutil

    argv = [*AG, "--phantoms", "8", "--test-phantoms", "2", "--steps-per-iteration", "2"]
    argv += ["--minibatch", "4", *SMALL, "--cache", str(tmp_path / "cache")]
    one, cut, whole = tmp_path / "one", tmp_path / "cut", tmp_path / "whole"
    cli.ok("spin", *argv, "--iterations", "1", "--out", one)
    assert not (tmp_path / "one.checkpoint.pt").exists()  # removed once the run is complete
    # what an interrupted 2-iteration run leaves after its first iteration
    shutil.copyfile(one / "joint_checkpoint.pt", tmp_path / "cut.checkpoint.pt")
    r = cli.ok("spin", *argv, "--iterations", "2", "--out", cut)
    assert "continuing the interrupted run" in r.out
    assert not (tmp_path / "cut.checkpoint.pt").exists()
    cli.ok("spin", *argv, "--iterations", "2", "--out", whole)
    a, b = _weights(whole / "joint_checkpoint.pt"), _weights(cut / "joint_checkpoint.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    m_cut = json.loads((cut / "metrics.json").read_text())
    m_whole = json.loads((whole / "metrics.json").read_text())
    assert m_cut["flip_angle_deg"] == m_whole["flip_angle_deg"] and len(m_cut["mse"]) == 3
