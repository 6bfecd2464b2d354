"""Fisher information and Cramer-Rao lower bounds of signal models in Gaussian noise.

The one home of the bound for every model of the project (relaxometry uncertainty maps,
protocol design). A model maps real parameters ``p`` ``(..., P)`` to a signal ``s(p)``
``(..., M)``, real or complex, vectorised over the leading voxel axes. With noise that is
Gaussian, white and of standard deviation ``sigma`` in each real channel (for complex data: in the
real and in the imaginary part, independent, the convention of
:func:`mrphys.physics.noise.sigma_relax` with ``per_channel=True``), the Fisher information is

    F = Re(J^H J) / sigma^2,   J[m, i] = d s_m / d p_i,

and the covariance of any unbiased estimator is at least ``F^-1`` (Cramer-Rao). Parameters the
data cannot identify (``F`` singular) get an infinite bound.

Jacobians come from forward-mode automatic differentiation (one ``jvp`` per parameter, each
vectorised over all voxels), so any differentiable model written with torch works unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.func import jvp

from mrphys.errors import check

__all__ = [
    "CramerRao",
    "jacobian",
    "fisher_information",
    "cramer_rao",
    "cramer_rao_from_jacobian",
]

#: eigenvalues of the scale-normalised Fisher matrix below this fraction of the largest count as
#: zero: the directions they span are not identified by the data (infinite bound)
RCOND = 1e-10


def jacobian(model: Callable[[torch.Tensor], torch.Tensor], params: torch.Tensor) -> torch.Tensor:
    """``J[..., m, i] = d s_m / d p_i`` of a model vectorised over leading axes.

    Args:
        model: maps real ``(..., P)`` to real or complex ``(..., M)``; voxels must not interact.
        params: real ``(..., P)``.
    Returns:
        ``(..., M, P)`` of the model's output dtype.
    """
    check(params.dim() >= 1, "params must have a last axis of parameters (..., P).")
    check(params.is_floating_point(), f"params must be real; got {params.dtype}.")
    cols = []
    for i in range(params.shape[-1]):
        tangent = torch.zeros_like(params)
        tangent[..., i] = 1.0
        _, d = jvp(model, (params,), (tangent,))
        cols.append(d)
    return torch.stack(cols, dim=-1)


def fisher_information(jac: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """``F = Re(J^H J) / sigma^2`` ``(..., P, P)`` from a Jacobian ``(..., M, P)``.

    ``sigma``: noise standard deviation per real channel, a number or a tensor broadcastable to
    the leading axes ``(...)``.
    """
    f = (jac.conj().transpose(-1, -2) @ jac).real
    if isinstance(sigma, torch.Tensor):
        s2 = (sigma.to(f.dtype) ** 2)[..., None, None]
    else:
        check(float(sigma) > 0, f"sigma must be positive; got {sigma}.")
        s2 = float(sigma) ** 2
    return f / s2


@dataclass(frozen=True)
class CramerRao:
    """Cramer-Rao bound of every parameter.

    Attributes:
        variance: ``(..., P)`` lower bounds of the variances (``inf`` where not identified).
        fisher: ``(..., P, P)`` Fisher information.
    """

    variance: torch.Tensor
    fisher: torch.Tensor

    @property
    def std(self) -> torch.Tensor:
        """``(..., P)`` lower bounds of the standard deviations."""
        return self.variance.sqrt()


def _inverse_diagonal(fisher: torch.Tensor, rcond: float) -> torch.Tensor:
    """Diagonal of ``F^-1``, ``inf`` for parameters in a non-identified direction.

    The Fisher matrix is first normalised to unit diagonal (parameters of different units). Voxels
    whose normalised matrix is well conditioned are inverted by Cholesky (smooth gradients for
    design); the others by eigen-decomposition, dropping the directions below ``rcond``.
    """
    d = torch.diagonal(fisher, dim1=-2, dim2=-1)
    scale = torch.where(d > 0, d.clamp_min(torch.finfo(d.dtype).tiny).rsqrt(), torch.zeros_like(d))
    fn = fisher * scale[..., :, None] * scale[..., None, :]
    tiny = torch.finfo(fn.dtype).tiny
    eye = torch.eye(fn.shape[-1], dtype=fn.dtype, device=fn.device)
    with torch.no_grad():
        # eigenvalues decide which voxels are (numerically) singular; eigenvectors are only
        # needed for those, so the full decomposition runs on that subset alone
        evals = torch.linalg.eigvalsh(fn)
        singular = ~(evals > rcond * evals[..., -1:].clamp_min(tiny)).all(-1)
        _, info = torch.linalg.cholesky_ex(torch.where(singular[..., None, None], eye, fn))
        singular = singular | (info != 0)  # numerically not positive definite: eigen path
        var_eig = torch.zeros_like(d)
        lost = torch.zeros_like(d, dtype=torch.bool)
        if bool(singular.any()):
            ev, vec = torch.linalg.eigh(fn[singular])
            ok = ev > rcond * ev[..., -1:].clamp_min(tiny)
            inv_ev = torch.where(ok, 1.0 / ev.clamp_min(tiny), 0.0)
            var_eig[singular] = (vec**2 * inv_ev[..., None, :]).sum(-1)
            # a parameter with weight on a dropped direction is not identified
            lost[singular] = (vec**2 * (~ok)[..., None, :]).sum(-1) > 1e-6
        lost = lost | (d <= 0)
    chol = torch.linalg.cholesky(torch.where(singular[..., None, None], eye, fn))
    var_chol = torch.diagonal(torch.cholesky_inverse(chol), dim1=-2, dim2=-1)
    var_n = torch.where(singular[..., None], var_eig, var_chol)
    var = var_n * scale**2
    return torch.where(lost, torch.full_like(var, float("inf")), var)


def cramer_rao(
    model: Callable[[torch.Tensor], torch.Tensor],
    params: torch.Tensor,
    sigma: float | torch.Tensor,
    *,
    rcond: float = RCOND,
) -> CramerRao:
    """Cramer-Rao lower bounds of all parameters of ``model`` at ``params``.

    Args:
        model: maps real ``(..., P)`` to real or complex ``(..., M)``, vectorised over ``...``,
            differentiable (forward mode).
        params: real ``(..., P)``; use float64 for well-conditioned bounds.
        sigma: noise standard deviation per real channel (number, or ``(...)`` tensor).
        rcond: relative eigenvalue threshold of the scale-normalised Fisher matrix below which a
            direction counts as not identified.
    Returns:
        :class:`CramerRao` (variances ``(..., P)``, ``inf`` where not identified). The result is
        differentiable with respect to anything ``model`` closes over (protocol design).
    """
    return cramer_rao_from_jacobian(jacobian(model, params), sigma, rcond=rcond)


def cramer_rao_from_jacobian(
    jac: torch.Tensor, sigma: float | torch.Tensor, *, rcond: float = RCOND
) -> CramerRao:
    """:func:`cramer_rao` from a Jacobian ``(..., M, P)`` computed elsewhere (e.g. by finite
    differences or in closed form)."""
    fisher = fisher_information(jac, sigma)
    return CramerRao(variance=_inverse_diagonal(fisher, rcond), fisher=fisher)
