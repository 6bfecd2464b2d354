"""AUTOMAP and the FFT + U-Net alternative: DFT initialisation, shapes, parameter count."""

import pytest
import torch

from mrphys.errors import MrphysError
from mrphys.nets.automap import Automap, count_parameters
from mrphys.nets.unet import FFTUNet
from mrphys.physics.fourier import centred_idft_matrix, fft2c, ifft2c


def _image_like_kspace(n: int, gen: torch.Generator) -> torch.Tensor:
    """k-space of a positive image with values up to ~1 plus a little noise, (2, n, n)."""
    img = torch.rand(2, n, n, generator=gen, dtype=torch.float64)
    k = fft2c(img, norm="backward")
    noise = torch.randn(2, n, n, 2, generator=gen, dtype=torch.float64)
    return k + 0.5 * torch.view_as_complex(noise)


@pytest.mark.parametrize("n", [7, 8])
def test_idft_matrix_is_the_centred_inverse_dft(n):
    # A[m, j] = exp(+2 pi i (m - n//2)(j - n//2) / n) / n: centre at n//2, unnormalised inverse
    c = torch.arange(n, dtype=torch.float64) - n // 2
    ref = torch.exp(2j * torch.pi * torch.outer(c, c) / n) / n
    torch.testing.assert_close(centred_idft_matrix(n), ref)


@pytest.mark.parametrize("n", [16, 32])
def test_dft_initialised_automap_equals_inverse_fft(n):
    gen = torch.Generator().manual_seed(1)
    model = Automap(matrix=n, channels=8, init="dft").double()
    k = _image_like_kspace(n, gen)
    ref = ifft2c(k, norm="backward").real
    out = model(k)
    assert out.shape == (2, n, n)
    # tanh in its linear range: relative error ~ (0.01 * max|x|)^2 / 3
    err = (out - ref).abs().max() / ref.abs().max()
    assert err < 1e-4
    # and the FC pair alone is the scaled inverse FFT
    torch.testing.assert_close(model.fc_output(k) / 0.01, ref, rtol=0, atol=1e-4)
    # the Glorot network is not the inverse FFT (the test can fail)
    glorot = Automap(matrix=n, channels=8).double()
    assert (glorot(k) - ref).abs().max() / ref.abs().max() > 0.1


def test_dft_init_trains_all_layers():
    n = 16
    model = Automap(matrix=n, channels=8, init="dft")
    k = torch.randn(4, n, n, dtype=torch.complex64)
    opt = torch.optim.RMSprop(model.parameters(), lr=1e-3, alpha=0.9)
    for _ in range(2):
        out, pen = model.forward_with_penalty(k)
        loss = out.square().mean() + pen
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert model.deconv.weight[2:].abs().sum() > 0  # the extra channels are used after a step


def test_paper_size_parameter_count():
    # 64x64 AUTOMAP of the paper: about 50 M parameters (built on the meta device: no memory)
    with torch.device("meta"):
        model = Automap(matrix=64, channels=64)
    assert 50.0e6 < count_parameters(model) < 51.0e6


def test_bad_shapes_raise():
    model = Automap(matrix=16, channels=4)
    with pytest.raises(MrphysError, match=r"must have shape \(B, 16, 16\); got \(2, 8, 8\)"):
        model(torch.zeros(2, 8, 8, dtype=torch.complex64))
    with pytest.raises(MrphysError, match="matrix must be a multiple of 4 >= 8; got 18"):
        FFTUNet(matrix=18)


def test_unet_untrained_is_inverse_fft():
    n = 16
    k = torch.randn(3, n, n, dtype=torch.complex64)
    net = FFTUNet(matrix=n, width=4)
    torch.testing.assert_close(net(k), ifft2c(k, norm="backward").real)
