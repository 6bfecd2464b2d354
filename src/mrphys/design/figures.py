"""Figures like the SPIN paper's Figures 6-9 (matplotlib, Agg backend, PNG files).

* ``fft_images.png`` (Fig. 6): inverse-FFT images of a test phantom after selected iterations;
* ``network_images.png`` (Fig. 7): network images of the same phantom;
* ``ssim_psnr.png`` (Fig. 8): mean test SSIM and PSNR per iteration;
* ``mse_vs_flip.png`` (Fig. 9): mean test MSE against the first flip angle, iterations numbered.
"""

from __future__ import annotations

from pathlib import Path

import torch


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _pick(k: int, n_show: int = 5) -> list[int]:
    """Up to ``n_show`` iteration indices from 0..k-1, first and last included."""
    if k <= n_show:
        return list(range(k))
    idx = torch.linspace(0, k - 1, n_show).round().long().tolist()
    return sorted(set(idx))


def image_rows(
    path: Path,
    images: torch.Tensor,
    flips: list[float],
    title: str,
    target: torch.Tensor | None = None,
) -> None:
    """Images ``(K, N, N)`` (one phantom, per iteration) in a row, labelled by flip angle."""
    plt = _plt()
    sel = _pick(images.shape[0])
    cols = len(sel) + (target is not None)
    fig, axes = plt.subplots(1, cols, figsize=(2.2 * cols, 2.5), squeeze=False)
    vmax = float(target.max()) if target is not None else float(images.max())
    for j, i in enumerate(sel):
        ax = axes[0, j]
        ax.imshow(images[i].numpy(), cmap="gray", vmin=0, vmax=vmax)
        ax.set_title(f"it {i}: {flips[i]:.1f} deg", fontsize=8)
        ax.axis("off")
    if target is not None:
        axes[0, -1].imshow(target.numpy(), cmap="gray", vmin=0, vmax=vmax)
        axes[0, -1].set_title("Eq. 13 target", fontsize=8)
        axes[0, -1].axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def curves(path: Path, hist: dict) -> None:
    """Mean SSIM and PSNR of the network (and the inverse FFT) per iteration (Fig. 8)."""
    plt = _plt()
    it = list(range(len(hist["ssim"])))
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3))
    a.plot(it, hist["ssim"], "o-", label="network")
    b.plot(it, hist["psnr"], "o-", label="network")
    if "fft_ssim" in hist:
        a.plot(it, hist["fft_ssim"], "s--", label="inverse FFT")
        b.plot(it, hist["fft_psnr"], "s--", label="inverse FFT")
    a.set_xlabel("iteration")
    a.set_ylabel("mean SSIM")
    b.set_xlabel("iteration")
    b.set_ylabel("mean PSNR (dB)")
    a.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def mse_vs_flip(path: Path, hist: dict) -> None:
    """Mean test MSE against the first flip angle, points numbered by iteration (Fig. 9)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    x, y = hist["flip_angle_deg"], hist["mse"]
    ax.plot(x, y, "o-")
    for i, (xi, yi) in enumerate(zip(x, y, strict=True)):
        ax.annotate(str(i), (xi, yi), textcoords="offset points", xytext=(3, 3), fontsize=7)
    ax.set_xlabel("first flip angle (deg)")
    ax.set_ylabel("mean test MSE")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_all(out: Path, hist: dict, target: torch.Tensor | None = None) -> list[str]:
    """Write the four figures of ``hist`` (from an optimisation) into ``out``; returns names."""
    flips = hist["flip_angle_deg"]
    image_rows(
        out / "fft_images.png",
        hist["fft_images"][:, 0],
        flips,
        "inverse FFT per iteration (Fig. 6)",
        target,
    )
    image_rows(
        out / "network_images.png",
        hist["images"][:, 0],
        flips,
        "network per iteration (Fig. 7)",
        target,
    )
    curves(out / "ssim_psnr.png", hist)
    mse_vs_flip(out / "mse_vs_flip.png", hist)
    return ["fft_images.png", "network_images.png", "ssim_psnr.png", "mse_vs_flip.png"]
