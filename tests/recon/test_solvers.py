"""Solvers on any operator: CG (batched systems, stopping rules), FISTA, LeastSquares, prox
helpers, and CG-SENSE on Cartesian data through the same solver as radial."""

from __future__ import annotations

import pytest
import torch

from mrphys.errors import MrphysError
from mrphys.physics.coils import SenseOp, birdcage_maps
from mrphys.physics.fourier import CartesianFFT
from mrphys.physics.linop import FiniteDifference, Identity, Linop, Multiply, operator_norm
from mrphys.physics.radial import simulate_radial
from mrphys.recon import baselines as B
from mrphys.recon.solvers import (
    Discrepancy,
    LeastSquares,
    admm,
    conjugate_gradient,
    fista,
    singular_value_threshold,
    soft_threshold,
    temporal_tv_prox,
)
from mrphys.tissue.dynamic import synthetic_cine
from mrphys.tissue.shepp_logan import gach_shepp_logan

pytestmark = pytest.mark.usefixtures("one_thread")


class Matrix(Linop):
    """A dense matrix acting on the last axis: ``(..., n) -> (..., m)``."""

    def __init__(self, m: torch.Tensor):
        self.m = m
        self.ishape, self.oshape = (m.shape[1],), (m.shape[0],)

    def forward(self, x):
        return x @ self.m.T

    def adjoint(self, y):
        return y @ self.m.conj()


def _rand(shape, seed, dtype=torch.complex128):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _spd(n, seed, cond=50.0):
    """A Hermitian positive definite ``(n, n)`` complex128 matrix with condition number ``cond``."""
    q, _ = torch.linalg.qr(_rand((n, n), seed))
    eig = torch.logspace(0, torch.log10(torch.tensor(cond)).item(), n, dtype=torch.float64)
    return (q * eig.to(q.dtype)) @ q.mH


# --------------------------------------------------------------------------------------------
# conjugate gradients
# --------------------------------------------------------------------------------------------


def test_cg_solves_a_hermitian_system_and_reports_its_residual():
    m = _spd(12, 0)
    b = _rand((12,), 1)
    res = conjugate_gradient(Matrix(m), b, iterations=40)
    exact = torch.linalg.solve(m, b)
    assert torch.allclose(res.x, exact, rtol=1e-8, atol=1e-10)
    assert res.iterations == 40 and not res.converged
    true_residual = (b - m @ res.x).norm() / b.norm()
    assert float(res.residual) == pytest.approx(float(true_residual), abs=1e-10)


def test_cg_tolerance_stops_early_at_the_asked_residual():
    m = _spd(30, 2, cond=100.0)
    b = _rand((30,), 3)
    res = conjugate_gradient(Matrix(m), b, iterations=500, tol=1e-4)
    assert res.converged and res.iterations < 30
    assert float((b - m @ res.x).norm() / b.norm()) <= 1.01e-4
    fewer = conjugate_gradient(Matrix(m), b, iterations=res.iterations - 1)
    assert float(fewer.residual) > 1e-4  # it did not stop later than needed


def test_cg_batched_systems_are_independent():
    """Per-system step sizes: a batch of differently scaled systems gives each one's own CG run
    (one shared step size, batch_dims=0, would not)."""
    m = _spd(10, 4)
    scales = torch.tensor([1.0, 1e3, 1e-2], dtype=torch.float64)
    b = _rand((3, 10), 5)

    def op(x):  # three systems s_i M x_i = b_i
        return scales[:, None] * (x @ m.T)

    batched = conjugate_gradient(op, b, iterations=6, batch_dims=1)
    assert batched.residual.shape == (3,)
    for i in range(3):
        single = conjugate_gradient(lambda x, s=scales[i]: s * (x @ m.T), b[i], iterations=6)
        assert torch.allclose(batched.x[i], single.x, rtol=1e-10, atol=1e-14)
        assert float(batched.residual[i]) == pytest.approx(float(single.residual), rel=1e-8)
    joint = conjugate_gradient(op, b, iterations=6, batch_dims=0)
    assert not torch.allclose(joint.x, batched.x, rtol=1e-3)


