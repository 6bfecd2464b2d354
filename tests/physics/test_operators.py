"""One property test over every linear operator of the project (the deepinv habit).

``CASES`` is the registry: a name, a factory ``device -> Linop`` and the input shape. Every case
is checked for the adjoint identity ``<A x, y> = <x, A^H y>`` (1e-5 relative, complex64),
linearity, and ``torch.autograd.gradcheck`` of forward and adjoint in complex128, on the CPU and,
where CUDA is present, on the GPU. Registering an operator here is all it takes to test it.
Below the registry: the algebra's own promises (shape errors, adjoint of a composition, the
operator norm).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch

from mrphys.errors import MrphysError
from mrphys.physics.coils import CoilMultiply, SenseOp, birdcage_maps
from mrphys.physics.fourier import CartesianFFT
from mrphys.physics.linop import (
    AxisFFT,
    FiniteDifference,
    Identity,
    Linop,
    Multiply,
    Repeat,
    adjoint_error,
    operator_norm,
    power_iteration,
)
from mrphys.physics.nufft import RadialNUFFT, golden_angle_radial
from mrphys.recon.solvers import LeastSquares

pytestmark = pytest.mark.usefixtures("one_thread")

T, NY, NX = 2, 6, 5  # tiny: gradcheck's numerical Jacobian costs one call per input element
COILS = 3

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available"),
    ),
]


def _rand(shape, seed, dtype=torch.complex64, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=dtype).to(device)


def _mask(seed, shape=(NY, NX), device="cpu"):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g) < 0.6).to(device)


def _traj(device):
    return golden_angle_radial(T, 2, 8).to(device)  # 2 spokes of 8 samples per frame


def _cart_sense(device):
    maps = birdcage_maps(COILS, (NY, NX), device=device)
    mask = _mask(3, (T, 1, NY, NX), device)  # per-frame mask beside the coil axis
    return SenseOp(maps, CartesianFFT((NY, NX), mask))


def _radial_sense(device):
    maps = birdcage_maps(COILS, (NY, NY), device=device)
    return SenseOp(maps, RadialNUFFT(_traj(device), (NY, NY)))


def _cg_sense_normal(device):
    """The operator CG-SENSE solves with: ``A^H D A + lam I`` (radial, density weights)."""
    op = _radial_sense(device)
    w = torch.rand(op.forward(torch.zeros(T, NY, NY, dtype=torch.complex64, device=device)).shape)
    return LeastSquares(op, torch.zeros(1), w.to(device)).normal + 0.3 * Identity()


@dataclass(frozen=True)
class Case:
    """A registered operator: ``factory(device)`` builds it; it takes inputs of ``shape``."""

    name: str
    factory: Callable[[str], Linop]
    shape: tuple[int, ...]
    dtype: torch.dtype = torch.complex64


CASES = [
    Case("cartesian_fft", lambda d: CartesianFFT((NY, NX)), (T, NY, NX)),
    Case("cartesian_fft_mask", lambda d: CartesianFFT((NY, NX), _mask(1, device=d)), (T, NY, NX)),
    Case(
        "cartesian_fft_real_mask",
        lambda d: CartesianFFT((NY, NX), _mask(2, device=d).float() * 0.5),
        (T, NY, NX),
    ),
    Case("radial_nufft_finufft", lambda d: RadialNUFFT(_traj(d), (NY, NY), "finufft"), (T, NY, NY)),
    Case(
        "radial_nufft_torchkbnufft",
        lambda d: RadialNUFFT(_traj(d), (NY, NY), "torchkbnufft"),
        (T, NY, NY),
    ),
    Case(
        "radial_nufft_flat_traj",
        lambda d: RadialNUFFT(_traj(d).reshape(T, -1, 2), (NY, NY)),
        (T, NY, NY),
    ),
    Case(
        "radial_nufft_frames", lambda d: RadialNUFFT(_traj(d), (NY, NY)).frames([1, 0]), (T, NY, NY)
    ),
    Case(
        "radial_nufft_on_coils",
        lambda d: RadialNUFFT(_traj(d), (NY, NY)).on_coils(COILS),
        (T, COILS, NY, NY),
    ),
    Case(
        "coil_multiply",
        lambda d: CoilMultiply(birdcage_maps(COILS, (NY, NX), device=d)),
        (T, NY, NX),
    ),
    Case("sense_cartesian", _cart_sense, (T, NY, NX)),
    Case("sense_radial", _radial_sense, (T, NY, NY)),
    Case(
        "sense_radial_frames",
        lambda d: SenseOp(
            birdcage_maps(COILS, (NY, NY), device=d), RadialNUFFT(_traj(d), (NY, NY)).frames([1])
        ),
        (1, NY, NY),
    ),
    Case("identity", lambda d: Identity((NY, NX)), (T, NY, NX)),
    Case("multiply", lambda d: Multiply(_rand((NY, NX), 4, device=d)), (T, NY, NX)),
    Case("multiply_real", lambda d: Multiply(torch.rand(T, 1, NX).to(d)), (T, NY, NX)),
    Case("repeat", lambda d: Repeat(3), (T, NY, NX)),
    Case("repeat_adjoint_sum", lambda d: Repeat(2).H, (2, T, NY, NX)),
    Case("finite_difference_time", lambda d: FiniteDifference(0), (4, NY, NX)),
    Case("finite_difference_x", lambda d: FiniteDifference(-1), (T, NY, NX)),
    Case("temporal_fft", lambda d: AxisFFT(0), (4, NY, NX)),
    Case(
        "compose",
        lambda d: (
            CartesianFFT((NY, NX), _mask(1, device=d)) @ Multiply(_rand((NY, NX), 5, device=d))
        ),
        (T, NY, NX),
    ),
    Case(
        "sum",
        lambda d: CartesianFFT((NY, NX), _mask(1, device=d)) + CartesianFFT((NY, NX)),
        (T, NY, NX),
    ),
    Case(
        "difference",
        lambda d: CartesianFFT((NY, NX)) - Multiply(_rand((NY, NX), 6, device=d)),
        (T, NY, NX),
    ),
    Case("scalar_left", lambda d: (2 - 1j) * CartesianFFT((NY, NX)), (T, NY, NX)),
    Case("scalar_right", lambda d: CartesianFFT((NY, NX)) * 0.5, (T, NY, NX)),
    Case("negate", lambda d: -CartesianFFT((NY, NX)), (T, NY, NX)),
    Case(
        "tensor_left", lambda d: _rand((NY, NX), 7, device=d) * CartesianFFT((NY, NX)), (T, NY, NX)
    ),
    Case(
        "tensor_right",
        lambda d: CartesianFFT((NY, NX)) * _rand((NY, NX), 8, device=d),
        (T, NY, NX),
    ),
    Case("adjoint", lambda d: _cart_sense(d).H, (T, COILS, NY, NX)),
    Case("normal_radial", lambda d: _radial_sense(d).H @ _radial_sense(d), (T, NY, NY)),
    Case("cg_sense_normal", _cg_sense_normal, (T, NY, NY)),
    Case("lplus_s_encoding", lambda d: _radial_sense(d) @ Repeat(2).H, (2, T, NY, NY)),
]
IDS = [c.name for c in CASES]


def _pair(case: Case, device: str, dtype: torch.dtype, seed: int = 0):
    op = case.factory(device)
    x = _rand(case.shape, seed, dtype, device)
    y = _rand(tuple(op.forward(x).shape), seed + 1, dtype, device)
    return op, x, y


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_adjoint(case, device):
    op, x, y = _pair(case, device, case.dtype)
    assert op.forward(x).device.type == device
    assert op.adjoint(y).shape == x.shape
    assert adjoint_error(op, x, y) < 1e-5


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_linearity(case, device):
    op, x1, _ = _pair(case, device, case.dtype)
    x2 = _rand(case.shape, 9, case.dtype, device)
    a, b = 0.7 - 1.3j, -2.1
    lhs = op.forward(a * x1 + b * x2)
    rhs = a * op.forward(x1) + b * op.forward(x2)
    assert float((lhs - rhs).norm() / rhs.norm()) < 1e-5


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_gradcheck_float64(case, device):
    op, x, y = _pair(case, device, torch.complex128)
    x.requires_grad_(True)
    y.requires_grad_(True)
    assert torch.autograd.gradcheck(op.forward, (x,), eps=1e-6, atol=1e-6, fast_mode=True)
    assert torch.autograd.gradcheck(op.adjoint, (y,), eps=1e-6, atol=1e-6, fast_mode=True)


# --------------------------------------------------------------------------------------------
# the algebra's own promises
# --------------------------------------------------------------------------------------------


def test_composition_applies_right_to_left_and_its_adjoint_reverses():
    a = CartesianFFT((NY, NX), _mask(1))
    t = _rand((NY, NX), 2)
    x, y = _rand((T, NY, NX), 3), _rand((T, NY, NX), 4)
    ab = a @ Multiply(t)
    assert torch.equal(ab.forward(x), a.forward(x * t))
    assert torch.allclose(ab.H.forward(y), t.conj() * a.adjoint(y))
    assert torch.allclose((t * a).forward(x), t * a.forward(x))
    assert torch.equal((a * t).forward(x), a.forward(x * t))
    assert a.H.H is a


def test_sum_scale_and_difference_match_their_parts():
    a, b = CartesianFFT((NY, NX), _mask(1)), CartesianFFT((NY, NX))
    x = _rand((T, NY, NX), 0)
    assert torch.allclose((a + b).forward(x), a.forward(x) + b.forward(x))
    assert torch.allclose((a - b).forward(x), a.forward(x) - b.forward(x))
    assert torch.allclose((1j * a).adjoint(x), -1j * a.adjoint(x))  # conj(c) in the adjoint
    assert torch.allclose((a - a).forward(x), torch.zeros_like(x))


def test_mismatched_shapes_are_refused():
    cart = CartesianFFT((NY, NX))
    other = CartesianFFT((NY + 1, NX))
    with pytest.raises(MrphysError, match="cannot compose operators"):
        cart @ other
    with pytest.raises(MrphysError, match="cannot add operators"):
        cart + other
    with pytest.raises(MrphysError, match="finite number"):
        float("inf") * cart
    with pytest.raises(TypeError):
        cart @ _rand((NY, NX), 0)  # apply with .forward, not @


def test_operator_norm_of_known_operators():
    t = _rand((NY, NX), 1)
    assert operator_norm(Multiply(t), (NY, NX)) == pytest.approx(float(t.abs().max()), rel=1e-3)
    assert operator_norm(CartesianFFT((NY, NX)), (T, NY, NX)) == pytest.approx(1.0, rel=1e-5)
    assert operator_norm(3.0 * CartesianFFT((NY, NX)), (NY, NX)) == pytest.approx(3.0, rel=1e-5)
    # ||D_t||^2 = 2 - 2 cos(pi (T-1) / T) for the forward difference over T points
    d = operator_norm(FiniteDifference(0), (8, 1, 1), iterations=500, tol=1e-9)
    assert d**2 == pytest.approx(2 - 2 * torch.cos(torch.tensor(7 * torch.pi / 8)).item(), rel=1e-4)


def test_power_iteration_stopping_rules():
    diag = torch.tensor([4.0, 3.9, 1.0, 0.5], dtype=torch.complex128)
    op = Multiply(diag)
    fixed = power_iteration(op, (4,), iterations=7, dtype=torch.complex128)
    assert fixed.iterations == 7 and not fixed.converged
    early = power_iteration(op, (4,), iterations=10_000, tol=1e-8, dtype=torch.complex128)
    assert early.converged and 1 < early.iterations < 10_000
    assert early.value == pytest.approx(4.0, rel=1e-6)
    assert early.value >= fixed.value  # the estimate rises towards the largest eigenvalue
    # a start vector and a generator give reproducible results
    g1 = power_iteration(op, (4,), 5, generator=torch.Generator().manual_seed(3))
    g2 = power_iteration(op, (4,), 5, generator=torch.Generator().manual_seed(3))
    assert g1.value == g2.value
    with pytest.raises(MrphysError, match="iterations must be a positive integer"):
        power_iteration(op, (4,), iterations=0)
    with pytest.raises(MrphysError, match="must not be zero"):
        power_iteration(op, torch.zeros(4))
