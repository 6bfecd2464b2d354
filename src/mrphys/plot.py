"""Every figure style of mrphys in one place (matplotlib, Agg backend, PNG files).

Each function takes the path of the PNG to write and CPU tensors (or lists) in physical units
(times in ms where the axis says ms, errors in percent); none of them computes a result.
matplotlib is imported when a figure is drawn, so ``import mrphys.plot`` stays cheap.

- :func:`image_panels`: a row of images with titles and colour bars (``mrphys simulate``
  preview, the physics demo);
- :func:`frame_grid`: frames of image series as rows, optionally an x-t profile column
  (``mrphys dynamic recon`` ``frames.png``, the dynamic demo);
- :func:`spin_figures`: the SPIN paper's Figures 6-9 from an optimisation history;
- :func:`line_plot`, :func:`relax_error_maps`, :func:`cod_vs_snr`, :func:`offresonance_sweep`:
  the relaxometry Monte Carlo evaluation (paper 001 Figures 2, 3 and 5);
- :func:`relax_maps`: true and fitted T1/T2 maps with their error maps (the relaxometry demo);
- :func:`histograms`: overlaid distributions per panel (the BIDS-App report, per tissue mask).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:  # the type only: plot imports no application
    from mrphys.design.optimize import TestHistory

__all__ = [
    "cod_vs_snr",
    "frame_grid",
    "histograms",
    "image_panels",
    "line_plot",
    "offresonance_sweep",
    "relax_error_maps",
    "relax_maps",
    "spin_figures",
]

#: one image panel: (image (Y, X), title, colour map, (vmin, vmax) or None)
Panel = tuple[torch.Tensor, str, str, tuple[float, float] | None]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path, dpi: int) -> None:
    plt = _plt()
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def _show(ax: Any, fig: Any, panel: Panel, colorbar: bool = True) -> None:
    im, title, cmap, lim = panel
    lo, hi = lim if lim is not None else (None, None)
    h = ax.imshow(torch.as_tensor(im).cpu().numpy(), cmap=cmap, vmin=lo, vmax=hi)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    if colorbar:
        fig.colorbar(h, ax=ax, fraction=0.046)


#: a line-plot panel: (title, x label, y label, [(x, y, matplotlib format, legend label), ...])
Lines = tuple[str, str, str, Sequence[tuple[Sequence[float], Sequence[float], str, str]]]


def image_panels(
    path: str | Path,
    panels: Sequence[Panel],
    *,
    lines: Lines | None = None,
    width: float = 3.0,
    height: float = 3.3,
    dpi: int = 80,
) -> None:
    """A row of images, each with its title and a colour bar, optionally a line plot last.

    Args:
        path: PNG to write.
        panels: ``(image (Y, X), title, cmap, (vmin, vmax) or None)`` per panel.
        lines: a last panel of curves with a legend (see :data:`Lines`).
        width, height: inches per panel and of the row.
    """
    plt = _plt()
    n = len(panels) + (lines is not None)
    fig, axes = plt.subplots(1, n, figsize=(width * n, height), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=False):
        _show(ax, fig, panel)
    if lines is not None:
        ax = axes[0, -1]
        title, xlabel, ylabel, curves = lines
        for x, y, fmt, label in curves:
            ax.plot(x, y, fmt, label=label)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=8)
    _save(fig, path, dpi)


def frame_grid(
    path: str | Path,
    rows: Sequence[tuple[str, torch.Tensor]],
    frames: Sequence[int] | None = None,
    *,
    n_show: int = 8,
    vmax: float | None = None,
    profile_line: int | None = None,
    size: tuple[float, float] = (1.8, 1.9),
) -> None:
    """Magnitude frames of image series, one series per row, frame numbers on top.

    Args:
        path: PNG to write.
        rows: ``(label, series (T, Y, X))`` per row; the label stands left of the row.
        frames: frame indices to show (default ``n_show`` evenly spaced ones).
        vmax: top of the grey scale (default the largest magnitude of all rows).
        profile_line: if given, a last column shows the x-t profile of this image row.
        size: inches per panel (width, height).
    """
    import numpy as np

    plt = _plt()
    t = rows[0][1].shape[0]
    if frames is None:
        frames = np.unique(np.linspace(0, t - 1, min(n_show, t)).round().astype(int)).tolist()
    if vmax is None:
        vmax = float(max(x.abs().max() for _, x in rows)) or 1.0
    cols = len(frames) + (profile_line is not None)
    fig, axes = plt.subplots(
        len(rows), cols, figsize=(size[0] * cols, size[1] * len(rows)), squeeze=False
    )
    for i, (label, x) in enumerate(rows):
        views = [(f"frame {f}", x[f].abs(), "equal") for f in frames]
        if profile_line is not None:
            views.append(("x-t profile", x[:, profile_line, :].abs(), "auto"))
        for j, (title, im, aspect) in enumerate(views):
            ax = axes[i, j]
            ax.imshow(im.cpu().numpy(), cmap="gray", vmin=0, vmax=vmax, aspect=aspect)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(title, fontsize=8)
        axes[i, 0].set_ylabel(label, fontsize=8)
    _save(fig, path, 80)


def frames_gif(path: str | Path, x: torch.Tensor, fps: float = 6.0, scale: int = 2) -> None:
    """An animated GIF of the magnitude frames of ``x`` (T, Y, X), grey scale over the series'
    largest magnitude, each pixel shown as ``scale`` x ``scale`` (PIL, matplotlib's own dependency).
    """
    import numpy as np
    from PIL import Image

    mag = x.detach().abs().cpu().numpy()
    top = float(mag.max()) or 1.0
    img = np.clip(mag / top * 255.0, 0, 255).astype(np.uint8)
    if scale > 1:
        img = img.repeat(scale, axis=1).repeat(scale, axis=2)
    frames = [Image.fromarray(f) for f in img]  # uint8 (Y, X): grey ("L")
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=int(1000 / fps), loop=0)


# --------------------------------------------------------------------------------------------
# SPIN (paper 000, Figures 6-9)
# --------------------------------------------------------------------------------------------


def _pick(k: int, n_show: int = 5) -> list[int]:
    """Up to ``n_show`` iteration indices from 0..k-1, first and last included."""
    if k <= n_show:
        return list(range(k))
    return sorted(set(torch.linspace(0, k - 1, n_show).round().long().tolist()))


def spin_image_rows(
    path: str | Path,
    images: torch.Tensor,
    flips: Sequence[float],
    title: str,
    target: torch.Tensor | None = None,
) -> None:
    """Images ``(K, N, N)`` of one phantom per iteration in a row, labelled by flip angle (deg),
    the Eq. 13 target last."""
    plt = _plt()
    sel = _pick(images.shape[0])
    cols = len(sel) + (target is not None)
    fig, axes = plt.subplots(1, cols, figsize=(2.2 * cols, 2.5), squeeze=False)
    vmax = float(target.max()) if target is not None else float(images.max())
    shown = [(images[i], f"it {i}: {flips[i]:.1f} deg") for i in sel]
    if target is not None:
        shown.append((target, "Eq. 13 target"))
    for ax, (im, label) in zip(axes[0], shown, strict=True):
        ax.imshow(im.numpy(), cmap="gray", vmin=0, vmax=vmax)
        ax.set_title(label, fontsize=8)
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    _save(fig, path, 110)


def spin_curves(path: str | Path, hist: TestHistory) -> None:
    """Mean test SSIM and PSNR (dB) of the network (and the inverse FFT) per iteration (Fig. 8)."""
    plt = _plt()
    it = list(range(len(hist.ssim)))
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3))
    a.plot(it, hist.ssim, "o-", label="network")
    b.plot(it, hist.psnr, "o-", label="network")
    if hist.fft_ssim:
        a.plot(it, hist.fft_ssim, "s--", label="inverse FFT")
        b.plot(it, hist.fft_psnr, "s--", label="inverse FFT")
    a.set_xlabel("iteration")
    a.set_ylabel("mean SSIM")
    b.set_xlabel("iteration")
    b.set_ylabel("mean PSNR (dB)")
    a.legend(fontsize=8)
    _save(fig, path, 110)


def mse_vs_flip(path: str | Path, hist: TestHistory) -> None:
    """Mean test MSE against the first flip angle (deg), points numbered by iteration (Fig. 9)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    x, y = hist.flip_angle_deg, hist.mse
    ax.plot(x, y, "o-")
    for i, (xi, yi) in enumerate(zip(x, y, strict=True)):
        ax.annotate(str(i), (xi, yi), textcoords="offset points", xytext=(3, 3), fontsize=7)
    ax.set_xlabel("first flip angle (deg)")
    ax.set_ylabel("mean test MSE")
    _save(fig, path, 110)


def spin_figures(
    out: str | Path, hist: TestHistory, target: torch.Tensor | None = None
) -> list[str]:
    """Write the SPIN Figures 6-9 of an optimisation history into folder ``out``.

    Args:
        hist: a :class:`mrphys.design.optimize.TestHistory` (``flip_angle_deg``, ``mse``,
            ``ssim``, ``psnr`` per iteration, optionally ``fft_ssim``/``fft_psnr``,
            ``fft_images`` and ``images`` ``(K, P, N, N)``).
        target: the Eq. 13 image ``(N, N)`` of the first test phantom.
    Returns:
        the file names written: ``fft_images.png``, ``network_images.png``, ``ssim_psnr.png``,
        ``mse_vs_flip.png``.
    """
    out = Path(out)
    flips = hist.flip_angle_deg
    for name, key, title in (
        ("fft_images.png", "fft_images", "inverse FFT per iteration (Fig. 6)"),
        ("network_images.png", "images", "network per iteration (Fig. 7)"),
    ):
        spin_image_rows(out / name, getattr(hist, key)[:, 0], flips, title, target)
    spin_curves(out / "ssim_psnr.png", hist)
    mse_vs_flip(out / "mse_vs_flip.png", hist)
    return ["fft_images.png", "network_images.png", "ssim_psnr.png", "mse_vs_flip.png"]


# --------------------------------------------------------------------------------------------
# relaxometry (paper 001)
# --------------------------------------------------------------------------------------------


def relax_error_maps(path: str | Path, t1g, t2g, rel1, rel2, title: str) -> None:
    """Relative errors (%) of T1 and T2 over the evaluation grid, T2 (ms) across, T1 (ms) up.

    Args:
        t1g, t2g: grid values (s), ``(G, G)``; only their ranges are used.
        rel1, rel2: relative errors (%) of T1 and T2, ``(G, G)``.
    """
    plt = _plt()
    ext = [float(t2g.min()) * 1e3, float(t2g.max()) * 1e3]
    ext += [float(t1g.min()) * 1e3, float(t1g.max()) * 1e3]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    for ax, rel, name in zip(axes, (rel1, rel2), ("T1", "T2"), strict=True):
        lim = min(max(float(rel.abs().max()), 1e-3), 50.0)
        kw = {"origin": "lower", "aspect": "auto", "extent": ext, "cmap": "RdBu_r"}
        h = ax.imshow(rel.numpy(), vmin=-lim, vmax=lim, **kw)
        ax.set_xlabel("T2 (ms)")
        ax.set_ylabel("T1 (ms)")
        ax.set_title(f"{name} relative error (%)")
        fig.colorbar(h, ax=ax)
    fig.suptitle(title, fontsize=10)
    _save(fig, path, 90)


def line_plot(
    path: str | Path, x: Sequence, curves: dict[str, Sequence], xlabel: str, ylabel: str, title: str
) -> None:
    """One line per ``curves`` entry (label -> y values) against ``x``, with a legend."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    marker = "o-" if len(x) < 30 else "-"
    for lab, y in curves.items():
        ax.plot(x, y, marker, label=lab)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend()
    ax.grid(alpha=0.3)
    _save(fig, path, 90)


def cod_vs_snr(path: str | Path, rows: list[dict], title: str) -> None:
    """Coefficient of determination against SNR (noise-free drawn at 60) of the evaluation rows
    (``snr``, ``grid_cod_t1``, ``grid_cod_t2`` and optionally ``invivo_cod_t1/t2``)."""
    x = [r["snr"] if math.isfinite(r["snr"]) else 60.0 for r in rows]
    names = {
        "grid_cod_t1": "T1 grid",
        "grid_cod_t2": "T2 grid",
        "invivo_cod_t1": "T1 in vivo-like",
        "invivo_cod_t2": "T2 in vivo-like",
    }
    curves = {lab: [r[k] for r in rows] for k, lab in names.items() if k in rows[0]}
    line_plot(path, x, curves, "SNR (60 = noise-free)", "CoD", title)


def offresonance_sweep(path: str | Path, sweep: dict, title: str) -> None:
    """Relative errors (%) of T1 and T2 against ``theta / pi`` (an off-resonance sweep)."""
    curves = {"T1": sweep["t1_rel_err_pct"], "T2": sweep["t2_rel_err_pct"]}
    line_plot(path, sweep["theta_over_pi"], curves, "theta / pi", "relative error (%)", title)


def relax_maps(
    path: str | Path,
    truth: dict[str, torch.Tensor],
    fits: dict[str, dict[str, torch.Tensor]],
    region: torch.Tensor,
    z: int = 0,
) -> None:
    """True maps, then per method its T1/T2 maps (ms) and relative errors (%) in ``region``.

    Args:
        truth: ``t1``, ``t2`` (s), ``b1``, ``db0`` (Hz), each ``(X, Y, Z)`` (NIfTI order).
        fits: method name -> ``t1``, ``t2`` (s) maps ``(X, Y, Z)``.
        region: bool ``(X, Y, Z)`` where errors are shown (0 elsewhere).
        z: the slice shown.
    """
    plt = _plt()
    fig, axes = plt.subplots(len(fits) + 1, 4, figsize=(13, 3.2 * (len(fits) + 1)))

    def show(a: torch.Tensor) -> torch.Tensor:  # (X, Y) -> image rows Y
        return a[:, :, z].T

    lims = {"t1": ("magma", (0, 2000)), "t2": ("viridis", (0, 150))}
    panels: list[Panel] = [
        (show(truth["t1"] * 1e3), "true T1 (ms)", *lims["t1"]),
        (show(truth["t2"] * 1e3), "true T2 (ms)", *lims["t2"]),
        (show(truth["b1"]), "B1", "coolwarm", None),
        (show(truth["db0"]), "dB0 (Hz)", "RdBu_r", None),
    ]
    for name, m in fits.items():
        for k in ("t1", "t2"):
            rel = torch.where(region, (m[k] - truth[k]) / truth[k].clamp_min(1e-9) * 100, 0.0)
            panels.append((show(m[k] * 1e3), f"{name} {k.upper()} (ms)", *lims[k]))
            panels.append((show(rel), f"{name} {k.upper()} error (%)", "RdBu_r", (-10, 10)))
    for ax, panel in zip(axes.ravel(), panels, strict=True):
        _show(ax, fig, panel)
    _save(fig, path, 80)


def histograms(
    path: Any,
    panels: Sequence[tuple[str, dict[str, Any]]],
    *,
    bins: int = 60,
    ranges: Sequence[tuple[float, float] | None] | None = None,
    width: float = 4.0,
    height: float = 3.0,
    dpi: int = 80,
) -> None:
    """A row of histogram panels, each overlaying labelled distributions (step lines).

    Args:
        path: PNG to write (a path or a binary file object).
        panels: ``(x label with unit, {legend label: values (1-D)})`` per panel.
        ranges: the x range per panel (None: the 1st-99th percentile of its values together).
    """
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(width * len(panels), height), squeeze=False)
    ranges = list(ranges) if ranges is not None else [None] * len(panels)
    for ax, (xlabel, groups), fixed in zip(axes[0], panels, ranges, strict=True):
        vals = {k: torch.as_tensor(v).flatten().double().numpy() for k, v in groups.items()}
        vals = {k: v[np.isfinite(v)] for k, v in vals.items()}
        vals = {k: v for k, v in vals.items() if v.size}
        if vals:
            everything = np.concatenate(list(vals.values()))
            lo, hi = fixed if fixed else np.percentile(everything, [1, 99]).tolist()
            hi = hi if hi > lo else lo + 1.0
            for label, v in vals.items():
                ax.hist(v, bins=bins, range=(lo, hi), histtype="step", label=label)
            ax.legend(fontsize=8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("voxels")
    _save(fig, path, dpi)
