"""2-D non-uniform FFT (radial sampling) as a :class:`~mrphys.physics.linop.Linop`.

Units and conventions
---------------------
A radial trajectory ``traj`` has shape ``(T, S, N, 2)``: ``T`` frames, ``S`` spokes per frame,
``N`` samples per spoke, and the last axis ``(ky, kx)`` in **radians per pixel**, each in
``[-pi, pi)``. Any other trajectory is given as ``(T, K, 2)`` (``K`` samples per frame) or
``(K, 2)`` (one frame). The k-space of a frame has the trajectory's sample axes: ``(S, N)`` or
``(K,)``. ``ky`` pairs with the image's ``Y`` axis (rows, dim -2) and ``kx`` with ``X`` (columns,
dim -1). The forward operator is

    y[t, k] = 1/sqrt(Ny*Nx) * sum_n x[t, n] * exp(-i*(ky[t,k]*(ny - Ny//2) + kx[t,k]*(nx - Nx//2)))

so on the Cartesian grid ``k = 2*pi*(m - N//2)/N`` it equals the centred orthonormal FFT of
:mod:`mrphys.physics.fourier`. The adjoint is the conjugate-transposed sum.

Backends
--------
``"finufft"``: the Flatiron NUFFT (CPU, exponential-of-semicircle kernel), forward = type 2,
adjoint = type 1, wrapped in one :class:`torch.autograd.Function` whose gradient is the other
transform. One ``finufft.Plan`` per frame and direction is made on first use (points set once) and
reused by every later call, the coils (and any batch) of a frame transformed together
(``n_trans``).
``"torchkbnufft"``: Kaiser-Bessel NUFFT in pure torch (runs on CUDA, autograd native).
``"auto"`` picks finufft for CPU tensors and torchkbnufft for CUDA tensors; ``benchmarks/nufft.py``
measured finufft as faster and more accurate on CPU (see ``docs/encoding.md``).

Views
-----
:meth:`RadialNUFFT.frames` restricts the operator to a subset of frames and
:meth:`RadialNUFFT.on_coils` makes it act on coil images ``(..., T, C, Y, X)``; both views share
the cached coordinates and plans of the operator they come from.

Golden-angle radial sampling and its density compensation live here as well.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Sequence

import numpy as np
import torch

from mrphys.errors import MrphysError, check, check_finite
from mrphys.physics.linop import Linop, as_complex

log = logging.getLogger(__name__)

#: 180 deg / golden ratio: the continuous golden angle of radial MRI (Winkelmann 2007).
GOLDEN_ANGLE_DEG = 180.0 * (math.sqrt(5.0) - 1.0) / 2.0  # 111.24611797...

BACKENDS = ("auto", "finufft", "torchkbnufft")

#: finufft accuracy for complex64 data (chosen by measurement, ``docs/encoding.md``): CG-SENSE
#: on PINCAT gives the same PSNR (to 0.05 dB; single-precision arithmetic dominates) for any
#: ``eps`` from 1e-2 to 1e-6, and 2e-5 is the tightest that finufft reaches with its fast
#: 1.25x fine grid (relative error about 3e-5 against the exact NDFT, 200x below sigpy's).
DEFAULT_EPS = 2e-5


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
    """Continuous golden-angle radial trajectory, ``(T, S, N, 2)`` float32 rad/pixel.

    Spoke ``s`` of the whole series (``s = first_spoke + t * spokes_per_frame + j`` for spoke
    ``j`` of frame ``t``) lies at angle ``s * angle_deg`` from the ``kx`` axis; consecutive spokes
    go to consecutive frames. Each spoke is a full diameter with ``N = n_samples`` points at radii
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
    traj = torch.stack([ky, kx], dim=-1).reshape(t, s, n, 2)
    return traj.to(torch.float32)


