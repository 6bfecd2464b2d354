"""Solvers that take any operator: conjugate gradients, FISTA, power iteration; prox helpers.

Every solver works on :class:`~mrphys.physics.linop.Linop` objects (or plain callables), so a
reconstruction is a short composition: an encoding ``A`` (Cartesian or radial, simulated or
measured), optional data weights ``W`` and a regulariser.

- :class:`LeastSquares`: the smooth data term ``f(x) = 1/2 || W^(1/2) (A x - y) ||^2`` with its
  normal operator ``A^H W A``, right-hand side ``A^H W y``, gradient and Lipschitz constant.
- :func:`conjugate_gradient`: CG on a Hermitian positive semi-definite system ``N x = b``, e.g. the
  regularised normal equations ``(A^H W A + lam I) x = A^H W y``; ``batch_dims`` leading axes
  index independent systems solved together (one operator call per step, separate step sizes).
- :func:`fista`: accelerated proximal gradient for ``f(x) + g(x)`` from a gradient of ``f``, a
  proximal map of ``g`` and a step (``1 / L``, ``L`` from :meth:`LeastSquares.lipschitz`).
- :func:`admm`: ``f(x) + g(K x)`` for a least-squares ``f`` and a linear ``K`` (e.g. temporal
  differences), the ``x`` step a few warm-started CG iterations on ``A^H W A + rho K^H K``.
- :func:`power_iteration`, :func:`operator_norm` (from :mod:`mrphys.physics.linop`).
- Prox helpers: :func:`soft_threshold`, :func:`singular_value_threshold`,
  :func:`temporal_tv_prox`.

Stopping rules: every solver runs at most ``iterations`` steps; a ``tol`` (off by default, so a
fixed count gives the same numbers as before) stops earlier, on the relative residual (CG) or the
relative change of the iterate (FISTA). CG also takes a :class:`Discrepancy`: it then tracks the
data misfit ``||W^(1/2) (A x - y)||^2`` of every system at no extra operator call and stops each
system once its misfit is at most a bound (Morozov's discrepancy principle, e.g.
``tau * sum(W) * sigma^2`` for noise of variance ``sigma^2`` per sample). :class:`SolverResult`
reports the iterations run.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from mrphys.errors import check
from mrphys.physics.linop import (
    FiniteDifference,
    Identity,
    Linop,
    Multiply,
    PowerIteration,
    operator_norm,
    power_iteration,
)

__all__ = [
    "LeastSquares",
    "PowerIteration",
    "admm",
    "Discrepancy",
    "SolverResult",
    "conjugate_gradient",
    "fista",
    "operator_norm",
    "power_iteration",
    "singular_value_threshold",
    "soft_threshold",
    "temporal_tv_prox",
]

Operator = Linop | Callable[[torch.Tensor], torch.Tensor]
Prox = Callable[[torch.Tensor, float], torch.Tensor]


@dataclass
class SolverResult:
    """What an iterative solver returns.

    Attributes:
        x: the last iterate, the shape of the unknown.
        iterations: the number of iterations run (``<= iterations`` asked for).
        converged: whether the tolerance was met (False where no ``tol`` was given).
        residual: CG: the relative residual ``||b - N x|| / ||b||`` per system, shape of the
            ``batch_dims`` leading axes (``()`` for one system); FISTA: the relative change
            ``||x_k - x_(k-1)|| / ||x_k||`` of the last step, a 0-dim tensor. Dimensionless.
        misfit: CG with a :class:`Discrepancy`: the data misfit ``||W^(1/2) (A x - y)||^2`` per
            system at the returned ``x`` (float64, shape of the ``batch_dims`` axes, units of
            ``|y|^2``); None otherwise.
        stops: CG with a :class:`Discrepancy`: the iterations each system ran before its misfit
            met the bound (``iterations`` run where it never did), int64, shape of the
            ``batch_dims`` axes; None otherwise.
    """

    x: torch.Tensor
    iterations: int
    converged: bool
    residual: torch.Tensor
    misfit: torch.Tensor | None = None
    stops: torch.Tensor | None = None


@dataclass
class Discrepancy:
    """The data misfit of CG on least-squares normal equations, and the discrepancy-principle stop.

    For ``N = A^H W A + shift * I`` and ``b = A^H W y`` the misfit of an iterate is, without
    another operator call (``N x = b - r`` is CG's own residual ``r``),

        ||W^(1/2) (A x - y)||^2 = ||W^(1/2) y||^2 - 2 Re <x, b> + <x, N x> - shift ||x||^2

    (accumulated in float64). With white noise of variance ``sigma^2`` per sample the misfit of the
    true image is about ``sum(W) * sigma^2``; Morozov's discrepancy principle stops an iterative
    solver at the first iterate whose misfit is at most ``tau`` times that (``tau >= 1``): fitting
    the data more closely fits the noise.

    Attributes:
        data_norm2: ``||W^(1/2) y||^2`` per system, a tensor broadcasting against the ``batch_dims``
            axes of ``b`` (or a float).
        bound: stop a system once its misfit is at most this (per system, broadcasting like
            ``data_norm2``); None tracks the misfit without stopping.
        shift: the ``shift * I`` part of ``N`` (e.g. the Tikhonov weight), ``>= 0``.
    """

    data_norm2: torch.Tensor | float
    bound: torch.Tensor | float | None = None
    shift: float = 0.0


def _apply(op: Operator) -> Callable[[torch.Tensor], torch.Tensor]:
    return op.forward if isinstance(op, Linop) else op


def _check_stopping(iterations: int, tol: float | None) -> None:
    check(int(iterations) >= 1, f"iterations must be a positive integer; got {iterations}.")
    check(
        tol is None or (tol >= 0 and math.isfinite(tol)),
        f"tol must be None or a finite number >= 0; got {tol}.",
    )


class LeastSquares:
    """The data term ``f(x) = 1/2 || W^(1/2) (A x - y) ||^2`` of an encoding ``A``.

    Args:
        op: the encoding ``A`` (any :class:`~mrphys.physics.linop.Linop`).
        y: the measured data, the shape of ``A``'s output (e.g. ``(T, C, K)`` radial k-space).
        weights: optional real non-negative weights ``W`` that broadcast against ``y`` (e.g. the
            density compensation ``dcf[:, None]``, ``(T, 1, K)``); None for ``W = I``.

    ``normal`` is ``A^H W A`` (a :class:`Linop`), ``rhs`` is ``A^H W y`` (computed once), and
    ``gradient(x) = A^H W A x - A^H W y``.
    """

    def __init__(self, op: Linop, y: torch.Tensor, weights: torch.Tensor | None = None):
        check(isinstance(op, Linop), f"the encoding must be a Linop; got {type(op).__name__}.")
        check(isinstance(y, torch.Tensor), f"the data y must be a tensor; got {type(y).__name__}.")
        self.op = op
        self.y = y
        self.weight: Linop = Identity() if weights is None else Multiply(weights)
        self.normal: Linop = op.H @ op if weights is None else op.H @ self.weight @ op
        self._rhs: torch.Tensor | None = None

    @property
    def rhs(self) -> torch.Tensor:
        """``A^H W y``, the shape of the unknown (e.g. the gridding image ``(T, Y, X)``)."""
        if self._rhs is None:
            self._rhs = self.op.adjoint(self.weight.forward(self.y))
        return self._rhs

    def gradient(self, x: torch.Tensor) -> torch.Tensor:
        """``grad f(x) = A^H W A x - A^H W y``, the shape of ``x``."""
        return self.normal.forward(x) - self.rhs

    def lipschitz(self, iterations: int = 12, generator: torch.Generator | None = None) -> float:
        """The Lipschitz constant of ``grad f``: the largest eigenvalue of ``A^H W A`` by
        :func:`power_iteration` from a seeded Gaussian start the shape of ``rhs``."""
        b = self.rhs
        res = power_iteration(
            self.normal, tuple(b.shape), iterations, None, generator, b.dtype, b.device
        )
        return res.value


def conjugate_gradient(
    op: Operator,
    b: torch.Tensor,
    x0: torch.Tensor | None = None,
    iterations: int = 20,
    tol: float | None = None,
    batch_dims: int = 0,
    progress: bool = False,
    desc: str = "CG",
    discrepancy: Discrepancy | None = None,
) -> SolverResult:
    """Conjugate gradients for ``N x = b`` with ``N`` Hermitian positive semi-definite.

    Args:
        op: ``N`` as a :class:`Linop` or callable, e.g. ``A.H @ W @ A + lam * Identity()``.
        b: right-hand side, the shape of ``x``, e.g. ``(T, Y, X)``.
        x0: start (default zero).
        iterations: the most CG steps (>= 1).
        tol: stop once every system's relative residual ``||b - N x|| / ||b||`` is at most
            ``tol``; None (default) runs all ``iterations``.
        batch_dims: the number of leading axes of ``b`` that index independent systems, each with
            its own step sizes (``N`` must not couple them). ``batch_dims=1`` on ``(T, Y, X)``
            runs ``T`` independent per-frame CG runs in one batch.
        progress: show a tqdm bar labelled ``desc``.
        discrepancy: for normal equations ``N = A^H W A + shift I``, ``b = A^H W y``: track each
            system's data misfit and, where it has a ``bound``, freeze each system at the first
            iterate whose misfit is at most its bound (the others run on; the loop ends once all
            are frozen). A frozen system's search direction is zero from then on, so ``op`` may
            skip the systems whose input is zero (``N 0 = 0``). See :class:`Discrepancy`.

    Returns:
        :class:`SolverResult` with ``x`` the shape of ``b`` (and ``misfit``, ``stops`` with a
        ``discrepancy``).
    """
    _check_stopping(iterations, tol)
    check(
        0 <= int(batch_dims) < max(b.ndim, 1),
        f"batch_dims must lie in [0, {max(b.ndim - 1, 0)}] for b of shape {tuple(b.shape)}; "
        f"got {batch_dims}.",
    )
    apply = _apply(op)
    dims = tuple(range(int(batch_dims), b.ndim))

    def dot(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:  # real part of <u, v> per system
        return (u.conj() * v).real.sum(dim=dims, keepdim=True)

    tiny = torch.finfo(b.real.dtype).tiny
    if x0 is None:
        x = torch.zeros_like(b)
        r = b.clone()
    else:
        check(x0.shape == b.shape, f"x0 must have the shape of b {tuple(b.shape)}; got {x0.shape}.")
        x = x0
        r = b - apply(x0)
    p = r.clone()
    rs = dot(r, r)
    b_norm = torch.sqrt(dot(b, b)).clamp(min=tiny)
    batch = tuple(b.shape[: int(batch_dims)])
    misfit = stops = bound = None
    active = None
    if discrepancy is not None:
        check(
            discrepancy.shift >= 0 and math.isfinite(discrepancy.shift),
            f"the discrepancy shift must be finite and >= 0; got {discrepancy.shift}.",
        )
        keep = (1,) * (b.ndim - int(batch_dims))
        yy = torch.as_tensor(discrepancy.data_norm2, dtype=torch.float64, device=b.device)
        yy = torch.broadcast_to(yy, batch).reshape(batch + keep)
        if discrepancy.bound is not None:
            bound = torch.as_tensor(discrepancy.bound, dtype=torch.float64, device=b.device)
            bound = torch.broadcast_to(bound, batch).reshape(batch + keep)
        shift = float(discrepancy.shift)

        def data_misfit() -> torch.Tensor:  # yy - 2 Re<x, b> + <x, N x> - shift |x|^2, N x = b - r
            return yy - 2 * dot64(x, b) + dot64(x, b - r) - shift * dot64(x, x)

        def dot64(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            return (u.conj() * v).real.to(torch.float64).sum(dim=dims, keepdim=True)

        misfit = data_misfit()
        stops = torch.zeros(batch + keep, dtype=torch.int64, device=b.device)
        if bound is not None:
            active = misfit > bound
            p = torch.where(active, p, torch.zeros_like(p))
    done, converged = 0, False
    for _ in tqdm(range(int(iterations)), desc=desc, disable=not progress, leave=False):
        if active is not None and not bool(active.any()):
            break
        ap = apply(p)
        alpha = rs / torch.clamp(dot(p, ap), min=tiny)
        if active is not None:
            alpha = torch.where(active, alpha, torch.zeros_like(alpha))  # frozen systems stay put
        x = x + alpha * p
        r = r - alpha * ap
        rs_new = dot(r, r)
        p = r + (rs_new / torch.clamp(rs, min=tiny)) * p
        rs = rs_new
        done += 1
        if misfit is not None:
            misfit = data_misfit()
            if active is None:
                stops += 1
            else:
                stops += active.to(torch.int64)
                active = active & (misfit > bound)
                p = torch.where(active, p, torch.zeros_like(p))  # frozen: a zero direction
        if tol is not None and bool((torch.sqrt(rs) <= tol * b_norm).all()):
            converged = True
            break
    if active is not None and not bool(active.any()):
        converged = True
    residual = (torch.sqrt(rs) / b_norm).reshape(batch)
    if misfit is not None:
        misfit, stops = misfit.reshape(batch), stops.reshape(batch)
    return SolverResult(x, done, converged, residual, misfit, stops)


def fista(
    gradient: Callable[[torch.Tensor], torch.Tensor],
    prox: Prox,
    x0: torch.Tensor,
    step: float,
    iterations: int = 30,
    tol: float | None = None,
    progress: bool = False,
    desc: str = "FISTA",
) -> SolverResult:
    """FISTA (Beck and Teboulle 2009) for ``min f(x) + g(x)``, ``f`` smooth, ``g`` with a prox.

    Each step: ``x_k = prox(z - step * grad f(z), step)``,
    ``t_(k+1) = (1 + sqrt(1 + 4 t_k^2)) / 2``, ``z = x_k + (t_k - 1) / t_(k+1) * (x_k - x_(k-1))``,
    from ``z = x = x0``, ``t = 1``.

    Args:
        gradient: ``grad f``, e.g. :meth:`LeastSquares.gradient`.
        prox: ``prox(v, step) = argmin_x g(x) * step + 1/2 ||x - v||^2`` (a prox helper with its
            weight bound in, may keep warm-start state between calls).
        x0: start, the shape of the unknown.
        step: the step size, at most ``1 / L`` (``L`` the Lipschitz constant of ``grad f``).
        iterations: the most steps (>= 1).
        tol: stop once ``||x_k - x_(k-1)|| <= tol * ||x_k||``; None (default) runs all steps.
        progress: show a tqdm bar labelled ``desc``.

    Returns:
        :class:`SolverResult`; ``residual`` is the last relative change.
    """
    _check_stopping(iterations, tol)
    check(step > 0 and math.isfinite(step), f"step must be a finite number > 0; got {step}.")
    x = x0.clone()
    z = x.clone()
    tk = 1.0
    done, converged = 0, False
    change = torch.tensor(float("nan"))
    for _ in tqdm(range(int(iterations)), desc=desc, disable=not progress, leave=False):
        x_new = prox(z - step * gradient(z), step)
        tk_new = 0.5 * (1 + math.sqrt(1 + 4 * tk * tk))
        z = x_new + ((tk - 1) / tk_new) * (x_new - x)
        change = torch.linalg.vector_norm(x_new - x) / torch.linalg.vector_norm(x_new).clamp(
            min=torch.finfo(x_new.real.dtype).tiny
        )
        x, tk = x_new, tk_new
        done += 1
        if tol is not None and float(change) <= tol:
            converged = True
            break
    return SolverResult(x, done, converged, change)


def admm(
    ls: LeastSquares,
    transform: Linop,
    prox: Prox,
    rho: float,
    iterations: int = 20,
    inner: int = 4,
    x0: torch.Tensor | None = None,
    tol: float | None = None,
    progress: bool = False,
    desc: str = "ADMM",
    callback: Callable[[int, torch.Tensor], None] | None = None,
) -> SolverResult:
    """ADMM (scaled form, Boyd et al. 2011) for ``min_x f(x) + g(K x)``, ``f`` a least-squares
    data term.

    With ``z = K x`` and the scaled dual ``u``, each iteration is

        x <- argmin f(x) + rho/2 ||K x - z + u||^2   (``inner`` CG steps on
             ``(A^H W A + rho K^H K) x = A^H W y + rho K^H (z - u)``, warm started at ``x``)
        z <- prox_g(K x + u, 1 / rho)
        u <- u + K x - z

    Args:
        ls: the data term ``f`` (:class:`LeastSquares`).
        transform: ``K`` (a :class:`Linop`, e.g. ``FiniteDifference(0)``).
        prox: ``prox(v, step)`` of ``g`` (``argmin g(z) * step + 1/2 ||z - v||^2``).
        rho: the penalty ``> 0``, in the units of ``A^H W A``.
        iterations: the most outer iterations (>= 1).
        inner: CG steps per ``x`` update (>= 1).
        x0: start (default: ``2 * inner`` CG steps on ``(A^H W A + rho K^H K) x = A^H W y``).
        tol: stop once ``||x_k - x_(k-1)|| <= tol * ||x_k||``; None runs all iterations.
        progress: show a tqdm bar labelled ``desc``.
        callback: ``callback(k, x)`` after every outer iteration (monitoring only).

    Returns:
        :class:`SolverResult`; ``residual`` is the last relative change of ``x``.
    """
    _check_stopping(iterations, tol)
    check(int(inner) >= 1, f"inner must be a positive integer; got {inner}.")
    check(rho > 0 and math.isfinite(rho), f"rho must be a finite number > 0; got {rho}.")
    b = ls.rhs
    normal = ls.normal + rho * (transform.H @ transform)
    if x0 is None:
        x = conjugate_gradient(normal, b, iterations=2 * int(inner)).x
    else:
        x = x0.clone()
    kx = transform.forward(x)
    z = kx.clone()
    u = torch.zeros_like(kx)
    done, converged = 0, False
    change = torch.tensor(float("nan"))
    for _ in tqdm(range(int(iterations)), desc=desc, disable=not progress, leave=False):
        rhs = b + rho * transform.adjoint(z - u)
        x_new = conjugate_gradient(normal, rhs, x0=x, iterations=int(inner)).x
        kx = transform.forward(x_new)
        z = prox(kx + u, 1.0 / rho)
        u = u + kx - z
        change = torch.linalg.vector_norm(x_new - x) / torch.linalg.vector_norm(x_new).clamp(
            min=torch.finfo(x_new.real.dtype).tiny
        )
        x = x_new
        done += 1
        if callback is not None:
            callback(done, x)
        if tol is not None and float(change) <= tol:
            converged = True
            break
    return SolverResult(x, done, converged, change)


# --------------------------------------------------------------------------------------------
# proximal helpers
# --------------------------------------------------------------------------------------------


def soft_threshold(x: torch.Tensor, thr: float) -> torch.Tensor:
    """Complex soft thresholding ``x * max(1 - thr / |x|, 0)``: the prox of ``thr * ||x||_1``."""
    mag = x.abs()
    return x * torch.clamp(1 - thr / torch.clamp(mag, min=1e-30), min=0.0)


def singular_value_threshold(x: torch.Tensor, thr: float) -> torch.Tensor:
    """Singular value thresholding of the Casorati matrix ``(T, Y*X)`` of ``x`` ``(T, Y, X)`` at
    ``thr``: the prox of ``thr * ||X||_*`` (nuclear norm).

    Through the ``T x T`` Gram matrix (``T`` frames << ``Y*X`` pixels): with ``X X^H = U W U^H``,
    ``SVT(X) = U diag(max(sigma - thr, 0) / sigma) U^H X``, ``sigma = sqrt(W)``; the Gram matrix
    and its eigendecomposition are computed in double precision.
    """
    t = x.shape[0]
    m = x.reshape(t, -1)
    m64 = m.to(torch.complex128)
    w, u = torch.linalg.eigh(m64 @ m64.mH)
    sig = torch.sqrt(torch.clamp(w, min=0.0))
    keep = torch.where(sig > thr, (sig - thr) / torch.clamp(sig, min=1e-300), torch.zeros_like(sig))
    proj = (u * keep.to(u.dtype)) @ u.mH  # (T, T)
    return (proj.to(m.dtype) @ m).reshape(x.shape)


def temporal_tv_prox(
    v: torch.Tensor, mu: float, p: torch.Tensor, iterations: int = 20
) -> tuple[torch.Tensor, torch.Tensor]:
    """``argmin_x 1/2 ||x - v||^2 + mu sum_t |x[t+1] - x[t]|`` for ``v`` ``(T, Y, X)`` complex
    (per pixel), by projected gradient on the dual (step 1/4, ``||D||^2 <= 4``).

    Args:
        v: the point ``(T, Y, X)``.
        mu: the TV weight (>= 0), in the units of ``v``.
        p: the dual variable ``(T-1, Y, X)`` to start from (zeros, or the last call's for a warm
            start).
        iterations: dual steps.

    Returns:
        The minimiser ``(T, Y, X)`` and the final dual ``(T-1, Y, X)``.
    """
    d = FiniteDifference(dim=0)
    for _ in range(iterations):
        q = p + 0.25 * d.forward(v - d.adjoint(p))
        p = q / torch.clamp(q.abs() / mu, min=1.0)  # project onto |p| <= mu
    return v - d.adjoint(p), p
