"""``mrphys simulate``: Bloch-simulate a Cartesian acquisition of a phantom.

Writes ``kspace.npy`` (complex64 ``[phase encodes, readout]``), ``truth.nii.gz`` (the closed-form
image: SPIN Eq. 13 for spin echo), ``image.nii.gz`` (magnitude of the inverse-FFT reconstruction,
same scale as the truth), ``phantom.npz`` (``rho``, ``t1``, ``t2`` in SI units), ``sequence.seq``
(Pulseq), ``config.json`` and ``preview.png``.
"""

from __future__ import annotations

import argparse
import logging
import math

from mrphys.cli import add_common

log = logging.getLogger(__name__)

DEFAULTS = {  # sequence -> (TR ms, TE ms, flip deg)
    "spin-echo": (10000.0, 40.0, 90.0),
    "bssfp": (4.8, 2.4, 30.0),
    "gre": (50.0, 5.0, 30.0),
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="Bloch-simulate k-space of a phantom and reconstruct it")
    p.add_argument("--sequence", required=True, choices=list(DEFAULTS))
    p.add_argument("--phantom", default="spin-shepp-logan", choices=["spin-shepp-logan", "gach"])
    p.add_argument("--matrix", type=int, default=64, help="image matrix N (N x N), default 64")
    p.add_argument(
        "--noise-pct",
        type=float,
        default=0.0,
        help="complex noise std in %% of max |k-space| (SPIN uses 2.5)",
    )
    p.add_argument("--tr-ms", type=float, default=None, help="repetition time in ms")
    p.add_argument("--te-ms", type=float, default=None, help="echo time in ms")
    p.add_argument("--flip-deg", type=float, default=None, help="(first) flip angle in degrees")
    p.add_argument(
        "--fov-mm",
        type=float,
        default=None,
        help="field of view in mm (default: 1 mm pixels for spin-shepp-logan, 240 for gach)",
    )
    p.add_argument("--field-t", type=float, default=3.0, help="B0 for the Gach phantom T1 (T)")
    add_common(p)
    p.set_defaults(func=run)


def _check_args(args: argparse.Namespace) -> tuple[float, float, float, float]:
    from mrphys.errors import MrphysError

    if not 16 <= args.matrix <= 512:
        raise MrphysError(f"--matrix must be an integer in [16, 512]; got {args.matrix}.")
    if not 0 <= args.noise_pct <= 100:
        raise MrphysError(f"--noise-pct must lie in [0, 100]; got {args.noise_pct}.")
    tr, te, flip = DEFAULTS[args.sequence]
    tr = args.tr_ms if args.tr_ms is not None else tr
    te = args.te_ms if args.te_ms is not None else te
    flip = args.flip_deg if args.flip_deg is not None else flip
    if not (0 < te < tr):
        raise MrphysError(
            f"--te-ms must be positive and below --tr-ms; got TE {te} ms, TR {tr} ms."
        )
    if not 0 < flip <= 180:
        raise MrphysError(f"--flip-deg must lie in (0, 180]; got {flip}.")
    fov = (
        args.fov_mm
        if args.fov_mm is not None
        else (float(args.matrix) if args.phantom == "spin-shepp-logan" else 240.0)
    )
    if not 1 <= fov <= 1000:
        raise MrphysError(f"--fov-mm must lie in [1, 1000] mm; got {fov}.")
    return tr * 1e-3, te * 1e-3, math.radians(flip), fov * 1e-3


