"""``mrphys design``: learning the acquisition.

``mrphys design protocol`` learns a phase-cycled bSSFP relaxometry protocol (one flip angle and RF
phase increment per acquisition, TR bounded below by the gradient-limited minimum, TE = TR/2),
with or without a B1 map, by the Cramer-Rao bound (``--objective crlb``) or together with a
complex relaxometry network (``--objective network``). It writes ``protocol.json``,
``sequence.seq`` (Pulseq), ``network.pt`` (network objective; ``mrphys relax fit --protocol
protocol.json --model network.pt`` fits data acquired with the protocol), ``metrics.json`` and
figures. The work is :func:`mrphys.relax.protocol_design.design_protocol`.
"""

from __future__ import annotations

import argparse
import math
import sys

from mrphys.cli import arg, new_output, positive


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("design", help="learn the acquisition (bSSFP relaxometry protocols)")
    ds = p.add_subparsers(dest="design_command", metavar="ACTION", parser_class=type(p))
    p.set_defaults(func=lambda a: (p.print_help(sys.stderr), 2)[1])

    q = ds.add_parser(
        "protocol", help="learn a pc-bSSFP protocol (flips, phase increments) for T1/T2 mapping"
    )
    arg(q, "--acquisitions", 4, "acquisitions K (one flip and increment each; default 4)",
        type=positive)  # fmt: skip
    q.add_argument("--objective", required=True, choices=["crlb", "network"])
    arg(q, "--method", "svnn-complex", "network of --objective network (default svnn-complex)",
        choices=["svnn-complex", "pinn-complex"])  # fmt: skip
    q.add_argument("--no-b1-map", action="store_true", help="no B1 map: B1 is estimated")
    q.add_argument("--snr", type=float, required=True, help="relaxometry SNR (METHODS 3)")
    arg(q, "--tr-ms", 4.8, "TR in ms (the start value with --learn-tr; default 4.8)")
    q.add_argument("--learn-tr", action="store_true", help="learn TR too (>= --min-tr-ms)")
    arg(q, "--min-tr-ms", None, "lower bound of TR (default: the gradient-limited minimum, "
        "2.25 ms for a 128 matrix, 220 mm FOV, 40 mT/m, 200 T/m/s)", type=float)  # fmt: skip
    arg(q, "--starts", 3, "random starts of the protocol (default 3)", type=positive)
    arg(q, "--screen", 32, "random protocols screened per start (default 32)", type=positive)
    arg(q, "--candidates", 0, "CRLB: global search over this many Sobol protocols scored by one "
        "batched bound, the best --refine refined together (default 0: --starts x --screen "
        "descents; 32768 found better no-B1 protocols, see docs/protocol.md)",
        type=int)  # fmt: skip
    arg(q, "--refine", 64, "global search: protocols refined by gradient descent (default 64)",
        type=positive)  # fmt: skip
    arg(q, "--steps", 300, "CRLB optimiser steps per start (default 300)", type=positive)
    arg(q, "--net-steps", 3000, "network training steps (default 3000)", type=positive)
    arg(q, "--eval-samples", 4096, "tissues of the CRLB test set (default 4096)", type=positive)
    q.add_argument("--b1-range", nargs=2, type=float, default=[0.7, 1.3], metavar=("LO", "HI"),
                   help="B1 range the CRLB objective averages over (default 0.7 1.3; 1 1: B1 = 1 "
                   "only)")  # fmt: skip
    arg(q, "--flip-max-deg", 90.0, "largest flip angle in deg (default 90; above it the RF "
        "power of a bSSFP train is the limit: metrics.json gives it relative to the paper's)",
        type=float)  # fmt: skip
    arg(q, "--net-batch", 1024, "network batch size (default 1024)", type=positive)
    arg(q, "--net-loss", "relative", "network loss: relative (relative errors) or unit (output "
        "box; default relative)", choices=["unit", "relative"])  # fmt: skip
    arg(q, "--lr-schedule", "cosine", "network learning-rate schedule (default cosine)",
        choices=["constant", "cosine"])  # fmt: skip
    arg(q, "--device", "cpu", "compute device of the CRLB descent and the networks (default cpu: "
        "small float64 problems; cuda pays off for long network runs)",
        choices=["auto", "cpu", "cuda"])  # fmt: skip
    _common(q)
    q.set_defaults(func=run_protocol)


def _common(p: argparse.ArgumentParser) -> None:
    from mrphys.cli import seed_type

    arg(p, "--seed", 0, "random seed, 0 .. 2^63 - 1 (default 0)", type=seed_type)
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")


def run_protocol(args: argparse.Namespace) -> int:
    from mrphys.errors import check

    new_output(args)
    check(math.isfinite(args.snr) and args.snr > 0,
          f"snr must be a positive number; got {args.snr}.")  # fmt: skip
    check(math.isfinite(args.tr_ms) and args.tr_ms > 0,
          f"tr_ms must be a positive number of ms; got {args.tr_ms}.")  # fmt: skip
    check(args.min_tr_ms is None or (math.isfinite(args.min_tr_ms) and args.min_tr_ms > 0),
          f"min_tr_ms must be a positive number of ms; got {args.min_tr_ms}.")  # fmt: skip
    from mrphys.io import output_dir
    from mrphys.utils import resolve_device

    resolve_device(args.device)  # refused before any output is written
    from mrphys.relax.protocol_design import (
        DesignConfig,
        design_protocol,
        gradient_limited_min_tr,
    )

    tr_min = gradient_limited_min_tr() if args.min_tr_ms is None else args.min_tr_ms * 1e-3
    cfg = DesignConfig(
        n_acq=args.acquisitions,
        objective=args.objective,
        method=args.method,
        b1_map=not args.no_b1_map,
        snr=args.snr,
        tr=args.tr_ms * 1e-3,
        learn_tr=args.learn_tr,
        tr_min=tr_min,
        starts=args.starts,
        screen=args.screen,
        candidates=args.candidates,
        refine=args.refine,
        crlb_steps=args.steps,
        eval_samples=args.eval_samples,
        net_steps=args.net_steps,
        net_batch=args.net_batch,
        net_loss=args.net_loss,
        lr_schedule=args.lr_schedule,
        b1_range=tuple(args.b1_range),
        flip_max_deg=args.flip_max_deg,
        seed=args.seed,
        device=args.device,
    )
    with output_dir(args.out, overwrite=args.overwrite) as tmp:
        res = design_protocol(cfg, tmp, progress=True)
    r = res.protocol.record()
    flips = ", ".join(f"{v:.1f}" for v in r["flip_deg"])
    incs = ", ".join(f"{v:.1f}" for v in r["phase_increment_deg"])
    ratio = res.metrics["ratio_to_paper_with_b1_map"]
    print(
        f"wrote {args.out}: flips [{flips}] deg, increments [{incs}] deg, TR {r['tr_ms']:.3f} ms; "
        f"CRLB / paper {cfg.n_acq}-cycle with B1 map: T1 {ratio['t1']:.3f}, T2 {ratio['t2']:.3f} "
        f"({res.seconds:.0f} s)"
    )
    return 0