def test_cg_warm_start_from_the_solution_stays_there():
    m = _spd(8, 6)
    b = _rand((8,), 7)
    exact = torch.linalg.solve(m, b)
    res = conjugate_gradient(Matrix(m), b, x0=exact, iterations=3)
    assert torch.allclose(res.x, exact, rtol=1e-10)


def _noisy_systems(sigmas, m=40, n=60, lam=0.1, seed=3):
    """Underdetermined ``(m < n)`` least-squares systems, one per noise level: the normal operator
    ``A^H A + lam I`` (batched over the first axis), ``A^H y``, ``||y||^2``, and ``A`` and ``y``."""
    g = torch.Generator().manual_seed(seed)
    k = len(sigmas)
    a = torch.randn(k, m, n, dtype=torch.complex128, generator=g) / m**0.5
    x = torch.randn(k, n, dtype=torch.complex128, generator=g)
    sig = torch.tensor(sigmas, dtype=torch.float64)
    y = torch.einsum("kmn,kn->km", a, x)
    y = y + sig[:, None] * torch.randn(k, m, dtype=torch.complex128, generator=g)

    def normal(v):
        return torch.einsum("kmn,km->kn", a.conj(), torch.einsum("kmn,kn->km", a, v)) + lam * v

    b = torch.einsum("kmn,km->kn", a.conj(), y)
    return normal, b, (y.abs() ** 2).sum(1), a, y


def test_cg_discrepancy_tracks_the_data_misfit_without_operator_calls():
    lam = 0.1
    normal, b, yy, a, y = _noisy_systems([0.05, 0.5], lam=lam)
    res = conjugate_gradient(
        normal, b, iterations=7, batch_dims=1, discrepancy=Discrepancy(yy, shift=lam)
    )
    direct = (torch.einsum("kmn,kn->km", a, res.x) - y).abs().pow(2).sum(1)
    assert torch.allclose(res.misfit, direct, rtol=1e-9)
    assert res.stops.tolist() == [7, 7] and not res.converged  # no bound: tracking only


def test_cg_discrepancy_stops_each_system_at_its_noise_level():
    """Morozov: each system stops at its first iterate whose misfit is at most its bound
    (here ``m sigma^2``); a system that stopped is frozen while the other runs on."""
    lam, m = 1e-3, 40
    sigmas = [0.05, 0.5]
    normal, b, yy, a, y = _noisy_systems(sigmas, m=m, lam=lam)
    bound = m * torch.tensor(sigmas, dtype=torch.float64) ** 2
    res = conjugate_gradient(
        normal, b, iterations=60, batch_dims=1, discrepancy=Discrepancy(yy, bound, lam)
    )
    assert res.converged and bool((res.misfit <= bound).all())
    noisy, clean = int(res.stops[1]), int(res.stops[0])
    assert noisy < clean  # more noise: fewer iterations before the data are fitted to it
    for k, stop in enumerate((clean, noisy)):
        alone = conjugate_gradient(
            lambda v, k=k: normal(torch.stack([v, v]))[k], b[k], iterations=stop
        )
        assert torch.allclose(res.x[k], alone.x, rtol=1e-8, atol=1e-10)
        one_less = conjugate_gradient(
            lambda v, k=k: normal(torch.stack([v, v]))[k], b[k], iterations=max(stop - 1, 1)
        )
        before = (a[k] @ one_less.x - y[k]).abs().pow(2).sum()
        assert stop == 1 or float(before) > float(bound[k])  # the first iterate that meets it


def test_cg_bad_arguments():
    b = _rand((2, 4), 0)
    with pytest.raises(MrphysError, match="iterations must be a positive integer"):
        conjugate_gradient(Identity(), b, iterations=0)
    with pytest.raises(MrphysError, match="tol must be None or a finite number >= 0"):
        conjugate_gradient(Identity(), b, tol=-1.0)
    with pytest.raises(MrphysError, match="batch_dims must lie in"):
        conjugate_gradient(Identity(), b, batch_dims=2)
    with pytest.raises(MrphysError, match="x0 must have the shape of b"):
        conjugate_gradient(Identity(), b, x0=torch.zeros(4, dtype=b.dtype))
    with pytest.raises(MrphysError, match="discrepancy shift must be finite and >= 0"):
        conjugate_gradient(Identity(), b, discrepancy=Discrepancy(1.0, shift=-1.0))


