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

from mrphys.cli import add_common, arg, new_output, options, positive
from mrphys.cli._batch import add_batch_options, is_batch, run_batch_command


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
    add_batch_options(r)  # many inputs (mrphys.batch, issue 18)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run_simulate(args: argparse.Namespace) -> int:
    from mrphys.errors import check

    check(args.coils <= 64, f"--coils must be an integer in [1, 64]; got {args.coils}.")
    synthetic = args.series == "synthetic"
    check(not synthetic or 8 <= args.matrix <= 512,
          f"--matrix must be an integer in [8, 512]; got {args.matrix}.")  # fmt: skip
    new_output(args)  # fail before any work
    from mrphys.recon.pipeline import simulate_to_folder
    from mrphys.utils import resolve_device

    device = resolve_device(args.device)
    names = ("variable", "frames", "matrix", "coils", "snr", "seed", "overwrite")
    config = {**options(args), "command": "dynamic simulate"}
    kw = {k: getattr(args, k) for k in names} | {"device": device, "config": config}
    data = simulate_to_folder(args.out, args.series, args.spokes, **kw)
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
    if is_batch(args):  # --inputs: this handler once per input (mrphys.batch, issue 18)
        return run_batch_command(args, run_recon, "dir")
    from mrphys.utils import resolve_device

    device = resolve_device(args.device)
    opts = _method_options(args, device)
    new_output(args)
    from mrphys.recon.pipeline import recon_to_folder

    config = {**options(args), "command": "dynamic recon", "device": str(device)}
    kw = {"seed": args.seed, "device": device, "overwrite": args.overwrite, "config": config}
    metrics = recon_to_folder(args.out, args.input, args.method, opts, **kw)
    frames, seconds = metrics["shape"][0], metrics["seconds"]
    msg = f"wrote {args.out}: {args.method}, {frames} frames in {seconds:.1f} s"
    if "psnr_db" in metrics:
        msg += f", mean PSNR {metrics['psnr_db']:.2f} dB"
        if metrics["ssim"] is not None:
            msg += f", SSIM {metrics['ssim']:.3f}"
    print(msg)
    return 0
