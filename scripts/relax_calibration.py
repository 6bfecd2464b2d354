"""Calibration of the relaxometry uncertainty maps on simulated data (issue 16, item 2).

Draws ``--n`` voxels from the in vivo-like distribution (B1 U(0.7, 1.3), theta U(-0.9 pi,
0.9 pi), arbitrary receive phase), adds complex Gaussian noise at ``--snr`` (METHODS 3), fits
them with each method with the trust maps on, and prints one JSON line per method: the fraction
of true T1 and T2 values inside the reported 68 % (``+-1 sd``) and 95 % (``+-1.96 sd``)
intervals over the voxels of the quality mask, the share of voxels in the mask, the median
|relative error| and the median reported relative standard deviation.

    PYTHONPATH=src .venv/bin/python scripts/relax_calibration.py --methods miracle,planet,svnn \
        [--model svnn=path.pt] [--snr 50] [--n 20000] [--cycles 12]

Networks without ``--model`` use the default model (:func:`mrphys.relax.volume.default_model`).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time

import torch

from mrphys.physics.noise import sigma_relax
from mrphys.relax.data import (
    NETWORK_METHODS,
    Protocol,
    add_relax_noise,
    sample_parameters,
    simulate_signals,
)
from mrphys.relax.train import load_model
from mrphys.relax.volume import default_model, fit_signals


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="miracle,planet,svnn")
    ap.add_argument("--model", action="append", default=[], help="method=checkpoint.pt")
    ap.add_argument("--snr", type=float, default=50.0)
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--cycles", type=int, default=12)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    pr = Protocol(args.cycles)
    g = torch.Generator().manual_seed(args.seed)
    p = sample_parameters(args.n, "invivo", True, g, dtype=torch.float64)
    p["b1"] = 0.7 + 0.6 * torch.rand(args.n, generator=g, dtype=torch.float64)
    s = simulate_signals(p, pr)
    rx = torch.polar(
        torch.ones(args.n, dtype=torch.float64),
        6.28 * torch.rand(args.n, generator=g, dtype=torch.float64),
    )
    s = add_relax_noise(s * rx[:, None], args.snr, g).to(torch.complex64)
    models = dict(m.split("=", 1) for m in args.model)
    for label in args.methods.split(","):
        method = label.split(":")[0]
        net = None
        if method in NETWORK_METHODS:
            if label in models:
                net, _ = load_model(models[label])
            else:
                net, _ = default_model(method, pr, progress=False)
        t0 = time.perf_counter()
        maps = fit_signals(s, p["b1"].float(), method, pr, net, trust=True)
        dt = time.perf_counter() - t0
        q = maps.quality
        row = {
            "method": label,
            "snr": args.snr,
            "n_cycles": args.cycles,
            "n": args.n,
            "quality_fraction": round(float(q.float().mean()), 4),
            "seconds": round(dt, 2),
        }
        for k in ("t1", "t2"):
            est, sd = getattr(maps, k).double(), getattr(maps, k + "_sd").double()
            z = ((est - p[k]) / sd)[q]
            row[f"{k}_cover68"] = round(float((z.abs() <= 1.0).double().mean()), 4)
            row[f"{k}_cover95"] = round(float((z.abs() <= 1.96).double().mean()), 4)
            rel = ((est - p[k]) / p[k])[q].abs()
            row[f"{k}_median_abs_rel_err_pct"] = round(float(rel.median()) * 100, 3)
            row[f"{k}_median_rel_sd_pct"] = round(float((sd / est)[q].median()) * 100, 3)
        row["true_noise_sd"] = sigma_relax(args.snr, per_channel=True)
        print(json.dumps(row), flush=True)
    if math.isinf(args.snr):
        print(json.dumps({"note": "no noise: the intervals are degenerate"}))


if __name__ == "__main__":
    main()
