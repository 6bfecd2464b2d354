"""Train the default relaxometry networks that ship inside the package (``src/mrphys/data/``).

One network per method (svnn, pinn, svnn-complex, pinn-complex) and phase-cycle count (4, 6,
12), paper protocol (TR 4.8 ms, TE 2.4 ms, 15 deg), uniform distribution, noise-free, the paper's
optimiser settings (:class:`mrphys.relax.train.TrainConfig`), each bounded by a wall-time budget.
Training checkpoints go to ``--work`` (rerun to resume); the shipped file is a slim,
``torch.load(weights_only=True)``-loadable dict (best weights, config, version, training record,
off-resonance sweep of complex models) named ``relax-<method>-N<cycles>.pt``
(:func:`mrphys.relax.volume.shipped_model_path`). A model is shipped only when its median
|relative error| on noise-free test data is at most :data:`MAX_MEDIAN_ERR_PCT` (``--audit``
measures and prunes the shipped files).

    PYTHONPATH=src .venv/bin/python scripts/train_default_models.py \
        --methods svnn,pinn --cycles 4,6,12 --minutes 3 [--work /tmp/relax_default]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch

from mrphys.relax.data import Protocol, sample_parameters, simulate_signals
from mrphys.relax.evaluate import offresonance_sweep
from mrphys.relax.networks import RelaxNet
from mrphys.relax.train import NETWORK_METHODS, TrainConfig, load_model, train
from mrphys.relax.volume import fit_signals, save_shipped_model, shipped_model_path

#: a model is shipped only if its median |relative error| on noise-free test data is at most this
MAX_MEDIAN_ERR_PCT = 2.0


def accuracy(method: str, protocol: Protocol, model: RelaxNet, n: int = 20000) -> dict:
    """Median and 99th-percentile |relative error| (%) of T1 and T2 on ``n`` noise-free voxels
    drawn from the training distribution (uniform box, B1 U(0.7, 1.3), theta for complex
    models), with a seed the training never used."""
    g = torch.Generator().manual_seed(123_457)
    p = sample_parameters(n, "uniform", method.endswith("-complex"), g, dtype=torch.float64)
    maps = fit_signals(simulate_signals(p, protocol), p["b1"], method, protocol, model)
    out = {}
    for k in ("t1", "t2"):
        rel = ((getattr(maps, k).double() - p[k]) / p[k]).abs() * 100
        out[f"{k}_median_abs_rel_err_pct"] = round(float(rel.median()), 3)
        out[f"{k}_p99_abs_rel_err_pct"] = round(float(rel.quantile(0.99)), 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default=",".join(NETWORK_METHODS))
    ap.add_argument("--cycles", default="4,6,12")
    ap.add_argument("--minutes", type=float, default=5.0, help="wall-time budget per model")
    ap.add_argument("--max-epochs", type=int, default=600)
    ap.add_argument("--lr-patience", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", default="/tmp/relax_default_models")
    ap.add_argument("--out", default=None, help="folder of the shipped files (default: package)")
    ap.add_argument("--overwrite", action="store_true", help="retrain models already shipped")
    ap.add_argument(
        "--audit",
        action="store_true",
        help="only measure the shipped models and remove those above MAX_MEDIAN_ERR_PCT",
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    for method in args.methods.split(","):
        for n in (int(c) for c in args.cycles.split(",")):
            dest = shipped_model_path(method, n)
            if args.out:
                dest = Path(args.out) / dest.name
            if args.audit:
                if dest.exists():
                    acc = accuracy(method, Protocol(n), load_model(dest)[0])
                    worst = max(acc["t1_median_abs_rel_err_pct"], acc["t2_median_abs_rel_err_pct"])
                    print(
                        json.dumps(
                            {"file": dest.name, "shipped": worst <= MAX_MEDIAN_ERR_PCT, **acc}
                        )
                    )
                    if worst > MAX_MEDIAN_ERR_PCT:
                        dest.unlink()
                continue
            if dest.exists() and not args.overwrite:
                logging.info("%s exists; skipped", dest)
                continue
            cfg = TrainConfig(
                method=method,
                n_cycles=n,
                max_epochs=args.max_epochs,
                lr_patience=args.lr_patience,
                max_seconds=args.minutes * 60,
            )
            t0 = time.perf_counter()
            res = train(cfg, work / f"{method}-N{n}.ckpt.pt", resume=True)
            info = {
                "epochs": len(res.history),
                "stop_reason": res.stop_reason,
                "train_seconds_this_call": round(time.perf_counter() - t0, 1),
                "train_seconds_total": round(sum(h.seconds for h in res.history), 1),
                "best_val_loss": min(h.val_loss for h in res.history),
                "test_loss": res.test_loss,
            }
            if method.endswith("-complex"):
                sw = offresonance_sweep(method, cfg.protocol, res.model)
                info["sweep_t1_max_abs_rel_err_pct"] = max(abs(v) for v in sw["t1_rel_err_pct"])
                info["sweep_t2_max_abs_rel_err_pct"] = max(abs(v) for v in sw["t2_rel_err_pct"])
            info.update(accuracy(method, cfg.protocol, res.model))
            worst = max(info["t1_median_abs_rel_err_pct"], info["t2_median_abs_rel_err_pct"])
            info["shipped"] = worst <= MAX_MEDIAN_ERR_PCT
            if info["shipped"]:  # else default_model trains one on first use, as before
                save_shipped_model(dest, res.model, cfg, info)
            logging.info("%s: %s", dest.name, json.dumps(info))
            print(json.dumps({"file": dest.name, **info}), flush=True)


if __name__ == "__main__":
    main()
