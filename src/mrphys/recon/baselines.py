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
from tqdm.auto import tqdm

from mrphys.errors import check
from mrphys.physics.coils import SenseOp
from mrphys.physics.radial import RadialData

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


def _setup(data: RadialData, backend: str) -> tuple[SenseOp, torch.Tensor, torch.Tensor]:
    check(isinstance(data, RadialData), f"data must be a RadialData; got {type(data).__name__}.")
    op = data.operator(backend=backend)
    y = data.kspace.to(torch.complex64)
    w = data.dcf.to(device=y.device, dtype=torch.float32)[:, None, :]  # (T, 1, K)
    return op, y, w


def _normal(op: SenseOp, w: torch.Tensor):
    def apply(x: torch.Tensor) -> torch.Tensor:
        return op.adjoint(op.forward(x) * w)

    return apply


def _frame_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Real part of the per-frame inner product ``<a, b>``: ``(T, Y, X) -> (T, 1, 1)``."""
    return (a.conj() * b).real.sum(dim=(-2, -1), keepdim=True)


def _max_eig(normal, shape, device, iterations: int = 12, seed: int = 0) -> float:
    """Largest eigenvalue of the (Hermitian, PSD) normal operator by power iteration."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.randn(shape + (2,), generator=g, dtype=torch.float32)
    x = torch.view_as_complex(x).to(device)
    x = x / x.norm()
    lam = 1.0
    for _ in range(iterations):
        z = normal(x)
        lam = float(z.norm())
        x = z / max(lam, 1e-30)
    return lam


def _scale(x0: torch.Tensor) -> float:
    s = float(x0.abs().max())
    return s if s > 0 and math.isfinite(s) else 1.0


def _tv_prox(v: torch.Tensor, mu: float, p: torch.Tensor, iterations: int = 20):
    """``argmin_x 1/2 |x - v|^2 + mu sum_t |x[t+1] - x[t]|`` (complex, per pixel), dual PG.

    Returns the minimiser and the dual variable ``p`` ``(T-1, Y, X)`` (for warm starts).
    """

    def dt(x):  # forward difference along time
        return x[1:] - x[:-1]

    def dtt(q):  # its adjoint
        z = torch.zeros((1,) + q.shape[1:], dtype=q.dtype, device=q.device)
        return torch.cat([z, q]) - torch.cat([q, z])

    for _ in range(iterations):
        q = p + 0.25 * dt(v - dtt(p))
        p = q / torch.clamp(q.abs() / mu, min=1.0)  # project onto |p| <= mu
    return v - dtt(p), p


def _soft(x: torch.Tensor, thr: float) -> torch.Tensor:
    mag = x.abs()
    return x * torch.clamp(1 - thr / torch.clamp(mag, min=1e-30), min=0.0)


