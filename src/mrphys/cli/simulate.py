"""``mrphys simulate``: Bloch-simulate a Cartesian acquisition of a phantom, or any Pulseq file.

``--seq FILE.seq`` (instead of ``--sequence``) simulates a Pulseq 1.4/1.5 file written by any
tool (:func:`mrphys.physics.pulseq_io.simulate_file`) and writes ``kspace.npy`` (complex64
``[readouts, samples]`` in acquisition order), ``labels.json`` (LIN/PAR/SLC per readout),
``kspace_sorted.npy`` (``[SLC, PAR, LIN, samples]``), ``image.nii.gz`` when the readouts form a
square Cartesian grid, ``phantom.npz``, ``config.json``; with ``--coils C`` the raw data of C
birdcage coils also go to ``raw.mrd`` (ISMRMRD) and the arrays gain a leading coil axis.

Writes ``kspace.npy`` (complex64 ``[phase encodes, readout]``), ``truth.nii.gz`` (the closed-form
image: SPIN Eq. 13 for spin echo), ``image.nii.gz`` (magnitude of the inverse-FFT reconstruction,
same scale as the truth), ``phantom.npz`` (``rho``, ``t1``, ``t2`` in SI units), ``sequence.seq``
(Pulseq), ``config.json`` and ``preview.png``. The work is
:func:`mrphys.physics.acquire.simulate_cartesian`.
"""

from __future__ import annotations

import argparse
import math

from mrphys.cli import add_common, arg, new_output

# as mrphys.physics.acquire.SEQUENCE_DEFAULTS and PHANTOMS (not imported: --help loads no torch)
SEQUENCES = ["spin-echo", "bssfp", "gre"]
PHANTOMS = ["spin-shepp-logan", "gach"]
FOV_HELP = "field of view in mm (default: 1 mm pixels for spin-shepp-logan, 240 for gach)"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="Bloch-simulate k-space of a phantom and reconstruct it")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--sequence", choices=SEQUENCES, help="a built-in sequence")
    which.add_argument("--seq", metavar="FILE.seq", help="any Pulseq 1.4/1.5 file to simulate")
    arg(p, "--phantom", "spin-shepp-logan", choices=PHANTOMS)
    arg(p, "--matrix", 64, "image matrix N (N x N), default 64")
    arg(p, "--noise-pct", 0.0, "complex noise std in %% of max |k-space| (SPIN uses 2.5)")
    arg(p, "--tr-ms", None, "repetition time in ms", type=float)
    arg(p, "--te-ms", None, "echo time in ms", type=float)
    arg(p, "--flip-deg", None, "(first) flip angle in degrees", type=float)
    arg(p, "--fov-mm", None, FOV_HELP, type=float)
    arg(p, "--field-t", 3.0, "B0 for the Gach phantom T1 (T)")
    p.add_argument("--ideal-hardware", action="store_true",
                   help="--sequence: hard pulses and instantaneous gradients (the closed-form "
                   "model; the .seq is then not scanner-ready)")  # fmt: skip
    arg(p, "--coils", None, "--seq: receive coils (birdcage maps); also writes raw.mrd", type=int)
    arg(p, "--slice-isochromats", 1, "--seq: isochromats through the slice (slice profile)")
    arg(p, "--slice-thickness-mm", None, "--seq: slice thickness; isochromats span twice it",
        type=float)  # fmt: skip
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    new_output(args)  # fail before any work
    if args.seq is not None:
        return run_file(args)
    import numpy as np

    from mrphys import plot
    from mrphys.io import output_dir, save_json, save_nifti
    from mrphys.physics import pulseq_io
    from mrphys.physics.acquire import simulate_cartesian
    from mrphys.physics.system import System
    from mrphys.utils import resolve_device

    device = resolve_device(args.device)
    names = ("phantom", "matrix", "noise_pct", "tr_ms", "te_ms", "flip_deg", "fov_mm", "field_t")
    system = None if args.ideal_hardware else System()
    acq = simulate_cartesian(args.sequence, **{k: getattr(args, k) for k in names},
                             seed=args.seed, device=device, system=system)  # fmt: skip
    ph, k, metrics = acq.phantom, acq.kspace, {"psnr_db": acq.psnr_db, "ssim": acq.ssim}
    with output_dir(args.out, overwrite=args.overwrite) as tmp:
        np.save(tmp / "kspace.npy", k.cpu().numpy().astype(np.complex64))
        save_nifti(tmp / "truth.nii.gz", acq.truth, voxel_mm=acq.voxel_mm)
        save_nifti(tmp / "image.nii.gz", acq.image, voxel_mm=acq.voxel_mm)
        maps = {"rho": ph.rho.cpu(), "t1": ph.t1.cpu(), "t2": ph.t2.cpu()}
        np.savez(tmp / "phantom.npz", **{name: m.numpy() for name, m in maps.items()})
        pulseq_io.write_seq(acq.sequence, tmp / "sequence.seq")
        save_json(tmp / "config.json", {
            "command": "simulate", "sequence": args.sequence, "phantom": args.phantom,
            "matrix": args.matrix, "seed": args.seed, "noise_pct": args.noise_pct,
            "tr_ms": acq.tr * 1e3, "te_ms": acq.te * 1e3, "flip_deg": math.degrees(acq.flip),
            "fov_mm": acq.fov * 1e3, "field_t": args.field_t, "device": str(device),
            "metrics": metrics, "kspace_layout": "[phase encodes, readout], k = 0 at index N//2",
            "scanner_ready": system is not None, "te_actual_ms": acq.sequence.params["te"] * 1e3,
        })  # fmt: skip
        plot.image_panels(tmp / "preview.png", [
            (maps["rho"], "proton density", "gray", None),
            (maps["t1"] * 1e3, "T1 (ms)", "magma", None),
            (maps["t2"] * 1e3, "T2 (ms)", "viridis", None),
            ((k.abs().cpu() + 1e-12).log10(), "log10 |k-space|", "gray", None),
            (acq.image, f"{args.sequence}: |inverse FFT|", "gray", None),
            (acq.truth, "closed-form truth", "gray", None),
        ])  # fmt: skip
    print(
        f"wrote {args.out} (PSNR {metrics['psnr_db']:.1f} dB, SSIM {metrics['ssim']:.3f} vs truth)"
    )
    return 0


