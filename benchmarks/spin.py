"""SPIN benchmark: finite differences (as published) vs exact gradients, compute to reach 90 deg.

Prints ONE JSON object. Usage::

    .venv/bin/python benchmarks/spin.py            # reduced reproduction (2,000 phantoms, 32x32)
    .venv/bin/python benchmarks/spin.py --quick    # small (300 phantoms): under 2 min when quiet

Steps (all on the CPU unless ``--device cuda``):

1. Bloch-simulate training and test phantoms at the reference 90/180 deg spin echo and train the
   reconstruction network (FFT + U-Net, RMSProp) on them.
2. (a) The published loop: first flip angle from 30 deg, finite-difference gradient of the test
   MSE (two test-set simulations per iteration), fixed step, network fixed.
3. (b1) The same, by exact gradients through simulator and network (Adam on minibatches of 16
   training phantoms, one forward + backward per step), stopped within the tolerance of 90 deg.
4. (b2, full mode) joint learning of network + flip angles + TE (+ line subset) from a random
   start, and the changed task with 2x fewer phase encodes.

Compute is reported as simulated phantoms and wall seconds until the first flip angle is within
``--tolerance`` deg of 90; ``ratio_*`` = finite differences / autograd. Timings depend on the load:
the JSON records the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from mrphys.design.data import Acquisition, fit_normalisation, make_data  # noqa: E402
from mrphys.design.optimize import (  # noqa: E402
    AutogradConfig,
    FDConfig,
    JointConfig,
    autograd_flip,
    finite_difference,
    joint,
)
from mrphys.design.train import TrainConfig, train  # noqa: E402
from mrphys.io import to_jsonable  # noqa: E402


def _first_within(hist, tol: float) -> int | None:
    for i, f in enumerate(hist.flip_angle_deg):
        if abs(f - 90.0) < tol:
            return i
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, < 2 min on a quiet machine")
    ap.add_argument("--phantoms", type=int, default=None)
    ap.add_argument("--test-phantoms", type=int, default=None)
    ap.add_argument("--matrix", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--iterations", type=int, default=7)
    ap.add_argument("--tolerance", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--cache", default=None, help="folder to cache simulated data")
    a = ap.parse_args()
    n_train = a.phantoms or (300 if a.quick else 2000)
    n_test = a.test_phantoms or (50 if a.quick else 200)
    epochs = a.epochs or (3 if a.quick else 8)
    t_all = time.perf_counter()
    res: dict = {
        "benchmark": "spin",
        "quick": a.quick,
        "matrix": a.matrix,
        "n_train": n_train,
        "n_test": n_test,
        "epochs": epochs,
        "seed": a.seed,
        "device": a.device,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
    }
    acq = Acquisition(matrix=a.matrix)
    t0 = time.perf_counter()
    tr = make_data(n_train, a.seed, acq, cache_dir=a.cache)
    te = make_data(n_test, a.seed + 1, acq, cache_dir=a.cache)
    res["seconds_data"] = round(time.perf_counter() - t0, 2)
    norm = fit_normalisation(tr)
    cfg = TrainConfig(
        net="unet", matrix=a.matrix, width=16, epochs=epochs, batch_size=50, seed=a.seed
    )
    t0 = time.perf_counter()
    model, hist = train(cfg, tr, te, norm, device=a.device, progress=False)
    res["seconds_train"] = round(time.perf_counter() - t0, 2)
    res["train_final"] = hist[-1].to_dict()

    fd = finite_difference(model, norm, te, FDConfig(iterations=a.iterations), progress=False)
    i_fd = _first_within(fd, a.tolerance)
    keys = ("flip_angle_deg", "mse", "ssim", "psnr", "fft_psnr", "simulated", "seconds")
    res["finite_difference"] = {k: getattr(fd, k) for k in keys}
    ag = autograd_flip(model, norm, tr, AutogradConfig(tolerance_deg=a.tolerance, seed=a.seed))
    i_ag = _first_within(ag, a.tolerance)
    res["autograd"] = ag.to_dict()
    if i_fd is not None and i_ag is not None:
        # FD cost to reach iteration i: the evaluations that produced alpha_i (2 per iteration + 1)
        fd_sims = fd.simulated[i_fd - 1] if i_fd > 0 else 0
        fd_sec = fd.seconds[i_fd - 1] if i_fd > 0 else 0.0
        res["reach"] = {
            "finite_difference": {
                "iteration": i_fd,
                "simulated": fd_sims,
                "seconds": round(fd_sec, 2),
            },
            "autograd": {
                "step": i_ag,
                "simulated_fwd_bwd": ag.simulated[i_ag],
                "seconds": round(ag.seconds[i_ag], 2),
            },
        }
        res["ratio_simulated"] = fd_sims / max(ag.simulated[i_ag], 1)
        res["ratio_seconds"] = fd_sec / max(ag.seconds[i_ag], 1e-9)
    else:
        res["reach"] = {"finite_difference": i_fd, "autograd": i_ag}
    # parameters the published loop would need per iteration for the joint problem
    res["fd_evaluations_per_iteration_joint"] = 3 + a.matrix + 1

    if not a.quick:
        for name, budget in (("joint_random_start", 1.0), ("joint_half_lines", 0.5)):
            jc = JointConfig(
                budget=budget,
                iterations=6,
                steps_per_iteration=20,
                batch=16,
                seed=a.seed + 11,
                train=TrainConfig(net="unet", matrix=a.matrix, width=16),
            )
            _, seq, jh = joint(jc, tr, te, norm, device=a.device, progress=False)
            res[name] = {
                k: getattr(jh, k)
                for k in (
                    "flip_angle_deg",
                    "flip2_deg",
                    "te_ms",
                    "lines_kept",
                    "mse",
                    "ssim",
                    "psnr",
                    "fft_psnr",
                    "simulated",
                    "seconds",
                )
            }
            w = jh.line_weights[-1]
            res[name]["kept_lines"] = sorted(torch.topk(w, jh.lines_kept[-1]).indices.tolist())
    res["loadavg_end"] = os.getloadavg()
    res["seconds_total"] = round(time.perf_counter() - t_all, 2)
    print(json.dumps(to_jsonable(res), allow_nan=False))


if __name__ == "__main__":
    main()
