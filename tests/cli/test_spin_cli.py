"""`mrphys spin`: bad input gives one sentence and exit 2 with nothing written; a tiny run works."""

from __future__ import annotations

import json

import pytest

from mrphys.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


def _run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as e:  # argparse errors
        return int(e.code)


BAD = [
    ["optimize", "--method", "genetic", "--iterations", "2"],
    ["optimize", "--method", "finite-difference", "--phantoms", "0"],
    ["optimize", "--method", "finite-difference", "--iterations", "0"],
    ["optimize", "--method", "finite-difference", "--matrix", "30"],
    ["optimize", "--method", "finite-difference", "--start-flip-deg", "200"],
    ["optimize", "--method", "finite-difference", "--checkpoint", "/nonexistent/ck.pt"],
    ["optimize", "--method", "autograd", "--learn", "flip1,gradients"],
    ["optimize", "--method", "autograd", "--line-fraction", "1.5"],
    ["train", "--epochs", "0"],
    ["train", "--resume", "/nonexistent/ck.pt"],
    ["optimize", "--method", "autograd", "--iterations", "two"],
]


@pytest.mark.parametrize("argv", BAD, ids=[" ".join(a[:3]) for a in BAD])
def test_bad_input_exit_2_nothing_written(argv, tmp_path, capsys):
    out = tmp_path / "run"
    rc = _run(["spin", *argv, "--out", str(out)])
    assert rc == 2
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []
    err = capsys.readouterr().err.strip()
    assert err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_existing_output_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    rc = _run(["spin", "optimize", "--method", "finite-difference", "--out", str(out)])
    assert rc == 2
    assert (out / "keep.txt").read_text() == "x"
    assert "--overwrite" in capsys.readouterr().err


def test_no_action_is_an_error(capsys):
    assert _run(["spin"]) == 2
    assert "action" in capsys.readouterr().err


def test_tiny_finite_difference_run(tmp_path):
    out = tmp_path / "fd"
    rc = _run(
        [
            "spin",
            "optimize",
            "--method",
            "finite-difference",
            "--phantoms",
            "20",
            "--test-phantoms",
            "4",
            "--matrix",
            "16",
            "--epochs",
            "1",
            "--batch-size",
            "10",
            "--iterations",
            "2",
            "--width",
            "2",
            "--device",
            "cpu",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    n = len(m["flip_angle_deg"])
    assert n == 3 and len(m["mse"]) == len(m["ssim"]) == len(m["psnr"]) == n
    assert m["flip_angle_deg"][0] == 30.0
    for name in (
        "fft_images.png",
        "network_images.png",
        "ssim_psnr.png",
        "mse_vs_flip.png",
        "reference/checkpoint.pt",
        "config.json",
    ):
        assert (out / name).is_file(), name


def test_tiny_autograd_run(tmp_path):
    out = tmp_path / "ag"
    rc = _run(
        [
            "spin",
            "optimize",
            "--method",
            "autograd",
            "--phantoms",
            "12",
            "--test-phantoms",
            "4",
            "--matrix",
            "16",
            "--iterations",
            "1",
            "--width",
            "2",
            "--steps-per-iteration",
            "2",
            "--minibatch",
            "4",
            "--line-fraction",
            "0.5",
            "--device",
            "cpu",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert len(m["flip_angle_deg"]) == len(m["psnr"]) == 2
    assert m["lines_kept"][-1] == 8
    assert (out / "joint_checkpoint.pt").is_file()


@pytest.mark.slow
def test_train_then_optimize_from_checkpoint(tmp_path):
    tr = tmp_path / "tr"
    common = ["--phantoms", "12", "--test-phantoms", "4", "--matrix", "16", "--width", "2"]
    rc = _run(
        [
            "spin",
            "train",
            *common,
            "--net",
            "unet",
            "--epochs",
            "1",
            "--batch-size",
            "6",
            "--device",
            "cpu",
            "--out",
            str(tr),
        ]
    )
    assert rc == 0
    assert (tr / "checkpoint.pt").is_file() and (tr / "train_metrics.json").is_file()
    # resume for one more epoch into a new folder
    tr2 = tmp_path / "tr2"
    rc = _run(
        [
            "spin",
            "train",
            *common,
            "--net",
            "unet",
            "--epochs",
            "2",
            "--batch-size",
            "6",
            "--resume",
            str(tr / "checkpoint.pt"),
            "--device",
            "cpu",
            "--out",
            str(tr2),
        ]
    )
    assert rc == 0
    hist = json.loads((tr2 / "train_metrics.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2]
    out = tmp_path / "fd"
    rc = _run(
        [
            "spin",
            "optimize",
            "--method",
            "finite-difference",
            *common[:4],
            "--matrix",
            "16",
            "--checkpoint",
            str(tr2 / "checkpoint.pt"),
            "--iterations",
            "1",
            "--device",
            "cpu",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert len(m["flip_angle_deg"]) == 2 and m["reference_training"] == []
    # a checkpoint of another matrix is refused
    rc = _run(
        [
            "spin",
            "optimize",
            "--method",
            "finite-difference",
            "--matrix",
            "32",
            "--checkpoint",
            str(tr2 / "checkpoint.pt"),
            "--out",
            str(tmp_path / "bad"),
        ]
    )
    assert rc == 2 and not (tmp_path / "bad").exists()
