"""Classical reconstructions of multi-coil radial dynamic data (the baselines beside the INR).

Every method takes a :class:`mrphys.physics.radial.RadialData` and returns ``(T, Y, X)``
complex64 in the units of its ``truth``. The encoding is ``A = SenseOp(maps, RadialNUFFT(traj))``
and the data term is density-weighted, as in the GRASP and L+S reference implementations:

    f(x) = 1/2 || D^(1/2) (A x - y) ||^2,   grad f = A^H D (A x - y),   D = dcf

(the weights make ``A^H D A`` close to the identity, so a handful of iterations converge).

- :func:`gridding`: ``A^H D y`` (density-compensated NUFFT adjoint, coil-combined with the maps).
- :func:`cg_sense`: per-frame Tikhonov-regularised least squares ``(A^H D A + lam I) x = A^H D y``
  by conjugate gradients, all frames at once (separate step sizes per frame).
- :func:`grasp`: ``f(x) + lam_tv * s * sum |x[t+1] - x[t]|`` (temporal total variation) by FISTA;
  the TV proximal step is solved by a projected-gradient dual iteration (warm started).
- :func:`low_rank_sparse`: L+S (Otazo et al. 2015): ``x = L + S`` with a nuclear-norm penalty on
  the Casorati matrix of ``L`` (weight ``lam_l`` times the largest singular value of the gridding
  series) and an L1 penalty on the temporal Fourier transform of ``S`` (weight ``lam_s * s``), by
  FISTA on the pair ``(L, S)`` (singular value and soft thresholding as proximal steps).

Each method is a short application of :mod:`mrphys.recon.solvers` (:class:`LeastSquares` for the
data term, :func:`conjugate_gradient`, :func:`fista`, the prox helpers) on ``data.operator()``.
:func:`cg_sense_operator` is CG-SENSE on any encoding (Cartesian ``SenseOp(maps,
CartesianFFT(shape, mask))`` as well as radial) with optional data weights.

The iterative methods take ``backend`` (the NUFFT backend of
:class:`~mrphys.physics.nufft.RadialNUFFT`) and ``progress`` (show a tqdm bar). ``s`` is the
maximum magnitude of the gridding image, which makes the regularisation weights independent of
the data scale. Default weights and iteration counts were tuned once on PINCAT
(see ``docs/encoding.md`` for the protocol and numbers) and are frozen here.
"""

from __future__ import annotations

import logging
import math
import time

import torch

from mrphys.errors import check
from mrphys.physics.linop import AxisFFT, Identity, Linop, Repeat
from mrphys.physics.radial import RadialData
from mrphys.recon.solvers import (
    LeastSquares,
    SolverResult,
    conjugate_gradient,
    fista,
    singular_value_threshold,
    soft_threshold,
    temporal_tv_prox,
)

log = logging.getLogger(__name__)

