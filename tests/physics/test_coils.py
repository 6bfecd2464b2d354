"""Birdcage coil maps, the coil multiply and the SENSE operator built by composition."""

import pytest
import torch

from mrphys.errors import MrphysError
from mrphys.physics.coils import CoilMultiply, SenseOp, birdcage_maps
from mrphys.physics.fourier import CartesianFFT
from mrphys.physics.linop import adjoint_error
from mrphys.physics.nufft import RadialNUFFT, golden_angle_radial


def _rand(shape, seed, dtype=torch.complex64):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def test_birdcage_maps_are_normalised_and_distinct():
    m = birdcage_maps(8, (16, 12))
    assert m.shape == (8, 16, 12) and m.dtype == torch.complex64
    assert torch.allclose((m.abs() ** 2).sum(0), torch.ones(16, 12), atol=1e-5)
    # each coil is strongest near its own position: coil 0 at +x (right), coil 4 at -x (left)
    assert m[0, :, -1].abs().mean() > 2 * m[0, :, 0].abs().mean()
    assert m[4, :, 0].abs().mean() > 2 * m[4, :, -1].abs().mean()
    # the coils are not linearly dependent (SENSE needs distinct maps)
    s = torch.linalg.svdvals(m.reshape(8, -1))
    assert float(s[-1] / s[0]) > 1e-3
    with pytest.raises(MrphysError, match="n_coils"):
        birdcage_maps(0, (8, 8))


@pytest.mark.parametrize("dtype,tol", [(torch.complex64, 1e-5), (torch.complex128, 1e-12)])
def test_coil_multiply_adjoint_and_layout(dtype, tol):
    maps = birdcage_maps(3, (6, 5), dtype=dtype)
    op = CoilMultiply(maps)
    x = _rand((2, 4, 6, 5), 10, dtype)  # (B, T, Y, X)
    y = _rand((2, 4, 3, 6, 5), 11, dtype)  # (B, T, C, Y, X)
    assert op.forward(x).shape == (2, 4, 3, 6, 5)
    torch.testing.assert_close(op.forward(x)[1, 2, 0], maps[0] * x[1, 2])  # coil c is S_c x
    assert adjoint_error(op, x, y) < tol
    assert torch.allclose(op.adjoint(op.forward(x)), x, atol=10 * tol)  # sum |S|^2 = 1
    with pytest.raises(MrphysError, match="coil images"):
        op.adjoint(x)


def test_coil_multiply_gradcheck():
    op = CoilMultiply(birdcage_maps(2, (3, 3), dtype=torch.complex128))
    x = _rand((2, 3, 3), 12, torch.complex128).requires_grad_()
    y = _rand((2, 2, 3, 3), 13, torch.complex128).requires_grad_()
    assert torch.autograd.gradcheck(op.forward, (x,))
    assert torch.autograd.gradcheck(op.adjoint, (y,))


@pytest.mark.parametrize("dtype,tol", [(torch.complex64, 1e-5), (torch.complex128, 1e-12)])
def test_sense_radial_adjoint(dtype, tol):
    traj = golden_angle_radial(3, 4, 24)
    op = SenseOp(birdcage_maps(4, (12, 12)), RadialNUFFT(traj, (12, 12)))
    assert (op.n_coils, op.im_size) == (4, (12, 12))
    assert (op.ishape, op.oshape) == ((3, 12, 12), (3, 4, 4, 24))
    x = _rand((3, 12, 12), 0, dtype)
    y = _rand((3, 4, 4, 24), 1, dtype)  # (T, C, S, N)
    assert op.forward(x).shape == (3, 4, 4, 24)
    assert adjoint_error(op, x, y) < tol
    assert adjoint_error(op.H, y, x) < tol
    xb = _rand((2, 3, 12, 12), 2, dtype)  # a leading batch dim passes through
    assert op.forward(xb).shape == (2, 3, 4, 4, 24)
    assert torch.allclose(op.forward(xb)[1], op.forward(xb[1]))


