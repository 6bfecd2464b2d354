"""``mrphys spin``: SPIN, learning the pulse sequence and the reconstruction network (paper 000).

``mrphys spin train``    train the reconstruction network on Bloch-simulated 90 deg data.
``mrphys spin optimize`` optimise the sequence: ``--method finite-difference`` (as published:
first flip angle from 30 deg, network fixed) or ``--method autograd`` (exact gradients, network
and sequence learned together). The output folder gets checkpoints, the figures of the paper's
Figs. 6-9 and ``metrics.json``. The work is :mod:`mrphys.design.run`.

Until a run has finished, its checkpoint (after every epoch or iteration) is
``OUT.checkpoint.pt`` beside ``--out``: after Ctrl-C, a kill or a crash, the same command continues
from it (``--overwrite`` starts afresh); it is removed when ``--out`` is complete.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mrphys.cli import add_common, arg, new_output, positive

START_HELP = "first flip angle at the start (default 30 for finite-difference, random for autograd)"
LEARN_HELP = "autograd: sequence parameters to learn (flip1,flip2,te,tr,lines)"
RUNNING_HELP = (
    "Until a run has finished, its checkpoint is OUT.checkpoint.pt beside --out: run the same "
    "command again to continue an interrupted run from it (--overwrite starts afresh)."
)
OVERWRITE_HELP = "replace an existing output directory; start afresh, not from OUT.checkpoint.pt"
CENTRE_HELP = "autograd: the k-space centre line may be dropped too (default: always acquired)"
TARGET_HELP = "autograd: target contrast (se: Eq. 13; t1: T1-weighted, TR 600 ms)"


def _data_options(p: argparse.ArgumentParser, n_train: int, n_test: int, matrix: int) -> None:
    arg(p, "--phantoms", n_train, f"training phantoms (default {n_train}; the paper used 50000)",
        type=positive)  # fmt: skip
    arg(p, "--test-phantoms", n_test, f"test phantoms (default {n_test}; the paper used 1000)",
        type=positive)  # fmt: skip
    arg(p, "--matrix", matrix, f"image matrix N, FOV 64 mm (default {matrix}; the paper used 64)")
    arg(p, "--cache", None, "folder to cache simulated data in (by settings)")


def _net_options(p: argparse.ArgumentParser, net: str, epochs: int, batch: int) -> None:
    arg(p, "--net", net, f"reconstruction network (default {net})", choices=["automap", "unet"])
    arg(p, "--epochs", epochs, f"training epochs (default {epochs})", type=positive)
    arg(p, "--batch-size", batch, f"minibatch (default {batch})", type=positive)
    arg(p, "--lr", 5e-4, "RMSProp learning rate (default 5e-4)")
    arg(p, "--channels", 64, "AUTOMAP conv filters (default 64)")
    arg(p, "--width", 16, "U-Net first-level channels (default 16)", type=positive)
    init_help = "AUTOMAP initialisation (default glorot, as in the paper)"
    arg(p, "--init", "glorot", init_help, choices=["glorot", "dft"])


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("spin", help="SPIN: learn the pulse sequence and the reconstruction")
    ssub = p.add_subparsers(dest="spin_command", metavar="ACTION", parser_class=type(p))
    p.set_defaults(func=_no_action)

    t = ssub.add_parser(
        "train", help="train the reconstruction network on 90 deg data", epilog=RUNNING_HELP
    )
    _data_options(t, 50000, 1000, 64)
    _net_options(t, "automap", 300, 100)
    resume_help = "checkpoint.pt of an earlier run to continue from (with more --epochs)"
    arg(t, "--resume", None, resume_help)
    add_common(t, overwrite_help=OVERWRITE_HELP)
    t.set_defaults(func=run_train)

    o_help = "optimise the sequence (finite differences or autograd)"
    o = ssub.add_parser("optimize", help=o_help, epilog=RUNNING_HELP)
    o.add_argument("--method", required=True, choices=["finite-difference", "autograd"])
    arg(o, "--iterations", 7, "optimisation iterations (default 7)", type=positive)
    _data_options(o, 2000, 200, 32)
    _net_options(o, "unet", 8, 50)
    ck_help = "network from 'mrphys spin train' (default: train one on 90 deg data)"
    arg(o, "--checkpoint", None, ck_help)
    arg(o, "--start-flip-deg", None, START_HELP, type=float)
    arg(o, "--delta-deg", 1.0, "finite-difference step (deg)")
    arg(o, "--step", 500.0, "finite-difference descent step in deg^2 on d(log MSE)/d(flip in deg)")
    arg(o, "--learn", "flip1,flip2,te,lines", LEARN_HELP)
    arg(o, "--line-fraction", 1.0, "autograd: fraction of phase-encode lines kept (0.5 = 2x fewer)")
    o.add_argument("--free-centre", action="store_true", help=CENTRE_HELP)
    arg(o, "--target", "se", TARGET_HELP, choices=["se", "t1"])
    arg(o, "--steps-per-iteration", 20, "autograd: minibatch steps per iteration (default 20)")
    arg(o, "--minibatch", 16, "autograd: phantoms per step")
    add_common(o, overwrite_help=OVERWRITE_HELP)
    o.set_defaults(func=run_optimize)

    # shard jobs of the data simulation (mrphys.design.data.simulate_shard, issue 18)
    d = ssub.add_parser("simulate", help="simulate shard I/N of the training and test data into "
                        "--cache (N jobs sharing a folder; a stopped job resumes)")  # fmt: skip
    _data_options(d, 50000, 1000, 64)
    arg(d, "--shard", "1/1", "simulate every N-th chunk of 100 phantoms from the I-th (1-based)")
    add_common(d, out=False, device_help=None)
    d.set_defaults(func=run_simulate_shard)


def _no_action(args: argparse.Namespace) -> int:
    from mrphys.errors import MrphysError

    raise MrphysError("an action is required: 'mrphys spin train' or 'mrphys spin optimize'.")


def _configs(args: argparse.Namespace):
    """Data and training settings, checked (the library checks what it defines)."""
    import os

    from mrphys.design.run import DataConfig
    from mrphys.design.train import TrainConfig
    from mrphys.errors import check

    m = args.matrix
    check(16 <= m <= 128 and m % 4 == 0, f"--matrix must be a multiple of 4 in [16, 128]; got {m}.")
    check(0 < args.lr < 1, f"--lr must lie in (0, 1); got {args.lr}.")
    check(args.channels >= 2, f"--channels must be >= 2; got {args.channels}.")
    check(args.cache is None or not os.path.isfile(args.cache),
          f"--cache {args.cache} is a file; a folder is expected.")  # fmt: skip
    data = DataConfig(args.phantoms, args.test_phantoms, m, args.seed, args.cache)
    names = ("net", "matrix", "channels", "width", "init", "epochs", "batch_size", "lr", "seed")
    tcfg = TrainConfig(**{k: getattr(args, k) for k in names})
    tcfg.check()
    return data, tcfg


def _file(path: str | None, option: str) -> None:
    from mrphys.errors import check

    check(path is None or Path(path).is_file(), f"{option} {path} does not exist.")


def _running(args: argparse.Namespace) -> Path:
    """The running checkpoint of ``--out`` (:func:`mrphys.design.run.open_running`)."""
    from mrphys.design.run import open_running

    ck, done = open_running(args.out, args.overwrite)
    if done is not None:
        print(f"continuing the interrupted run of {args.out} from {ck} ({done} done)")
    return ck


def run_train(args: argparse.Namespace) -> int:
    from mrphys.design.run import keep_running, train_to_folder
    from mrphys.train import load_checkpoint
    from mrphys.utils import resolve_device

    data, tcfg = _configs(args)
    _file(args.resume, "--resume")
    if args.resume is not None:
        load_checkpoint(args.resume)  # a broken or unsafe file is one sentence, before any work
    new_output(args)
    device = resolve_device(args.device)
    ck = _running(args)
    with keep_running(ck, sys.stderr.write):
        hist = train_to_folder(args.out, data, tcfg, device, args.resume, args.overwrite, ck)
    last = hist[-1] if hist else None
    psnr = last.psnr if last is not None and last.psnr is not None else float("nan")
    ssim = last.ssim if last is not None and last.ssim is not None else float("nan")
    print(
        f"trained {tcfg.net} for {tcfg.epochs} epochs: test PSNR {psnr:.2f} dB, "
        f"SSIM {ssim:.3f}; wrote {args.out}"
    )
    return 0


def run_optimize(args: argparse.Namespace) -> int:
    from mrphys.design.optimize import FDConfig, JointConfig
    from mrphys.design.run import OptimizeConfig, keep_running, summary
    from mrphys.design.run import run_optimize as _run
    from mrphys.errors import check
    from mrphys.io import output_dir
    from mrphys.utils import resolve_device

    data, tcfg = _configs(args)
    check(args.iterations <= 1000, f"--iterations must lie in [1, 1000]; got {args.iterations}.")
    _file(args.checkpoint, "--checkpoint")
    start = args.start_flip_deg
    fd = FDConfig(30.0 if start is None else start, args.iterations, args.delta_deg, args.step)
    fd.check()
    learn = tuple(s.strip() for s in args.learn.split(",") if s.strip())
    jc = JointConfig(start_flip1_deg=start, learn=learn, budget=args.line_fraction,
                     target=args.target, keep_centre=not args.free_centre,
                     iterations=args.iterations, steps_per_iteration=args.steps_per_iteration,
                     batch=args.minibatch, seed=args.seed, train=tcfg)  # fmt: skip
    jc.check()
    cfg = OptimizeConfig(args.method, data, tcfg, fd, jc, checkpoint=args.checkpoint)
    new_output(args)
    ck = _running(args)
    with keep_running(ck, sys.stderr.write), output_dir(args.out, overwrite=args.overwrite) as tmp:
        m = _run(tmp, cfg, resolve_device(args.device), running=ck)
    print(f"SPIN {args.method}: {summary(m)}; wrote {args.out}")
    return 0


def run_simulate_shard(args: argparse.Namespace) -> int:
    """``mrphys spin simulate --shard I/N --cache DIR``: this job's chunks of the data."""
    from mrphys.batch import parse_shard
    from mrphys.design.run import DataConfig

    shard = parse_shard(args.shard)
    data = DataConfig(args.phantoms, args.test_phantoms, args.matrix, args.seed, args.cache)
    done = data.simulate_shard(shard)
    state = "complete" if done else "waiting for the other shards"
    print(f"simulated shard {shard[0]}/{shard[1]} into {args.cache}; the data are {state}")
    return 0
