"""The best estimator the prior allows: Bayesian posterior estimates of pc-bSSFP relaxometry
(issue 19, the network bar). Used by ``benchmarks/protocol.py --bayes``.

The networks of the bar are evaluated on in vivo-like tissues (``relax.data.sample_parameters(
..., "invivo")``), B1 uniform in 0.7-1.3, theta uniform within +-0.9 pi, complex Gaussian noise at
the relaxometry SNR, the signals' common phase removed and their scale normalised (so complex M0
is unknown to them). Under that prior and noise the posterior mean is the estimator of least
mean squared error; no network trained on the same data can beat it in that sense, and its median
errors are what the bar's networks can hope for. Here:

- the prior: :func:`log_prior_t1_t2`, the sampler's (T1, T2) density written out (three Gaussian
  blobs, the white-grey matter ridge, the uniform floor, truncated to the box and T1 > T2; or the
  uniform box the networks train on), times the uniform theta and B1 densities (B1 dropped when
  it is given);
- the likelihood: Gaussian at the SNR with the complex M0 profiled out by linear least squares,
  ``exp(|d^H y|^2 / (||d||^2 2 sigma^2))`` (``d`` the noise-free signal at M0 = 1);
- the integral: adaptive importance sampling (:func:`posterior_estimates`). A dictionary of prior
  draws, matched to every voxel at once (one matrix product per chunk), locates the best atoms;
  each round then draws from a Gaussian mixture on the current centres (covariance: the inflated
  Laplace one, the inverse Fisher information at the centre plus a weak prior precision), weights
  the draws by prior x likelihood / proposal and resamples the centres from the weights. The last
  round's weights give the posterior mean, the marginal posterior medians and
  ``E[1/x] / E[1/x^2]`` (the estimate of least expected squared relative error), and the
  effective sample size says how well the proposal covered the posterior.

Vectorised over voxels in chunks (memory bounded by ``chunk`` x ``n_samples`` x ``n_centres``).
Units: s and rad.
"""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import torch

from mrphys.physics.noise import sigma_relax
from mrphys.physics.ssfp import pc_bssfp_cramer_rao, pc_bssfp_signal
from mrphys.relax import data as rd

#: standard deviations (T1 s, T2 s, Re M0, Im M0, theta rad, B1) of the weak Gaussian prior
#: precision added to the Fisher matrix of a proposal, only to keep directions the data do not
#: identify finite; the target itself uses the exact prior
PROPOSAL_PRIOR_SD = (0.3, 0.03, 1.0, 1.0, 1.6, 0.17)


#: the sampler's (T1, T2) log density (one home: :mod:`mrphys.relax.data`)
log_prior_t1_t2 = rd.t1_t2_log_density


def log_prior(x: torch.Tensor, b1_given: bool, distribution: str) -> torch.Tensor:
    """Log prior of parameter rows ``(..., P)`` = (T1 s, T2 s, theta rad[, B1]): the (T1, T2)
    density times uniform theta within +-0.9 pi and, unless given, uniform B1 in 0.7-1.3."""
    lp = log_prior_t1_t2(x[..., 0], x[..., 1], distribution)
    bad = x[..., 2].abs() > rd.THETA_MAX
    if not b1_given:
        bad = bad | (x[..., 3] < rd.B1_RANGE[0]) | (x[..., 3] > rd.B1_RANGE[1])
    return torch.where(bad, torch.full_like(lp, -math.inf), lp)


