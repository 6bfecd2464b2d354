"""How far to trust each voxel of a relaxometry fit: residual, quality mask, uncertainty.

- **Residual**: the fitted T1, T2 (and off-resonance) are put back through the signal model
  (:func:`mrphys.physics.ssfp.pc_bssfp_signal`, the voxel's B1); the complex amplitude ``M0`` is
  fitted by linear least squares, and the residual is the relative misfit
  ``||S - M0 s(T1, T2, theta)|| / ||S||`` over the phase cycles (0 = perfect). Methods that give
  no off-resonance (MIRACLE, the magnitude networks) get the ``theta`` that minimises the misfit
  (a grid of ``2N`` values, then a golden-section search on the best cell to 1e-3 rad).
- **Noise level**: from the residuals, ``sigma^2 = median_v ||r_v||^2 / chi2med(2N - 5)`` per
  real channel: the median over the fitted voxels (robust to the few that fit badly) of the
  squared misfit, divided by the median of a chi-square with ``2N - 5`` degrees of freedom
  (2N real samples, five real unknowns T1, T2, theta and the complex M0). White noise of one
  level over the volume is assumed; give ``noise_sd`` when it is known (e.g. from a noise scan).
- **Uncertainty** (standard deviations of T1 and T2):

  * PLANET: the Cramer-Rao bound of the full complex signal model
    (:func:`mrphys.physics.ssfp.pc_bssfp_cramer_rao`: unknowns T1, T2, complex M0, theta; B1
    known) at the fitted values and the estimated noise.
  * MIRACLE and the magnitude networks (which see ``|F_-1|, |F_0|, |F_1|`` and B1): the
    Cramer-Rao bound of those three magnitudes (unknowns T1, T2 and ``|M0|``; noise
    ``sigma / sqrt N`` per real channel of each configuration, the magnitude noise at high SNR).
    The fit is exactly determined (two ratios, two unknowns), so the bound is the delta-method
    variance of the estimator itself.
  * complex networks (which see the three complex configurations): the bound of those (unknowns
    T1, T2, theta, complex M0).
  * a network with heteroscedastic outputs (trained with ``TrainConfig(heteroscedastic=True)``)
    reports its own predicted standard deviations instead.

  Which estimate is calibrated is measured in ``scripts/relax_calibration.py`` (docs/relax.md).
- **Quality**: converged (the method's own flag), inside the parameter box (not at its edge) and
  residual at most :data:`MAX_RESIDUAL`.
"""

from __future__ import annotations

import math

import torch

from mrphys.physics.crlb import cramer_rao_from_jacobian
from mrphys.physics.ssfp import configurations, pc_bssfp_signal
from mrphys.relax.data import Protocol

__all__ = [
    "MAX_RESIDUAL",
    "resimulate",
    "noise_from_residuals",
    "noise_from_fit",
    "refine_fit",
    "crb_full",
    "crb_configurations",
]

#: the residual (relative misfit) above which a voxel fails the quality mask
MAX_RESIDUAL = 0.1

_INV_PHI = (math.sqrt(5.0) - 1.0) / 2.0


def _model(t1, t2, b1, theta, protocol: Protocol) -> torch.Tensor:
    return pc_bssfp_signal(t1, t2, b1, theta, **protocol.signal_kwargs())


