"""mrphys.plot: every figure style writes a PNG of the size its layout asks for."""

from __future__ import annotations

import math
from dataclasses import replace

import matplotlib.image
import pytest
import torch

from mrphys import plot
from mrphys.design.optimize import TestHistory as SpinHistory


def _shape(path) -> tuple[int, int]:
    """(height, width) in pixels of a PNG file (and a check that it is one)."""
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return matplotlib.image.imread(path).shape[:2]


def test_image_panels_one_column_per_panel(tmp_path) -> None:
    img = torch.rand(8, 8)
    panels = [(img, "a", "gray", None), (img * 2, "b", "magma", (0.0, 1.0))]
    plot.image_panels(tmp_path / "two.png", panels)  # 3 x 3.3 in per panel at 80 dpi
    assert _shape(tmp_path / "two.png") == (264, 480)
    curve = ([0.0, 1.0, 2.0], [1.0, 0.5, 0.2], "k-", "decay")
    plot.image_panels(tmp_path / "lines.png", panels, lines=("t", "x", "y", [curve]), dpi=50)
    assert _shape(tmp_path / "lines.png") == (165, 450)  # a third column for the curves


def test_frame_grid_rows_and_profile_column(tmp_path) -> None:
    x = torch.randn(5, 12, 12, dtype=torch.complex64)
    plot.frame_grid(tmp_path / "a.png", [("recon", x)])  # all 5 frames (fewer than 8)
    plot.frame_grid(tmp_path / "b.png", [("recon", x), ("truth", x)], [0, 4], profile_line=6)
    assert _shape(tmp_path / "a.png") == (152, 720)  # 1.8 x 1.9 in per frame at 80 dpi
    assert _shape(tmp_path / "b.png") == (304, 432)  # two frames, an x-t profile, two rows


def test_spin_figures_writes_the_four_paper_figures(tmp_path) -> None:
    k = 7  # iterations; the image rows show 5 of them (first and last included)
    hist = SpinHistory(
        flip_angle_deg=[30.0 + 8 * i for i in range(k)],
        mse=[1.0 / (i + 1) for i in range(k)],
        ssim=[0.5 + 0.05 * i for i in range(k)],
        psnr=[20.0 + i for i in range(k)],
        fft_ssim=[0.4] * k,
        fft_psnr=[18.0] * k,
        fft_images=torch.rand(k, 2, 16, 16),
        images=torch.rand(k, 2, 16, 16),
    )
    names = plot.spin_figures(tmp_path, hist, torch.rand(16, 16))
    assert names == ["fft_images.png", "network_images.png", "ssim_psnr.png", "mse_vs_flip.png"]
    assert _shape(tmp_path / "fft_images.png") == (275, 1452)  # 5 iterations + target, 110 dpi
    for name in names:
        _shape(tmp_path / name)
    # a history without inverse-FFT metrics (empty lists) draws the network curves alone
    plot.spin_curves(tmp_path / "net_only.png", replace(hist, fft_ssim=[], fft_psnr=[]))
    assert _shape(tmp_path / "net_only.png") == _shape(tmp_path / "ssim_psnr.png")


def test_relaxometry_evaluation_figures(tmp_path) -> None:
    t1g, t2g = torch.meshgrid(
        torch.linspace(0.36, 2.08, 6), torch.linspace(0.02, 0.12, 6), indexing="ij"
    )
    rel = torch.randn(6, 6)
    plot.relax_error_maps(tmp_path / "maps.png", t1g, t2g, rel, 200 * rel, "pinn, SNR 50")
    rows = [{"snr": math.inf, "grid_cod_t1": 1.0, "grid_cod_t2": 0.99},
            {"snr": 20.0, "grid_cod_t1": 0.9, "grid_cod_t2": 0.8}]  # fmt: skip
    plot.cod_vs_snr(tmp_path / "cod.png", rows, "miracle")
    sweep = {
        "theta_over_pi": [-0.5, 0.0, 0.5],
        "t1_rel_err_pct": [1, 0, 1],
        "t2_rel_err_pct": [2, 0, 2],
    }
    plot.offresonance_sweep(tmp_path / "sweep.png", sweep, "miracle")
    assert _shape(tmp_path / "maps.png") == (342, 810)
    assert _shape(tmp_path / "cod.png") == _shape(tmp_path / "sweep.png") == (342, 495)


@pytest.mark.parametrize("methods", [1, 2])
def test_relax_maps_one_row_per_method(tmp_path, methods: int) -> None:
    shape = (10, 12, 2)
    truth = {"t1": torch.full(shape, 1.0), "t2": torch.full(shape, 0.08)}
    truth |= {"b1": torch.ones(shape), "db0": torch.zeros(shape)}
    fits = {f"m{i}": {"t1": truth["t1"] * 1.02, "t2": truth["t2"]} for i in range(methods)}
    plot.relax_maps(tmp_path / "maps.png", truth, fits, torch.ones(shape, dtype=torch.bool))
    assert _shape(tmp_path / "maps.png") == (round(3.2 * (methods + 1) * 80), 13 * 80)