def test_sense_radial_is_the_nufft_of_each_coil_image():
    maps = birdcage_maps(3, (8, 8))
    nufft = RadialNUFFT(golden_angle_radial(2, 3, 16), (8, 8))
    op = SenseOp(maps, nufft)
    x = _rand((2, 8, 8), 14)
    k = op.forward(x)  # (T, C, S, N)
    for c in range(3):
        torch.testing.assert_close(k[:, c], nufft.forward(maps[c] * x), rtol=1e-5, atol=1e-6)
    xh = sum(maps[c].conj() * nufft.adjoint(k[:, c]) for c in range(3))
    torch.testing.assert_close(op.adjoint(k), xh, rtol=1e-5, atol=1e-6)


def test_sense_on_a_frame_subset():
    maps = birdcage_maps(2, (6, 6))
    nufft = RadialNUFFT(golden_angle_radial(4, 2, 12), (6, 6))
    full, sub = SenseOp(maps, nufft), SenseOp(maps, nufft.frames([3, 1]))
    x = _rand((4, 6, 6), 15)
    y = _rand((2, 2, 2, 12), 16)
    assert torch.equal(sub.forward(x[[3, 1]]), full.forward(x)[[3, 1]])
    assert adjoint_error(sub, x[[3, 1]], y) < 1e-5


def test_sense_cartesian_adjoint_and_identity():
    g = torch.Generator().manual_seed(3)
    mask = torch.rand(3, 1, 8, 8, generator=g) > 0.6  # per frame, broadcast over coils
    maps = birdcage_maps(5, (8, 8))
    op = SenseOp(maps, CartesianFFT((8, 8), mask))
    x = _rand((3, 8, 8), 4)
    y = _rand((3, 5, 8, 8), 5)
    assert adjoint_error(op, x, y) < 1e-5
    assert op.forward(x).shape == (3, 5, 8, 8) and op.oshape == (5, 8, 8)
    full = SenseOp(maps, CartesianFFT((8, 8)))
    assert torch.allclose(full.adjoint(full.forward(x)), x, atol=1e-5)  # sum |S|^2 = 1
    # coil c of the k-space is the masked FFT of S_c x
    k = op.forward(x)
    torch.testing.assert_close(k[:, 2], CartesianFFT((8, 8), mask[:, 0]).forward(maps[2] * x))


@pytest.mark.parametrize("kind", ["radial", "cartesian", "radial_subset"])
def test_sense_gradcheck(kind):
    maps = birdcage_maps(2, (3, 3), dtype=torch.complex128)
    nufft = RadialNUFFT(golden_angle_radial(2, 2, 6).double(), (3, 3))
    enc = {
        "radial": nufft,
        "cartesian": CartesianFFT((3, 3), torch.tensor([[1, 0, 1]] * 3, dtype=torch.bool)),
        "radial_subset": nufft.frames([1]),
    }[kind]
    op = SenseOp(maps, enc)
    t = 1 if kind == "radial_subset" else 2
    x = _rand((t, 3, 3), 6, torch.complex128).requires_grad_()
    y = torch.zeros_like(op.forward(x.detach())).normal_(generator=torch.Generator().manual_seed(7))
    assert torch.autograd.gradcheck(op.forward, (x,), atol=1e-7)
    assert torch.autograd.gradcheck(op.adjoint, (y.requires_grad_(),), atol=1e-7)


def test_sense_rejects_mismatched_maps():
    with pytest.raises(MrphysError, match="image size"):
        SenseOp(birdcage_maps(2, (8, 8)), RadialNUFFT(golden_angle_radial(1, 1, 8), (6, 6)))
    with pytest.raises(MrphysError, match="complex"):
        SenseOp(torch.ones(2, 8, 8), CartesianFFT((8, 8)))
    with pytest.raises(MrphysError, match="NaN"):
        CoilMultiply(torch.full((2, 4, 4), float("nan"), dtype=torch.complex64))
    with pytest.raises(MrphysError, match="on_coils"):
        SenseOp(birdcage_maps(2, (8, 8)), CoilMultiply(birdcage_maps(2, (8, 8))))
