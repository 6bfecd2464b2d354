"""``mrphys spin``: SPIN, learning the pulse sequence and the reconstruction network (paper 000).

``mrphys spin train``    train the reconstruction network on Bloch-simulated 90 deg data.
``mrphys spin optimize`` optimise the sequence: ``--method finite-difference`` (as published:
first flip angle from 30 deg, network fixed) or ``--method autograd`` (exact gradients, network
and sequence learned together). The output folder gets checkpoints, the figures of the paper's
Figs. 6-9 and ``metrics.json``.
"""

from __future__ import annotations

import argparse
import logging

from mrphys.cli import add_common

log = logging.getLogger(__name__)


def _data_options(p: argparse.ArgumentParser, n_train: int, n_test: int, matrix: int) -> None:
    p.add_argument(
        "--phantoms",
        type=int,
        default=n_train,
        help=f"training phantoms (default {n_train}; the paper used 50000)",
    )
    p.add_argument(
        "--test-phantoms",
        type=int,
        default=n_test,
        help=f"test phantoms (default {n_test}; the paper used 1000)",
    )
    p.add_argument(
        "--matrix",
        type=int,
        default=matrix,
        help=f"image matrix N, FOV 64 mm (default {matrix}; the paper used 64)",
    )
    p.add_argument("--cache", default=None, help="folder to cache simulated data in (by settings)")


