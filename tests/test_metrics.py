import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from mrphys import metrics
from mrphys.errors import MrphysError


@pytest.fixture
def pair():
    g = torch.Generator().manual_seed(0)
    ref = torch.rand(3, 40, 36, generator=g, dtype=torch.float64)
    x = ref + 0.1 * torch.randn(3, 40, 36, generator=g, dtype=torch.float64)
    return x, ref


def test_ssim_matches_skimage(pair):
    x, ref = pair
    ours = metrics.ssim(x, ref, data_range=1.0)
    for i in range(3):
        sk = structural_similarity(x[i].numpy(), ref[i].numpy(), data_range=1.0)
        assert abs(float(ours[i]) - sk) < 1e-3
        assert abs(float(ours[i]) - sk) < 1e-6  # same definition, so much closer than the bar


def test_psnr_matches_skimage_and_batches(pair):
    x, ref = pair
    ours = metrics.psnr(x, ref, data_range=1.0)
    assert ours.shape == (3,)
    for i in range(3):
        sk = peak_signal_noise_ratio(ref[i].numpy(), x[i].numpy(), data_range=1.0)
        assert abs(float(ours[i]) - sk) < 1e-6


def test_identical_images():
    a = torch.rand(2, 16, 16)
    assert torch.allclose(metrics.ssim(a, a), torch.ones(2), atol=1e-6)
    assert torch.all(metrics.psnr(a, a) > 100)
    assert torch.allclose(metrics.nrmse(a, a), torch.zeros(2))


def test_complex_inputs_use_magnitude():
    a = torch.rand(8, 8, dtype=torch.float64)
    z = a * torch.exp(1j * torch.rand(8, 8, dtype=torch.float64))
    assert float(metrics.psnr(z, a)) > 100


def test_cod_and_relative_error():
    y = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert float(metrics.cod(y, y)) == 1.0
    assert float(metrics.cod(y, torch.full_like(y, 2.5))) == pytest.approx(0.0)
    # 1 - 1 / 5: one unit of squared error against a spread of 5
    assert float(metrics.cod(y, torch.tensor([1.0, 2.0, 3.0, 5.0]))) == pytest.approx(0.8)
    # per row over dim=-1, the same as each row alone
    rows = torch.stack([y, y.flip(0)])
    per_row = metrics.cod(rows, torch.stack([y, y]), dim=-1)
    assert per_row.shape == (2,) and float(per_row[0]) == 1.0
    assert float(per_row[1]) == pytest.approx(float(metrics.cod(y.flip(0), y)))
    assert np.allclose(metrics.relative_error(torch.tensor([1.1]), torch.tensor([1.0])), 10.0)
    assert np.allclose(metrics.relative_error(torch.tensor([0.9, 3.0]), 1.5), [-40.0, 100.0])
    with pytest.raises(MrphysError, match="same shape"):
        metrics.cod(y, y[:3])


def test_shape_mismatch_is_clear():
    with pytest.raises(MrphysError, match="shapes differ"):
        metrics.psnr(torch.zeros(4, 4), torch.zeros(4, 5))
