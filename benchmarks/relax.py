"""Relaxometry speed benchmark (paper 001 Figure 8 / METHODS 3 speed figures).

Prints one JSON object:
- ``epoch_seconds``: one training epoch of 240,000 samples (60 % of 400,000; batch 128) for SVNN,
  PINN and their complex variants (12 phase cycles, noise-free);
- ``volume_seconds``: fitting a 176 x 176 x 128 volume of 12-cycle complex signals (features +
  inference, no mask) with the magnitude networks, the complex networks, MIRACLE and PLANET:
  the median of ``--runs`` runs (default 3; every run in ``volume_runs``);
- ``trust_seconds_per_voxel``: the extra time of the trust maps (residual, quality, CRB
  uncertainty; ``fit_signals(trust=True)``) per voxel, measured on 1/64 of the volume;
- ``load_average_before`` / ``load_average_after``: 1-minute load average around the run (the
  development machine is shared; quote it with every timing);
- the same on CUDA when present.

On the CPU the volume fits are also timed with two threads (``*_2_threads``; the bar is for
2 cores). ``--quick`` (< 2 min): MIRACLE and PLANET are timed on 1/16 of the volume and scaled
(marked ``miracle_planet_extrapolated_from_fraction``); complex epochs are skipped. Each timing
is given as wall time and as process CPU time (``*_cpu_seconds``, the sum over threads; on a
shared machine this is closer to the quiet-machine wall time for one thread). Use ``--threads``
to pin the CPU thread count (the paper's figures are for one thread).

    .venv/bin/python benchmarks/relax.py [--quick] [--threads N] [--device cpu|cuda|auto]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time

import torch

from mrphys.relax.data import Protocol, sample_parameters, simulate_signals
from mrphys.relax.networks import build_network
from mrphys.relax.train import TrainConfig, TrainingData, adam, training_loss
from mrphys.relax.volume import fit_signals

VOLUME = (176, 176, 128)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def epoch_seconds(method: str, device: torch.device) -> tuple[float, float]:
    """Wall and process CPU time of one epoch of 240,000 samples (data simulated beforehand)."""
    cfg = TrainConfig(method=method, n_samples=400_000)
    data = TrainingData(cfg, device)
    torch.manual_seed(0)
    model = build_network(method).to(device)
    model.set_normalisation(data.clean["train"].mean(0), data.clean["train"].std(0))
    opt = adam(model, cfg.lr)
    feats, tgt = data.clean["train"], data.target["train"]
    n = feats.shape[0]
    _sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    perm = torch.randperm(n, device=device)
    feats, tgt = feats[perm], tgt[perm]
    for s in range(0, n, cfg.batch_size):
        loss = training_loss(model, cfg, feats[s : s + cfg.batch_size], tgt[s : s + cfg.batch_size])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _sync(device)
    return time.perf_counter() - t0, time.process_time() - c0


def volume_signals(n_vox: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    p = sample_parameters(n_vox, "invivo", True, g)
    sig = simulate_signals(p, Protocol(12))
    # arbitrary receive phase: the fit must remove it
    sig = (
        sig * torch.polar(torch.ones(n_vox), 2 * math.pi * torch.rand(n_vox, generator=g))[:, None]
    )
    return sig.to(device), p["b1"].to(device)


def fit_seconds(method: str, sig, b1, device, trust: bool = False) -> tuple[float, float]:
    """Wall and process CPU time of fitting ``sig`` (features + inference [+ trust maps])."""
    model = None if method in ("miracle", "planet") else build_network(method).to(device).eval()
    _sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    fit_signals(sig, b1, method, Protocol(12), model, trust=trust)
    _sync(device)
    return time.perf_counter() - t0, time.process_time() - c0


def run(
    device: torch.device, quick: bool, runs: int = 3, epochs: bool = True, fraction: int = 1
) -> dict:
    res: dict = {
        "epoch_seconds": {},
        "volume_seconds": {},
        "epoch_cpu_seconds": {},
        "volume_cpu_seconds": {},
    }
    methods = ["svnn", "pinn"] if quick else ["svnn", "pinn", "svnn-complex", "pinn-complex"]
    for m in methods if epochs else []:
        w, c = epoch_seconds(m, device)
        res["epoch_seconds"][m], res["epoch_cpu_seconds"][m] = round(w, 3), round(c, 3)
    n_vox = math.prod(VOLUME)
    frac = max(16 if quick else 1, fraction)
    sub = n_vox // frac
    net_part = n_vox // fraction
    sig, b1 = volume_signals(net_part, device)  # only the voxels that are timed
    fit_signals(sig[:1000], b1[:1000], "svnn", Protocol(12), build_network("svnn").to(device))
    threads = torch.get_num_threads()
    # volumes: with the benchmark's thread count, and on the CPU also with 2 threads (the bar)
    for nt in [threads] + ([2] if device.type == "cpu" and threads != 2 else []):
        torch.set_num_threads(nt)
        sfx = "" if nt == threads else f"_{nt}_threads"
        vs, vc = (
            res.setdefault("volume_seconds" + sfx, {}),
            res.setdefault("volume_cpu_seconds" + sfx, {}),
        )
        all_runs = res.setdefault("volume_runs" + sfx, {})
        for m in ("svnn", "pinn", "svnn-complex", "pinn-complex", "miracle", "planet"):
            part = sub if m in ("miracle", "planet") else net_part
            scale = n_vox / part
            walls, cpus = [], []
            for _ in range(runs):
                w, c = fit_seconds(m, sig[:part], b1[:part], device)
                walls.append(round(w * scale, 3))
                cpus.append(round(c * scale, 3))
            vs[m], vc[m] = statistics.median(walls), statistics.median(cpus)
            all_runs[m] = walls
        if frac > 1:
            vs["miracle_planet_extrapolated_from_fraction"] = 1 / frac
        if fraction > 1:
            vs["networks_extrapolated_from_fraction"] = 1 / fraction
    torch.set_num_threads(threads)
    # the trust maps (residual, quality, uncertainty): extra seconds per voxel, on 1/64 of it
    part = n_vox // 64
    trust = res.setdefault("trust_seconds_per_voxel", {})
    for m in ("miracle", "planet", "svnn"):
        w0, _ = fit_seconds(m, sig[:part], b1[:part], device)
        w1, _ = fit_seconds(m, sig[:part], b1[:part], device, trust=True)
        trust[m] = (w1 - w0) / part
    torch.set_num_threads(threads)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="finish in under 2 minutes")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: batch-128 steps gain nothing from intra-op threads, "
        "and on a busy machine 2 threads were 20x slower; 0 keeps the torch default)",
    )
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    ap.add_argument("--runs", type=int, default=3, help="volume fits per method (median)")
    ap.add_argument("--no-epochs", action="store_true", help="skip the training epochs")
    ap.add_argument(
        "--volume-fraction",
        type=int,
        default=1,
        help="time every volume fit on 1/F of the volume and scale (a busy machine)",
    )
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    out = {
        "benchmark": "relax",
        "quick": args.quick,
        "volume": list(VOLUME),
        "phase_cycles": 12,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load_average_before": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    t0 = time.perf_counter()
    out["cpu_results"] = run(
        torch.device("cpu"), args.quick, args.runs, not args.no_epochs, args.volume_fraction
    )
    want_cuda = args.device in ("cuda", "auto") or torch.cuda.is_available()
    if want_cuda and torch.cuda.is_available():
        out["cuda_device"] = torch.cuda.get_device_name(0)
        out["cuda_results"] = run(
            torch.device("cuda"), args.quick, args.runs, not args.no_epochs, args.volume_fraction
        )
    out["total_seconds"] = round(time.perf_counter() - t0, 1)
    out["load_average_after"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print(json.dumps(out))


if __name__ == "__main__":
    main()