# --------------------------------------------------------------------------------------------
# least squares and FISTA
# --------------------------------------------------------------------------------------------


def test_least_squares_gradient_and_lipschitz():
    a = Matrix(_rand((9, 5), 0))
    y, w = _rand((9,), 1), torch.rand(9, generator=torch.Generator().manual_seed(2)).double()
    ls = LeastSquares(a, y, w)
    x = _rand((5,), 3).requires_grad_(True)
    f = 0.5 * (w * (a.forward(x) - y).abs() ** 2).sum()
    (g,) = torch.autograd.grad(f, x)  # torch's gradient of a real function of complex x
    assert torch.allclose(ls.gradient(x.detach()), g, rtol=1e-10)
    norm_w = operator_norm(Multiply(w.sqrt()) @ a, (5,), 500, 1e-12, dtype=torch.complex128)
    lip = ls.lipschitz(iterations=500)
    assert lip == pytest.approx(norm_w**2, rel=1e-4)
    assert lip == pytest.approx(float(torch.linalg.eigvalsh(a.m.mH @ (w[:, None] * a.m))[-1]), 1e-4)


def test_fista_solves_the_lasso():
    """LASSO ``1/2 |A x - y|^2 + lam |x|_1``: the FISTA limit is a fixed point of the proximal
    gradient map and beats a least-squares start on the objective."""
    a = Matrix(_rand((20, 12), 0))
    y = _rand((20,), 1)
    lam = 2.0
    ls = LeastSquares(a, y)
    step = 1.0 / ls.lipschitz(iterations=200)

    def objective(x):
        return float(0.5 * (a.forward(x) - y).norm() ** 2 + lam * x.abs().sum())

    def prox(v, s):
        return soft_threshold(v, s * lam)

    x0 = torch.zeros(12, dtype=torch.complex128)
    res = fista(ls.gradient, prox, x0, step, iterations=3000, tol=1e-12)
    assert res.converged and res.iterations < 3000
    fixed = prox(res.x - step * ls.gradient(res.x), step)
    assert torch.allclose(fixed, res.x, atol=1e-9)
    assert int((res.x.abs() < 1e-12).sum()) > 0  # the L1 term makes it sparse
    short = fista(ls.gradient, prox, x0, step, iterations=5)
    assert objective(res.x) < objective(short.x) < objective(x0)


def test_fista_without_a_regulariser_is_least_squares():
    a = _rand((15, 6), 2)
    y = _rand((15,), 3)
    ls = LeastSquares(Matrix(a), y)
    res = fista(ls.gradient, lambda v, s: v, ls.rhs, 1.0 / ls.lipschitz(50), iterations=2000)
    assert torch.allclose(res.x, torch.linalg.lstsq(a, y[:, None]).solution[:, 0], atol=1e-8)


def test_fista_bad_arguments():
    x = torch.zeros(3, dtype=torch.complex64)
    with pytest.raises(MrphysError, match="step must be a finite number > 0"):
        fista(lambda z: z, lambda v, s: v, x, step=0.0)
    with pytest.raises(MrphysError, match="iterations must be a positive integer"):
        fista(lambda z: z, lambda v, s: v, x, step=1.0, iterations=0)


# --------------------------------------------------------------------------------------------
# prox helpers
# --------------------------------------------------------------------------------------------


def test_soft_threshold_shrinks_the_magnitude_and_keeps_the_phase():
    x = torch.tensor([3 + 4j, 0.3j, -2.0, 0.0], dtype=torch.complex64)
    out = soft_threshold(x, 1.0)
    assert torch.allclose(out.abs(), torch.tensor([4.0, 0.0, 1.0, 0.0]))
    assert torch.allclose(out[0], torch.tensor(0.8 * (3 + 4j), dtype=torch.complex64))
    assert float(out[2].real) == pytest.approx(-1.0)