def run_file(args: argparse.Namespace) -> int:
    """``--seq FILE``: simulate a Pulseq file on the phantom and write the raw data."""
    import numpy as np
    import torch

    from mrphys.errors import MrphysError
    from mrphys.io import input_file, output_dir, save_json, save_nifti
    from mrphys.physics import pulseq_io
    from mrphys.physics.coils import birdcage_maps
    from mrphys.tissue import gach_shepp_logan, spin_shepp_logan
    from mrphys.utils import make_generator, resolve_device

    path = input_file(args.seq, "Pulseq file")
    device = resolve_device(args.device)
    n = args.matrix
    if not 8 <= n <= 512:
        raise MrphysError(f"matrix must be an integer in [8, 512]; got {n}.")
    fov = args.fov_mm * 1e-3 if args.fov_mm is not None else pulseq_io.file_fov(path)
    if fov is None:
        raise MrphysError(f"fov_mm is needed: {path} has no FOV definition.")
    if not 1e-3 <= fov <= 1.0:
        raise MrphysError(f"fov_mm must lie in [1, 1000] mm; got {fov * 1e3:g}.")
    if args.phantom == "spin-shepp-logan":
        ph = spin_shepp_logan(1, matrix=n, fov=fov, generator=make_generator(args.seed))[0]
    else:
        ph = gach_shepp_logan(n, field_t=args.field_t, fov=fov)
    ph = ph.to(device=device)
    zs = None
    if args.slice_isochromats < 1:
        raise MrphysError(f"slice_isochromats must be >= 1; got {args.slice_isochromats}.")
    if args.slice_isochromats > 1:
        if args.slice_thickness_mm is None or not 0 < args.slice_thickness_mm < 500:
            raise MrphysError("slice_thickness_mm (in (0, 500) mm) is needed with isochromats.")
        m = args.slice_isochromats
        th = args.slice_thickness_mm * 1e-3
        zs = ((torch.arange(m, dtype=ph.dtype) + 0.5) / m - 0.5) * 2 * th
    maps = None
    if args.coils is not None:
        if not 1 <= args.coils <= 64:
            raise MrphysError(f"coils must be an integer in [1, 64]; got {args.coils}.")
        maps = birdcage_maps(args.coils, (n, n), device=device)
    acq = pulseq_io.simulate_file(path, ph, coils=maps, slice_positions=zs)
    with output_dir(args.out, overwrite=args.overwrite) as tmp:
        np.save(tmp / "kspace.npy", acq.kspace.numpy().astype(np.complex64))
        if acq.sorted_kspace is not None:
            np.save(tmp / "kspace_sorted.npy", acq.sorted_kspace.numpy().astype(np.complex64))
        save_json(tmp / "labels.json", acq.labels)
        voxel = (fov * 1e3 / n, fov * 1e3 / n, 1.0)
        if acq.image is not None:
            save_nifti(tmp / "image.nii.gz", acq.image.float(), voxel_mm=voxel)
        rho, t1, t2 = (getattr(ph, k).cpu().numpy() for k in ("rho", "t1", "t2"))
        np.savez(tmp / "phantom.npz", rho=rho, t1=t1, t2=t2)
        if maps is not None:
            dwell = next(b.adc.dwell for b in acq.sequence.blocks if b.adc is not None)
            pulseq_io.write_mrd(tmp / "raw.mrd", acq.kspace.reshape(args.coils, -1,
                                acq.kspace.shape[-1]), acq.labels, fov, n,
                                float(dwell))  # fmt: skip
        save_json(tmp / "config.json", {
            "command": "simulate", "seq": str(path), "phantom": args.phantom, "matrix": n,
            "seed": args.seed, "fov_mm": fov * 1e3, "field_t": args.field_t,
            "coils": args.coils, "slice_isochromats": args.slice_isochromats,
            "slice_thickness_mm": args.slice_thickness_mm, "device": str(device),
            "sequence": acq.sequence.describe() | {"params": {}},
            "kspace_layout": "[readouts, samples] in acquisition order (coils first with --coils)",
        })  # fmt: skip
    print(f"wrote {args.out} ({acq.sequence.adc_count} ADC samples from {path.name})")
    return 0
