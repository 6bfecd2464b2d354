"""``mrphys relax``: T1/T2 (and off-resonance) maps from phase-cycled bSSFP.

Subcommands:

- ``fit``: maps from a 4-D pc-bSSFP volume with MIRACLE or a network (SVNN/PINN, magnitude or
  complex); writes ``t1.nii.gz``, ``t2.nii.gz`` (ms), ``db0.nii.gz`` (Hz, complex methods) and
  ``config.json`` with the input's affine.
- ``train``: train a network on simulated data; writes a resumable checkpoint.
- ``simulate``: a brain-like test volume (Gach Shepp-Logan, smooth B1/B0, noise) and its true maps.
- ``evaluate``: Monte Carlo evaluation (grid, in vivo-like set, off-resonance sweep) as PNG + JSON.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys

from mrphys.cli import add_common

log = logging.getLogger(__name__)

METHODS = ["miracle", "svnn", "pinn", "svnn-complex", "pinn-complex"]
NET_METHODS = METHODS[1:]
B1_LIMITS = (0.3, 2.0)  # plausible relative B1; outside means wrong units or a broken map


def _protocol_args(p: argparse.ArgumentParser, cycles: bool = False) -> None:
    p.add_argument("--tr-ms", type=float, default=4.8, help="repetition time in ms (default 4.8)")
    p.add_argument("--te-ms", type=float, default=None, help="echo time in ms (default TR/2)")
    p.add_argument("--flip-deg", type=float, default=15.0, help="nominal flip angle (default 15)")
    if cycles:
        p.add_argument("--phase-cycles", type=int, default=12, help="number of phase cycles N")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("relax", help="T1/T2 mapping from phase-cycled bSSFP (MIRACLE, SVNN, PINN)")
    rs = p.add_subparsers(dest="relax_command", metavar="ACTION", parser_class=type(p))

    f = rs.add_parser("fit", help="fit T1/T2 maps to a 4-D pc-bSSFP NIfTI volume")
    f.add_argument(
        "--input",
        required=True,
        help="4-D NIfTI, phase cycles on the 4th axis (complex, or the real part with "
        "--input-imag, or the magnitude with --input-phase)",
    )
    g = f.add_mutually_exclusive_group()
    g.add_argument("--input-imag", help="imaginary part (4-D NIfTI) when --input is the real part")
    g.add_argument("--input-phase", help="phase in rad (4-D NIfTI) when --input is the magnitude")
    f.add_argument("--b1", required=True, help="relative B1 map (3-D NIfTI, 1 = nominal flip)")
    f.add_argument("--method", required=True, choices=METHODS)
    f.add_argument(
        "--model",
        help="network checkpoint (default: the cached model for the protocol,"
        " trained on first use)",
    )
    f.add_argument("--mask", help="mask NIfTI (non-zero = fit); default: all voxels")
    f.add_argument(
        "--phase-cycles",
        type=int,
        default=None,
        help="expected number of phase cycles (checked against the input)",
    )
    _protocol_args(f)
    add_common(f)
    f.set_defaults(func=run_fit)

    t = rs.add_parser("train", help="train an SVNN/PINN on simulated pc-bSSFP data")
    t.add_argument("--method", required=True, choices=NET_METHODS)
    t.add_argument("--distribution", default="uniform", choices=["uniform", "extended", "invivo"])
    t.add_argument("--snr", type=float, default=math.inf, help="training SNR (default inf)")
    t.add_argument("--samples", type=int, default=400_000, help="simulated samples (60/20/20)")
    t.add_argument("--max-epochs", type=int, default=300)
    t.add_argument("--patience", type=int, default=25)
    t.add_argument(
        "--lr-patience",
        type=int,
        default=0,
        help="multiply the learning rate by --lr-decay after every this many epochs without a "
        "better validation loss (default 0: constant, as in the paper)",
    )
    t.add_argument("--lr-decay", type=float, default=0.5, help="learning-rate factor (0..1)")
    t.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="stop after this time; run again to resume from the checkpoint",
    )
    _protocol_args(t, cycles=True)
    t.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    t.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for torch (1 is fastest for these small networks on a busy machine)",
    )
    t.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    t.add_argument("--out", required=True, help="checkpoint file (.pt); resumed if it exists")
    t.add_argument("--overwrite", action="store_true", help="start afresh instead of resuming")
    t.set_defaults(func=run_train)

    s = rs.add_parser("simulate", help="write a simulated brain-like pc-bSSFP volume and its maps")
    s.add_argument("--matrix", type=int, default=128)
    s.add_argument("--slices", type=int, default=4)
    s.add_argument("--snr", type=float, default=50.0)
    _protocol_args(s, cycles=True)
    add_common(s)
    s.set_defaults(func=run_simulate)

    e = rs.add_parser("evaluate", help="Monte Carlo evaluation of a method (PNG + JSON)")
    e.add_argument("--method", required=True, choices=METHODS)
    e.add_argument("--model", help="network checkpoint (default: cached model)")
    e.add_argument("--grid", type=int, default=200, help="grid size per axis (default 200)")
    e.add_argument("--mc", type=int, default=20, help="noise realisations per point")
    e.add_argument("--snrs", default="inf,50,45,40,35,30,25,20,15,10")
    e.add_argument("--invivo", type=int, default=40000, help="in vivo-like test points")
    _protocol_args(e, cycles=True)
    add_common(e)
    e.set_defaults(func=run_evaluate)
    p.set_defaults(func=lambda a: (p.print_help(sys.stderr), 2)[1])


add_parser = register  # name used in the task description


def _protocol(args: argparse.Namespace, n_cycles: int):
    from mrphys.errors import MrphysError
    from mrphys.relax.data import Protocol

    tr = args.tr_ms
    te = args.te_ms if args.te_ms is not None else tr / 2
    if not (0 < tr <= 100):
        raise MrphysError(f"--tr-ms must lie in (0, 100] ms; got {tr}.")
    if not (0 < te < tr):
        raise MrphysError(f"--te-ms must be positive and below --tr-ms ({tr} ms); got {te}.")
    if not (0 < args.flip_deg < 180):
        raise MrphysError(f"--flip-deg must lie in (0, 180) degrees; got {args.flip_deg}.")
    if n_cycles < 3:
        raise MrphysError(f"the number of phase cycles must be at least 3; got {n_cycles}.")
    return Protocol(int(n_cycles), tr * 1e-3, te * 1e-3, math.radians(args.flip_deg))


def _load(path: str, what: str):
    from mrphys.io import load_nifti

    arr, aff = load_nifti(path)
    return arr, aff


def _same_affine(a, b) -> bool:
    import numpy as np

    return bool(np.allclose(a, b, atol=1e-3, rtol=1e-4))


def _read_fit_inputs(args: argparse.Namespace):
    """Load and check the inputs; returns (signals complex (X,Y,Z,N) np, b1, mask, affine)."""
    import numpy as np

    from mrphys.errors import MrphysError

    data, aff = _load(args.input, "input")
    if data.ndim != 4:
        raise MrphysError(
            f"--input must be a 4-D NIfTI with phase cycles on the 4th axis; got shape "
            f"{data.shape}."
        )
    if args.input_imag or args.input_phase:
        if np.iscomplexobj(data):
            raise MrphysError("--input is complex; --input-imag/--input-phase need a real --input.")
        other_path = args.input_imag or args.input_phase
        other, aff2 = _load(other_path, "second input")
        if other.shape != data.shape:
            raise MrphysError(f"{other_path} has shape {other.shape} but --input has {data.shape}.")
        if not _same_affine(aff, aff2):
            raise MrphysError(f"{other_path} has a different affine from --input.")
        if args.input_imag:
            data = data.astype(np.float64) + 1j * other.astype(np.float64)
        else:
            if np.nanmin(data) < 0:
                raise MrphysError("--input must be a non-negative magnitude with --input-phase.")
            data = data.astype(np.float64) * np.exp(1j * other.astype(np.float64))
    elif not np.iscomplexobj(data):
        raise MrphysError(
            "--input is real-valued; give a complex NIfTI, or the real part with --input-imag, "
            "or the magnitude with --input-phase."
        )
    n = data.shape[3]
    if args.phase_cycles is not None and args.phase_cycles != n:
        raise MrphysError(
            f"--input has {n} phase cycles on its 4th axis but --phase-cycles is "
            f"{args.phase_cycles}."
        )
    if n < 3:
        raise MrphysError(f"--input needs at least 3 phase cycles on its 4th axis; got {n}.")
    spatial = data.shape[:3]
    b1, aff_b1 = _load(args.b1, "B1")
    b1 = np.squeeze(b1) if b1.ndim > 3 else b1
    if b1.shape != spatial:
        raise MrphysError(f"--b1 has shape {b1.shape} but the input volume is {spatial}.")
    if not _same_affine(aff, aff_b1):
        raise MrphysError("--b1 has a different affine (orientation or voxel size) from --input.")
    mask = np.ones(spatial, dtype=bool)
    if args.mask:
        m, aff_m = _load(args.mask, "mask")
        m = np.squeeze(m) if m.ndim > 3 else m
        if m.shape != spatial:
            raise MrphysError(f"--mask has shape {m.shape} but the input volume is {spatial}.")
        if not _same_affine(aff, aff_m):
            raise MrphysError("--mask has a different affine from --input.")
        if not np.isfinite(m).all():
            raise MrphysError("--mask contains NaN or infinite values.")
        mask = m != 0
        if not mask.any():
            raise MrphysError("--mask selects no voxel.")
    if not np.isfinite(data[mask]).all():
        raise MrphysError("--input contains NaN or infinite values inside the mask.")
    if not np.isfinite(b1[mask]).all():
        raise MrphysError("--b1 contains NaN or infinite values inside the mask.")
    lo, hi = float(b1[mask].min()), float(b1[mask].max())
    if lo < B1_LIMITS[0] or hi > B1_LIMITS[1]:
        raise MrphysError(
            f"--b1 must be a relative flip-angle scale (1 = nominal) in [{B1_LIMITS[0]}, "
            f"{B1_LIMITS[1]}]; it spans [{lo:g}, {hi:g}] (percent or degrees given?)."
        )
    if lo < 0.7 or hi > 1.3:
        log.warning("B1 spans [%.2f, %.2f]; networks were trained on [0.7, 1.3].", lo, hi)
    return data, b1, mask, aff


def run_fit(args: argparse.Namespace) -> int:
    from mrphys.errors import MrphysError
    from mrphys.io import check_new_output

    check_new_output(args.out, args.overwrite)
    if args.model and args.method == "miracle":
        raise MrphysError("--model is for network methods; MIRACLE needs no model.")
    data, b1, mask, aff = _read_fit_inputs(args)
    protocol = _protocol(args, data.shape[3])

    import time

    import numpy as np
    import torch

    from mrphys.io import output_dir, save_json, save_nifti_raw
    from mrphys.relax.volume import check_model_protocol, default_model, fit_volume
    from mrphys.utils import resolve_device

    device = resolve_device(args.device)
    model, model_path = None, None
    if args.method != "miracle":
        if args.model:
            from mrphys.relax.train import load_model

            model, cfg = load_model(args.model, device)
            check_model_protocol(cfg, args.method, protocol, args.model)
            model_path = args.model
        else:
            model, model_path = default_model(args.method, protocol, device=device, seed=args.seed)
    sig = torch.from_numpy(np.ascontiguousarray(data).astype(np.complex64)).to(device)
    b1t = torch.from_numpy(np.ascontiguousarray(b1, dtype=np.float32)).to(device)
    mt = torch.from_numpy(mask).to(device)
    t0 = time.perf_counter()
    maps = fit_volume(sig, b1t, args.method, protocol, model, mt)
    seconds = time.perf_counter() - t0
    with output_dir(args.out, overwrite=args.overwrite) as tmp:
        save_nifti_raw(tmp / "t1.nii.gz", maps.t1.cpu().numpy() * 1e3, aff)
        save_nifti_raw(tmp / "t2.nii.gz", maps.t2.cpu().numpy() * 1e3, aff)
        if maps.db0 is not None:
            save_nifti_raw(tmp / "db0.nii.gz", maps.db0.cpu().numpy(), aff)
        save_json(
            tmp / "config.json",
            {
                "command": "relax fit",
                "method": args.method,
                "input": args.input,
                "input_imag": args.input_imag,
                "input_phase": args.input_phase,
                "b1": args.b1,
                "mask": args.mask,
                "model": str(model_path) if model_path else None,
                "protocol": {
                    "n_cycles": protocol.n_cycles,
                    "tr_ms": protocol.tr * 1e3,
                    "te_ms": protocol.te * 1e3,
                    "flip_deg": math.degrees(protocol.flip),
                },
                "voxels_fitted": int(mask.sum()),
                "fit_seconds": seconds,
                "device": str(device),
                "units": {"t1": "ms", "t2": "ms", "db0": "Hz"},
            },
        )
    print(f"wrote {args.out} ({int(mask.sum())} voxels, {seconds:.2f} s)")
    return 0


def run_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mrphys.errors import MrphysError

    out = Path(args.out)
    if out.is_dir():
        raise MrphysError(
            f"--out {out} is a directory; give a checkpoint file name such as model.pt."
        )
    if not (args.snr > 0):
        raise MrphysError(f"--snr must be positive (inf for noise-free); got {args.snr}.")
    if args.samples < 1000:
        raise MrphysError(f"--samples must be at least 1000; got {args.samples}.")
    if args.max_epochs < 1 or args.patience < 1:
        raise MrphysError("--max-epochs and --patience must be positive integers.")
    if args.lr_patience < 0 or not 0 < args.lr_decay < 1:
        raise MrphysError(
            "--lr-patience must be a non-negative integer and --lr-decay lie in (0, 1); "
            f"got {args.lr_patience} and {args.lr_decay}."
        )
    protocol = _protocol(args, args.phase_cycles)

    from mrphys.relax.train import TrainConfig, train
    from mrphys.utils import resolve_device

    if args.threads is not None:
        if args.threads < 1:
            raise MrphysError(f"--threads must be a positive integer; got {args.threads}.")
        import torch

        torch.set_num_threads(args.threads)  # the user's explicit choice, CLI layer only
    cfg = TrainConfig(
        method=args.method,
        n_cycles=protocol.n_cycles,
        distribution=args.distribution,
        snr=args.snr,
        tr=protocol.tr,
        te=protocol.te,
        flip=protocol.flip,
        n_samples=args.samples,
        max_epochs=args.max_epochs,
        patience=args.patience,
        lr_patience=args.lr_patience,
        lr_decay=args.lr_decay,
        seed=args.seed,
        max_seconds=args.max_minutes * 60 if args.max_minutes else None,
    )
    if out.exists() and args.overwrite:
        out.unlink()
    res = train(cfg, out, device=resolve_device(args.device), progress=True)
    last = res.history[-1] if res.history else {}
    print(
        f"wrote {out}: {len(res.history)} epochs ({res.stop_reason}), "
        f"val loss {last.get('val_loss', float('nan')):.3e}, test loss {res.test_loss:.3e}"
    )
    return 0


def run_simulate(args: argparse.Namespace) -> int:
    from mrphys.errors import MrphysError
    from mrphys.io import check_new_output

    check_new_output(args.out, args.overwrite)
    if not 16 <= args.matrix <= 512:
        raise MrphysError(f"--matrix must be an integer in [16, 512]; got {args.matrix}.")
    if not 1 <= args.slices <= 256:
        raise MrphysError(f"--slices must be an integer in [1, 256]; got {args.slices}.")
    if not args.snr > 0:
        raise MrphysError(f"--snr must be positive (inf for no noise); got {args.snr}.")
    protocol = _protocol(args, args.phase_cycles)

    from mrphys.relax.demo import write_volume
    from mrphys.relax.volume import simulate_volume

    vol = simulate_volume(
        protocol, matrix=args.matrix, n_slices=args.slices, snr=args.snr, seed=args.seed
    )
    from mrphys.io import output_dir, save_json

    with output_dir(args.out, overwrite=args.overwrite) as tmp:
        write_volume(tmp, vol)
        save_json(
            tmp / "config.json",
            {
                "command": "relax simulate",
                "matrix": args.matrix,
                "slices": args.slices,
                "snr": args.snr,
                "seed": args.seed,
                "protocol": {
                    "n_cycles": protocol.n_cycles,
                    "tr_ms": protocol.tr * 1e3,
                    "te_ms": protocol.te * 1e3,
                    "flip_deg": math.degrees(protocol.flip),
                },
                "files": {
                    "pc_bssfp.nii.gz": "complex (X, Y, Z, N)",
                    "b1.nii.gz": "relative",
                    "t1.nii.gz": "ms",
                    "t2.nii.gz": "ms",
                    "db0.nii.gz": "Hz",
                    "mask.nii.gz": "tissue",
                },
            },
        )
    print(f"wrote {args.out}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from mrphys.errors import MrphysError
    from mrphys.io import check_new_output

    check_new_output(args.out, args.overwrite)
    try:
        snrs = [float(s) for s in args.snrs.split(",") if s.strip()]
    except ValueError:
        raise MrphysError(
            f"--snrs must be comma-separated numbers or inf; got {args.snrs!r}."
        ) from None
    if not snrs or any(not s > 0 for s in snrs):
        raise MrphysError(f"--snrs must be positive numbers or inf; got {args.snrs!r}.")
    if not 2 <= args.grid <= 1000 or args.mc < 1 or args.invivo < 0:
        raise MrphysError("--grid must lie in [2, 1000], --mc be >= 1 and --invivo >= 0.")
    protocol = _protocol(args, args.phase_cycles)

    from mrphys.io import output_dir
    from mrphys.relax.evaluate import evaluate_method
    from mrphys.relax.volume import check_model_protocol, default_model
    from mrphys.utils import resolve_device

    device = resolve_device(args.device)
    model = None
    if args.method != "miracle":
        if args.model:
            from mrphys.relax.train import load_model

            model, cfg = load_model(args.model, device)
            check_model_protocol(cfg, args.method, protocol, args.model)
        else:
            model, _ = default_model(args.method, protocol, device=device, seed=args.seed)
    with output_dir(args.out, overwrite=args.overwrite) as tmp:
        res = evaluate_method(
            args.method,
            protocol,
            model,
            tmp,
            grid=args.grid,
            n_mc=args.mc,
            snrs=snrs,
            n_invivo=args.invivo,
            seed=args.seed,
        )
    print(f"wrote {args.out}: " + ", ".join(f"{k} {v:.4f}" for k, v in res["summary"].items()))
    return 0