def test_singular_value_threshold_matches_an_svd():
    x = _rand((5, 4, 3), 0, torch.complex64)
    s = torch.linalg.svdvals(x.reshape(5, -1))
    thr = float(s[2])  # keeps the two largest, shrunk
    out = singular_value_threshold(x, thr)
    s_out = torch.linalg.svdvals(out.reshape(5, -1))
    assert torch.allclose(s_out[:2], s[:2] - thr, rtol=1e-4)
    assert float(s_out[2:].max()) < 1e-4 * float(s[0])


def test_temporal_tv_prox_two_frames_closed_form():
    """For two frames the TV prox moves both values towards each other by ``mu`` (or to the
    mean when they are closer than ``2 mu``)."""
    v = torch.tensor([[[0.0, 1.0]], [[3.0 + 4j, 1.2]]], dtype=torch.complex64)  # (2, 1, 2)
    mu = 0.5
    x, p = temporal_tv_prox(v, mu, torch.zeros(1, 1, 2, dtype=v.dtype), iterations=200)
    d = (v[1, 0, 0] - v[0, 0, 0]) / abs(v[1, 0, 0] - v[0, 0, 0])
    assert torch.allclose(x[0, 0, 0], v[0, 0, 0] + mu * d, atol=1e-5)
    assert torch.allclose(x[1, 0, 0], v[1, 0, 0] - mu * d, atol=1e-5)
    assert torch.allclose(x[:, 0, 1], torch.full((2,), 1.1, dtype=v.dtype), atol=1e-5)
    assert float(p.abs().max()) <= mu * (1 + 1e-6)  # the dual stays feasible


# --------------------------------------------------------------------------------------------
# CG-SENSE on any encoding
# --------------------------------------------------------------------------------------------


def _vd_lines(n: int, shift: int = 0) -> torch.Tensor:
    """Variable-density phase-encode mask ``(n, n)``: the central 8 lines, every 2nd line to
    |k| < 12, every 3rd beyond (about 1.85x undersampled)."""
    k = torch.arange(n) - n // 2
    rows = (k.abs() < 4) | ((k.abs() < 12) & ((k + shift) % 2 == 0)) | ((k + shift) % 3 == 0)
    return rows[:, None].expand(n, n)


def test_cg_sense_cartesian_beats_zero_filling_with_other_maps():
    """Noise-free Cartesian data made with birdcage maps at radius 1.5 is reconstructed with maps
    at radius 1.7 (not the maps that made it): CG-SENSE has less than half the error of
    zero-filling, for two frames with different masks solved as independent systems."""
    n = 48
    x = gach_shepp_logan(n).rho.to(torch.complex64)
    truth = torch.stack([x, x.flip(-1)])  # (T=2, Y, X)
    mask = torch.stack([_vd_lines(n), _vd_lines(n, shift=1)])[:, None]  # (T, 1, Y, X)
    made = SenseOp(birdcage_maps(8, (n, n), radius=1.5), CartesianFFT((n, n), mask))
    y = made.forward(truth)  # (T, C, Y, X)
    op = SenseOp(birdcage_maps(8, (n, n), radius=1.7), CartesianFFT((n, n), mask))
    res = B.cg_sense_operator(op, y, lam=1e-3, iterations=30)
    zero_filled = op.adjoint(y)

    def nrmse(z):
        return ((z - truth).flatten(1).norm(dim=1) / truth.flatten(1).norm(dim=1)).max()

    assert res.x.shape == truth.shape and res.residual.shape == (2,)
    assert float(nrmse(res.x)) < 0.5 * float(nrmse(zero_filled))
    # the frames are independent systems: frame 1 alone gives the same image
    single = B.cg_sense_operator(
        SenseOp(op.maps, CartesianFFT((n, n), mask[1])), y[1:], lam=1e-3, iterations=30
    )
    assert torch.allclose(single.x[0], res.x[1], rtol=1e-4, atol=1e-5)


