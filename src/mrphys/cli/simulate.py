"""``mrphys simulate``: Bloch-simulate a Cartesian acquisition of a phantom.

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
    p.add_argument("--sequence", required=True, choices=SEQUENCES)
    arg(p, "--phantom", "spin-shepp-logan", choices=PHANTOMS)
    arg(p, "--matrix", 64, "image matrix N (N x N), default 64")
    arg(p, "--noise-pct", 0.0, "complex noise std in %% of max |k-space| (SPIN uses 2.5)")
    arg(p, "--tr-ms", None, "repetition time in ms", type=float)
    arg(p, "--te-ms", None, "echo time in ms", type=float)
    arg(p, "--flip-deg", None, "(first) flip angle in degrees", type=float)
    arg(p, "--fov-mm", None, FOV_HELP, type=float)
    arg(p, "--field-t", 3.0, "B0 for the Gach phantom T1 (T)")
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    new_output(args)  # fail before any work
    import numpy as np

    from mrphys import plot
    from mrphys.io import output_dir, save_json, save_nifti
    from mrphys.physics import pulseq_io
    from mrphys.physics.acquire import simulate_cartesian
    from mrphys.utils import resolve_device

    device = resolve_device(args.device)
    names = ("phantom", "matrix", "noise_pct", "tr_ms", "te_ms", "flip_deg", "fov_mm", "field_t")
    acq = simulate_cartesian(args.sequence, **{k: getattr(args, k) for k in names},
                             seed=args.seed, device=device)  # fmt: skip
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
