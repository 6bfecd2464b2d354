"""Birdcage coil maps and the SENSE operator."""

import pytest
import torch

from mrphys.errors import MrphysError
from mrphys.physics.coils import SenseOp, birdcage_maps
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
    with pytest.raises(MrphysError):
        birdcage_maps(0, (8, 8))


@pytest.mark.parametrize("dtype,tol", [(torch.complex64, 1e-5), (torch.complex128, 1e-12)])
def test_sense_radial_adjoint(dtype, tol):
    traj = golden_angle_radial(3, 4, 24)
    op = SenseOp(birdcage_maps(4, (12, 12)), RadialNUFFT(traj, (12, 12)))
    x = _rand((3, 12, 12), 0, dtype)
    y = _rand((3, 4, 96), 1, dtype)
    assert op.forward(x).shape == (3, 4, 96)
    assert adjoint_error(op, x, y) < tol
    xb = _rand((2, 3, 12, 12), 2, dtype)  # a leading batch dim passes through
    assert op.forward(xb).shape == (2, 3, 4, 96)
    assert torch.allclose(op.forward(xb)[1], op.forward(xb[1]))


def test_sense_cartesian_adjoint_and_identity():
    g = torch.Generator().manual_seed(3)
    mask = torch.rand(3, 1, 8, 8, generator=g) > 0.6  # per frame, broadcast over coils
    maps = birdcage_maps(5, (8, 8))
    op = SenseOp(maps, CartesianFFT((8, 8), mask))
    x = _rand((3, 8, 8), 4)
    y = _rand((3, 5, 8, 8), 5)
    assert adjoint_error(op, x, y) < 1e-5
    full = SenseOp(maps, CartesianFFT((8, 8)))
    assert torch.allclose(full.adjoint(full.forward(x)), x, atol=1e-5)  # sum |S|^2 = 1


def test_sense_gradcheck():
    traj = golden_angle_radial(1, 2, 6).double()
    op = SenseOp(birdcage_maps(2, (3, 3), dtype=torch.complex128), RadialNUFFT(traj, (3, 3)))
    x = _rand((1, 3, 3), 6, torch.complex128).requires_grad_()
    assert torch.autograd.gradcheck(op.forward, (x,), atol=1e-7)


def test_sense_rejects_mismatched_maps():
    with pytest.raises(MrphysError, match="image size"):
        SenseOp(birdcage_maps(2, (8, 8)), RadialNUFFT(golden_angle_radial(1, 1, 8), (6, 6)))
    with pytest.raises(MrphysError, match="complex"):
        SenseOp(torch.ones(2, 8, 8), CartesianFFT((8, 8)))