def test_mean_eigenvalue_is_the_trace_of_the_normal_operator():
    """m = trace(A^H A) / (T Y X), checked against a Hutchinson-free exact sum over unit images."""
    data = simulate_radial(synthetic_cine(2, 8, seed=1), spokes=3, coils=2, snr=None, seed=0)
    op = data.operator()
    t, (ny, nx) = data.n_frames, data.im_size
    eye = torch.eye(ny * nx, dtype=torch.complex128).reshape(ny * nx, 1, ny, nx)
    cols = op.forward(eye.expand(-1, t, -1, -1).contiguous())  # (P, T, C, S, N)
    trace = float((cols.abs() ** 2).sum()) / (t * ny * nx)
    assert B._mean_eigenvalue(data) == pytest.approx(trace, rel=1e-4)


def test_cg_sense_radial_is_the_operator_solver():
    data = simulate_radial(synthetic_cine(3, 16, seed=0), spokes=6, coils=3, snr=30.0, seed=0)
    # density=False: plain least squares, lam relative to the mean eigenvalue of A^H A
    via_data = B.cg_sense(data, iterations=8, tol=None, density=False, tau=None)
    lam = B.DEFAULTS["cg_sense"]["lam"] * B._mean_eigenvalue(data)
    res = B.cg_sense_operator(data.operator(), data.kspace, None, lam=lam, iterations=8)
    assert torch.equal(via_data, res.x.to(torch.complex64))
    assert res.iterations == 8 and res.residual.shape == (3,)
    # the discrepancy stop: the same as the operator solver given the noise variance
    stopped = B.cg_sense(data, iterations=30, tol=None, density=False)
    s2 = data.meta["noise_std"] ** 2
    res_s = B.cg_sense_operator(
        data.operator(), data.kspace, None, lam=lam, iterations=30, noise_var=s2, tau=1.0
    )
    assert torch.equal(stopped, res_s.x.to(torch.complex64))
    assert res_s.converged and int(res_s.stops.max()) < 30
    noise_energy = s2 * data.kspace[0].numel()
    assert bool((res_s.misfit <= noise_energy).all())
    # density=True: the density-weighted normal equations
    w = data.dcf[:, None]
    weighted = B.cg_sense(data, iterations=8, tol=None, density=True, tau=None)
    lam_w = B.DEFAULTS["cg_sense"]["lam"] * B._mean_eigenvalue(data, w)
    res_w = B.cg_sense_operator(data.operator(), data.kspace, w, lam=lam_w, iterations=8)
    assert torch.equal(weighted, res_w.x.to(torch.complex64))
    early = B.cg_sense_operator(
        data.operator(), data.kspace, data.dcf[:, None], iterations=100, tol=1e-3
    )
    assert early.converged and early.iterations < 100
    assert float(early.residual.max()) <= 1e-3


def test_admm_temporal_tv_denoising_matches_the_dual_prox():
    """ADMM with A = I and K = D_t is TV denoising: its limit is the exact TV prox."""
    g = torch.Generator().manual_seed(3)
    v = torch.randn(6, 3, 2, generator=g, dtype=torch.complex128)
    mu = 0.3
    exact, _ = temporal_tv_prox(v, mu, torch.zeros(5, 3, 2, dtype=v.dtype), iterations=3000)
    res = admm(
        LeastSquares(Identity(), v),
        FiniteDifference(0),
        lambda z, step: soft_threshold(z, step * mu),
        rho=1.0,
        iterations=400,
        inner=3,
        tol=1e-12,
    )
    assert torch.allclose(res.x, exact, atol=1e-6)
    seen = []
    admm(LeastSquares(Identity(), v), FiniteDifference(0),
         lambda z, step: soft_threshold(z, step * mu), rho=1.0, iterations=3,
         callback=lambda k, x: seen.append(k))  # fmt: skip
    assert seen == [1, 2, 3]
    with pytest.raises(MrphysError, match="rho must be a finite number > 0"):
        admm(LeastSquares(Identity(), v), FiniteDifference(0), lambda z, s: z, rho=0.0)
    with pytest.raises(MrphysError, match="inner must be a positive integer"):
        admm(LeastSquares(Identity(), v), FiniteDifference(0), lambda z, s: z, rho=1.0, inner=0)
