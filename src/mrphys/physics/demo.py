"""Physics-core part of ``mrphys demo``: Bloch simulation against closed forms.

1. A SPIN Shepp-Logan phantom (64 x 64) is Bloch-simulated with the SPIN spin echo (TR 10 s,
   TE 40 ms, 64 phase encodes x 64 samples); the inverse FFT is compared with the SPIN Eq. 13 image.
2. The balanced-SSFP off-resonance profile of one tissue, simulated event by event, is compared
   with the closed-form steady state.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import torch

log = logging.getLogger(__name__)


def _ifft2c(k: torch.Tensor) -> torch.Tensor:
    return torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(k, dim=(-2, -1))), dim=(-2, -1))


def run_demo(out: Path, seed: int = 0, device: torch.device | str = "cpu") -> str:
    """Run the physics demo into ``out``; returns a markdown section with the numbers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mrphys.metrics import psnr, ssim
    from mrphys.physics import bloch, sequence, signal
    from mrphys.physics.signal import spin_echo_image
    from mrphys.tissue import Phantom, spin_shepp_logan
    from mrphys.utils import make_generator

    out = Path(out)
    dev = torch.device(device)
    # 1. spin echo of a SPIN phantom
    ph = spin_shepp_logan(1, matrix=64, generator=make_generator(seed)).to(device=dev)
    seq = sequence.spin_echo(matrix=64, fov=0.064, tr=10.0, te=0.04)
    with torch.no_grad():
        bloch.simulate_kspace(seq, ph)  # warm-up
        t0 = time.perf_counter()
        k = bloch.simulate_kspace(seq, ph)
        t_se = time.perf_counter() - t0
    img = _ifft2c(k).abs().float().cpu()
    eq13 = spin_echo_image(ph, tr=10.0, te=0.04).float().cpu()
    exact = spin_echo_image(ph, tr=10.0, te=0.04, exact=True).float().cpu()
    se = {
        "seconds": round(t_se, 4),
        "psnr_vs_eq13_db": round(float(psnr(img, eq13)), 2),
        "ssim_vs_eq13": round(float(ssim(img, eq13)), 4),
        "psnr_vs_exact_steady_state_db": round(float(psnr(img, exact)), 2),
        "n_blocks": seq.n_blocks,
    }

    # 2. bSSFP off-resonance profile of white matter (T1 583 ms, T2 80 ms), one voxel per offset
    tr, flip = 4.8e-3, math.radians(30.0)
    df = torch.linspace(-1 / (2 * tr), 1 / (2 * tr), 101, dtype=torch.float64)
    one = torch.ones(len(df), 1, 1, dtype=torch.float64)
    vox = Phantom(one, one * 0.583, one * 0.08, fov=(1e-3, 1e-3), db0=df[:, None, None])
    bseq = sequence.bssfp(tr=tr, flip=flip, phase_increment=math.pi, n_dummy=3000)
    with torch.no_grad():
        sim = bloch.simulate(bseq, vox.to(device=dev))[:, 0].cpu()
    ref = signal.bssfp_steady_state(1.0, 0.583, 0.08, tr, tr / 2, flip, off_resonance_hz=df)
    rel = float((sim - ref).abs().max() / ref.abs().max())
    ss = {"max_rel_error_vs_closed_form": rel, "offsets": len(df), "flip_deg": 30.0}

    fig, axes = plt.subplots(1, 5, figsize=(19, 3.6))
    panels = [
        (ph.t1[0].cpu() * 1e3, "phantom T1 (ms)", "magma"),
        (ph.t2[0].cpu() * 1e3, "phantom T2 (ms)", "viridis"),
        (img[0], f"|IFFT| of Bloch k-space ({t_se * 1e3:.0f} ms)", "gray"),
        (eq13[0], "SPIN Eq. 13 image", "gray"),
    ]
    for ax, (im, title, cmap) in zip(axes[:4], panels, strict=True):
        h = ax.imshow(im.numpy(), cmap=cmap)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
        fig.colorbar(h, ax=ax, fraction=0.046)
    ax = axes[4]
    ax.plot(df.numpy(), ref.abs().numpy(), "k-", label="closed form")
    ax.plot(df.numpy()[::4], sim.abs().numpy()[::4], "r.", label="Bloch (event-based)")
    ax.set_xlabel("off-resonance (Hz)")
    ax.set_ylabel("|signal| / M0")
    ax.set_title("bSSFP profile, WM, 30 deg, TR 4.8 ms", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "physics.png", dpi=90)
    plt.close(fig)
    result = {"spin_echo": se, "bssfp_profile": ss}
    (out / "physics.json").write_text(json.dumps(result, indent=2))
    return (
        "![physics](physics/physics.png)\n\n"
        f"- Spin echo of a 64 x 64 SPIN phantom ({se['n_blocks']} events, TR 10 s with "
        f"carry-over): simulated in {se['seconds'] * 1e3:.0f} ms; inverse FFT vs SPIN Eq. 13: "
        f"PSNR {se['psnr_vs_eq13_db']} dB, SSIM {se['ssim_vs_eq13']}; vs the exact steady state "
        f"(90/180, spoiled): PSNR {se['psnr_vs_exact_steady_state_db']} dB.\n"
        f"- bSSFP off-resonance profile (101 offsets): largest deviation of the event-based Bloch "
        f"simulation from the closed-form steady state {rel:.1e} of the peak.\n"
    )
