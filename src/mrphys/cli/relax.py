"""``mrphys relax``: T1/T2 (and off-resonance) maps from phase-cycled bSSFP.

Subcommands:

- ``fit``: maps from a 4-D pc-bSSFP volume (or one NIfTI per phase cycle) with MIRACLE or a
  network (SVNN/PINN, magnitude or complex), the protocol from the BIDS JSON sidecar beside the
  input when there is one (options that repeat it must agree); writes ``t1.nii.gz``,
  ``t2.nii.gz`` (ms), ``db0.nii.gz`` (Hz, complex methods) and ``config.json`` with the input's
  affine. Voxels whose phase cycles are all 0 are not fitted
  (maps 0): a warning, ``voxels_without_signal`` in ``config.json`` and ``no_signal.nii.gz``.
- ``bids``: the BIDS-App (``mrphys relax bids BIDS_DIR OUT_DIR participant``): every subject's
  pc-bSSFP series and B1 maps found, fitted and written as a BIDS derivatives dataset with JSON
  sidecars and a per-subject HTML report (:mod:`mrphys.relax.bids`).
- ``train``: train a network on simulated data; writes a resumable checkpoint.
- ``simulate``: a brain-like test volume (Gach Shepp-Logan, smooth B1/B0, noise) and its true maps,
  computed on ``--device``.
- ``evaluate``: Monte Carlo evaluation (grid, in vivo-like set, off-resonance sweep) as PNG + JSON.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys

from mrphys.cli import add_common, arg, new_output, positive
from mrphys.cli._batch import add_batch_options, is_batch, run_batch_command

#: relax fit options that may name each input's own file in a batch ({dir}/{stem}/{name})
BATCH_TEMPLATED = ("b1", "mask", "input_imag", "input_phase", "model")

log = logging.getLogger(__name__)

# = mrphys.relax.data.METHODS_LIST (not imported: fast --help; a test checks they agree)
METHODS = ["miracle", "planet", "svnn", "pinn", "svnn-complex", "pinn-complex"]
B1_UNITS = ["auto", "ratio", "percent"]  # mrphys.relax.inputs.B1_UNITS (not imported: fast --help)
NET_METHODS = METHODS[2:]
INPUT_HELP = (
    "4-D NIfTI, phase cycles on the 4th axis, or one 3-D NIfTI per phase cycle (complex, or the "
    "real part with --input-imag, or the magnitude with --input-phase); the protocol is read "
    "from the BIDS JSON sidecar beside it when there is one"
)
PROTOCOL_NOTE = (
    " (default: the BIDS sidecar, else {}; an option the sidecar also gives must agree with it)"
)
LR_PATIENCE_HELP = (
    "multiply the learning rate by --lr-decay after every this many epochs without a better "
    "validation loss (default 0: constant, as in the paper)"
)


def _protocol_args(p: argparse.ArgumentParser, cycles: bool = False, sidecar: bool = False) -> None:
    if sidecar:  # None = not given: the sidecar's value, else the default
        arg(p, "--tr-ms", None, "repetition time in ms" + PROTOCOL_NOTE.format(4.8), type=float)
        arg(p, "--te-ms", None, "echo time in ms" + PROTOCOL_NOTE.format("TR/2"), type=float)
        arg(p, "--flip-deg", None, "nominal flip angle" + PROTOCOL_NOTE.format(15), type=float)
        no_help = "ignore the BIDS JSON sidecar: the protocol from the options alone"
        p.add_argument("--no-sidecar", dest="sidecar", action="store_false", help=no_help)
        b1_help = "units of the B1 map: ratio (1 = nominal), percent (BIDS TB1map) or auto"
        arg(p, "--b1-units", "auto", b1_help + " (default: by its median)", choices=B1_UNITS)
        return
    arg(p, "--tr-ms", 4.8, "repetition time in ms (default 4.8)")
    arg(p, "--te-ms", None, "echo time in ms (default TR/2)", type=float)
    arg(p, "--flip-deg", 15.0, "nominal flip angle (default 15)")
    if cycles:
        arg(p, "--phase-cycles", 12, "number of phase cycles N")


def _method_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    """--method and --model: the same for relax fit and relax bids."""
    p.add_argument("--method", required=required, choices=METHODS)
    model_help = "network checkpoint (default: the cached model for the protocol,"
    p.add_argument("--model", help=model_help + " trained on first use)")


BIDS_DIR_HELP = (
    "BIDS dataset: sub-<label>/[ses-<label>/]anat/*_acq-pcbssfp[_part-mag|phase]_bSSFP.nii.gz "
    "with JSON sidecars, and sub-<label>/[ses-<label>/]fmap/*_TB1map.nii.gz"
)
TISSUE_HELP = (
    "derivatives folder with sub-<label>/anat/*_label-<tissue>_mask.nii.gz (report histograms "
    "per tissue) and *_desc-brain_mask.nii.gz (voxels to fit; default: voxels with signal)"
)
NII_HELP = "write uncompressed .nii files (fastest to write and read; default .nii.gz)"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("relax", help="T1/T2 mapping from phase-cycled bSSFP (MIRACLE, SVNN, PINN)")
    rs = p.add_subparsers(dest="relax_command", metavar="ACTION", parser_class=type(p))

    f = rs.add_parser("fit", help="fit T1/T2 maps to a 4-D pc-bSSFP NIfTI volume")
    f.add_argument("--input", required=True, nargs="+", help=INPUT_HELP)
    g = f.add_mutually_exclusive_group()
    imag_help = "imaginary part (4-D NIfTI, or one per cycle) when --input is the real part"
    g.add_argument("--input-imag", nargs="+", help=imag_help)
    phase_help = "phase in rad (4-D NIfTI, or one per cycle) when --input is the magnitude"
    g.add_argument("--input-phase", nargs="+", help=phase_help)
    b1_help = "B1 map (3-D NIfTI): relative (1 = nominal flip) or percent (see --b1-units)"
    f.add_argument("--b1", help=b1_help + "; not with a --protocol network trained without one")
    _method_args(f, required=False)  # not with --protocol
    protocol_help = "protocol.json of 'mrphys design protocol' (with --model: its network.pt)"
    f.add_argument("--protocol", help=protocol_help)
    f.add_argument("--mask", help="mask NIfTI (non-zero = fit); default: all voxels")
    cycles_help = "expected number of phase cycles (checked against the input)"
    arg(f, "--phase-cycles", None, cycles_help, type=int)
    _protocol_args(f, sidecar=True)
    add_common(f)
    f.add_argument("--nii", action="store_true", help=NII_HELP)
    f.set_defaults(func=run_fit)
    add_batch_options(f, BATCH_TEMPLATED)  # many inputs (mrphys.batch, issue 18)

    b = rs.add_parser(
        "bids", help="BIDS-App: T1/T2 maps of each subject's pc-bSSFP series as BIDS derivatives"
    )
    b.add_argument("bids_dir", help=BIDS_DIR_HELP)
    b.add_argument("output_dir", help="the derivatives dataset to write, one sub-* folder each")
    level_help = "participant (fit each subject); group is not supported"
    b.add_argument("analysis_level", choices=["participant", "group"], help=level_help)
    label_help = "subjects to process (labels with or without sub-; default: all)"
    b.add_argument("--participant-label", nargs="+", help=label_help)
    _method_args(b)
    b.add_argument("--tissue-masks", help=TISSUE_HELP)
    _protocol_args(b, sidecar=True)
    b.add_argument("--no-report", dest="report", action="store_false", help="no HTML report")
    add_common(b, out=False)
    over_help = "replace the derivatives of a subject that mrphys wrote before"
    b.add_argument("--overwrite", action="store_true", help=over_help)
    b.set_defaults(func=run_bids)

    t = rs.add_parser("train", help="train an SVNN/PINN on simulated pc-bSSFP data")
    t.add_argument("--method", required=True, choices=NET_METHODS)
    arg(t, "--distribution", "uniform", choices=["uniform", "extended", "invivo"])
    arg(t, "--snr", math.inf, "training SNR (default inf)")
    arg(t, "--samples", 400_000, "simulated samples (60/20/20)")
    arg(t, "--max-epochs", 300)
    arg(t, "--patience", 25)
    arg(t, "--lr-patience", 0, LR_PATIENCE_HELP)
    arg(t, "--lr-decay", 0.5, "learning-rate factor (0..1)")
    minutes_help = "stop after this time; run again to resume from the checkpoint"
    arg(t, "--max-minutes", None, minutes_help, type=float)
    _protocol_args(t, cycles=True)
    arg(t, "--seed", 0, "random seed (default 0)")
    threads_help = "CPU threads for torch (1 is fastest for these small networks on a busy machine)"
    arg(t, "--threads", None, threads_help, type=positive)
    out_help = "checkpoint file (.pt); resumed if it exists"
    add_common(t, seed=False, out_help=out_help, overwrite_help="start afresh instead of resuming",
               device_help=None)  # fmt: skip
    t.set_defaults(func=run_train)

    s = rs.add_parser("simulate", help="write a simulated brain-like pc-bSSFP volume and its maps")
    arg(s, "--matrix", 128)
    arg(s, "--slices", 4)
    arg(s, "--snr", 50.0)
    _protocol_args(s, cycles=True)
    add_common(s)
    s.add_argument("--nii", action="store_true", help=NII_HELP)
    s.set_defaults(func=run_simulate)

    e = rs.add_parser("evaluate", help="Monte Carlo evaluation of a method (PNG + JSON)")
    e.add_argument("--method", required=True, choices=METHODS)
    e.add_argument("--model", help="network checkpoint (default: cached model)")
    arg(e, "--grid", 200, "grid size per axis (default 200)")
    arg(e, "--mc", 20, "noise realisations per point")
    arg(e, "--snrs", "inf,50,45,40,35,30,25,20,15,10")
    arg(e, "--invivo", 40000, "in vivo-like test points")
    _protocol_args(e, cycles=True)
    add_common(e)
    e.set_defaults(func=run_evaluate)
    p.set_defaults(func=lambda a: (p.print_help(sys.stderr), 2)[1])


def _protocol(args: argparse.Namespace, n_cycles: int):
    from mrphys.relax.inputs import protocol_from_ms

    return protocol_from_ms(n_cycles, args.tr_ms, args.te_ms, args.flip_deg)


def run_fit(args: argparse.Namespace) -> int:
    from mrphys.errors import check

    if is_batch(args):  # --inputs: this handler once per input (mrphys.batch, issue 18)
        return run_batch_command(args, run_fit, "file", BATCH_TEMPLATED)
    new_output(args)
    if args.protocol is not None:  # a learned protocol and its network (mrphys design protocol)
        from mrphys.relax.protocol_design import fit_protocol_to_folder

        check(args.model is not None, "--model is required with --protocol (its network.pt).")
        kw = {k: getattr(args, k) for k in ("b1", "mask", "overwrite", "nii")}
        n = fit_protocol_to_folder(args.out, args.input, args.protocol, args.model, **kw)
        print(f"wrote {args.out} ({n} voxels)")
        return 0
    check(args.b1 is not None and args.method is not None,
          "--b1 and --method are required (unless --protocol is given).")  # fmt: skip
    from mrphys.io import prefetch_nifti

    files = [*args.input, *(args.input_imag or args.input_phase or []), args.b1, args.mask]
    files = [f for f in files if f not in (None, "foreground")]
    prefetch_nifti(files, contiguous=True)  # the reading overlaps the import of torch
    from mrphys.relax.pipeline import fit_to_folder

    names = ("input_imag", "input_phase", "mask", "phase_cycles", "model", "tr_ms", "te_ms")
    names += ("flip_deg", "sidecar", "b1_units", "seed", "device", "overwrite", "nii")
    kw = {k: getattr(args, k) for k in names}
    res = fit_to_folder(args.out, args.input, args.b1, args.method, **kw)
    n_empty = res.voxels_without_signal
    empty = f", {n_empty} without signal (maps 0, the no_signal map)" if n_empty else ""
    print(f"wrote {args.out} ({res.voxels_fitted} voxels{empty}, {res.seconds:.2f} s)")
    return 0


def run_bids(args: argparse.Namespace) -> int:
    from mrphys.errors import MrphysError

    if args.analysis_level == "group":
        raise MrphysError(
            "the group level is not supported by mrphys relax bids (each subject's maps are "
            "complete at the participant level); run it with participant."
        )
    from mrphys.relax.bids import BidsOptions, run_participant
    from mrphys.utils import resolve_device

    names = ("method", "model", "tr_ms", "te_ms", "flip_deg", "b1_units", "seed", "overwrite")
    opts = BidsOptions(**{k: getattr(args, k) for k in names}, report=args.report,
                       sidecar=args.sidecar, device=resolve_device(args.device))  # fmt: skip
    results = run_participant(args.bids_dir, args.output_dir, opts, args.participant_label,
                              args.tissue_masks)  # fmt: skip
    for r in results:
        n = sum(s.voxels_fitted for s in r.series)
        print(f"wrote {r.folder} ({len(r.series)} series, {n} voxels)")
    return 0


def run_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mrphys.errors import check

    out = Path(args.out)
    check(not out.is_dir(),
          f"--out {out} is a directory; give a checkpoint file name such as model.pt.")  # fmt: skip
    check(args.samples >= 1000, f"--samples must be at least 1000; got {args.samples}.")
    minutes = args.max_minutes
    check(minutes is None or (math.isfinite(minutes) and minutes > 0),
          f"--max-minutes must be a positive number of minutes; got {minutes}.")  # fmt: skip
    protocol = _protocol(args, args.phase_cycles)
    from mrphys.relax.train import TrainConfig, train
    from mrphys.utils import resolve_device

    same = {k: getattr(args, k) for k in ("method", "distribution", "snr", "max_epochs", "seed")}
    same |= {k: getattr(args, k) for k in ("patience", "lr_patience", "lr_decay")}
    cfg = TrainConfig(**same, n_cycles=protocol.n_cycles, tr=protocol.tr, te=protocol.te,
                      flip=protocol.flip, n_samples=args.samples,
                      max_seconds=None if minutes is None else minutes * 60)  # fmt: skip
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)  # the user's explicit choice, CLI layer only
    if args.overwrite:
        from mrphys.io import discard_output

        discard_output(out)  # only a checkpoint mrphys wrote
    res = train(cfg, out, device=resolve_device(args.device), progress=True)
    val = res.history[-1].val_loss if res.history else float("nan")
    print(
        f"wrote {out}: {len(res.history)} epochs ({res.stop_reason}), "
        f"val loss {val:.3e}, test loss {res.test_loss:.3e}"
    )
    return 0


def run_simulate(args: argparse.Namespace) -> int:
    from mrphys.errors import check

    new_output(args)
    check(16 <= args.matrix <= 512, f"--matrix must be an integer in [16, 512]; got {args.matrix}.")
    check(1 <= args.slices <= 256, f"--slices must be an integer in [1, 256]; got {args.slices}.")
    protocol = _protocol(args, args.phase_cycles)
    from mrphys.relax.pipeline import simulate_to_folder

    names = ("matrix", "slices", "snr", "seed", "device", "overwrite", "nii")
    simulate_to_folder(args.out, protocol, **{k: getattr(args, k) for k in names})
    print(f"wrote {args.out}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from mrphys.errors import check
    from mrphys.relax.evaluate import evaluate_method, parse_snrs

    new_output(args)
    snrs = parse_snrs(args.snrs)
    check(2 <= args.grid <= 1000 and args.mc >= 1 and args.invivo >= 0,
          "--grid must lie in [2, 1000], --mc be >= 1 and --invivo >= 0.")  # fmt: skip
    protocol = _protocol(args, args.phase_cycles)
    from mrphys.io import output_dir
    from mrphys.relax.inputs import load_network
    from mrphys.utils import resolve_device

    device = resolve_device(args.device)
    model, _ = load_network(args.method, protocol, args.model, device=device, seed=args.seed)
    with output_dir(args.out, overwrite=args.overwrite) as tmp:
        res = evaluate_method(args.method, protocol, model, tmp, grid=args.grid, n_mc=args.mc,
                              snrs=snrs, n_invivo=args.invivo, seed=args.seed,
                              progress=True)  # fmt: skip
    print(f"wrote {args.out}: " + ", ".join(f"{k} {v:.4f}" for k, v in res["summary"].items()))
    return 0