def _misfit(s: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(||S - c m||^2, c)`` with the least-squares complex amplitude ``c`` (per voxel)."""
    mm = (m.real**2 + m.imag**2).sum(-1).clamp_min(1e-300)
    c = (m.conj() * s).sum(-1) / mm
    ss = (s.real**2 + s.imag**2).sum(-1)
    return (ss - (c.real**2 + c.imag**2) * mm).clamp_min(0.0), c


def resimulate(
    signals: torch.Tensor,
    b1: torch.Tensor,
    t1: torch.Tensor,
    t2: torch.Tensor,
    theta: torch.Tensor | None,
    protocol: Protocol,
) -> dict[str, torch.Tensor]:
    """Re-simulate fitted voxels and measure the misfit.

    Args:
        signals: complex ``(M, N)`` measured signals (any common phase).
        b1: ``(M,)``; t1, t2: ``(M,)`` fitted, s; theta: ``(M,)`` rad or None (then found by the
            search of the module docstring).
    Returns:
        ``{"residual" (M,), "sq" (M,) squared misfit, "theta" (M,), "m0" (M,) complex}``
        (float64 / complex128).
    """
    s = signals.to(torch.complex128)
    b1d, t1d, t2d = (v.to(torch.float64) for v in (b1, t1, t2))
    t1d = t1d.clamp_min(1e-4)
    t2d = t2d.clamp_min(1e-4)
    if theta is None:
        theta = _search_theta(s, b1d, t1d, t2d, protocol)
    theta = theta.to(torch.float64)
    sq, m0 = _misfit(s, _model(t1d, t2d, b1d, theta, protocol))
    norm = (s.real**2 + s.imag**2).sum(-1).clamp_min(1e-300)
    return {"residual": (sq / norm).sqrt(), "sq": sq, "theta": theta, "m0": m0}


def _search_theta(
    s: torch.Tensor, b1: torch.Tensor, t1: torch.Tensor, t2: torch.Tensor, protocol: Protocol
) -> torch.Tensor:
    """The off-resonance ``theta`` (rad) that minimises the misfit of fixed T1, T2 ``(M,)``.

    Start: ``arg(F_1 conj F_0)`` (the configurations of a profile shifted by ``theta`` are
    ``F_p ~ G_p e^{i p theta}`` with real ``G_p``, exact for infinitely many cycles) or that plus
    pi, whichever fits better; then a golden-section search on ``+-pi/N`` around it to 1e-3 rad.
    The misfit uses the profile shape ``(1 - E2 e^{-iv}) / (1 - b cos v)`` (the PLANET form of
    :func:`mrphys.physics.signal.bssfp_closed_form`, see :mod:`mrphys.relax.planet`), in real
    arithmetic: several times cheaper than the full model.
    """
    # float32 is ample for locating theta to 1e-3 rad, and twice as fast as float64
    s = s.to(torch.complex64)
    t1, t2, b1 = t1.float(), t2.float(), b1.float()
    phi = protocol.phases(dtype=torch.float32).to(s.device)
    cphi, sphi = torch.cos(phi), torch.sin(phi)
    tr = protocol.tr
    e1 = torch.exp(-tr / t1)
    e2 = torch.exp(-tr / t2)
    ca = torch.cos(b1 * protocol.flip)
    d = 1 - e1 * ca - e2 * e2 * (e1 - ca)
    a = e2.unsqueeze(-1)
    b = (e2 * (1 - e1) * (1 + ca) / d).unsqueeze(-1)
    sr, si = s.real, s.imag
    ss = (sr * sr + si * si).sum(-1)
    # <g, S> = sum_j w_j S_j - a e^{i theta} sum_j w_j e^{-i phi_j} S_j with the real weights
    # w_j = 1 / (1 - b cos v_j), v_j = theta - phi_j; ||g||^2 = sum_j w_j^2 (1 + a^2 - 2 a cos v_j):
    # one (M, 4, N) x (M, N, 1) product per evaluation instead of complex (M, N) arithmetic
    t = s * torch.polar(torch.ones_like(phi), -phi)
    sw = torch.stack([sr, si, t.real, t.imag], -2)  # (M, 4, N)
    a1 = a.squeeze(-1)
    k0, a2 = 1 + a * a, 2 * a

    def obj(th: torch.Tensor) -> torch.Tensor:
        c, sn = torch.cos(th), torch.sin(th)
        cv = torch.addcmul(c.unsqueeze(-1) * cphi, sn.unsqueeze(-1), sphi)  # cos(theta - phi_j)
        w = (1 - b * cv).reciprocal_()
        gg = torch.addcmul(k0, a2, cv, value=-1).mul_(w).mul_(w).sum(-1)
        pr, pi_, qr, qi = torch.matmul(sw, w.unsqueeze(-1)).squeeze(-1).unbind(-1)
        re = pr - a1 * (c * qr - sn * qi)
        im = pi_ - a1 * (c * qi + sn * qr)
        return ss - (re * re + im * im) / gg

    f = configurations(s, phi, normalise=False)
    t0 = (f[..., 2] * f[..., 1].conj()).angle()
    t_pi = t0 + math.pi
    f0, fpi = obj(t0), obj(t_pi)
    start = torch.where(fpi < f0, t_pi, t0)
    step = math.pi / protocol.n_cycles
    lo, hi = start - step, start + step
    c = hi - _INV_PHI * (hi - lo)
    dd = lo + _INV_PHI * (hi - lo)
    fc, fd = obj(c), obj(dd)
    n_iter = math.ceil(math.log(1e-3 / (2 * step)) / math.log(_INV_PHI))
    for _ in range(n_iter):
        left = fc < fd
        hi = torch.where(left, dd, hi)
        lo = torch.where(left, lo, c)
        x = torch.where(left, hi - _INV_PHI * (hi - lo), lo + _INV_PHI * (hi - lo))
        fx = obj(x)
        c, fc, dd, fd = (
            torch.where(left, x, dd),
            torch.where(left, fx, fd),
            torch.where(left, c, x),
            torch.where(left, fc, fx),
        )
    theta = torch.remainder(0.5 * (lo + hi) + math.pi, 2 * math.pi) - math.pi
    return theta.double()


def _chi2_median(k: int) -> float:
    """Median of a chi-square with ``k`` degrees of freedom (Wilson-Hilferty)."""
    return k * (1 - 2 / (9 * k)) ** 3


def noise_from_residuals(sq: torch.Tensor, n_cycles: int) -> float:
    """Noise std per real channel from squared misfits ``sq`` ``(M,)`` of voxels fitted with
    five real unknowns to ``N`` complex samples (module docstring); NaN for no voxels."""
    sq = sq[torch.isfinite(sq)]
    if sq.numel() == 0:
        return math.nan
    dof = max(2 * n_cycles - 5, 1)
    return math.sqrt(float(sq.median()) / _chi2_median(dof))


def _fd_jacobian(model, params: torch.Tensor, rel_step: float = 1e-6) -> torch.Tensor:
    """``(..., M, P)`` Jacobian by central differences (float64).

    Used instead of forward-mode AD (:func:`mrphys.physics.crlb.jacobian`) because the first
    ``torch.func.jvp`` of a process loads torch's tracing machinery, 5-16 s on a busy 2-core
    machine, which would delay every ``relax fit``; the smooth signal model loses nothing (relative
    error about 1e-9 with this step)."""
    cols = []
    for i in range(params.shape[-1]):
        h = rel_step * params[..., i].abs().clamp_min(1e-3)
        up, dn = params.clone(), params.clone()
        up[..., i] += h
        dn[..., i] -= h
        cols.append((model(up) - model(dn)) / (2 * h).unsqueeze(-1))
    return torch.stack(cols, dim=-1)


def _five(t1, t2, theta, m0) -> torch.Tensor:
    """The five real unknowns ``(M, 5)``: T1, T2, theta, Re M0, Im M0 (float64)."""
    return torch.stack(
        [t1.double(), t2.double(), theta.double(), m0.real.double(), m0.imag.double()], -1
    )


def _shape_of_three(b1: torch.Tensor, protocol: Protocol, clamp: bool = False, transform=None):
    """The model ``(M, >=3) -> (M, K)``: ``transform(s(T1, T2, theta))`` for known B1 and unit
    M0 (``transform`` None: the signal itself, ``K = N``)."""
    b1d = b1.double()

    def shape(q: torch.Tensor) -> torch.Tensor:
        q1, q2 = q[..., 0], q[..., 1]
        if clamp:
            q1, q2 = q1.clamp_min(1e-4), q2.clamp_min(1e-4)
        out = _model(q1, q2, b1d, q[..., 2], protocol)
        return out if transform is None else transform(out)

    return shape


def _signal_of_five(b1: torch.Tensor, protocol: Protocol, clamp: bool = False):
    """The model ``(M, 5) -> (M, N)`` complex signal ``M0 s(T1, T2, theta)`` for known B1."""
    shape = _shape_of_three(b1, protocol, clamp)

    def model(q: torch.Tensor) -> torch.Tensor:
        return shape(q) * torch.complex(q[..., 3], q[..., 4]).unsqueeze(-1)

    return model


def _five_jacobian(
    b1: torch.Tensor,
    protocol: Protocol,
    params: torch.Tensor,
    transform=None,
    clamp: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Jacobian ``(M, K, 5)`` of ``transform(M0 s(T1, T2, theta))`` at ``params`` ``(M, 5)``
    (:func:`_five`) and the model value ``(M, K)``, for a linear ``transform`` (None: the
    signal itself, ``K = N``).

    The model is linear in the complex M0: its two columns are exact (``g`` and ``i g`` with
    ``g = transform(s)``) and only T1, T2 and theta are differenced, on ``s`` without M0, so
    7 model evaluations instead of 10 (:func:`_fd_jacobian` of :func:`_signal_of_five`)."""
    shape = _shape_of_three(b1, protocol, clamp, transform)
    m0 = torch.complex(params[..., 3], params[..., 4]).unsqueeze(-1)
    g = shape(params[..., :3])
    jac = _fd_jacobian(shape, params[..., :3]) * m0.unsqueeze(-1)
    return torch.cat([jac, g.unsqueeze(-1), (1j * g).unsqueeze(-1)], -1), m0 * g


def refine_fit(
    signals: torch.Tensor,
    b1: torch.Tensor,
    t1: torch.Tensor,
    t2: torch.Tensor,
    theta: torch.Tensor,
    m0: torch.Tensor,
    protocol: Protocol,
    *,
    iterations: int = 8,
) -> dict[str, torch.Tensor]:
    """Least-squares refinement of fitted voxels in all five unknowns.

    Damped Gauss-Newton (Levenberg-Marquardt; finite-difference Jacobian) of
    ``||S - M0 s(T1, T2, theta)||^2`` over T1, T2, theta and the complex M0, from the given
    estimate; a step is kept only where it lowers the misfit.

    Args:
        signals: complex ``(M, N)``; b1, t1, t2 (s), theta (rad): ``(M,)``; m0: complex ``(M,)``
            starting amplitudes (:func:`resimulate`).
    Returns:
        ``{"t1", "t2", "theta", "m0", "sq"}`` ``(M,)`` (float64 / complex128), ``sq`` the squared
        misfit.
    """
    s = signals.to(torch.complex128)
    p = _five(t1, t2, theta, m0)
    model = _signal_of_five(b1, protocol, clamp=True)

    def cost(q: torch.Tensor) -> torch.Tensor:
        r = model(q) - s
        return (r.real**2 + r.imag**2).sum(-1)

    lam = torch.full((p.shape[0],), 1e-3, dtype=torch.float64)
    c = cost(p)
    for _ in range(iterations):
        jac, value = _five_jacobian(b1, protocol, p, clamp=True)  # (M, N, 5) complex, (M, N)
        r = value - s
        jtj = (jac.conj().transpose(-1, -2) @ jac).real
        jtr = (jac.conj().transpose(-1, -2) @ r.unsqueeze(-1)).real.squeeze(-1)
        damp = torch.diag_embed(torch.diagonal(jtj, dim1=-2, dim2=-1) * lam[:, None])
        step, info = torch.linalg.solve_ex(jtj + damp, -jtr)
        trial = p + torch.where((info == 0)[:, None], step, torch.zeros_like(step))
        ct = cost(trial)
        better = torch.isfinite(ct) & (ct < c)
        p = torch.where(better[:, None], trial, p)
        c = torch.where(better, ct, c)
        lam = torch.where(better, lam * 0.3, lam * 10)
    theta_out = torch.remainder(p[:, 2] + math.pi, 2 * math.pi) - math.pi
    return {
        "t1": p[:, 0],
        "t2": p[:, 1],
        "theta": theta_out,
        "m0": torch.complex(p[:, 3], p[:, 4]),
        "sq": c,
    }


def noise_from_fit(
    signals: torch.Tensor,
    b1: torch.Tensor,
    t1: torch.Tensor,
    t2: torch.Tensor,
    theta: torch.Tensor,
    m0: torch.Tensor,
    protocol: Protocol,
    *,
    n_voxels: int = 2000,
    iterations: int = 6,
) -> float:
    """Noise std per real channel from a least-squares fit of a sample of voxels.

    The residual of a method that is not the least-squares fit of the whole signal (MIRACLE uses
    three configuration magnitudes, PLANET an algebraic ellipse fit, a network its training)
    overstates the noise. Here up to ``n_voxels`` voxels (evenly spaced in ``signals``) are
    refined by :func:`refine_fit` from the method's estimate, and the noise follows from their
    residuals (:func:`noise_from_residuals`). Arguments as for :func:`refine_fit`; returns NaN
    for no voxels (unknown noise).
    """
    m = signals.shape[0]
    if m == 0:
        return math.nan
    idx = torch.linspace(0, m - 1, min(n_voxels, m)).round().long().unique()
    r = refine_fit(
        signals[idx],
        b1[idx],
        t1[idx],
        t2[idx],
        theta[idx],
        m0[idx],
        protocol,
        iterations=iterations,
    )
    return noise_from_residuals(r["sq"], protocol.n_cycles)


def crb_full(
    t1: torch.Tensor,
    t2: torch.Tensor,
    b1: torch.Tensor,
    theta: torch.Tensor,
    m0: torch.Tensor,
    sigma: float,
    protocol: Protocol,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cramer-Rao standard deviations of T1 and T2 (s) from the full complex signal ``(M,)``:
    unknowns T1, T2, theta and the complex M0, B1 known (as
    :func:`mrphys.physics.ssfp.pc_bssfp_cramer_rao`)."""
    jac, _ = _five_jacobian(b1, protocol, _five(t1, t2, theta, m0))
    sd = cramer_rao_from_jacobian(jac, sigma).std
    return sd[..., 0], sd[..., 1]


def crb_configurations(
    t1: torch.Tensor,
    t2: torch.Tensor,
    b1: torch.Tensor,
    theta: torch.Tensor,
    m0: torch.Tensor,
    sigma: float,
    protocol: Protocol,
    complex_: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cramer-Rao standard deviations of T1 and T2 (s) from the configurations
    ``F_-1, F_0, F_1`` a method sees: their magnitudes (``complex_`` False: unknowns T1, T2,
    ``|M0|``) or the complex values (unknowns T1, T2, theta, complex M0). The noise of each
    configuration is ``sigma / sqrt N`` per real channel."""
    phases = protocol.phases()
    n = protocol.n_cycles
    b1d = b1.double()
    if complex_:
        jac, _ = _five_jacobian(
            b1,
            protocol,
            _five(t1, t2, theta, m0),
            lambda s: configurations(s, phases, normalise=False),
        )
    else:
        th = theta.double()
        amp = m0.abs().double()

        def model(p: torch.Tensor) -> torch.Tensor:
            s = _model(p[..., 0], p[..., 1], b1d, th, protocol)
            return configurations(s, phases, normalise=False).abs()

        # linear in |M0|: that column is exact, T1 and T2 are differenced without it
        q = torch.stack([t1.double(), t2.double()], -1)
        g = model(q)
        jac = torch.cat([_fd_jacobian(model, q) * amp[:, None, None], g.unsqueeze(-1)], -1)
    sd = cramer_rao_from_jacobian(jac, sigma / math.sqrt(n)).std
    return sd[..., 0], sd[..., 1]
