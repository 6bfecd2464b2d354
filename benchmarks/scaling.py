"""Scaling out, measured side by side in one run (issue 18). Prints one JSON object:

- ``spin``: ``mrphys spin train`` (U-Net) as one process and as ``torchrun --nproc_per_node=2``
  with the same global batch: training samples per second (epoch seconds from
  ``train_metrics.json``, test evaluation included), the ratio, and the relative difference of
  the final test MSE (the bar: < 1e-3);
- ``relax``: ``mrphys relax train`` (SVNN, noisy) the same way, samples per second from the
  checkpoint's history;
- ``batch_fit``: ``mrphys relax fit --inputs`` (MIRACLE) of 8 simulated volumes, one job vs the
  two jobs ``--shard 1/2`` and ``--shard 2/2`` run concurrently (wall time of the command(s),
  start-up included);
- ``paper_epoch``: the CPU time of one epoch of the paper's AUTOMAP training here (64 x 64, batch
  100, 50,000 phantoms: 500 steps), extrapolated from a few timed steps (marked as such);
- ``load_average`` before and after, ``cpus``.

The one-process runs use torch's default threads (all cores) and, for reference, one thread
(``*_1_thread``); torchrun gives each of its processes one thread. Data are simulated (and cached)
before any timing.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/scaling.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

PY = sys.executable
TORCHRUN = [PY, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


def _run(cmd: list[str], env: dict | None = None) -> float:
    """Run ``cmd`` (must succeed); its wall time in s."""
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return time.perf_counter() - t0


def _env(threads: int | None = None) -> dict:
    env = dict(os.environ)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def _side_by_side(
    args: list[str], out: dict, measure: Callable[[str, float], dict], loss: str
) -> dict:
    """Run ``mrphys ARGS --out ...`` as one process (default threads, then one thread) and
    under torchrun with 2 processes; ``measure(out_path, wall_s)`` reads each run's numbers
    (``samples_per_s`` and ``loss`` among them)."""
    for name, cmd, env in (
        ("one_process", [PY, "-m", "mrphys"], _env()),
        ("one_process_1_thread", [PY, "-m", "mrphys"], _env(1)),
        ("two_processes", [*TORCHRUN, "-m", "mrphys"], _env()),
    ):
        path = f"{out['work']}/{args[0]}_{name}" + (".pt" if args[0] == "relax" else "")
        out[name] = measure(path, _run([*cmd, *args, "--out", path], env))
    del out["work"]
    one, two = out["one_process"], out["two_processes"]
    out["speedup_2_vs_1"] = round(two["samples_per_s"] / one["samples_per_s"], 3)
    out["speedup_2_vs_1_thread"] = round(
        two["samples_per_s"] / out["one_process_1_thread"]["samples_per_s"], 3
    )
    out[f"{loss}_relative_difference"] = abs(two[loss] - one[loss]) / one[loss]
    return out


def _spin(tmp: Path, quick: bool) -> dict:
    n, epochs = (96, 2) if quick else (400, 3)
    args = ["spin", "train", "--net", "unet", "--phantoms", str(n), "--test-phantoms", "8"]
    args += ["--matrix", "32", "--epochs", str(epochs), "--batch-size", "32", "--device", "cpu"]
    args += ["--cache", str(tmp / "cache")]
    _run([PY, "-m", "mrphys", *args, "--epochs", "1", "--out", str(tmp / "warm")])  # data cached

    def measure(folder: str, wall: float) -> dict:
        hist = json.loads((Path(folder) / "train_metrics.json").read_text())
        secs = sum(h["seconds"] for h in hist)
        return {
            "samples_per_s": round(n * epochs / secs, 1),
            "train_seconds": round(secs, 2),
            "command_seconds": round(wall, 1),
            "test_mse": hist[-1]["mse"],
            "world_size": json.loads((Path(folder) / "config.json").read_text())["world_size"],
        }

    out = {"phantoms": n, "epochs": epochs, "matrix": 32, "batch": 32, "work": str(tmp)}
    return _side_by_side(args, out, measure, "test_mse")


def _relax(tmp: Path, quick: bool) -> dict:
    samples = 20_000 if quick else 100_000
    args = ["relax", "train", "--method", "svnn", "--snr", "50", "--samples", str(samples)]
    args += ["--max-epochs", "2", "--device", "cpu"]

    def measure(ck: str, wall: float) -> dict:
        state = torch.load(ck, weights_only=True)
        hist = state["history"]
        secs = sum(h["seconds"] for h in hist)
        return {
            "samples_per_s": round(sum(h["samples"] for h in hist) / secs, 1),
            "train_seconds": round(secs, 2),
            "command_seconds": round(wall, 1),
            "val_loss": hist[-1]["val_loss"],
            "world_size": state.get("world_size", 1),
        }

    out = {"samples": samples, "train_samples_per_epoch": int(0.6 * samples), "batch": 128}
    return _side_by_side(args, {**out, "work": str(tmp)}, measure, "val_loss")


def _batch_fit(tmp: Path, quick: bool) -> dict:
    matrix, slices = (48, 2) if quick else (128, 4)
    sims = tmp / "volumes"
    for i in range(8):
        _run(
            [
                PY,
                "-m",
                "mrphys",
                "relax",
                "simulate",
                "--matrix",
                str(matrix),
                "--slices",
                str(slices),
                "--seed",
                str(i),
                "--nii",
                "--out",
                str(sims / f"sub{i:02d}"),
            ]
        )
    args = [
        "relax",
        "fit",
        "--inputs",
        str(sims / "sub*" / "pc_bssfp.nii"),
        "--b1",
        "{dir}/b1.nii",
        "--method",
        "miracle",
        "--device",
        "cpu",
        "--nii",
    ]
    one = _run([PY, "-m", "mrphys", *args, "--out", str(tmp / "fit_one")], _env())
    t0 = time.perf_counter()
    logs = [open(tmp / f"shard{i}.log", "w") for i in (1, 2)]  # noqa: SIM115
    jobs = [
        subprocess.Popen(
            [PY, "-m", "mrphys", *args, "--shard", s, "--out", str(tmp / "fit_two")],
            env=_env(1),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        for s, log in zip(("1/2", "2/2"), logs, strict=True)
    ]
    codes = [j.wait() for j in jobs]
    for log in logs:
        log.close()
    two = time.perf_counter() - t0
    if any(codes):
        raise RuntimeError(f"sharded fits failed: {codes}")
    rows = json.loads((tmp / "fit_two" / "manifest.json").read_text())["entries"]
    assert len(rows) == 8 and all(r["status"] == "done" for r in rows)
    return {
        "volumes": 8,
        "volume_shape": [matrix, matrix, slices, 12],
        "one_job_seconds": round(one, 2),
        "two_shards_seconds": round(two, 2),
        "speedup": round(one / two, 3),
    }


def _paper_epoch(steps: int) -> dict:
    """Seconds of one epoch of the paper's training (AUTOMAP 64, 50,000 phantoms, batch 100)
    on this CPU, from ``steps`` timed optimiser steps after one warm-up step."""
    from mrphys.design.train import TrainConfig, build_model, lr_at, param_groups

    cfg = TrainConfig()  # the paper's settings
    model = build_model(cfg)
    opt = torch.optim.RMSprop(param_groups(model, cfg), lr=lr_at(0, cfg), alpha=cfg.alpha)
    g = torch.Generator().manual_seed(0)
    k = torch.complex(torch.randn(100, 64, 64, generator=g), torch.randn(100, 64, 64, generator=g))
    y = torch.rand(100, 64, 64, generator=g)

    def step() -> None:
        pred, pen = model.forward_with_penalty(k)
        loss = (pred - y).square().mean() + pen
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    per_step = (time.perf_counter() - t0) / steps
    with torch.no_grad():
        t0 = time.perf_counter()
        model(k)
        per_eval = time.perf_counter() - t0
    epoch = 500 * per_step + 10 * per_eval  # 50,000 training and 1,000 test phantoms
    return {
        "extrapolated_from_steps": steps,
        "seconds_per_step_batch_100": round(per_step, 3),
        "seconds_per_epoch": round(epoch, 1),
        "hours_for_300_epochs": round(300 * epoch / 3600, 1),
        "threads": torch.get_num_threads(),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smaller sizes (a few minutes)")
    p.add_argument("--keep", help="keep the work folder here instead of a temporary one")
    args = p.parse_args()
    tmp = Path(args.keep or tempfile.mkdtemp(prefix="mrphys-scaling-"))
    tmp.mkdir(parents=True, exist_ok=True)
    res: dict = {
        "cpus": os.cpu_count(),
        "load_average_before": os.getloadavg(),
        "torch": torch.__version__,
        "quick": args.quick,
    }
    try:
        res["spin"] = _spin(tmp, args.quick)
        res["relax"] = _relax(tmp, args.quick)
        res["batch_fit"] = _batch_fit(tmp, args.quick)
        res["paper_epoch"] = _paper_epoch(2 if args.quick else 4)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    res["load_average_after"] = os.getloadavg()
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
