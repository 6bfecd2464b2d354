"""``mrphys dynamic``: simulate a raw multi-coil golden-angle radial scan, reconstruct raw data.

``mrphys dynamic simulate --series FILE.mat|synthetic --spokes S --coils C [--snr X]
[--gradient-delay D|DX,DY] --out DIR`` simulates without the inverse crime
(:func:`mrphys.recon.pipeline.simulate_to_folder`) and writes ``raw.h5`` (ISMRMRD/MRD, with a
noise scan when ``--snr`` is given), ``truth.npy`` (complex64 ``[T, Y, X]``) and
``maps_true.npy`` (complex64 ``[C, Y, X]``) for evaluation only, ``acquisition.json`` and
``config.json`` (with ``--cfl`` also ``kspace.cfl``, ``traj.cfl``, ``noise.cfl`` for BART).

``mrphys dynamic recon --input raw.h5|DIR --method NAME --out DIR2`` reads an MRD file (or BART
radial k-space: ``--input kspace.cfl --traj traj.cfl [--noise noise.cfl]``, or a folder holding
them; or a simulate folder, or a folder of arrays of earlier versions), calibrates from the data
(prewhitening, coil compression, RING delay, DCF, coil maps, support; ``--no-prewhiten``,
``--coils``/``--coil-energy``, ``--no-delay-correction``, ``--dcf``, ``--maps-method``,
``--no-smooth-maps``, ``--support-threshold``; ``--maps FILE.npy|.cfl`` overrides the maps),
runs a method of
:mod:`mrphys.recon.registry` (gridding, cg-sense, grasp, ls, inr) and writes ``recon.npy``
(complex64 ``[T, Y, X]``), ``recon.nii.gz`` (magnitude), ``maps.npy``, ``metrics.json`` (what
was estimated; PSNR/SSIM against ``truth.npy`` of the folder or ``--truth``), ``frames.png`` and
``frames.gif``.
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
    s.add_argument(
        "--gradient-delay",
        default="0",
        help="gradient delay in readout samples: D (both axes) or DX,DY (default 0)",
    )
    arg(s, "--noise-correlation", 0.3, "noise correlation of neighbouring coils (default 0.3)")
    arg(s, "--object-factor", 2, "object grid / reconstruction grid (default 2)", type=positive)
    s.add_argument(
        "--traj-units",
        default="cycles/pixel",
        choices=["cycles/pixel", "1/FOV", "none"],
        help="how raw.h5 stores the trajectory (default cycles/pixel)",
    )
    s.add_argument("--cfl", action="store_true", help="also write kspace.cfl, traj.cfl and "
                   "noise.cfl in BART's layout")  # fmt: skip
    add_common(s)
    s.set_defaults(func=run_simulate)

    r = dsub.add_parser("recon", help="reconstruct raw radial data (MRD) or a simulate folder")
    r.add_argument(
        "--input",
        required=True,
        help="MRD .h5 file, BART kspace.cfl (or a folder holding kspace.cfl, traj.cfl), or a "
        "`mrphys dynamic simulate` folder",
    )
    r.add_argument("--traj", default=None, help="BART trajectory .cfl of --input kspace.cfl")
    r.add_argument("--noise", default=None, help="BART noise .cfl (coils in dim 3)")
    arg(r, "--matrix", None, "matrix of BART input (default 2 ceil(max |k|))", type=positive)
    # set after add_argument, which formats the choices (and would read the registry) at once
    r.add_argument("--method", required=True).choices = _MethodNames()
    iterations_help = "iterations (default: the method's frozen default)"
    arg(r, "--iterations", None, iterations_help, type=positive)
    arg(r, "--frames-out", None, "frames to render (inr only)", type=positive)
    arg(r, "--matrix-out", None, "matrix to render (inr only)", type=positive)
    r.add_argument("--inr-preset", default=None, choices=["default", "fast", "paper"],
                   help="INR configuration (inr only; fast: the factorised INR in two threads, "
                   "docs/inr.md)")  # fmt: skip
    r.add_argument("--combine", default=None, choices=["maps", "interference"], help="coil "
                   "combination (gridding only; default maps: A^H D y; interference: against "
                   "the streaks, docs/calibration.md)")  # fmt: skip
    r.add_argument("--maps", default=None, help="coil maps FILE.npy (C, Y, X) or BART .cfl")
    r.add_argument("--truth", default=None, help="(T, Y, X) .npy to score against")
    r.add_argument("--no-prewhiten", action="store_true", help="skip noise prewhitening")
    r.add_argument(
        "--no-delay-correction", action="store_true", help="skip the RING gradient delay"
    )
    arg(r, "--coils", None, "compress to K virtual coils", type=positive)
    arg(r, "--coil-energy", None, "compress to keep this energy fraction (0, 1]", type=float)
    r.add_argument("--dcf", default="ramp", choices=["ramp", "pipe-menon"], help="density "
                   "compensation (default ramp)")  # fmt: skip
    r.add_argument(
        "--maps-method",
        default="auto",
        choices=["auto", "espirit", "walsh", "inati"],
        help="coil-map estimator (default auto: ESPIRiT)",
    )
    r.add_argument("--no-smooth-maps", action="store_true", help="keep the per-pixel map "
                   "estimates (dark regions filled) instead of the smooth refit")  # fmt: skip
    arg(r, "--support-threshold", None, "weight the maps (estimated or --maps) by the object's "
        "support found in the data, threshold relative to its robust peak (default 0.3); 0: "
        "the whole field of view", type=float)  # fmt: skip
    arg(r, "--spokes-per-frame", None, "rebin the spoke stream into frames of S spokes",
        type=positive)  # fmt: skip
    arg(r, "--frame-step", None, "spokes between rebinned frames (sliding window when < S)",
        type=positive)  # fmt: skip
    r.add_argument(
        "--frames-from",
        default="auto",
        choices=["auto", "phase", "repetition", "none"],
        help="MRD counter that holds the frame (default auto)",
    )
    arg(r, "--angle-increment-deg", None, "spoke angle step of a file without trajectory "
        "(default: the header's, else the golden angle 111.246)", type=float)  # fmt: skip
    r.add_argument(
        "--traj-units",
        default="auto",
        choices=["auto", "cycles/pixel", "1/FOV"],
        help="unit of the stored trajectory (default: detected)",
    )
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
    delay = _delay(args.gradient_delay)
    new_output(args)  # fail before any work
    from mrphys.recon.pipeline import simulate_to_folder
    from mrphys.utils import resolve_device

    device = resolve_device(args.device)
    names = ("variable", "frames", "matrix", "coils", "snr", "seed", "overwrite")
    names += ("noise_correlation", "traj_units", "cfl")
    config = {**options(args), "command": "dynamic simulate"}
    kw = {k: getattr(args, k) for k in names} | {"device": device, "config": config}
    kw |= {"gradient_delay": delay, "factor": args.object_factor}
    data = simulate_to_folder(args.out, args.series, args.spokes, **kw)
    t, c, k = *data.kspace.shape[:2], data.kspace[0, 0].numel()  # (T, C, S, N): S*N per frame
    print(
        f"wrote {args.out}/raw.h5: {t} frames of {data.im_size[0]}x{data.im_size[1]}, {c} coils, "
        f"{args.spokes} spokes/frame ({k} samples), acceleration {data.meta['acceleration']:.1f}"
    )
    return 0


def _delay(text: str) -> float | tuple[float, float]:
    """``--gradient-delay D`` or ``DX,DY`` (readout samples)."""
    from mrphys.errors import MrphysError

    try:
        parts = [float(v) for v in str(text).split(",")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2):
        raise MrphysError(
            f"--gradient-delay must be one number or two separated by a comma; got {text!r}."
        )
    return parts[0] if len(parts) == 1 else (parts[0], parts[1])


def _method_options(args: argparse.Namespace, device) -> dict:
    """The options the method takes; an option given that it does not take is an error."""
    from mrphys.errors import MrphysError
    from mrphys.recon import registry

    takes = registry.get(args.method).options
    for name in ("frames_out", "matrix_out", "iterations", "combine"):
        if getattr(args, name) is not None and name not in takes:
            others = ", ".join(m for m in registry.names() if name in registry.get(m).options)
            raise MrphysError(
                f"--{name.replace('_', '-')} is only available with --method {others}; "
                f"got --method {args.method}."
            )
    given = {k: getattr(args, k) for k in ("iterations", "frames_out", "matrix_out", "seed")}
    if args.combine is not None:
        given["combine"] = args.combine
    if getattr(args, "inr_preset", None) is not None:
        if args.method != "inr":
            raise MrphysError(
                f"--inr-preset is only available with --method inr; got {args.method}."
            )
        from mrphys.recon.inr import InrConfig

        given["config"] = InrConfig.preset(args.inr_preset)
    given |= {"progress": True, "device": device}
    return {k: v for k, v in given.items() if k in takes}


def run_recon(args: argparse.Namespace) -> int:
    if is_batch(args):  # --inputs: this handler once per input (mrphys.batch, issue 18)
        return run_batch_command(args, run_recon, "dir")
    from mrphys.utils import resolve_device

    device = resolve_device(args.device)
    opts = _method_options(args, device)
    new_output(args)
    from mrphys.recon.pipeline import CalibrationSteps, recon_to_folder

    steps = CalibrationSteps(
        prewhiten=not args.no_prewhiten,
        coils=args.coils,
        coil_energy=args.coil_energy,
        delay_correction=not args.no_delay_correction,
        dcf=args.dcf,
        maps_method=args.maps_method,
        smooth_maps=not args.no_smooth_maps,
    )
    if args.support_threshold is not None:
        steps.support_threshold = args.support_threshold
    steps.validate()
    read = {
        "spokes_per_frame": args.spokes_per_frame,
        "frame_step": args.frame_step,
        "frames_from": args.frames_from,
        "angle_increment_deg": args.angle_increment_deg,
        "traj_units": args.traj_units,
        "traj": args.traj,
        "noise": args.noise,
        "matrix": args.matrix,
    }
    config = {**options(args), "command": "dynamic recon", "device": str(device)}
    kw = {"seed": args.seed, "device": device, "overwrite": args.overwrite, "config": config}
    kw |= {"steps": steps, "maps": args.maps, "truth": args.truth, "read": read}
    metrics = recon_to_folder(args.out, args.input, args.method, opts, **kw)
    frames, seconds = metrics["shape"][0], metrics["seconds"]
    layout = ((metrics.get("raw") or {}).get("system") or {}).get("layout")
    if layout:  # BART input: say what was found
        print(f"read {args.input}: {layout}")
    msg = f"wrote {args.out}: {args.method}, {frames} frames in {seconds:.1f} s"
    if metrics.get("gradient_delay_samples") is not None:
        msg += f", gradient delay {metrics['gradient_delay_samples']:.2f} samples"
    if "psnr_db" in metrics:
        msg += f", mean PSNR {metrics['psnr_db']:.2f} dB"
        if metrics["ssim"] is not None:
            msg += f", SSIM {metrics['ssim']:.3f}"
    print(msg)
    return 0
