"""physics.acquire.simulate_cartesian: the `mrphys simulate` pipeline as a library function."""

from __future__ import annotations

import math

import pytest
import torch

from mrphys.errors import MrphysError
from mrphys.physics.acquire import simulate_cartesian
from mrphys.utils import make_generator

pytestmark = pytest.mark.usefixtures("one_thread")


def test_noise_and_image_are_bitwise_the_former_formulas() -> None:
    """Noise as two randn calls (real, then imaginary) scaled by sigma / sqrt 2, sigma a fraction
    of the peak |k|; the image as fftshift(ifft2(ifftshift(k))): the numbers of earlier runs."""
    clean = simulate_cartesian("gre", phantom="gach", matrix=16, seed=2)
    noisy = simulate_cartesian("gre", phantom="gach", matrix=16, seed=2, noise_pct=3.0)
    k = clean.kspace
    sigma = 3.0 / 100 * float(k.abs().max())
    g = make_generator(3, device=k.device)
    re = torch.randn(k.shape, generator=g, dtype=torch.float32)
    im = torch.randn(k.shape, generator=g, dtype=torch.float32)
    expected = k + (sigma / math.sqrt(2)) * (re + 1j * im).to(k.dtype)
    assert torch.equal(noisy.kspace, expected)
    old = torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(expected)))
    assert torch.equal(noisy.image, old.abs().float())


def test_noise_free_spin_echo_matches_eq13() -> None:
    a = simulate_cartesian("spin-echo", phantom="gach", matrix=16, fov_mm=16.0)
    assert a.image.shape == a.truth.shape == (16, 16) and a.kspace.shape == (16, 16)
    assert float((a.image - a.truth).abs().max() / a.truth.max()) < 0.05
    assert a.psnr_db > 35 and a.tr == 10.0 and a.te == pytest.approx(0.04)
    assert a.flip == pytest.approx(math.pi / 2) and a.voxel_mm == (1.0, 1.0, 1.0)


def test_the_seed_decides_the_noise() -> None:
    def k(seed: int) -> torch.Tensor:
        return simulate_cartesian("gre", phantom="gach", matrix=16, noise_pct=1, seed=seed).kspace

    assert torch.equal(k(4), k(4)) and not torch.equal(k(4), k(5))


def test_given_timing_overrides_the_defaults_in_si_units() -> None:
    a = simulate_cartesian("bssfp", phantom="gach", matrix=16, tr_ms=6.0, flip_deg=40.0)
    assert a.tr == pytest.approx(6e-3) and a.te == pytest.approx(2.4e-3)
    assert a.flip == pytest.approx(math.radians(40.0)) and a.fov == pytest.approx(0.24)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"matrix": 8}, "matrix must be an integer in \\[16, 512\\]"),
        ({"noise_pct": -1.0}, "noise_pct must lie in \\[0, 100\\]"),
        ({"te_ms": 60.0, "tr_ms": 50.0}, "te_ms must be positive and below the TR"),
        ({"flip_deg": 0.0}, "flip_deg must lie in \\(0, 180\\]"),
        ({"fov_mm": 0.5}, "fov_mm must lie in \\[1, 1000\\] mm"),
        ({"phantom": "brain"}, "phantom must be one of"),
    ],
)
def test_bad_settings_raise_before_any_work(kwargs, message) -> None:
    with pytest.raises(MrphysError, match=message):
        simulate_cartesian("gre", **kwargs)
    with pytest.raises(MrphysError, match="sequence must be one of"):
        simulate_cartesian("fse")
