"""Radial NUFFT speed and accuracy: finufft (1 thread, all threads) vs torchkbnufft.

Problem (issue #2): 128 x 128 image, 12 coils, 20 frames x 10 spokes x 256 samples per spoke,
complex64; forward (image -> k-space) and adjoint, median wall time over repeats after one warm-up.
Accuracy: relative error against the exact NDFT (``ndft_matrix``) on a small case
(32 x 32, 2 frames x 8 spokes x 64 samples, 2 coils), complex64 and complex128.

Prints ONE JSON object. ``--quick`` runs one repeat per case (well under 2 minutes).
Usage: ``.venv/bin/python benchmarks/nufft.py [--quick] [--device cpu|cuda]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch

from mrphys.physics.nufft import RadialNUFFT, golden_angle_radial, ndft_matrix


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def _time(fn, repeats: int, dev: torch.device) -> float:
    fn()  # warm-up (plans, kernels, TorchScript compilation)
    _sync(dev)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(dev)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def speed(backend: str, threads: int, dev: torch.device, repeats: int) -> dict:
    n, coils, frames, spokes, samples = 128, 12, 20, 10, 256
    traj = golden_angle_radial(frames, spokes, samples).to(dev)
    op = RadialNUFFT(traj, (n, n), backend=backend, threads=threads)
    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(coils, frames, n, n, generator=g, dtype=torch.complex64).to(dev)
    y = torch.randn(coils, frames, spokes, samples, generator=g, dtype=torch.complex64).to(dev)
    return {
        "forward_s": _time(lambda: op.forward(x), repeats, dev),
        "adjoint_s": _time(lambda: op.adjoint(y), repeats, dev),
    }


def accuracy(backend: str, dev: torch.device) -> dict:
    traj = golden_angle_radial(2, 8, 64)
    a = ndft_matrix(traj, (32, 32)).to(dev)
    out = {}
    for name, dt in (("complex64", torch.complex64), ("complex128", torch.complex128)):
        g = torch.Generator(device="cpu").manual_seed(1)
        x = torch.randn(2, 2, 32, 32, generator=g, dtype=dt).to(dev)
        y = torch.randn(2, 2, 8, 64, generator=g, dtype=dt).to(dev)  # (C, T, S, N)
        op = RadialNUFFT(traj.to(dev), (32, 32), backend=backend)
        ref_f = torch.einsum("tkn,ctn->ctk", a, x.reshape(2, 2, -1).to(torch.complex128))
        ref_f = ref_f.reshape(y.shape)
        ref_a = torch.einsum("tkn,ctk->ctn", a.conj(), y.flatten(2).to(torch.complex128))
        ref_a = ref_a.reshape(x.shape)
        out[name] = {
            "forward_rel_err": float((op.forward(x) - ref_f).norm() / ref_f.norm()),
            "adjoint_rel_err": float((op.adjoint(y) - ref_a).norm() / ref_a.norm()),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one repeat per case")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = ap.parse_args()
    dev = torch.device(args.device)
    repeats = 1 if args.quick else 5
    cases = [("torchkbnufft", 1)] if dev.type == "cuda" else [
        ("finufft", 1), ("finufft", 0), ("torchkbnufft", 1),
    ]  # fmt: skip
    results = {}
    for backend, threads in cases:
        key = backend if backend == "torchkbnufft" else f"finufft_threads_{threads or 'all'}"
        results[key] = speed(backend, threads, dev, repeats)
        results[key]["accuracy_vs_ndft"] = accuracy(backend, dev)
    fastest = min(results, key=lambda k: results[k]["forward_s"] + results[k]["adjoint_s"])
    report = {
        "benchmark": "radial NUFFT forward + adjoint",
        "problem": {
            "image": [128, 128],
            "coils": 12,
            "frames": 20,
            "spokes_per_frame": 10,
            "samples_per_spoke": 256,
            "dtype": "complex64",
        },  # fmt: skip
        "accuracy_case": "32x32, 2 frames x 8 spokes x 64 samples, 2 coils, vs exact NDFT",
        "repeats": repeats,
        "host": {
            "device": str(dev) if dev.type == "cpu" else torch.cuda.get_device_name(dev),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_average_1min": os.getloadavg()[0],
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "results": results,
        "fastest": fastest,
    }
    print(json.dumps(report, indent=2))
    sys.stdout.flush()
    # torchkbnufft's TorchScript forks can abort the interpreter at exit under torch 2.13
    # ("terminate called without an active exception"); the report is complete, so leave now.
    os._exit(0)


if __name__ == "__main__":
    main()