def _net_options(p: argparse.ArgumentParser, net: str, epochs: int, batch: int) -> None:
    p.add_argument(
        "--net",
        default=net,
        choices=["automap", "unet"],
        help=f"reconstruction network (default {net})",
    )
    p.add_argument("--epochs", type=int, default=epochs, help=f"training epochs (default {epochs})")
    p.add_argument("--batch-size", type=int, default=batch, help=f"minibatch (default {batch})")
    p.add_argument("--lr", type=float, default=5e-4, help="RMSProp learning rate (default 5e-4)")
    p.add_argument("--channels", type=int, default=64, help="AUTOMAP conv filters (default 64)")
    p.add_argument("--width", type=int, default=16, help="U-Net first-level channels (default 16)")
    p.add_argument(
        "--init",
        default="glorot",
        choices=["glorot", "dft"],
        help="AUTOMAP initialisation (default glorot, as in the paper)",
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("spin", help="SPIN: learn the pulse sequence and the reconstruction")
    ssub = p.add_subparsers(dest="spin_command", metavar="ACTION", parser_class=type(p))
    p.set_defaults(func=_no_action)

    t = ssub.add_parser("train", help="train the reconstruction network on 90 deg data")
    _data_options(t, 50000, 1000, 64)
    _net_options(t, "automap", 300, 100)
    t.add_argument("--resume", default=None, help="checkpoint.pt to continue from")
    add_common(t)
    t.set_defaults(func=run_train)

    o = ssub.add_parser("optimize", help="optimise the sequence (finite differences or autograd)")
    o.add_argument("--method", required=True, choices=["finite-difference", "autograd"])
    o.add_argument("--iterations", type=int, default=7, help="optimisation iterations (default 7)")
    _data_options(o, 2000, 200, 32)
    _net_options(o, "unet", 8, 50)
    o.add_argument(
        "--checkpoint",
        default=None,
        help="network from 'mrphys spin train' (default: train one on 90 deg data)",
    )
    o.add_argument(
        "--start-flip-deg",
        type=float,
        default=None,
        help="first flip angle at the start (default 30 for finite-difference, "
        "random for autograd)",
    )
    o.add_argument("--delta-deg", type=float, default=1.0, help="finite-difference step (deg)")
    o.add_argument(
        "--step",
        type=float,
        default=500.0,
        help="finite-difference descent step in deg^2 on d(log MSE)/d(flip in deg)",
    )
    o.add_argument(
        "--learn",
        default="flip1,flip2,te,lines",
        help="autograd: sequence parameters to learn (flip1,flip2,te,tr,lines)",
    )
    o.add_argument(
        "--line-fraction",
        type=float,
        default=1.0,
        help="autograd: fraction of phase-encode lines kept (0.5 = 2x fewer)",
    )
    o.add_argument(
        "--free-centre",
        action="store_true",
        help="autograd: the k-space centre line may be dropped too (default: always acquired)",
    )
    o.add_argument(
        "--target",
        default="se",
        choices=["se", "t1"],
        help="autograd: target contrast (se: Eq. 13; t1: T1-weighted, TR 600 ms)",
    )
    o.add_argument(
        "--steps-per-iteration",
        type=int,
        default=20,
        help="autograd: minibatch steps per iteration (default 20)",
    )
    o.add_argument("--minibatch", type=int, default=16, help="autograd: phantoms per step")
    add_common(o)
    o.set_defaults(func=run_optimize)


def _no_action(args: argparse.Namespace) -> int:
    from mrphys.errors import MrphysError

    raise MrphysError("an action is required: 'mrphys spin train' or 'mrphys spin optimize'.")


def _check_common(args: argparse.Namespace):
    from mrphys.design.run import DataConfig
    from mrphys.design.train import TrainConfig
    from mrphys.errors import MrphysError, check

    check(args.phantoms >= 1, f"--phantoms must be >= 1; got {args.phantoms}.")
    check(args.test_phantoms >= 1, f"--test-phantoms must be >= 1; got {args.test_phantoms}.")
    check(
        16 <= args.matrix <= 128 and args.matrix % 4 == 0,
        f"--matrix must be a multiple of 4 in [16, 128]; got {args.matrix}.",
    )
    check(args.epochs >= 1, f"--epochs must be >= 1; got {args.epochs}.")
    check(args.batch_size >= 1, f"--batch-size must be >= 1; got {args.batch_size}.")
    check(0 < args.lr < 1, f"--lr must lie in (0, 1); got {args.lr}.")
    check(args.channels >= 2, f"--channels must be >= 2; got {args.channels}.")
    check(args.width >= 1, f"--width must be >= 1; got {args.width}.")
    if args.cache is not None and __import__("os").path.isfile(args.cache):
        raise MrphysError(f"--cache {args.cache} is a file; a folder is expected.")
    data = DataConfig(
        n_train=args.phantoms,
        n_test=args.test_phantoms,
        matrix=args.matrix,
        seed=args.seed,
        cache=args.cache,
    )
    tcfg = TrainConfig(
        net=args.net,
        matrix=args.matrix,
        channels=args.channels,
        width=args.width,
        init=args.init,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
    )
    tcfg.check()
    return data, tcfg


def run_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mrphys.design.run import train_reference
    from mrphys.errors import MrphysError
    from mrphys.io import check_new_output, output_dir, save_json
    from mrphys.utils import resolve_device

    data, tcfg = _check_common(args)
    if args.resume is not None and not Path(args.resume).is_file():
        raise MrphysError(f"--resume {args.resume} does not exist.")
    check_new_output(args.out, args.overwrite)
    device = resolve_device(args.device)
    with output_dir(args.out, overwrite=args.overwrite) as tmp:
        _, norm, hist, _ = train_reference(tmp, data, tcfg, device, resume=args.resume)
        from dataclasses import asdict

        save_json(
            tmp / "config.json",
            {"data": asdict(data), "train": asdict(tcfg), "normalisation": norm.as_dict()},
        )
        save_json(tmp / "metrics.json", hist[-1] if hist else {})
    last = hist[-1] if hist else {}
    psnr, ssim = last.get("psnr", float("nan")), last.get("ssim", float("nan"))
    print(
        f"trained {tcfg.net} for {tcfg.epochs} epochs: test PSNR {psnr:.2f} dB, "
        f"SSIM {ssim:.3f}; wrote {args.out}"
    )
    return 0


def run_optimize(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mrphys.design.optimize import FDConfig, JointConfig
    from mrphys.design.run import OptimizeConfig, summary
    from mrphys.design.run import run_optimize as _run
    from mrphys.errors import MrphysError, check
    from mrphys.io import check_new_output, output_dir
    from mrphys.utils import resolve_device

    data, tcfg = _check_common(args)
    check(
        1 <= args.iterations <= 1000, f"--iterations must lie in [1, 1000]; got {args.iterations}."
    )
    if args.checkpoint is not None and not Path(args.checkpoint).is_file():
        raise MrphysError(f"--checkpoint {args.checkpoint} does not exist.")
    start = args.start_flip_deg
    if start is not None:
        check(0 < start < 180, f"--start-flip-deg must lie in (0, 180); got {start}.")
    check(0 < args.step, f"--step must be > 0; got {args.step}.")
    check(0 < args.delta_deg < 20, f"--delta-deg must lie in (0, 20); got {args.delta_deg}.")
    check(
        0 < args.line_fraction <= 1,
        f"--line-fraction must lie in (0, 1]; got {args.line_fraction}.",
    )
    check(args.steps_per_iteration >= 1, "--steps-per-iteration must be >= 1.")
    check(args.minibatch >= 1, f"--minibatch must be >= 1; got {args.minibatch}.")
    learn = tuple(s.strip() for s in args.learn.split(",") if s.strip())
    fd = FDConfig(
        start_deg=30.0 if start is None else start,
        iterations=args.iterations,
        delta_deg=args.delta_deg,
        step=args.step,
    )
    fd.check()
    jc = JointConfig(
        start_flip1_deg=start,
        learn=learn,
        budget=args.line_fraction,
        keep_centre=not args.free_centre,
        target=args.target,
        iterations=args.iterations,
        steps_per_iteration=args.steps_per_iteration,
        batch=args.minibatch,
        seed=args.seed,
        train=tcfg,
    )
    jc.check()
    cfg = OptimizeConfig(
        method=args.method, data=data, train=tcfg, fd=fd, joint=jc, checkpoint=args.checkpoint
    )
    check_new_output(args.out, args.overwrite)
    device = resolve_device(args.device)
    with output_dir(args.out, overwrite=args.overwrite) as tmp:
        m = _run(tmp, cfg, device)
    print(f"SPIN {args.method}: {summary(m)}; wrote {args.out}")
    return 0
