"""Classical reconstructions of multi-coil radial dynamic data (the baselines beside the INR).

Every method takes a :class:`mrphys.physics.radial.RadialData` and returns ``(T, Y, X)``
complex64 in the units of its ``truth``. The encoding is ``A = SenseOp(maps, RadialNUFFT(traj))``.
Temporal TV fits the plain (unweighted) least-squares data term

    f(x) = 1/2 || A x - y ||^2

(the maximum-likelihood term for white noise). CG-SENSE fits it too, and stops each frame by
the discrepancy principle (its misfit at ``tau`` times the noise energy, the noise level from the
data: :func:`noise_variance`); where the unweighted fit cannot come near the noise level (misfit
still above ``mismatch`` times the noise energy: the coil maps or the trajectory do not explain
the data, e.g. maps estimated from the data), it falls back to the density-weighted term
``1/2 || D^1/2 (A x - y) ||^2``, which is robust to such errors (docs/encoding.md: rat cine, honest
raw data, 5 spokes: unweighted CG collapses to 20.06 dB, density-weighted 28.01 dB).
L+S keeps the density-weighted term of its reference implementation.

- :func:`gridding`: ``A^H D y`` (density-compensated NUFFT adjoint, coil-combined with the maps).
- :func:`cg_sense`: per-frame Tikhonov-regularised least squares
  ``(A^H W A + lam m I) x = A^H W y`` by conjugate gradients, all frames at once (separate step
  sizes per frame), ``W = I`` (or ``D`` on the fallback); ``m`` is the mean eigenvalue of
  ``A^H W A`` (its trace over the pixel count, exact and free), so ``lam`` does not depend on the
  number of spokes, coils or the data scale; CG stops per frame by the discrepancy principle, or
  on a relative residual, or after ``iterations``.
- :func:`grasp`: ``f(x) + lam_tv * m * s * sum |x[t+1] - x[t]|`` (temporal total variation) by
  ADMM (:func:`~mrphys.recon.solvers.admm`, penalty ``rho * m``, a few warm-started CG steps per
  iteration), ``s`` the peak of the gridding image.
- :func:`low_rank_sparse`: L+S (Otazo et al. 2015): ``x = L + S`` with a nuclear-norm penalty on
  the Casorati matrix of ``L`` (weight ``lam_l`` times the largest singular value of the gridding
  series) and an L1 penalty on the temporal Fourier transform of ``S`` (weight ``lam_s * s``), by
  FISTA on the pair ``(L, S)`` (singular value and soft thresholding as proximal steps).

Each method is a short application of :mod:`mrphys.recon.solvers` (:class:`LeastSquares` for the
data term, :func:`conjugate_gradient`, :func:`admm`, :func:`fista`, the prox helpers) on
``data.operator()``.
:func:`cg_sense_operator` is CG-SENSE on any encoding (Cartesian ``SenseOp(maps,
CartesianFFT(shape, mask))`` as well as radial) with optional data weights.

The iterative methods take ``backend`` (the NUFFT backend of
:class:`~mrphys.physics.nufft.RadialNUFFT`) and ``progress`` (show a tqdm bar). ``s`` is the
maximum magnitude of the gridding image, which makes the regularisation weights independent of
the data scale. Default weights and iteration counts were tuned once on PINCAT (never on the data
they are reported on; see ``docs/encoding.md`` for the protocol and numbers) and are frozen here.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import torch

from mrphys.errors import check
from mrphys.physics.coils import SenseOp
from mrphys.physics.linop import AxisFFT, FiniteDifference, Identity, Linop, Repeat
from mrphys.physics.radial import RadialData
from mrphys.recon.solvers import (
    Discrepancy,
    LeastSquares,
    SolverResult,
    admm,
    conjugate_gradient,
    fista,
    singular_value_threshold,
    soft_threshold,
)

log = logging.getLogger(__name__)

#: Frozen defaults, tuned once by mean PSNR on PINCAT (25 frames, 8 coils, 8 spokes/frame = 16x,
#: SNR 20, seed 0; grids and numbers in docs/encoding.md). Not to be re-tuned per data set.
#: CG-SENSE and TV (issue 17): unweighted data term, weights relative to the mean eigenvalue of
#: ``A^H A``; CG-SENSE stops at the discrepancy principle's textbook ``tau = 1`` and falls back to
#: the density-weighted term (``density=None``: automatic) where its misfit stays above
#: ``mismatch = 2`` noise energies; L+S: unchanged (density-weighted FISTA).
DEFAULTS = {
    "cg_sense": {
        "iterations": 30,
        "lam": 1e-2,
        "tol": 1e-4,
        "density": None,
        "tau": 1.0,
        "mismatch": 2.0,
    },
    "grasp": {"iterations": 20, "lam_tv": 0.03, "rho": 1.0, "inner": 3},
    "low_rank_sparse": {"iterations": 30, "lam_l": 0.05, "lam_s": 0.001},
}


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _radial(data: RadialData, backend: str) -> tuple[Linop, torch.Tensor, torch.Tensor]:
    """The encoding ``A``, the k-space ``y`` and the density weights ``D`` (with a coil axis,
    broadcasting against ``y``) of a radial acquisition: the data term ``1/2 |D^(1/2)(A x - y)|^2``.
    """
    check(isinstance(data, RadialData), f"data must be a RadialData; got {type(data).__name__}.")
    y = data.kspace.to(torch.complex64)
    w = data.dcf.to(device=y.device, dtype=torch.float32)[:, None]  # (T, 1, ...): the coil axis
    return data.operator(backend=backend), y, w


def _mean_eigenvalue(data: RadialData, weights: torch.Tensor | None = None) -> float:
    """Mean eigenvalue of ``A^H W A`` per frame: its trace over the pixel count, exactly.

    Row ``(c, k)`` of ``A`` is ``maps[c] * exp(...) / sqrt(Y X)``, so the trace is
    ``sum_k w_k * sum_(c, r) |maps|^2 / (Y X)``; averaged over frames. Dimensionless units of
    ``A^H W A``; it scales the regularisation weights and the ADMM penalty.
    """
    ny, nx = data.im_size
    coil_power = float((data.maps.abs() ** 2).sum(0).mean())  # mean over pixels of sum_c |S_c|^2
    if weights is None:
        per_frame = float(math.prod(data.spoke_shape))
    else:
        per_frame = float(weights.sum()) / data.n_frames
    m = per_frame * coil_power / (ny * nx)
    return m if m > 0 and math.isfinite(m) else 1.0


def _check_options(iterations: int, **weights: float) -> None:
    """One sentence per bad option: ``iterations >= 1``, every weight finite and ``>= 0``."""
    check(int(iterations) >= 1, f"iterations must be a positive integer; got {iterations}.")
    for name, value in weights.items():
        check(value >= 0 and math.isfinite(value), f"{name} must be finite and >= 0; got {value}.")


def _scale(x0: torch.Tensor) -> float:
    s = float(x0.abs().max())
    return s if s > 0 and math.isfinite(s) else 1.0


def noise_variance(data: RadialData) -> tuple[float, str]:
    """The noise variance ``sigma^2`` per complex k-space sample (``E |n|^2``) of ``data``, and
    where it came from.

    In order: ``meta["noise_std"]`` (recorded by :func:`~mrphys.physics.radial.simulate_radial`,
    or by a user who measured it); 1 for data prewhitened by
    :func:`mrphys.recon.pipeline.calibrate` (``meta["calibration"]["noise_source"]`` names a noise
    scan or the outer k-space: whitened noise has unit variance); else the mean ``|y|^2`` of the
    samples beyond 0.9 ``k_max`` (:func:`~mrphys.recon.calib.noise_from_outer_kspace`), which
    object signal left there biases upwards (by 1.4x on PINCAT at SNR 20): an early stop.
    Units of ``|kspace|^2``; 0 for data recorded as noise-free (``noise_std`` 0).
    """
    std = data.meta.get("noise_std")
    if isinstance(std, int | float) and std >= 0 and math.isfinite(std):
        return float(std) ** 2, "meta noise_std"
    source = (data.meta.get("calibration") or {}).get("noise_source")
    if isinstance(source, str) and "not prewhitened" not in source:
        return 1.0, f"prewhitened ({source})"
    from mrphys.recon.calib import noise_from_outer_kspace

    noise = noise_from_outer_kspace(data.kspace, data.traj, coil_axis=1)
    s2 = float((noise.abs() ** 2).mean())
    return (s2 if s2 > 0 and math.isfinite(s2) else 1.0), "outer k-space"


# --------------------------------------------------------------------------------------------
# methods
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def gridding(data: RadialData, backend: str = "auto", combine: str = "maps") -> torch.Tensor:
    """Density-compensated NUFFT adjoint, coil-combined, ``(T, Y, X)`` complex64.

    ``combine="maps"`` (default): ``A^H D y``, each frame's coil images combined with the maps
    (``sum_c conj(S_c) m_c``; the maps have ``sum_c |S_c|^2 = 1``, or the square of the support
    weight of :func:`mrphys.recon.pipeline.calibrate`, which then dims what the data show
    little of). ``combine="interference"``:
    the same coil images combined by :func:`mrphys.recon.calib.interference_combine`, the
    unbiased combination with the least variance against the streaks and noise, their coil
    covariance estimated from the frames themselves (rat cine, honest raw data, 5 spokes:
    +5.8 dB over ``"maps"``, ``docs/calibration.md``).
    """
    check(
        combine in ("maps", "interference"),
        f"combine must be 'maps' or 'interference'; got {combine!r}.",
    )
    op, y, w = _radial(data, backend)
    if combine == "maps":
        return LeastSquares(op, y, w).rhs.to(torch.complex64)
    from mrphys.recon.calib import interference_combine

    coil_images = op.encoding.on_coils(data.n_coils).adjoint(y * w)  # the operator's own plan
    return interference_combine(coil_images, data.maps.to(y.device))


def cg_sense_operator(
    op: Linop,
    y: torch.Tensor,
    weights: torch.Tensor | None = None,
    lam: float = DEFAULTS["cg_sense"]["lam"],
    iterations: int = DEFAULTS["cg_sense"]["iterations"],
    tol: float | None = None,
    batch_dims: int | None = None,
    progress: bool = False,
    noise_var: float | None = None,
    tau: float | None = None,
    frames: Callable[[list[int]], Linop] | None = None,
) -> SolverResult:
    """CG-SENSE with any encoding: solve ``(A^H W A + lam I) x = A^H W y`` by conjugate gradients
    from zero.

    Args:
        op: the encoding ``A``, e.g. ``SenseOp(maps, CartesianFFT(shape, mask))`` (image
            ``(T, Y, X)`` -> k-space ``(T, C, Y, X)``) or ``data.operator()`` of radial data.
        y: k-space, the shape of ``A``'s output.
        weights: optional non-negative data weights ``W`` broadcasting against ``y`` (e.g. the
            density compensation ``dcf[:, None]``); None for plain least squares.
        lam: Tikhonov weight ``>= 0`` in the units of ``A^H W A`` (dimensionless when ``A^H W A``
            is close to the identity, as for a unitary FFT or density-compensated radial data).
        iterations: the most CG steps; ``tol`` stops earlier on the relative residual (None: off).
        batch_dims: leading image axes that index independent systems (default: all but the last
            two, i.e. one system per 2-D frame; right only where ``A`` acts frame by frame).
        progress: show a tqdm bar.
        noise_var: the noise variance ``sigma^2`` per sample of ``y`` (units of ``|y|^2``): with it
            the result reports each system's data misfit ``||W^(1/2) (A x - y)||^2``; None: not
            tracked.
        tau: with ``noise_var``: stop each system once its misfit is at most
            ``tau * sigma^2 * sum(W)`` over its samples (the discrepancy principle); None: off.
        frames: with one system per frame (``batch_dims`` 1), ``frames(idx)`` is ``A`` restricted
            to the frames ``idx`` (e.g. ``SenseOp(maps, nufft.frames(idx))``): the frames that the
            discrepancy principle has stopped are then skipped (same result, less work).

    Returns:
        :class:`~mrphys.recon.solvers.SolverResult`: ``x`` the image ``(T, Y, X)`` (dtype of
        ``A^H y``), the iterations run, the relative residual per frame (and with ``noise_var``
        the misfit and the iterations per system).
    """
    _check_options(iterations, lam=lam)
    check(
        noise_var is None or (noise_var > 0 and math.isfinite(noise_var)),
        f"noise_var must be None or finite and > 0; got {noise_var}.",
    )
    check(
        tau is None or (tau > 0 and math.isfinite(tau)),
        f"tau must be None or finite and > 0; got {tau}.",
    )
    ls = LeastSquares(op, y, weights)
    b = ls.rhs
    normal = ls.normal + lam * Identity()
    nb = b.ndim - 2 if batch_dims is None else int(batch_dims)
    disc = None
    if noise_var is not None:
        w = torch.ones((), device=y.device) if weights is None else weights.to(y.device)
        w = torch.broadcast_to(w, y.shape)
        sys_dims = tuple(range(nb, y.ndim))  # y shares b's leading system axes
        yy = (w * y.abs() ** 2).to(torch.float64).sum(dim=sys_dims)
        noise = w.to(torch.float64).sum(dim=sys_dims) * float(noise_var)
        disc = Discrepancy(yy, None if tau is None else tau * noise, lam)
    apply = normal.forward
    if frames is not None and nb == 1 and disc is not None and disc.bound is not None:
        full = normal.forward
        w_all = None if weights is None else torch.broadcast_to(weights.to(y.device), y.shape)

        def apply(x: torch.Tensor) -> torch.Tensor:  # N x on the frames whose input is not zero
            live = x.reshape(x.shape[0], -1).abs().amax(1) > 0
            if bool(live.all()):
                return full(x)
            out = torch.zeros_like(x)
            idx = live.nonzero().flatten().tolist()
            if idx:  # the same normal operator, restricted to the live frames
                w_sub = None if w_all is None else w_all[idx]
                sub = LeastSquares(frames(idx), y[idx], w_sub).normal + lam * Identity()
                out[idx] = sub.forward(x[idx])
            return out

    return conjugate_gradient(
        apply,
        b,
        iterations=iterations,
        tol=tol,
        batch_dims=nb,
        progress=progress,
        desc="CG-SENSE",
        discrepancy=disc,
    )


@torch.no_grad()
def cg_sense(
    data: RadialData,
    iterations: int = DEFAULTS["cg_sense"]["iterations"],
    lam: float = DEFAULTS["cg_sense"]["lam"],
    tol: float | None = DEFAULTS["cg_sense"]["tol"],
    backend: str = "auto",
    progress: bool = False,
    density: bool | None = DEFAULTS["cg_sense"]["density"],
    tau: float | None = DEFAULTS["cg_sense"]["tau"],
    mismatch: float | None = DEFAULTS["cg_sense"]["mismatch"],
) -> torch.Tensor:
    """CG-SENSE per frame: solve ``(A^H W A + lam m I) x = A^H W y`` by conjugate gradients.

    ``W = I`` (plain least squares, the maximum-likelihood term for white noise) or the density
    compensation ``D``; ``m`` is the mean eigenvalue of ``A^H W A`` (:func:`_mean_eigenvalue`), so
    ``lam >= 0`` is dimensionless. All frames are solved at once (one batched NUFFT per step) with
    per-frame step sizes, i.e. exactly ``T`` independent CG runs (:func:`cg_sense_operator`), from
    zero. Each frame stops after ``iterations`` steps, once its relative residual
    ``||b - N x|| / ||b||`` is at most ``tol`` (all frames; None: off), or once its data misfit
    ``||W^(1/2) (A x - y)||^2`` is at most ``tau`` times the noise energy ``sigma^2 sum(W)``
    (the discrepancy principle; ``sigma^2`` from :func:`noise_variance`; None: off).

    Args:
        density: ``False``: ``W = I``; ``True``: ``W = D``; ``None`` (the default): ``W = I``, then
            ``W = D`` from scratch if the median frame's misfit is still above ``mismatch`` times
            its noise energy (the model, usually coil maps estimated from the data, cannot explain
            the data, and the unweighted fit would amplify its errors; logged as a warning).
        tau: the discrepancy factor (``> 0``; 1 is the textbook value), or None.
        mismatch: the fallback threshold of ``density=None`` (``> 0``); None: never fall back.

    Returns ``(T, Y, X)`` complex64.
    """
    _check_options(iterations, lam=lam)
    check(
        mismatch is None or (mismatch > 0 and math.isfinite(mismatch)),
        f"mismatch must be None or finite and > 0; got {mismatch}.",
    )
    check(density in (None, True, False), f"density must be None, True or False; got {density!r}.")
    check(
        tau is None or (tau > 0 and math.isfinite(tau)),
        f"tau must be None or finite and > 0; got {tau}.",
    )
    op, y, dcf = _radial(data, backend)
    need_noise = tau is not None or (density is None and mismatch is not None)
    s2, source = noise_variance(data) if need_noise else (None, "")
    if s2 == 0.0:  # noise-free data: no noise level to stop at or to compare with
        s2, source = None, "none (noise-free data)"

    def solve(w: torch.Tensor | None) -> SolverResult:
        lam_w = lam * _mean_eigenvalue(data, w)
        t = tau if s2 is not None else None
        return cg_sense_operator(
            op, y, w, lam_w, iterations, tol, 1, progress, s2, t, frames=live_frames
        )

    def live_frames(idx: list[int]) -> Linop:
        return SenseOp(data.maps, op.encoding.frames(idx))

    res = solve(dcf if density else None)
    weighting = "density-weighted" if density else "unweighted"
    if density is None and mismatch is not None and s2 is not None:
        energy = float(s2) * y[0].numel()  # sigma^2 * sum(W) for W = I, per frame
        ratio = float(res.misfit.median()) / energy
        if ratio > mismatch:
            log.warning(
                "CG-SENSE: the unweighted fit stays at %.1f times the noise energy (> %.1f): "
                "the coil maps or the trajectory do not explain the data; density-weighted "
                "least squares instead",
                ratio,
                mismatch,
            )
            res = solve(dcf)
            weighting = "density-weighted (fallback)"
    log.info(
        "CG-SENSE %s: %d iterations (per frame %s), max relative residual %.2e, noise from %s",
        weighting,
        res.iterations,
        "-" if res.stops is None else f"{int(res.stops.min())}-{int(res.stops.max())}",
        float(res.residual.max()),
        source or "-",
    )
    return res.x.to(torch.complex64)


@torch.no_grad()
def grasp(
    data: RadialData,
    lam_tv: float = DEFAULTS["grasp"]["lam_tv"],
    iterations: int = DEFAULTS["grasp"]["iterations"],
    rho: float = DEFAULTS["grasp"]["rho"],
    inner: int = DEFAULTS["grasp"]["inner"],
    backend: str = "auto",
    progress: bool = False,
) -> torch.Tensor:
    """Temporal-TV reconstruction (the GRASP model) by ADMM, ``(T, Y, X)`` complex64.

    Minimises ``1/2 |A x - y|^2 + lam_tv * m * s * sum_t |x[t+1] - x[t]|`` with ``m`` the mean
    eigenvalue of ``A^H A`` and ``s`` the peak of the gridding image ``A^H D y`` (both from the
    data, so ``lam_tv`` is dimensionless). ADMM (:func:`~mrphys.recon.solvers.admm`) splits
    ``z = D_t x``: penalty ``rho * m``, ``inner`` warm-started CG steps on
    ``A^H A + rho m D_t^H D_t`` per iteration (started by ``2 * inner`` of them), complex soft
    thresholding for ``z``. On the PINCAT tuning set it reached 1.4 dB more than the former FISTA
    on the density-weighted term, for about twice the NUFFTs (``docs/encoding.md``).
    """
    _check_options(iterations, lam_tv=lam_tv)
    check(rho > 0 and math.isfinite(rho), f"rho must be finite and > 0; got {rho}.")
    check(int(inner) >= 1, f"inner must be a positive integer; got {inner}.")
    op, y, w = _radial(data, backend)
    if data.n_frames < 2:
        log.warning("TV on a single frame: temporal TV has no effect (CG-SENSE-like result)")
    m = _mean_eigenvalue(data)
    mu = lam_tv * m * _scale(op.adjoint(w * y))
    t0 = time.perf_counter()
    res = admm(
        LeastSquares(op, y),
        FiniteDifference(dim=0),
        lambda v, step: soft_threshold(v, step * mu),
        rho * m,
        iterations=iterations,
        inner=inner,
        progress=progress,
        desc="TV (ADMM)",
    )
    log.info("TV: %d ADMM iterations in %.1f s", res.iterations, time.perf_counter() - t0)
    return res.x.to(torch.complex64)


@torch.no_grad()
def low_rank_sparse(
    data: RadialData,
    lam_l: float = DEFAULTS["low_rank_sparse"]["lam_l"],
    lam_s: float = DEFAULTS["low_rank_sparse"]["lam_s"],
    iterations: int = DEFAULTS["low_rank_sparse"]["iterations"],
    backend: str = "auto",
    progress: bool = False,
) -> torch.Tensor:
    """L+S reconstruction (the Otazo et al. 2015 model), ``(T, Y, X)`` complex64.

    Minimises over ``x = L + S``

        1/2 |D^(1/2)(A (L + S) - y)|^2 + lam_l * sigma_0 * |L|_* + lam_s * s * |F_t S|_1

    with ``|.|_*`` the nuclear norm of the Casorati matrix ``(T, Y*X)``, ``F_t`` the orthonormal
    temporal FFT, ``sigma_0`` the largest singular value and ``s`` the peak magnitude of the
    gridding image. Solved by FISTA on the pair ``(L, S)`` stacked as ``(2, T, Y, X)`` (the
    encoding ``A @ Repeat(2).H`` sums the pair): a joint gradient step of size ``1 / (2 L_A)``
    (``L_A`` = largest eigenvalue of ``A^H D A``), then singular value thresholding of ``L`` and
    soft thresholding of ``F_t S``. (Otazo's published iteration is the same pair of proximal maps
    without the momentum; it converged slowly here.)
    Starts from ``L = A^H D y``, ``S = 0``. Returns ``L + S``.
    """
    _check_options(iterations, lam_l=lam_l, lam_s=lam_s)
    op, y, w = _radial(data, backend)
    ls = LeastSquares(op, y, w)
    b = ls.rhs
    step = 1.0 / (2.1 * ls.lipschitz())
    b64 = b.reshape(b.shape[0], -1).to(torch.complex128)
    sigma0 = float(torch.linalg.eigvalsh(b64 @ b64.mH)[-1].clamp(min=0).sqrt())
    scale = _scale(b)
    pair = Repeat(2)
    ft = AxisFFT(dim=0)

    def prox(v: torch.Tensor, step: float) -> torch.Tensor:
        low = singular_value_threshold(v[0], step * lam_l * sigma0)
        sp = ft.adjoint(soft_threshold(ft.forward(v[1]), step * lam_s * scale))
        return torch.stack([low, sp])

    pair_ls = LeastSquares(op @ pair.H, y, w)
    x0 = torch.stack([b, torch.zeros_like(b)])
    res = fista(pair_ls.gradient, prox, x0, step, iterations, progress=progress, desc="L+S")
    return pair.adjoint(res.x).to(torch.complex64)