def radial_dcf(traj: torch.Tensor, im_size: tuple[int, int] | None = None) -> torch.Tensor:
    """Voronoi-like density compensation of a radial trajectory, ``(T, S, N)`` float32.

    Each sample's weight is the k-space area it represents: for a spoke whose share of the
    half-circle of angles is ``dphi`` (half the angular gaps to its two neighbouring spokes of the
    same frame, angles taken modulo pi), a sample at radius ``r != 0`` with radial spacing ``dr``
    represents ``dphi * |r| * dr``; the centre sample, shared by all ``S`` spokes of the frame,
    represents ``pi * (dr / 2)**2 / S``. The area is scaled by ``Ny * Nx / (2 pi)**2`` so that
    ``A^H D A`` is close to the identity (restricted to the disc ``|k| < pi``) for the operator of
    :class:`RadialNUFFT`; with uniformly spaced spokes it reduces to the ramp filter.

    Args:
        traj: ``(T, S, N, 2)`` radial trajectory (rad/pixel) from :func:`golden_angle_radial`.
        im_size: image size ``(Ny, Nx)``; ``(N // 2,) * 2`` when None.
    """
    check(
        traj.ndim == 4 and traj.shape[-1] == 2,
        f"traj must be a radial trajectory of shape (T, S, N, 2) (frames, spokes, samples per "
        f"spoke, (ky, kx)); got {tuple(traj.shape)}.",
    )
    t, s, n, _ = traj.shape
    if im_size is None:
        im_size = (n // 2, n // 2)
    tr = traj.detach().to(torch.float64).cpu()
    r = torch.linalg.vector_norm(tr, dim=-1)  # (T, S, N)
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
    return w.to(torch.float32)


# --------------------------------------------------------------------------------------------
# finufft backend: one autograd Function for both directions
# --------------------------------------------------------------------------------------------


class _Finufft(torch.autograd.Function):
    """``op._finufft(z, forward)``; the gradient is the same call in the other direction.

    Forward: image ``(P, T, Q, Y, X) -> (P, T, Q, K)`` (type 2); adjoint: the reverse (type 1).
    """

    @staticmethod
    def forward(ctx, z, op, forward):  # type: ignore[override]
        ctx.op, ctx.direction = op, forward
        return op._finufft(z, forward)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        return ctx.op._finufft(g.contiguous(), not ctx.direction), None, None


# --------------------------------------------------------------------------------------------
# the operator
# --------------------------------------------------------------------------------------------


class RadialNUFFT(Linop):
    """Per-frame 2-D NUFFT: image ``(..., T, Y, X)`` -> k-space ``(..., T, S, N)``.

    Args:
        traj: ``(T, S, N, 2)`` radial trajectory in rad/pixel, last axis ``(ky, kx)`` (see the
            module doc); k-space is then ``(..., T, S, N)``. A non-radial ``(T, K, 2)``
            trajectory gives k-space ``(..., T, K)``; a ``(K, 2)`` one is a single frame.
        im_size: image size ``(Y, X)``.
        backend: ``"auto"`` (finufft on CPU, torchkbnufft on CUDA), ``"finufft"`` or
            ``"torchkbnufft"``.
        threads: finufft threads (default 1: on a shared or small-problem CPU, OpenMP threads
            waiting on each other cost far more than they give; ``benchmarks/nufft.py`` measures
            both). 0 lets finufft use every core.
        eps: finufft accuracy; None (default) is :data:`DEFAULT_EPS` (``2e-5``) for complex64
            and ``1e-11`` for complex128 data. At ``eps >= 2e-5`` (complex64) or ``>= 1e-9``
            (complex128) finufft runs with its 1.25x fine grid (``upsampfac``), else 2x.
            torchkbnufft ignores it.

    finufft plans (one per frame and direction, points set once) are made on first use and kept
    by the operator (and shared with its views), so an iterative solver plans once.
        n_coils: when given, the operator acts on coil images ``(..., T, C, Y, X)`` ->
            ``(..., T, C, S, N)`` (the same transform for every coil; see :meth:`on_coils`).

    Any leading dims (batch) before ``T`` pass through. Inputs are complex (complex64 or
    complex128; real input is promoted); output dtype and device follow the input. The operator
    is differentiable with respect to the image (not the trajectory).
    """

    def __init__(
        self,
        traj: torch.Tensor,
        im_size: tuple[int, int],
        backend: str = "auto",
        threads: int = 1,
        eps: float | None = None,
        n_coils: int | None = None,
    ):
        traj = torch.as_tensor(traj)
        if traj.ndim == 2:
            traj = traj[None]
        check(
            traj.ndim in (3, 4) and traj.shape[-1] == 2 and traj.numel() > 0,
            "traj must have shape (T, S, N, 2) (radial) or (T, K, 2) in rad/pixel; "
            f"got {tuple(traj.shape)}.",
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
        check(int(threads) >= 0, f"threads must be an integer >= 0; got {threads}.")
        check(
            eps is None or (math.isfinite(float(eps)) and 0 < float(eps) < 1),
            f"eps must be None or a number in (0, 1); got {eps}.",
        )
        self.traj = traj.detach()
        self.im_size = (int(im_size[0]), int(im_size[1]))
        self.backend = backend
        self.threads = int(threads)
        self.eps = None if eps is None else float(eps)
        self.scale = 1.0 / math.sqrt(self.im_size[0] * self.im_size[1])
        # views (frames, on_coils) read the root's caches through _frame_idx
        self._root: RadialNUFFT | None = None
        self._frame_idx: tuple[int, ...] | None = None
        self._coord_cache: dict[torch.dtype, list] = {}
        self._plan_cache: dict[tuple, list] = {}
        self._kb: dict = {}
        self._set_shapes(None if n_coils is None else int(n_coils))

    def _set_shapes(self, n_coils: int | None) -> None:
        check(
            n_coils is None or n_coils >= 1, f"n_coils must be a positive integer; got {n_coils}."
        )
        self.n_coils = n_coils
        self.n_frames = int(self.traj.shape[0])
        self.kshape = tuple(int(s) for s in self.traj.shape[1:-1])
        self.n_k = math.prod(self.kshape)
        coil = () if n_coils is None else (n_coils,)
        self.ishape = (self.n_frames,) + coil + self.im_size
        self.oshape = (self.n_frames,) + coil + self.kshape

    # -- views -------------------------------------------------------------------------------
    def _view(self, frame_idx: tuple[int, ...] | None, n_coils: int | None) -> RadialNUFFT:
        root = self._root if self._root is not None else self
        v = copy.copy(self)
        v._root, v._frame_idx, v._kb = root, frame_idx, {}
        v.traj = root.traj if frame_idx is None else root.traj[list(frame_idx)]
        v._set_shapes(n_coils)
        return v

    def frames(self, idx: Sequence[int] | range) -> RadialNUFFT:
        """The operator restricted to frames ``idx`` (in order): image ``(..., len(idx), Y, X)``.

        Frame ``j`` of the result is frame ``idx[j]`` of this operator; the coordinates (and
        torchkbnufft modules) cached by this operator are reused, not recomputed.
        """
        idx = [int(i) for i in idx]
        check(
            len(idx) >= 1 and all(0 <= i < self.n_frames for i in idx),
            f"frame indices must be a non-empty list within [0, {self.n_frames}); got {idx}.",
        )
        base = self._frame_idx
        return self._view(tuple(idx if base is None else [base[i] for i in idx]), self.n_coils)

    def on_coils(self, n_coils: int) -> RadialNUFFT:
        """The same transform on coil images: ``(..., T, C, Y, X) -> (..., T, C, S, N)``."""
        return self._view(self._frame_idx, int(n_coils))

    # -- helpers ---------------------------------------------------------------------------
    def _eps(self, dtype: torch.dtype) -> float:
        if self.eps is not None:
            return self.eps
        return 1e-11 if dtype == torch.complex128 else DEFAULT_EPS

    def _coords(self, dtype: torch.dtype) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per-frame (ky, kx) numpy coordinates in the precision finufft needs for ``dtype``."""
        root = self._root if self._root is not None else self
        if dtype not in root._coord_cache:
            npd = np.float64 if dtype == torch.complex128 else np.float32
            tr = root.traj.cpu().numpy().astype(npd).reshape(root.n_frames, -1, 2)
            root._coord_cache[dtype] = [
                (np.ascontiguousarray(tr[i, :, 0]), np.ascontiguousarray(tr[i, :, 1]))
                for i in range(root.n_frames)
            ]
        full = root._coord_cache[dtype]
        return full if self._frame_idx is None else [full[i] for i in self._frame_idx]

    def _plans(self, dtype: torch.dtype, n_trans: int, forward: bool) -> list:
        """finufft plans of this operator's frames for ``n_trans`` transforms of ``dtype``.

        One plan per frame and direction, made on first use with its points set once
        (``setpts``) and kept by the root operator, so iterative solvers pay the planning
        (FFTW plan, point sorting) once per trajectory, not once per call.
        """
        import finufft

        root = self._root if self._root is not None else self
        key = (dtype, int(n_trans), bool(forward))
        plans = root._plan_cache.setdefault(key, [None] * root.n_frames)
        frames = range(root.n_frames) if self._frame_idx is None else self._frame_idx
        coords = root._coords(dtype)
        eps = self._eps(dtype)
        for i in frames:
            if plans[i] is None:
                plan = finufft.Plan(
                    2 if forward else 1,
                    self.im_size,
                    n_trans=int(n_trans),
                    eps=eps,
                    isign=-1 if forward else 1,
                    nthreads=self.threads,
                    dtype="complex128" if dtype == torch.complex128 else "complex64",
                    upsampfac=_upsampfac(eps, dtype),
                )
                plan.setpts(*coords[i])
                plans[i] = plan
        return [plans[i] for i in frames]

    def _finufft(self, z: torch.Tensor, forward: bool) -> torch.Tensor:
        """finufft per frame on ``(P, T, Q, Y, X)`` (forward) or ``(P, T, Q, K)`` (adjoint).

        The ``P * Q`` images (or sample sets) of a frame go to finufft as one batch
        (``n_trans``) through the frame's cached plan.
        """
        arr = z.detach().cpu().numpy()
        p, t, q = arr.shape[:3]
        plans = self._plans(z.dtype, p * q, forward)
        tail = (self.n_k,) if forward else self.im_size
        out = np.empty((p, t, q) + tail, dtype=arr.dtype)
        for i in range(t):
            src = arr[:, i].reshape((p * q,) + arr.shape[3:])
            if p == 1:  # write straight into the output frame (contiguous)
                plans[i].execute(np.ascontiguousarray(src), out=out[0, i].reshape((q,) + tail))
            else:
                out[:, i] = plans[i].execute(np.ascontiguousarray(src)).reshape((p, q) + tail)
        res = torch.from_numpy(out)
        res.mul_(self.scale)
        return res.to(z.device)

    def _backend_for(self, x: torch.Tensor) -> str:
        if self.backend == "auto":
            return "torchkbnufft" if x.device.type == "cuda" else "finufft"
        return self.backend

    def _kb_ops(self, x: torch.Tensor):
        key = (x.device, x.dtype)
        if key not in self._kb:
            root = self._root
            if root is not None:  # a view: the root's modules, its own frames of omega
                fwd, adj, omega = root._kb_ops(x)
                if self._frame_idx is not None:
                    omega = omega[list(self._frame_idx)]
                self._kb[key] = (fwd, adj, omega)
                return self._kb[key]
            import torchkbnufft as tkbn

            real = torch.float64 if x.dtype == torch.complex128 else torch.float32
            grid = tuple(2 * s for s in self.im_size)
            fwd = tkbn.KbNufft(im_size=self.im_size, grid_size=grid).to(device=x.device, dtype=real)
            adj = tkbn.KbNufftAdjoint(im_size=self.im_size, grid_size=grid).to(
                device=x.device, dtype=real
            )
            tr = self.traj.to(device=x.device, dtype=real).reshape(self.n_frames, -1, 2)
            self._kb[key] = (fwd, adj, tr.permute(0, 2, 1).contiguous())
        return self._kb[key]

    def _kb_apply(self, z: torch.Tensor, forward: bool) -> torch.Tensor:
        """torchkbnufft on ``(P, T, Q, Y, X)`` (forward) or ``(P, T, Q, K)`` (adjoint).

        On CUDA all frames go in one call (frames as the batch dim, one trajectory each). On CPU
        the frames are transformed one at a time with a shared 2-D trajectory: torchkbnufft's
        per-batch trajectory path forks TorchScript tasks, which with torch 2.13 intermittently
        aborts the interpreter at exit ("terminate called without an active exception").
        """
        fwd, adj, omega = self._kb_ops(z)
        op = fwd if forward else adj
        p, t, q = z.shape[:3]
        tail = (self.n_k,) if forward else self.im_size
        if z.device.type == "cuda":
            zt = z.transpose(0, 1).reshape((t, p * q) + z.shape[3:])  # frames as the batch
            out = op(zt, omega).reshape((t, p, q) + tail).transpose(0, 1)
            return out * self.scale
        frames = [
            op(z[:, i].reshape((1, p * q) + z.shape[3:]), omega[i])[0].reshape((p, q) + tail)
            for i in range(t)
        ]
        return torch.stack(frames, dim=1) * self.scale

    def _describe(self, forward: bool) -> str:
        coil = "coils, " if self.n_coils is not None else ""
        if forward:
            return f"input must have shape (..., {_dims(self.ishape)}) (frames, {coil}Y, X)"
        samples = "spokes, samples" if len(self.kshape) == 2 else "samples"
        return f"k-space must have shape (..., {_dims(self.oshape)}) (frames, {coil}{samples})"

    def _apply(self, v: torch.Tensor, forward: bool) -> torch.Tensor:
        inner, outer = (self.ishape, self.oshape) if forward else (self.oshape, self.ishape)
        nd = len(inner)
        check(
            v.ndim >= nd and tuple(v.shape[-nd:]) == inner,
            f"RadialNUFFT {self._describe(forward)}; got {tuple(v.shape)}.",
        )
        v = as_complex(v)
        lead = v.shape[:-nd]
        q = 1 if self.n_coils is None else self.n_coils
        tail = self.im_size if forward else (self.n_k,)
        z = v.reshape((-1, self.n_frames, q) + tail)  # (P, T, Q, ...)
        if self._backend_for(v) == "finufft":
            out = _Finufft.apply(z.contiguous(), self, forward)
        else:
            out = self._kb_apply(z, forward)
        return out.reshape(lead + outer)

    # -- Linop -----------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Image ``(..., T, [C,] Y, X)`` -> k-space ``(..., T, [C,] S, N)`` (or ``(..., K)``)."""
        return self._apply(x, True)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """k-space ``(..., T, [C,] S, N)`` (or ``(..., K)``) -> image ``(..., T, [C,] Y, X)``."""
        return self._apply(y, False)


def _upsampfac(eps: float, dtype: torch.dtype) -> float:
    """finufft's fine-grid oversampling for accuracy ``eps``: 1.25 (a 1.6x smaller fine grid and
    a narrower kernel, several times faster here) wherever it reaches ``eps``, else 2."""
    floor = 1e-9 if dtype == torch.complex128 else 2e-5
    return 1.25 if eps >= floor else 2.0


def _dims(shape: tuple[int, ...]) -> str:
    return ", ".join(str(s) for s in shape)


def ndft_matrix(traj: torch.Tensor, im_size: tuple[int, int]) -> torch.Tensor:
    """Exact non-uniform DFT matrices ``(T, K, Y*X)`` complex128 of :class:`RadialNUFFT`.

    ``traj`` is ``(T, S, N, 2)``, ``(T, K, 2)`` or ``(K, 2)``; the sample axes are flattened
    (``K = S * N``). For tests and accuracy benchmarks on small sizes only (memory ``T*K*Y*X``).
    """
    traj = torch.as_tensor(traj, dtype=torch.float64)
    if traj.ndim == 2:
        traj = traj[None]
    traj = traj.reshape(traj.shape[0], -1, 2)
    ny, nx = im_size
    gy = torch.arange(ny, dtype=torch.float64) - ny // 2
    gx = torch.arange(nx, dtype=torch.float64) - nx // 2
    ph = traj[..., 0, None, None] * gy[:, None] + traj[..., 1, None, None] * gx[None, :]
    return (torch.exp(-1j * ph) / math.sqrt(ny * nx)).reshape(traj.shape[0], traj.shape[1], -1)