def _svt_abs(x: torch.Tensor, thr: float) -> torch.Tensor:
    """Singular value thresholding of the Casorati matrix ``(T, Y*X)`` at ``thr``.

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


# --------------------------------------------------------------------------------------------
# methods
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def gridding(data: RadialData, backend: str = "auto") -> torch.Tensor:
    """Density-compensated NUFFT adjoint, coil-combined: ``A^H D y``, ``(T, Y, X)`` complex64."""
    op, y, w = _setup(data, backend)
    return op.adjoint(y * w).to(torch.complex64)


@torch.no_grad()
def cg_sense(
    data: RadialData,
    iterations: int = DEFAULTS["cg_sense"]["iterations"],
    lam: float = DEFAULTS["cg_sense"]["lam"],
    backend: str = "auto",
    progress: bool = False,
) -> torch.Tensor:
    """CG-SENSE per frame: solve ``(A^H D A + lam I) x = A^H D y`` by ``iterations`` CG steps.

    All frames are solved at once (one batched NUFFT per step) with per-frame step sizes, i.e.
    exactly ``T`` independent CG runs. Starts from zero. ``lam >= 0`` is dimensionless
    (``A^H D A`` is close to the identity). Returns ``(T, Y, X)`` complex64.
    """
    check(int(iterations) >= 1, f"iterations must be a positive integer; got {iterations}.")
    check(lam >= 0 and math.isfinite(lam), f"lam must be a finite number >= 0; got {lam}.")
    op, y, w = _setup(data, backend)
    normal = _normal(op, w)
    b = op.adjoint(y * w)
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rs = _frame_dot(r, r)
    tiny = torch.finfo(torch.float32).tiny
    for _ in tqdm(range(int(iterations)), desc="CG-SENSE", disable=not progress, leave=False):
        ap = normal(p) + lam * p
        alpha = rs / torch.clamp(_frame_dot(p, ap), min=tiny)
        x = x + alpha * p
        r = r - alpha * ap
        rs_new = _frame_dot(r, r)
        p = r + (rs_new / torch.clamp(rs, min=tiny)) * p
        rs = rs_new
    return x.to(torch.complex64)


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
    check(int(iterations) >= 1, f"iterations must be a positive integer; got {iterations}.")
    check(lam_tv >= 0 and math.isfinite(lam_tv), f"lam_tv must be finite and >= 0; got {lam_tv}.")
    op, y, w = _setup(data, backend)
    normal = _normal(op, w)
    b = op.adjoint(y * w)
    if b.shape[0] < 2:
        log.warning("GRASP on a single frame: temporal TV has no effect (CG-SENSE-like result)")
    step = 1.0 / (1.05 * _max_eig(normal, tuple(b.shape), b.device))
    mu = step * lam_tv * _scale(b)
    x = b.clone()
    z = x.clone()
    p = torch.zeros((max(b.shape[0] - 1, 0),) + b.shape[1:], dtype=b.dtype, device=b.device)
    tk = 1.0
    t0 = time.perf_counter()
    for _ in tqdm(range(int(iterations)), desc="GRASP", disable=not progress, leave=False):
        v = z - step * (normal(z) - b)
        x_new, p = _tv_prox(v, mu, p) if b.shape[0] > 1 else (v, p)
        tk_new = 0.5 * (1 + math.sqrt(1 + 4 * tk * tk))
        z = x_new + ((tk - 1) / tk_new) * (x_new - x)
        x, tk = x_new, tk_new
    log.info("GRASP: %d iterations in %.1f s", iterations, time.perf_counter() - t0)
    return x.to(torch.complex64)


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
    gridding image. Solved by FISTA on the pair ``(L, S)``: a joint gradient step of size
    ``1 / (2 L_A)`` (``L_A`` = largest eigenvalue of ``A^H D A``), then singular value
    thresholding of ``L`` and soft thresholding of ``F_t S``. (Otazo's published iteration is the
    same pair of proximal maps without the momentum; it converged slowly here.)
    Starts from ``L = A^H D y``, ``S = 0``. Returns ``L + S``.
    """
    check(int(iterations) >= 1, f"iterations must be a positive integer; got {iterations}.")
    check(lam_l >= 0 and math.isfinite(lam_l), f"lam_l must be finite and >= 0; got {lam_l}.")
    check(lam_s >= 0 and math.isfinite(lam_s), f"lam_s must be finite and >= 0; got {lam_s}.")
    op, y, w = _setup(data, backend)
    normal = _normal(op, w)
    b = op.adjoint(y * w)
    step = 1.0 / (2.1 * _max_eig(normal, tuple(b.shape), b.device))
    b64 = b.reshape(b.shape[0], -1).to(torch.complex128)
    sigma0 = float(torch.linalg.eigvalsh(b64 @ b64.mH)[-1].clamp(min=0).sqrt())
    thr_l = step * lam_l * sigma0
    thr_s = step * lam_s * _scale(b)
    low, sp = b.clone(), torch.zeros_like(b)
    zl, zs = low.clone(), sp.clone()
    tk = 1.0
    for _ in tqdm(range(int(iterations)), desc="L+S", disable=not progress, leave=False):
        g = normal(zl + zs) - b
        low_new = _svt_abs(zl - step * g, thr_l)
        sf = torch.fft.fft(zs - step * g, dim=0, norm="ortho")
        sp_new = torch.fft.ifft(_soft(sf, thr_s), dim=0, norm="ortho")
        tk_new = 0.5 * (1 + math.sqrt(1 + 4 * tk * tk))
        beta = (tk - 1) / tk_new
        zl = low_new + beta * (low_new - low)
        zs = sp_new + beta * (sp_new - sp)
        low, sp, tk = low_new, sp_new, tk_new
    return (low + sp).to(torch.complex64)


METHODS = {
    "gridding": gridding,
    "cg-sense": cg_sense,
    "grasp": grasp,
    "ls": low_rank_sparse,
}
