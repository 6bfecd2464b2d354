"""Centred orthonormal FFT and the masked Cartesian encoding."""

import math

import pytest
import torch

from mrphys.errors import MrphysError
from mrphys.physics.fourier import CartesianFFT, fft2c, ifft2c
from mrphys.physics.linop import adjoint_error


def _rand(shape, gen, dtype=torch.complex128):
    return torch.randn(shape, generator=gen, dtype=dtype)


@pytest.mark.parametrize("shape", [(6, 6), (5, 7)])
def test_fft2c_matches_explicit_centred_dft(shape):
    g = torch.Generator().manual_seed(0)
    x = _rand(shape, g)
    ny, nx = shape
    my = torch.arange(ny, dtype=torch.float64) - ny // 2
    mx = torch.arange(nx, dtype=torch.float64) - nx // 2
    fy = torch.exp(-2j * math.pi * my[:, None] * my[None, :] / ny)
    fx = torch.exp(-2j * math.pi * mx[:, None] * mx[None, :] / nx)
    ref = fy @ x @ fx.T / math.sqrt(ny * nx)
    assert torch.allclose(fft2c(x), ref, atol=1e-12)
    assert torch.allclose(ifft2c(fft2c(x)), x, atol=1e-12)


def test_fft2c_is_unitary_and_centred():
    g = torch.Generator().manual_seed(1)
    x = _rand((3, 8, 8), g)
    assert torch.allclose(fft2c(x).norm(), x.norm())
    delta = torch.zeros(8, 8, dtype=torch.complex64)
    delta[4, 4] = 1  # image centre -> flat k-space
    assert torch.allclose(fft2c(delta), torch.full((8, 8), 1 / 8, dtype=torch.complex64))


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
def test_cartesian_adjoint_with_masks(dtype):
    g = torch.Generator().manual_seed(2)
    mask_b = torch.rand(4, 1, 8, 10, generator=g) > 0.5  # per frame, broadcast over coils
    mask_f = torch.rand(8, 10, generator=g, dtype=torch.float64)  # weights
    x = _rand((4, 3, 8, 10), g, dtype)
    y = _rand((4, 3, 8, 10), g, dtype)
    tol = 1e-5 if dtype == torch.complex64 else 1e-12
    for m in (None, mask_b, mask_f):
        op = CartesianFFT((8, 10), m)
        assert adjoint_error(op, x, y) < tol


def test_cartesian_mask_zeroes_unsampled_kspace():
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[:, ::2] = True
    op = CartesianFFT((8, 8), mask)
    k = op(torch.randn(8, 8, dtype=torch.complex64))
    assert torch.all(k[:, 1::2] == 0) and torch.all(k[:, ::2] != 0)


def test_cartesian_rejects_bad_shapes():
    with pytest.raises(MrphysError, match="mask"):
        CartesianFFT((8, 8), torch.ones(8, 9))
    op = CartesianFFT((8, 8))
    with pytest.raises(MrphysError, match="shape"):
        op.forward(torch.zeros(8, 7, dtype=torch.complex64))
    with pytest.raises(MrphysError, match="two positive sizes"):
        CartesianFFT((8, 0))


def test_cartesian_on_coils_states_the_coil_axis():
    mask = torch.zeros(2, 1, 4, 4, dtype=torch.bool)  # per frame, broadcast over coils
    mask[0, :, ::2], mask[1, :, 1::2] = True, True
    op = CartesianFFT((4, 4), mask)
    coils = op.on_coils(3)
    assert (coils.ishape, coils.oshape, op.ishape) == ((3, 4, 4), (3, 4, 4), (4, 4))
    x = torch.randn(2, 3, 4, 4, dtype=torch.complex128, generator=torch.Generator().manual_seed(4))
    assert torch.equal(coils.forward(x), op.forward(x))  # the same masked FFT of every coil
    assert torch.all(coils.forward(x)[1, :, 0::2] == 0)  # frame 1 keeps its own rows only
    with pytest.raises(MrphysError, match=r"\(\.\.\., 3, 4, 4\)"):
        coils.forward(x[:, :2])