def run(args: argparse.Namespace) -> int:
    tr, te, flip, fov = _check_args(args)
    from mrphys.io import check_new_output

    check_new_output(args.out, args.overwrite)  # fail before any work

    import numpy as np
    import torch

    from mrphys.io import output_dir, save_json, save_nifti
    from mrphys.physics import bloch, pulseq_io, sequence, signal
    from mrphys.physics.signal import spin_echo_image
    from mrphys.tissue import gach_shepp_logan, spin_shepp_logan
    from mrphys.utils import make_generator, resolve_device

    device = resolve_device(args.device)
    gen = make_generator(args.seed)
    if args.phantom == "spin-shepp-logan":
        ph = spin_shepp_logan(1, matrix=args.matrix, fov=fov, generator=gen)[0]
    else:
        ph = gach_shepp_logan(args.matrix, field_t=args.field_t, fov=fov)
    ph = ph.to(device=device)

    n = args.matrix
    if args.sequence == "spin-echo":
        seq = sequence.spin_echo(matrix=n, fov=fov, tr=tr, te=te, flip1=flip)
        truth = spin_echo_image(ph, tr=tr, te=te)  # SPIN Eq. 13: the 90/180 target image
    elif args.sequence == "bssfp":
        # one alternating-phase (0, pi) steady state; relaxometry uses the phase-cycled series
        seq = sequence.bssfp(tr=tr, te=te, flip=flip, phase_increment=math.pi, matrix=n, fov=fov)
        truth = signal.bssfp_steady_state(ph.rho, ph.t1, ph.t2, tr=tr, te=te, flip=flip).abs()
    else:
        seq = sequence.gre(tr=tr, te=te, flip=flip, matrix=n, fov=fov)
        truth = signal.spoiled_gre_steady_state(ph.rho, ph.t1, ph.t2, tr=tr, te=te, flip=flip)

    with torch.no_grad():
        k = bloch.simulate_kspace(seq, ph).reshape(n, n)  # (n_pe, n_ro)
    if args.noise_pct > 0:
        sigma = args.noise_pct / 100 * float(k.abs().max())
        g = make_generator(args.seed + 1, device=k.device)
        noise = torch.randn(k.shape, generator=g, device=k.device, dtype=torch.float32)
        noise = noise + 1j * torch.randn(k.shape, generator=g, device=k.device, dtype=torch.float32)
        k = k + (sigma / math.sqrt(2)) * noise.to(k.dtype)
    img = torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(k, dim=(-2, -1))), dim=(-2, -1))

    from mrphys.metrics import psnr, ssim

    mag = img.abs().float().cpu()
    truth = truth.float().cpu()
    metrics = {
        "psnr_db": float(psnr(mag, truth)),
        "ssim": float(ssim(mag, truth)),
    }
    voxel_mm = (fov * 1e3 / n, fov * 1e3 / n, 1.0)
    with output_dir(args.out, overwrite=args.overwrite) as tmp:
        np.save(tmp / "kspace.npy", k.cpu().numpy().astype(np.complex64))
        save_nifti(tmp / "truth.nii.gz", truth, voxel_mm=voxel_mm)
        save_nifti(tmp / "image.nii.gz", mag, voxel_mm=voxel_mm)
        np.savez(
            tmp / "phantom.npz",
            rho=ph.rho.cpu().numpy(),
            t1=ph.t1.cpu().numpy(),
            t2=ph.t2.cpu().numpy(),
        )
        pulseq_io.write_seq(seq, tmp / "sequence.seq")
        save_json(
            tmp / "config.json",
            {
                "command": "simulate",
                "sequence": args.sequence,
                "phantom": args.phantom,
                "matrix": n,
                "seed": args.seed,
                "noise_pct": args.noise_pct,
                "tr_ms": tr * 1e3,
                "te_ms": te * 1e3,
                "flip_deg": math.degrees(flip),
                "fov_mm": fov * 1e3,
                "field_t": args.field_t,
                "device": str(device),
                "metrics": metrics,
                "kspace_layout": "[phase encodes, readout], k = 0 at index N//2",
            },
        )
        _preview(tmp / "preview.png", ph, k, mag, truth, args.sequence)
    print(
        f"wrote {args.out} (PSNR {metrics['psnr_db']:.1f} dB, SSIM {metrics['ssim']:.3f} vs truth)"
    )
    return 0


def _preview(path, ph, k, mag, truth, name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        (ph.rho.cpu(), "proton density", "gray"),
        (ph.t1.cpu() * 1e3, "T1 (ms)", "magma"),
        (ph.t2.cpu() * 1e3, "T2 (ms)", "viridis"),
        ((k.abs().cpu() + 1e-12).log10(), "log10 |k-space|", "gray"),
        (mag, f"{name}: |inverse FFT|", "gray"),
        (truth, "closed-form truth", "gray"),
    ]
    fig, axes = plt.subplots(1, 6, figsize=(18, 3.3))
    for ax, (im, title, cmap) in zip(axes, panels, strict=True):
        h = ax.imshow(im.numpy(), cmap=cmap)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
        fig.colorbar(h, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
