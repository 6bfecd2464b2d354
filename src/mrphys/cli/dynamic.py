"""``mrphys dynamic``: simulate a multi-coil golden-angle radial acquisition and reconstruct it.

``mrphys dynamic simulate --series FILE.mat|synthetic --spokes S --coils C [--snr X] --out DIR``
writes ``kspace.npy`` (complex64 ``[T, C, S, N]``), ``traj.npy`` (float32 ``[T, S, N, 2]``
rad/pixel, ``(ky, kx)``), ``maps.npy`` (complex64 ``[C, Y, X]``), ``dcf.npy`` (float32
``[T, S, N]``), ``truth.npy`` (complex64 ``[T, Y, X]``, max ``|x| = 1``) and
``acquisition.json``.

``mrphys dynamic recon --input DIR --method NAME --out DIR2`` runs a method of
:mod:`mrphys.recon.registry` (gridding, cg-sense, grasp, ls, inr) and writes ``recon.npy``
(complex64 ``[T, Y, X]``), ``recon.nii.gz`` (magnitude), ``metrics.json`` (per-frame and mean
PSNR/SSIM against ``truth.npy`` when present, seconds, settings) and ``frames.png`` (a strip of
frames, truth below when present).
"""

from __future__ import annotations

import argparse
import time

from mrphys.cli import add_common, arg, new_output, options, positive


class _MethodNames:
    """The registry's method names, read when first needed (``mrphys --help`` loads no torch)."""

    def _names(self) -> list[str]:
        from mrphys.recon.registry import names

        return names()

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __iter__(self):
        return iter(self._names())


SERIES_HELP = "MATLAB file with a (Y, X, frames) series, or 'synthetic' for a beating phantom"
FRAMES_HELP = "use the first K frames (synthetic: number of frames, default 20)"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dynamic", help="dynamic radial MRI: simulate an acquisition, reconstruct")
    dsub = p.add_subparsers(dest="dynamic_command", metavar="ACTION", parser_class=type(p))

    s = dsub.add_parser("simulate", help="golden-angle radial multi-coil k-space of a series")
    s.add_argument("--series", required=True, help=SERIES_HELP)
    s.add_argument("--variable", default=None, help="variable name in the .mat file")
    arg(s, "--frames", None, FRAMES_HELP, type=positive)
    arg(s, "--matrix", 64, "matrix N of the synthetic phantom (default 64; ignored for files)")
    arg(s, "--spokes", None, "spokes per frame", type=positive, required=True)
    arg(s, "--coils", 8, "receive coils (default 8)")
    arg(s, "--snr", None, "mean |k-space| / complex noise std (default: no noise)", type=float)
    add_common(s)
    s.set_defaults(func=run_simulate)

    r = dsub.add_parser("recon", help="reconstruct a `dynamic simulate` output")
    r.add_argument("--input", required=True, help="directory written by `mrphys dynamic simulate`")
    # set after add_argument, which formats the choices (and would read the registry) at once
    r.add_argument("--method", required=True).choices = _MethodNames()
    iterations_help = "iterations (default: the method's frozen default)"
    arg(r, "--iterations", None, iterations_help, type=positive)
    arg(r, "--frames-out", None, "frames to render (inr only)", type=positive)
    arg(r, "--matrix-out", None, "matrix to render (inr only)", type=positive)
    add_common(r)
    r.set_defaults(func=run_recon)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run_simulate(args: argparse.Namespace) -> int:
    from mrphys.errors import check

    check(args.coils <= 64, f"--coils must be an integer in [1, 64]; got {args.coils}.")
    synthetic = args.series == "synthetic"
    check(not synthetic or 8 <= args.matrix <= 512,
          f"--matrix must be an integer in [8, 512]; got {args.matrix}.")  # fmt: skip
    new_output(args)  # fail before any work
    from mrphys.io import output_dir, save_json
    from mrphys.physics.radial import simulate_radial
    from mrphys.tissue.dynamic import load_series, synthetic_cine
    from mrphys.utils import resolve_device

    device = resolve_device(args.device)
    if synthetic:
        series = synthetic_cine(args.frames or 20, args.matrix, seed=args.seed)
    else:
        series = load_series(args.series, variable=args.variable)[: args.frames]
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
        save_json(tmp / "config.json", {**options(args), "command": "dynamic simulate"})
    t, c, k = *data.kspace.shape[:2], data.kspace[0, 0].numel()  # (T, C, S, N): S*N per frame
    print(
        f"wrote {args.out}: {t} frames of {data.im_size[0]}x{data.im_size[1]}, {c} coils, "
        f"{args.spokes} spokes/frame ({k} samples), acceleration {data.meta['acceleration']:.1f}"
    )
    return 0


def _method_options(args: argparse.Namespace, device) -> dict:
    """The options the method takes; an option given that it does not take is an error."""
    from mrphys.errors import MrphysError
    from mrphys.recon import registry

    takes = registry.get(args.method).options
    for name in ("frames_out", "matrix_out", "iterations"):
        if getattr(args, name) is not None and name not in takes:
            others = ", ".join(m for m in registry.names() if name in registry.get(m).options)
            raise MrphysError(
                f"--{name.replace('_', '-')} is only available with --method {others}; "
                f"got --method {args.method}."
            )
    given = {k: getattr(args, k) for k in ("iterations", "frames_out", "matrix_out", "seed")}
    given |= {"progress": True, "device": device}
    return {k: v for k, v in given.items() if k in takes}


def run_recon(args: argparse.Namespace) -> int:
    from mrphys.utils import resolve_device

    device = resolve_device(args.device)
    opts = _method_options(args, device)
    new_output(args)
    import numpy as np
    import torch

    from mrphys import plot
    from mrphys.io import output_dir, save_json, save_nifti
    from mrphys.metrics import psnr, ssim
    from mrphys.physics.radial import RadialData
    from mrphys.recon.registry import reconstruct

    data = RadialData.load(args.input).to(device)
    torch.manual_seed(args.seed)
    rec = reconstruct(args.method, data, **opts)
    x, seconds = rec.image.detach().to("cpu", torch.complex64), rec.seconds
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
        truth = None
    metrics["config"] = {**options(args), "command": "dynamic recon", "device": str(device)}
    with output_dir(args.out, overwrite=args.overwrite) as tmp:
        np.save(tmp / "recon.npy", x.numpy())
        save_nifti(tmp / "recon.nii.gz", x.abs())
        save_json(tmp / "metrics.json", metrics)
        rows = [(args.method, x)] + ([("truth", truth)] if truth is not None else [])
        plot.frame_grid(tmp / "frames.png", rows)
    msg = f"wrote {args.out}: {args.method}, {x.shape[0]} frames in {seconds:.1f} s"
    if "psnr_db" in metrics:
        msg += f", mean PSNR {metrics['psnr_db']:.2f} dB"
        if metrics["ssim"] is not None:
            msg += f", SSIM {metrics['ssim']:.3f}"
    print(msg)
    return 0