def _safe(x: torch.Tensor, b1: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
    """(T1, T2, B1, theta) of parameter rows, clamped where the model is defined (rows outside
    the prior's support get weight zero anyway)."""
    t1 = x[..., 0].clamp_min(1e-3)
    t2 = torch.minimum(x[..., 1].clamp_min(1e-3), 0.999 * t1)
    bb = x[..., 3].clamp_min(0.05) if b1 is None else b1
    return t1, t2, bb, x[..., 2]


def signals(x: torch.Tensor, b1: torch.Tensor | None, protocol) -> torch.Tensor:
    """Noise-free signals (M0 = 1) ``(..., K)`` of parameter rows ``(..., P)``; ``b1`` ``(...)``
    when given (then ``P = 3``)."""
    return pc_bssfp_signal(*_safe(x, b1), **protocol.signal_kwargs())


def profiled_loglik(y: torch.Tensor, d: torch.Tensor, sigma: float) -> torch.Tensor:
    """``-min_m ||y - m d||^2 / (2 sigma^2)`` up to a constant per ``y`` (complex M0 profiled
    out by least squares): ``|d^H y|^2 / (||d||^2 2 sigma^2)``; ``y``, ``d`` ``(..., K)``."""
    num = (d.conj() * y).sum(-1).abs().pow(2)
    return num / d.abs().pow(2).sum(-1).clamp_min(1e-300) / (2 * sigma**2)


def laplace_cov(
    centres: torch.Tensor,
    b1: torch.Tensor | None,
    y: torch.Tensor,
    protocol,
    sigma: float,
    inflate: float,
) -> torch.Tensor:
    """``inflate^2`` times the Laplace covariance ``(..., P, P)`` at ``centres`` ``(..., P)``:
    the inverse of the Fisher information (:func:`mrphys.physics.ssfp.pc_bssfp_cramer_rao`, M0
    at its least-squares value for ``y``) plus :data:`PROPOSAL_PRIOR_SD`, its (T1, T2, theta[,
    B1]) block (the M0 block marginalised)."""
    d = signals(centres, b1, protocol)
    m0 = ((d.conj() * y).sum(-1) / d.abs().pow(2).sum(-1).clamp_min(1e-300)).abs()
    t1, t2, bb, theta = _safe(centres, b1)
    fisher = pc_bssfp_cramer_rao(
        t1, t2, bb, theta, sigma=sigma, tr=protocol.tr, te=protocol.te,
        flip=protocol.flip_angles(), increments=protocol.phases(),
        m0=m0.to(torch.complex128), b1_known=b1 is not None,
    ).fisher  # fmt: skip
    n = fisher.shape[-1]
    prec = torch.tensor([1 / s**2 for s in PROPOSAL_PRIOR_SD[:n]], dtype=fisher.dtype)
    cov = torch.linalg.inv(fisher + torch.diag_embed(prec.expand(fisher.shape[:-1])))
    idx = [0, 1, 4] + ([] if b1 is not None else [5])
    cov = cov[..., idx][..., idx, :]
    return 0.5 * (cov + cov.transpose(-1, -2)) * inflate**2


def _weighted_median(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Weighted median along the last axis of ``x`` ``(m, S)`` with weights ``w`` summing to 1."""
    order = torch.argsort(x, dim=-1)
    xs = torch.gather(x, -1, order)
    cw = torch.gather(w, -1, order).cumsum(-1)
    half = torch.full((x.shape[0], 1), 0.5, dtype=cw.dtype)
    k = torch.searchsorted(cw, half).clamp_max(x.shape[-1] - 1)
    return torch.gather(xs, -1, k)[:, 0]


def posterior_estimates(
    y: torch.Tensor,
    protocol,
    *,
    snr: float,
    b1: torch.Tensor | None = None,
    distribution: str = "invivo",
    n_dict: int = 200_000,
    n_centres: int = 8,
    n_samples: int = 2048,
    final_rounds: int = 2,
    chunk: int = 128,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Posterior estimates of (T1 s, T2 s, theta rad[, B1]) from noisy signals ``y`` ``(n, K)``
    (complex128, any complex M0) acquired with ``protocol`` (:class:`relax.data.Protocol`).

    Args:
        snr: the relaxometry SNR of the noise (:func:`mrphys.physics.noise.sigma_relax`).
        b1: ``(n,)`` the true B1 when a B1 map is given, else None (B1 an unknown).
        distribution: the (T1, T2) prior, ``"invivo"`` or ``"uniform"``.
        n_dict: prior draws of the locating dictionary; n_centres: mixture components per voxel;
        n_samples: draws per voxel and round; chunk: voxels at a time.
        final_rounds: rounds at the full likelihood. Before them the likelihood is tempered
            (raised to ``beta`` = ``min(1, (12.5 / snr)^2)``, then 4x per round up to 1): the
            dictionary locates the posterior at an effective SNR of 12.5 and each round narrows
            it, so a high SNR needs more rounds, not a denser dictionary.

    Returns:
        ``"mean"``, ``"median"`` (marginal), ``"relmin"`` (``E[1/x] / E[1/x^2]`` for T1, T2 and
        B1; theta its mean) each ``(n, P)``; ``"ess"`` ``(n,)`` the last round's effective sample
        size.
    """
    sigma = sigma_relax(float(snr), per_channel=True)
    b1_given = b1 is not None
    p_dim = 3 if b1_given else 4
    g = torch.Generator().manual_seed(int(seed))
    dic = rd.sample_parameters(int(n_dict), distribution, True, g, torch.float64)
    dx = torch.stack([dic["t1"], dic["t2"], dic["theta"], dic["b1"]], -1)
    dsig = signals(dx, None, protocol)
    dsig = dsig / dsig.abs().pow(2).sum(-1, keepdim=True).sqrt()
    dr = torch.cat([dsig.real, dsig.imag], -1).float()  # (D, 2K): a real matched filter
    outs: dict[str, list[torch.Tensor]] = {k: [] for k in ("mean", "median", "relmin", "ess")}
    per = max(int(n_samples) // int(n_centres), 1)
    betas = [min(1.0, (12.5 / float(snr)) ** 2)]
    while betas[-1] < 1.0:
        betas.append(min(1.0, 4 * betas[-1]))
    betas += [1.0] * (max(int(final_rounds), 1) - 1)
    for s0 in range(0, y.shape[0], int(chunk)):
        yc = y[s0 : s0 + int(chunk)].to(torch.complex128)
        m = yc.shape[0]
        bc = None if b1 is None else b1[s0 : s0 + int(chunk)].double()
        # locate: |<d, y>|^2 of every unit-norm atom (Re and Im of d^H y as real products)
        re = dr @ torch.cat([yc.real, yc.imag], -1).float().T
        im = dr @ torch.cat([yc.imag, -yc.real], -1).float().T
        score = betas[0] * (re.pow(2) + im.pow(2)) / (2 * sigma**2)  # (D, m)
        if b1_given:  # locating only: atoms near the given B1 (the target uses it exactly)
            score = score - 0.5 * ((dx[:, 3:4].float() - bc[None, :].float()) / 0.02) ** 2
        top = torch.topk(score, int(n_centres), dim=0).indices.T  # (m, M)
        cen = dx[top][..., :p_dim].clone()
        yy = yc[:, None, :]
        b_cen = None if bc is None else bc[:, None].expand(m, int(n_centres))
        inflate = 3.0  # wide first round: the dictionary's atoms are only near the posterior
        for r, beta in enumerate(betas):
            cov = laplace_cov(cen, b_cen, yy, protocol, sigma / math.sqrt(beta), inflate)
            chol = torch.linalg.cholesky(cov)
            z = torch.randn((m, int(n_centres), per, p_dim), generator=g, dtype=torch.float64)
            x = (cen[:, :, None, :] + (chol[:, :, None] @ z[..., None])[..., 0]).reshape(
                m, -1, p_dim
            )
            # proposal density: the equal-weight Gaussian mixture at every draw
            white = torch.einsum(
                "mkpq,mskq->mskp", torch.linalg.inv(chol), x[:, :, None, :] - cen[:, None]
            )
            logdet = torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
            lq = torch.logsumexp(-0.5 * white.pow(2).sum(-1) - logdet[:, None, :], -1)
            b_x = None if bc is None else bc[:, None].expand(m, x.shape[1])
            lp = log_prior(x, b1_given, distribution)
            ll = profiled_loglik(yy, signals(x, b_x, protocol), sigma)
            lw = lp + beta * ll - lq
            lw = torch.where(torch.isfinite(lp), lw, torch.full_like(lq, -math.inf))
            w = torch.softmax(lw, -1)  # (m, S)
            if r < len(betas) - 1:
                idx = torch.multinomial(w, int(n_centres), replacement=True, generator=g)
                cen = torch.gather(x, 1, idx[..., None].expand(m, int(n_centres), p_dim))
                inflate = 1.5
        mean = (w[..., None] * x).sum(1)
        relmin = mean.clone()
        pos = [0, 1] + ([] if b1_given else [3])
        for j in pos:
            inv = torch.where(w > 0, w / x[..., j], torch.zeros_like(w))
            relmin[:, j] = inv.sum(1) / torch.where(w > 0, inv / x[..., j], inv).sum(1)
        med = torch.stack([_weighted_median(x[..., j], w) for j in range(p_dim)], -1)
        outs["mean"].append(mean)
        outs["median"].append(med)
        outs["relmin"].append(relmin)
        outs["ess"].append(1 / w.pow(2).sum(-1))
    return {k: torch.cat(v) for k, v in outs.items()}


#: no-B1 protocols of the earlier rounds (docs/protocol.md): flips and increments in degrees
NOB1_PROTOCOLS = {
    "global search, flips <= 90 (round 3)": (
        (89.908, 8.320, 11.505, 38.715), (178.640, 27.784, 276.579, 178.722)),
    "3-start descent (round 1)": ((23.54, 29.71, 89.56, 7.35), (68.15, 330.09, 181.02, 209.29)),
    "global, after joint network training (round 3, seed 0)": (
        (90.0, 19.19, 16.38, 41.33), (181.8, 50.48, 283.09, 182.03)),
    "global search, flips <= 150 (round 3, 25x the RF power)": (
        (10.663, 16.543, 22.331, 147.697), (238.658, 91.335, 3.005, 178.738)),
}  # fmt: skip


def bar_rows(pd, *, snr: float, n_test: int, priors: list[str], rows: list[int] | None,
             scale: float = 1.0, boot: int = 1000) -> dict:  # fmt: skip
    """Median |relative error| (%) of the posterior estimates on the networks' test set.

    The test set and its noise are those of ``benchmarks/protocol.py --networks`` (20,000
    in vivo-like tissues from seed 987654, noise from seed 4242 at ``snr``, signals with their
    common phase removed); the first ``n_test`` points are used. Rows: paper-4 and paper-12 given
    B1, the no-B1 protocols of :data:`NOB1_PROTOCOLS` and paper-4 without B1; each under every
    prior of ``priors``. ``scale`` multiplies the dictionary and the draws (a convergence
    check). Ratios to paper-4 given B1 (same prior, same points) with a paired bootstrap 95 %
    interval over the test points.
    """
    import time

    from mrphys.relax.data import add_relax_noise

    g = torch.Generator().manual_seed(987654)
    test = pd.sample_parameters(20_000, "invivo", True, g, torch.float64)
    cases = [("paper-4, B1 given", pd.paper_protocol(4), True),
             ("paper-12, B1 given", pd.paper_protocol(12), True)]  # fmt: skip
    for name, (fl, inc) in NOB1_PROTOCOLS.items():
        p = pd.Protocol.custom(np.radians(inc).tolist(), np.radians(fl).tolist())
        cases.append((f"{name}, no B1", p, False))
    cases.append(("paper-4, no B1", pd.paper_protocol(4), False))
    if rows is not None:
        cases = [c for i, c in enumerate(cases) if i in rows]
    n = int(n_test)
    truth = {k: v[:n] for k, v in test.items()}
    out: dict = {"n_test": n, "snr": snr, "scale": scale, "rows": {}}
    errs: dict = {}
    for prior in priors:
        for name, p, b1_given in cases:
            s = pd.pc_bssfp_signal(test["t1"], test["t2"], test["b1"], test["theta"],
                                   **p.signal_kwargs(), remove_common_phase=True)  # fmt: skip
            y = add_relax_noise(s, snr, torch.Generator().manual_seed(4242))[:n]
            c0, t0 = time.process_time(), time.perf_counter()
            est = posterior_estimates(
                y, p, snr=snr, b1=truth["b1"] if b1_given else None, distribution=prior,
                n_dict=int(200_000 * scale), n_samples=int(2048 * scale),
            )  # fmt: skip
            row: dict = {"b1_given": b1_given, "flip_deg": p.record()["flip_deg"],
                         "phase_increment_deg": p.record()["phase_increment_deg"]}  # fmt: skip
            for kind in ("mean", "median", "relmin"):
                e = est[kind]
                for j, t in ((0, "t1"), (1, "t2"), (3, "b1")):
                    if t == "b1" and b1_given:
                        continue
                    rel = 100 * (e[:, j] - truth[t]).abs() / truth[t]
                    row[f"{t}_{kind}_median_abs_err_pct"] = float(rel.median())
                    errs[(prior, name, kind, t)] = rel
            ess = est["ess"]
            q = torch.quantile(ess, torch.tensor([0.01, 0.1, 0.5], dtype=ess.dtype))
            row["ess_q01_q10_q50"] = [round(float(v), 1) for v in q]
            row["cpu_seconds"] = time.process_time() - c0
            row["seconds"] = time.perf_counter() - t0
            out["rows"][f"{name} [{prior} prior]"] = row
            print(json.dumps({f"{name} [{prior} prior]": row}), file=sys.stderr, flush=True)
    # paired ratios to paper-4 given B1
    gb = torch.Generator().manual_seed(1)
    idx = torch.randint(0, n, (boot, n), generator=gb)
    ratios: dict = {}
    for prior in priors:
        for name, _, b1_given in cases:
            if b1_given or (prior, "paper-4, B1 given", "mean", "t1") not in errs:
                continue
            for kind in ("mean", "median", "relmin"):
                for t in ("t1", "t2"):
                    a, b = errs[(prior, name, kind, t)], errs[(prior, "paper-4, B1 given", kind, t)]
                    bs = a[idx].median(1).values / b[idx].median(1).values
                    lo, hi = torch.quantile(bs, torch.tensor([0.025, 0.975], dtype=bs.dtype))
                    ratios[f"{name} / paper-4 B1 given [{prior} prior, {kind}] {t}"] = [
                        float(a.median() / b.median()), float(lo), float(hi)]  # fmt: skip
    out["ratios_to_paper4_b1_given"] = ratios
    return out
