"""2-D non-uniform FFT (radial sampling) as a :class:`~mrphys.physics.linop.Linop`.

Units and conventions
---------------------
A trajectory ``traj`` has shape ``(T, K, 2)``: ``T`` frames, ``K`` samples per frame, and the last
axis ``(ky, kx)`` in **radians per pixel**, each in ``[-pi, pi)``. ``ky`` pairs with the image's
``Y`` axis (rows, dim -2) and ``kx`` with ``X`` (columns, dim -1). The forward operator is

    y[t, k] = 1/sqrt(Ny*Nx) * sum_n x[t, n] * exp(-i*(ky[t,k]*(ny - Ny//2) + kx[t,k]*(nx - Nx//2)))

so on the Cartesian grid ``k = 2*pi*(m - N//2)/N`` it equals the centred orthonormal FFT of
:mod:`mrphys.physics.fourier`. The adjoint is the conjugate-transposed sum.

Backends
--------
``"finufft"``: the Flatiron NUFFT (CPU, exponential-of-semicircle kernel), forward = type 2,
adjoint = type 1, wrapped in a :class:`torch.autograd.Function` whose gradient is the other
transform. ``"torchkbnufft"``: Kaiser-Bessel NUFFT in pure torch (runs on CUDA, autograd native).
``"auto"`` picks finufft for CPU tensors and torchkbnufft for CUDA tensors; ``benchmarks/nufft.py``
measured finufft as faster and more accurate on CPU (see ``docs/encoding.md``).

Golden-angle radial sampling and its density compensation live here as well.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch

from mrphys.errors import MrphysError, check, check_finite
from mrphys.physics.linop import Linop

log = logging.getLogger(__name__)

#: 180 deg / golden ratio: the continuous golden angle of radial MRI (Winkelmann 2007).
GOLDEN_ANGLE_DEG = 180.0 * (math.sqrt(5.0) - 1.0) / 2.0  # 111.24611797...

BACKENDS = ("auto", "finufft", "torchkbnufft")


# --------------------------------------------------------------------------------------------
# trajectory and density compensation
# --------------------------------------------------------------------------------------------


def golden_angle_radial(
    n_frames: int,
    spokes_per_frame: int,
    n_samples: int,
    angle_deg: float = GOLDEN_ANGLE_DEG,
    first_spoke: int = 0,
) -> torch.Tensor:
    """Continuous golden-angle radial trajectory, ``(T, S * n_samples, 2)`` float32 rad/pixel.

    Spoke ``s`` of the whole series (``s = first_spoke + t * spokes_per_frame + j`` for spoke
    ``j`` of frame ``t``) lies at angle ``s * angle_deg`` from the ``kx`` axis; consecutive spokes
    go to consecutive frames. Each spoke is a full diameter with ``n_samples`` points at radii
    ``(i - n_samples // 2) * 2 * pi / n_samples``, ``i = 0..n_samples-1`` (so ``[-pi, pi)``, one
    sample exactly at the centre). For an ``N x N`` image use ``n_samples = 2 N`` (2x readout
    oversampling). The last axis is ``(ky, kx)``.
    """
    check(int(n_frames) >= 1, f"n_frames must be a positive integer; got {n_frames}.")
    check(
        int(spokes_per_frame) >= 1,
        f"spokes_per_frame must be a positive integer; got {spokes_per_frame}.",
    )
    check(int(n_samples) >= 2, f"n_samples must be an integer >= 2; got {n_samples}.")
    check_finite("angle_deg", angle_deg)
    t, s, n = int(n_frames), int(spokes_per_frame), int(n_samples)
    idx = torch.arange(t * s, dtype=torch.float64) + int(first_spoke)
    theta = torch.remainder(idx * math.radians(angle_deg), 2 * math.pi)  # (T*S,)
    r = (torch.arange(n, dtype=torch.float64) - n // 2) * (2 * math.pi / n)  # (n,)
    ky = r[None, :] * torch.sin(theta)[:, None]
    kx = r[None, :] * torch.cos(theta)[:, None]
    traj = torch.stack([ky, kx], dim=-1).reshape(t, s * n, 2)
    return traj.to(torch.float32)


def _infer_n_samples(traj: torch.Tensor) -> int:
    """Samples per spoke of a radial trajectory: the run length of a constant line angle."""
    k = traj[0].to(torch.float64)
    r = torch.linalg.vector_norm(k, dim=-1)
    ang = torch.remainder(torch.atan2(k[:, 0], k[:, 1]), math.pi)
    ok = r > 1e-9
    ref = ang[ok][0]
    d = torch.remainder(ang - ref + math.pi / 2, math.pi) - math.pi / 2
    changed = torch.nonzero(ok & (d.abs() > 1e-6))
    n = int(changed[0]) if changed.numel() else traj.shape[1]
    # the first spoke's centre sample has no angle; a spoke begins at its most negative radius
    if traj.shape[1] % n != 0:
        raise MrphysError(
            "could not infer the samples per spoke of the trajectory; pass n_samples explicitly."
        )
    return n


def radial_dcf(
    traj: torch.Tensor,
    n_samples: int | None = None,
    im_size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Voronoi-like density compensation of a radial trajectory, ``(T, K)`` float32.

    Each sample's weight is the k-space area it represents: for a spoke whose share of the
    half-circle of angles is ``dphi`` (half the angular gaps to its two neighbouring spokes of the
    same frame, angles taken modulo pi), a sample at radius ``r != 0`` with radial spacing ``dr``
    represents ``dphi * |r| * dr``; the centre sample, shared by all ``S`` spokes of the frame,
    represents ``pi * (dr / 2)**2 / S``. The area is scaled by ``Ny * Nx / (2 pi)**2`` so that
    ``A^H D A`` is close to the identity (restricted to the disc ``|k| < pi``) for the operator of
    :class:`RadialNUFFT`; with uniformly spaced spokes it reduces to the ramp filter.

    Args:
        traj: ``(T, K, 2)`` radial trajectory (rad/pixel) from :func:`golden_angle_radial`.
        n_samples: samples per spoke; inferred from the trajectory when None.
        im_size: image size ``(Ny, Nx)``; ``(n_samples // 2,) * 2`` when None.
    """
    check(
        traj.ndim == 3 and traj.shape[-1] == 2,
        f"traj must have shape (T, K, 2); got {tuple(traj.shape)}.",
    )
    n = int(n_samples) if n_samples is not None else _infer_n_samples(traj)
    t, k, _ = traj.shape
    check(k % n == 0, f"traj has {k} samples per frame, not a multiple of n_samples={n}.")
    s = k // n
    if im_size is None:
        im_size = (n // 2, n // 2)
    tr = traj.detach().to(torch.float64).cpu().reshape(t, s, n, 2)
    r = torch.linalg.vector_norm(tr, dim=-1)  # (T, S, n)
    # spoke angle from its outermost sample (mod pi: a diameter covers theta and theta + pi)
    far = r.argmax(dim=-1, keepdim=True)
    p = torch.gather(tr, 2, far[..., None].expand(t, s, 1, 2))[:, :, 0]  # (T, S, 2)
    theta = torch.remainder(torch.atan2(p[..., 0], p[..., 1]), math.pi)  # (T, S)
    order = torch.argsort(theta, dim=-1)
    ts = torch.gather(theta, 1, order)
    gap_next = torch.remainder(torch.roll(ts, -1, dims=1) - ts, math.pi)
    gap_prev = torch.remainder(ts - torch.roll(ts, 1, dims=1), math.pi)
    if s == 1:
        gap_next = gap_prev = torch.full_like(ts, math.pi)
    share_sorted = 0.5 * (gap_next + gap_prev)
    share = torch.empty_like(share_sorted).scatter_(1, order, share_sorted)  # (T, S)
    # radial spacing: difference between neighbouring samples on the spoke
    dr = (tr[:, :, 1] - tr[:, :, 0]).norm(dim=-1)  # (T, S)
    area = share[..., None] * r * dr[..., None]
    centre = r < 1e-9 * torch.clamp(dr[..., None], min=1e-12)
    centre_area = math.pi * (dr[..., None] / 2) ** 2 / s
    area = torch.where(centre, centre_area.expand_as(area), area)
    w = area * (im_size[0] * im_size[1]) / (2 * math.pi) ** 2
    return w.reshape(t, k).to(torch.float32)


# --------------------------------------------------------------------------------------------
# finufft backend
# --------------------------------------------------------------------------------------------


def _finufft_eps(dtype: torch.dtype) -> float:
    return 1e-11 if dtype == torch.complex128 else 1e-6


def _finufft_type2(
    x: np.ndarray, coords: list[tuple[np.ndarray, np.ndarray]], eps: float, threads: int
):
    """x: (B, T, Y, X) complex -> (B, T, K) via type 2 per frame (isign -1), B transforms each."""
    import finufft

    b, t = x.shape[:2]
    k = coords[0][0].shape[0]
    out = np.empty((t, b, k), dtype=x.dtype)
    for i in range(t):
        f = np.ascontiguousarray(x[:, i])
        out[i] = finufft.nufft2d2(
            coords[i][0], coords[i][1], f, eps=eps, isign=-1, nthreads=threads
        ).reshape(b, k)
    return np.ascontiguousarray(np.moveaxis(out, 0, 1))


def _finufft_type1(
    y: np.ndarray,
    coords: list[tuple[np.ndarray, np.ndarray]],
    im_size: tuple[int, int],
    eps: float,
    threads: int,
):
    """y: (B, T, K) complex -> (B, T, Y, X) via type 1 per frame (isign +1)."""
    import finufft

    b, t = y.shape[:2]
    out = np.empty((t, b) + tuple(im_size), dtype=y.dtype)
    for i in range(t):
        c = np.ascontiguousarray(y[:, i])
        out[i] = finufft.nufft2d1(
            coords[i][0],
            coords[i][1],
            c,
            n_modes=tuple(im_size),
            eps=eps,
            isign=1,
            nthreads=threads,
        ).reshape((b,) + tuple(im_size))
    return np.ascontiguousarray(np.moveaxis(out, 0, 1))


class _FinufftForward(torch.autograd.Function):
    """``(B, T, Y, X) -> (B, T, K)``; gradient = the adjoint (type-1) transform."""

    @staticmethod
    def forward(ctx, x, op):  # type: ignore[override]
        ctx.op = op
        y = _finufft_type2(
            x.detach().cpu().numpy(), op._coords(x.dtype), _finufft_eps(x.dtype), op.threads
        )
        return torch.from_numpy(y).to(x.device) * op.scale

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        op = ctx.op
        g = g.contiguous()
        gx = _finufft_type1(
            g.detach().cpu().numpy(),
            op._coords(g.dtype),
            op.im_size,
            _finufft_eps(g.dtype),
            op.threads,
        )
        return torch.from_numpy(gx).to(g.device) * op.scale, None


class _FinufftAdjoint(torch.autograd.Function):
    """``(B, T, K) -> (B, T, Y, X)``; gradient = the forward (type-2) transform."""

    @staticmethod
    def forward(ctx, y, op):  # type: ignore[override]
        ctx.op = op
        x = _finufft_type1(
            y.detach().cpu().numpy(),
            op._coords(y.dtype),
            op.im_size,
            _finufft_eps(y.dtype),
            op.threads,
        )
        return torch.from_numpy(x).to(y.device) * op.scale

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        op = ctx.op
        g = g.contiguous()
        gy = _finufft_type2(
            g.detach().cpu().numpy(), op._coords(g.dtype), _finufft_eps(g.dtype), op.threads
        )
        return torch.from_numpy(gy).to(g.device) * op.scale, None


# --------------------------------------------------------------------------------------------
# the operator
# --------------------------------------------------------------------------------------------


class RadialNUFFT(Linop):
    """Per-frame 2-D NUFFT: image ``(..., T, Y, X)`` -> k-space ``(..., T, K)``.

    Args:
        traj: ``(T, K, 2)`` trajectory in rad/pixel, last axis ``(ky, kx)`` (see module doc).
            A ``(K, 2)`` trajectory is used for a single frame (``T = 1``).
        im_size: image size ``(Y, X)``.
        backend: ``"auto"`` (finufft on CPU, torchkbnufft on CUDA), ``"finufft"`` or
            ``"torchkbnufft"``.
        threads: finufft threads (default 1: on a shared or small-problem CPU, OpenMP threads
            waiting on each other cost far more than they give; ``benchmarks/nufft.py`` measures
            both). 0 lets finufft use every core.

    Any leading dims (batch, coils) before ``T`` pass through: for coil images use
    ``(..., C, T, Y, X)`` or let :class:`mrphys.physics.coils.SenseOp` arrange them. Inputs are
    complex (complex64 or complex128); output dtype and device follow the input. The operator is
    differentiable with respect to the image (not the trajectory).
    """

    def __init__(
        self,
        traj: torch.Tensor,
        im_size: tuple[int, int],
        backend: str = "auto",
        threads: int = 1,
    ):
        traj = torch.as_tensor(traj)
        if traj.ndim == 2:
            traj = traj[None]
        check(
            traj.ndim == 3 and traj.shape[-1] == 2,
            f"traj must have shape (T, K, 2) in rad/pixel; got {tuple(traj.shape)}.",
        )
        check_finite("traj", traj)
        check(
            float(traj.detach().abs().max()) <= math.pi * (1 + 1e-5),
            "traj must be in radians per pixel within [-pi, pi]; got values beyond pi "
            "(convert cycles/pixel by multiplying with 2*pi).",
        )
        check(
            len(im_size) == 2 and all(int(s) > 0 for s in im_size),
            f"im_size must be two positive sizes (Y, X); got {tuple(im_size)}.",
        )
        if backend not in BACKENDS:
            raise MrphysError(
                f"NUFFT backend must be one of {', '.join(BACKENDS)}; got {backend!r}."
            )
        self.traj = traj.detach()
        self.im_size = (int(im_size[0]), int(im_size[1]))
        self.n_frames, self.n_k = int(traj.shape[0]), int(traj.shape[1])
        self.backend = backend
        check(int(threads) >= 0, f"threads must be an integer >= 0; got {threads}.")
        self.threads = int(threads)
        self.scale = 1.0 / math.sqrt(self.im_size[0] * self.im_size[1])
        self.ishape = (self.n_frames,) + self.im_size
        self.oshape = (self.n_frames, self.n_k)
        self._coord_cache: dict[torch.dtype, list] = {}
        self._kb: dict = {}

    # -- helpers ---------------------------------------------------------------------------
    def _coords(self, dtype: torch.dtype) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per-frame (ky, kx) numpy coordinates in the precision finufft needs for ``dtype``."""
        if dtype not in self._coord_cache:
            npd = np.float64 if dtype == torch.complex128 else np.float32
            tr = self.traj.cpu().numpy().astype(npd)
            self._coord_cache[dtype] = [
                (np.ascontiguousarray(tr[i, :, 0]), np.ascontiguousarray(tr[i, :, 1]))
                for i in range(self.n_frames)
            ]
        return self._coord_cache[dtype]

    def _backend_for(self, x: torch.Tensor) -> str:
        if self.backend == "auto":
            return "torchkbnufft" if x.device.type == "cuda" else "finufft"
        return self.backend

    def _kb_ops(self, x: torch.Tensor):
        key = (x.device, x.dtype)
        if key not in self._kb:
            import torchkbnufft as tkbn

            real = torch.float64 if x.dtype == torch.complex128 else torch.float32
            grid = tuple(2 * s for s in self.im_size)
            fwd = tkbn.KbNufft(im_size=self.im_size, grid_size=grid).to(device=x.device, dtype=real)
            adj = tkbn.KbNufftAdjoint(im_size=self.im_size, grid_size=grid).to(
                device=x.device, dtype=real
            )
            omega = self.traj.to(device=x.device, dtype=real).permute(0, 2, 1).contiguous()
            self._kb[key] = (fwd, adj, omega)
        return self._kb[key]

    def _kb_apply(self, z: torch.Tensor, forward: bool) -> torch.Tensor:
        """torchkbnufft on ``(B, T, Y, X)`` (forward) or ``(B, T, K)`` (adjoint).

        On CUDA all frames go in one call (frames as the batch dim, one trajectory each). On CPU
        the frames are transformed one at a time with a shared 2-D trajectory: torchkbnufft's
        per-batch trajectory path forks TorchScript tasks, which with torch 2.13 intermittently
        aborts the interpreter at exit ("terminate called without an active exception").
        """
        fwd, adj, omega = self._kb_ops(z)
        op = fwd if forward else adj
        if z.device.type == "cuda":
            out = op(z.transpose(0, 1), omega)  # frames as the batch: (T, B, ...)
            return out.transpose(0, 1) * self.scale
        frames = [op(z[:, t][None], omega[t])[0] for t in range(self.n_frames)]  # (B, ...) each
        return torch.stack(frames, dim=1) * self.scale

    @staticmethod
    def _as_complex(x: torch.Tensor) -> torch.Tensor:
        if x.is_complex():
            return x
        return x.to(torch.complex128 if x.dtype == torch.float64 else torch.complex64)

    # -- Linop -----------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Image ``(..., T, Y, X)`` -> k-space ``(..., T, K)``."""
        check(
            x.ndim >= 3 and tuple(x.shape[-3:]) == self.ishape,
            f"RadialNUFFT input must have shape (..., {self.n_frames}, {self.im_size[0]}, "
            f"{self.im_size[1]}) (frames, Y, X); got {tuple(x.shape)}.",
        )
        x = self._as_complex(x)
        lead = x.shape[:-3]
        xb = x.reshape((-1,) + self.ishape)  # (B, T, Y, X)
        if self._backend_for(x) == "finufft":
            y = _FinufftForward.apply(xb.contiguous(), self)
        else:
            y = self._kb_apply(xb, forward=True)
        return y.reshape(lead + self.oshape)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """k-space ``(..., T, K)`` -> image ``(..., T, Y, X)``."""
        check(
            y.ndim >= 2 and tuple(y.shape[-2:]) == self.oshape,
            f"RadialNUFFT k-space must have shape (..., {self.n_frames}, {self.n_k}) "
            f"(frames, samples); got {tuple(y.shape)}.",
        )
        y = self._as_complex(y)
        lead = y.shape[:-2]
        yb = y.reshape((-1,) + self.oshape)
        if self._backend_for(y) == "finufft":
            x = _FinufftAdjoint.apply(yb.contiguous(), self)
        else:
            x = self._kb_apply(yb, forward=False)
        return x.reshape(lead + self.ishape)


def ndft_matrix(traj: torch.Tensor, im_size: tuple[int, int]) -> torch.Tensor:
    """Exact non-uniform DFT matrices ``(T, K, Y*X)`` complex128 of :class:`RadialNUFFT`.

    For tests and accuracy benchmarks on small sizes only (memory ``T*K*Y*X``).
    """
    traj = torch.as_tensor(traj, dtype=torch.float64)
    if traj.ndim == 2:
        traj = traj[None]
    ny, nx = im_size
    gy = torch.arange(ny, dtype=torch.float64) - ny // 2
    gx = torch.arange(nx, dtype=torch.float64) - nx // 2
    ph = traj[..., 0, None, None] * gy[:, None] + traj[..., 1, None, None] * gx[None, :]
    return (torch.exp(-1j * ph) / math.sqrt(ny * nx)).reshape(traj.shape[0], traj.shape[1], -1)