#: Frozen defaults, tuned once by mean PSNR on PINCAT (25 frames, 8 coils, 8 spokes/frame = 16x,
#: SNR 20, seed 0; grids and numbers in docs/encoding.md). Not to be re-tuned per data set.
DEFAULTS = {
    "cg_sense": {"iterations": 20, "lam": 1e-2},
    "grasp": {"iterations": 30, "lam_tv": 0.01},
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


def _check_options(iterations: int, **weights: float) -> None:
    """One sentence per bad option: ``iterations >= 1``, every weight finite and ``>= 0``."""
    check(int(iterations) >= 1, f"iterations must be a positive integer; got {iterations}.")
    for name, value in weights.items():
        check(value >= 0 and math.isfinite(value), f"{name} must be finite and >= 0; got {value}.")


def _scale(x0: torch.Tensor) -> float:
    s = float(x0.abs().max())
    return s if s > 0 and math.isfinite(s) else 1.0


# --------------------------------------------------------------------------------------------
# methods
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def gridding(data: RadialData, backend: str = "auto") -> torch.Tensor:
    """Density-compensated NUFFT adjoint, coil-combined: ``A^H D y``, ``(T, Y, X)`` complex64."""
    return LeastSquares(*_radial(data, backend)).rhs.to(torch.complex64)


def cg_sense_operator(
    op: Linop,
    y: torch.Tensor,
    weights: torch.Tensor | None = None,
    lam: float = DEFAULTS["cg_sense"]["lam"],
    iterations: int = DEFAULTS["cg_sense"]["iterations"],
    tol: float | None = None,
    batch_dims: int | None = None,
    progress: bool = False,
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

    Returns:
        :class:`~mrphys.recon.solvers.SolverResult`: ``x`` the image ``(T, Y, X)`` (dtype of
        ``A^H y``), the iterations run and the relative residual per frame.
    """
    _check_options(iterations, lam=lam)
    ls = LeastSquares(op, y, weights)
    b = ls.rhs
    normal = ls.normal + lam * Identity()
    nb = b.ndim - 2 if batch_dims is None else int(batch_dims)
    return conjugate_gradient(
        normal, b, iterations=iterations, tol=tol, batch_dims=nb, progress=progress, desc="CG-SENSE"
    )


@torch.no_grad()
def cg_sense(
    data: RadialData,
    iterations: int = DEFAULTS["cg_sense"]["iterations"],
    lam: float = DEFAULTS["cg_sense"]["lam"],
    tol: float | None = None,
    backend: str = "auto",
    progress: bool = False,
) -> torch.Tensor:
    """CG-SENSE per frame: solve ``(A^H D A + lam I) x = A^H D y`` by ``iterations`` CG steps.

    All frames are solved at once (one batched NUFFT per step) with per-frame step sizes, i.e.
    exactly ``T`` independent CG runs (:func:`cg_sense_operator`). Starts from zero. ``lam >= 0``
    is dimensionless (``A^H D A`` is close to the identity). ``tol`` stops once every frame's
    relative residual is at most ``tol`` (None: run all iterations). Returns ``(T, Y, X)``
    complex64.
    """
    op, y, w = _radial(data, backend)
    res = cg_sense_operator(op, y, w, lam, iterations, tol, 1, progress)
    log.info("CG-SENSE: %d iterations, max relative residual %.2e", res.iterations,
             float(res.residual.max()))  # fmt: skip
    return res.x.to(torch.complex64)


class _WarmTV:
    """The prox of ``lam_tv * s * TV_t`` for FISTA, warm-starting each call from the last dual."""

    def __init__(self, weight: float, shape: tuple[int, ...], like: torch.Tensor):
        self.weight = weight
        self.p = torch.zeros(
            (max(shape[0] - 1, 0),) + shape[1:], dtype=like.dtype, device=like.device
        )

    def __call__(self, v: torch.Tensor, step: float) -> torch.Tensor:
        if v.shape[0] < 2:
            return v
        x, self.p = temporal_tv_prox(v, step * self.weight, self.p)
        return x


@torch.no_grad()
def grasp(
    data: RadialData,
    lam_tv: float = DEFAULTS["grasp"]["lam_tv"],
    iterations: int = DEFAULTS["grasp"]["iterations"],
    backend: str = "auto",
    progress: bool = False,
) -> torch.Tensor:
    """GRASP-style temporal-TV reconstruction by FISTA (``(T, Y, X)`` complex64).

    Minimises ``1/2 |D^(1/2)(A x - y)|^2 + lam_tv * s * sum_t |x[t+1] - x[t]|`` with ``s`` the
    peak of the gridding image; step ``1/L`` with ``L`` the largest eigenvalue of ``A^H D A``
    (power iteration); starts from the gridding image.
    """
    _check_options(iterations, lam_tv=lam_tv)
    ls = LeastSquares(*_radial(data, backend))
    b = ls.rhs
    if b.shape[0] < 2:
        log.warning("GRASP on a single frame: temporal TV has no effect (CG-SENSE-like result)")
    step = 1.0 / (1.05 * ls.lipschitz())
    prox = _WarmTV(lam_tv * _scale(b), tuple(b.shape), b)
    t0 = time.perf_counter()
    res = fista(ls.gradient, prox, b, step, iterations, progress=progress, desc="GRASP")
    log.info("GRASP: %d iterations in %.1f s", res.iterations, time.perf_counter() - t0)
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
