"""``mrphys dynamic``: simulate a multi-coil golden-angle radial acquisition and reconstruct it.

``mrphys dynamic simulate --series FILE.mat|synthetic --spokes S --coils C [--snr X] --out DIR``
writes ``kspace.npy`` (complex64 ``[T, C, S, N]``), ``traj.npy`` (float32 ``[T, S, N, 2]``
rad/pixel, ``(ky, kx)``), ``maps.npy`` (complex64 ``[C, Y, X]``), ``dcf.npy`` (float32
``[T, S, N]``), ``truth.npy`` (complex64 ``[T, Y, X]``, max ``|x| = 1``) and
``acquisition.json``.

``mrphys dynamic recon --input DIR --method gridding|cg-sense|grasp|ls|inr --out DIR2`` writes
``recon.npy`` (complex64 ``[T, Y, X]``), ``recon.nii.gz`` (magnitude), ``metrics.json``
(per-frame and mean PSNR/SSIM against ``truth.npy`` when present, seconds, settings) and
``frames.png`` (a strip of frames, truth below when present).
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from pathlib import Path

from mrphys.cli import add_common

log = logging.getLogger(__name__)

METHODS = ["gridding", "cg-sense", "grasp", "ls", "inr"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dynamic", help="dynamic radial MRI: simulate an acquisition, reconstruct")
    dsub = p.add_subparsers(dest="dynamic_command", metavar="ACTION", parser_class=type(p))

    s = dsub.add_parser("simulate", help="golden-angle radial multi-coil k-space of a series")
    s.add_argument(
        "--series",
        required=True,
        help="MATLAB file with a (Y, X, frames) series, or 'synthetic' for a beating phantom",
    )
    s.add_argument("--variable", default=None, help="variable name in the .mat file")
    s.add_argument(
        "--frames",
        type=int,
        default=None,
        help="use the first K frames (synthetic: number of frames, default 20)",
    )
    s.add_argument(
        "--matrix",
        type=int,
        default=64,
        help="matrix N of the synthetic phantom (default 64; ignored for files)",
    )
    s.add_argument("--spokes", type=int, required=True, help="spokes per frame")
    s.add_argument("--coils", type=int, default=8, help="receive coils (default 8)")
    s.add_argument(
        "--snr",
        type=float,
        default=None,
        help="mean |k-space| / complex noise std (default: no noise)",
    )
    add_common(s)
    s.set_defaults(func=run_simulate)

    r = dsub.add_parser("recon", help="reconstruct a `dynamic simulate` output")
    r.add_argument("--input", required=True, help="directory written by `mrphys dynamic simulate`")
    r.add_argument("--method", required=True, choices=METHODS)
    r.add_argument(
        "--iterations",
        type=int,
        default=None,
        help="iterations (default: the method's frozen default)",
    )
    r.add_argument("--frames-out", type=int, default=None, help="frames to render (inr only)")
    r.add_argument("--matrix-out", type=int, default=None, help="matrix to render (inr only)")
    add_common(r)
    r.set_defaults(func=run_recon)
    p.set_defaults(func=lambda args: _usage(p))


def _usage(p: argparse.ArgumentParser) -> int:
    p.print_help()
    return 2


# --------------------------------------------------------------------------------------------
# simulate
# --------------------------------------------------------------------------------------------


def _check_simulate(args: argparse.Namespace) -> None:
    from mrphys.errors import MrphysError

    if args.spokes <= 0:
        raise MrphysError(f"--spokes must be a positive integer; got {args.spokes}.")
    if args.coils <= 0 or args.coils > 64:
        raise MrphysError(f"--coils must be an integer in [1, 64]; got {args.coils}.")
    if args.snr is not None and not (math.isfinite(args.snr) and args.snr > 0):
        raise MrphysError(f"--snr must be a positive number; got {args.snr}.")
    if args.frames is not None and args.frames <= 0:
        raise MrphysError(f"--frames must be a positive integer; got {args.frames}.")
    if args.series == "synthetic" and not 8 <= args.matrix <= 512:
        raise MrphysError(f"--matrix must be an integer in [8, 512]; got {args.matrix}.")
    if args.series != "synthetic" and not Path(args.series).is_file():
        raise MrphysError(f"series file {args.series} does not exist.")


def run_simulate(args: argparse.Namespace) -> int:
    _check_simulate(args)
    from mrphys.io import check_new_output

    check_new_output(args.out, args.overwrite)  # fail before any work

    from mrphys.io import output_dir, save_json
    from mrphys.physics.radial import simulate_radial
    from mrphys.tissue.dynamic import load_series, synthetic_cine
    from mrphys.utils import resolve_device

    device = resolve_device(args.device)
    if args.series == "synthetic":
        series = synthetic_cine(args.frames or 20, args.matrix, seed=args.seed)
    else:
        series = load_series(args.series, variable=args.variable)
        if args.frames is not None:
            series = series[: args.frames]
    t0 = time.perf_counter()
    data = simulate_radial(
        series.to(device), args.spokes, coils=args.coils, snr=args.snr, seed=args.seed
    )
    data.meta.update(
        series=str(args.series), variable=args.variable, frames=int(series.shape[0]),
        device=str(device), seconds=time.perf_counter() - t0,
    )  # fmt: skip
    with output_dir(args.out, overwrite=args.overwrite) as tmp:
        data.save(tmp)
        save_json(tmp / "config.json", {**vars_clean(args), "command": "dynamic simulate"})
    t, c, k = *data.kspace.shape[:2], data.kspace[0, 0].numel()  # (T, C, S, N): S*N per frame
    print(
        f"wrote {args.out}: {t} frames of {data.im_size[0]}x{data.im_size[1]}, {c} coils, "
        f"{args.spokes} spokes/frame ({k} samples), acceleration {data.meta['acceleration']:.1f}"
    )
    return 0


def vars_clean(args: argparse.Namespace) -> dict:
    return {k: v for k, v in vars(args).items() if k not in ("func",) and not callable(v)}


# --------------------------------------------------------------------------------------------
# recon
# --------------------------------------------------------------------------------------------


def _check_recon(args: argparse.Namespace) -> None:
    from mrphys.errors import MrphysError

    if args.iterations is not None and args.iterations <= 0:
        raise MrphysError(f"--iterations must be a positive integer; got {args.iterations}.")
    for name in ("frames_out", "matrix_out"):
        v = getattr(args, name)
        opt = "--" + name.replace("_", "-")
        if v is not None and args.method != "inr":
            raise MrphysError(
                f"{opt} is only available with --method inr; got --method {args.method}."
            )
        if v is not None and v <= 0:
            raise MrphysError(f"{opt} must be a positive integer; got {v}.")
    if not Path(args.input).is_dir():
        raise MrphysError(f"input directory {args.input} does not exist.")


def _reconstruct(args: argparse.Namespace, data, device):
    from mrphys.recon import baselines as B

    it = {"progress": True} if args.iterations is None else {
        "iterations": args.iterations, "progress": True,
    }  # fmt: skip
    if args.method == "gridding":
        return B.gridding(data)
    if args.method == "cg-sense":
        return B.cg_sense(data, **it)
    if args.method == "grasp":
        return B.grasp(data, **it)
    if args.method == "ls":
        return B.low_rank_sparse(data, **it)
    from mrphys.recon.inr import reconstruct_inr  # heavy: import only when asked

    return reconstruct_inr(
        data,
        iterations=args.iterations,
        frames_out=args.frames_out,
        matrix_out=args.matrix_out,
        seed=args.seed,
        device=device,
    )


def run_recon(args: argparse.Namespace) -> int:
    _check_recon(args)
    from mrphys.io import check_new_output

    check_new_output(args.out, args.overwrite)

    import numpy as np
    import torch

    from mrphys.io import output_dir, save_json, save_nifti
    from mrphys.metrics import psnr, ssim
    from mrphys.physics.radial import RadialData
    from mrphys.utils import resolve_device

    device = resolve_device(args.device)
    data = RadialData.load(args.input).to(device)
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    x = _reconstruct(args, data, device).detach().to("cpu", torch.complex64)
    seconds = time.perf_counter() - t0
    metrics: dict = {"method": args.method, "seconds": seconds, "shape": list(x.shape)}
    truth = None if data.truth is None else data.truth.to("cpu", torch.complex64)
    if truth is not None and truth.shape == x.shape:
        p = psnr(x, truth)
        s = ssim(x, truth) if min(x.shape[-2:]) >= 7 else None
        metrics.update(
            psnr_db=float(p.mean()),
            ssim=None if s is None else float(s.mean()),
            psnr_db_per_frame=[float(v) for v in p],
            ssim_per_frame=None if s is None else [float(v) for v in s],
            reference="truth.npy (magnitude, data range max |truth| per frame)",
        )
    elif truth is not None:
        metrics["note"] = (
            f"no metrics: reconstruction {tuple(x.shape)} differs from truth {tuple(truth.shape)}"
        )
    metrics["config"] = {**vars_clean(args), "command": "dynamic recon", "device": str(device)}
    with output_dir(args.out, overwrite=args.overwrite) as tmp:
        np.save(tmp / "recon.npy", x.numpy())
        save_nifti(tmp / "recon.nii.gz", x.abs())
        save_json(tmp / "metrics.json", metrics)
        _strip(
            tmp / "frames.png",
            x,
            truth if truth is not None and truth.shape == x.shape else None,
            args.method,
        )
    msg = f"wrote {args.out}: {args.method}, {x.shape[0]} frames in {seconds:.1f} s"
    if "psnr_db" in metrics:
        msg += f", mean PSNR {metrics['psnr_db']:.2f} dB"
        if metrics["ssim"] is not None:
            msg += f", SSIM {metrics['ssim']:.3f}"
    print(msg)
    return 0


def _strip(path: Path, x, truth, title: str, n_show: int = 8) -> None:
    """A row of up to ``n_show`` evenly spaced frames (magnitude), truth in a second row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    t = x.shape[0]
    idx = np.unique(np.linspace(0, t - 1, min(n_show, t)).round().astype(int))
    rows = [("recon", x)] + ([("truth", truth)] if truth is not None else [])
    vmax = float(max(r.abs().max() for _, r in rows)) or 1.0
    fig, axes = plt.subplots(
        len(rows), len(idx), figsize=(1.8 * len(idx), 1.9 * len(rows)), squeeze=False
    )
    for i, (name, arr) in enumerate(rows):
        for j, k in enumerate(idx):
            ax = axes[i, j]
            ax.imshow(arr[k].abs().numpy(), cmap="gray", vmin=0, vmax=vmax)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"frame {k}", fontsize=8)
            if j == 0:
                ax.set_ylabel(name if name == "truth" else title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
