"""Spatiotemporal implicit neural representation (INR) for dynamic radial MRI (Feng et al. 2025).

The image series is a function ``x(r, t)`` represented by a multi-resolution hash encoding of the
coordinates ``(x, y, t)`` followed by a small ReLU MLP with two linear outputs (real and imaginary
part of the coil-combined image). Its weights are fitted to the acquired multi-coil radial k-space
of this one series only (no training data):

    loss = relative_l2(A x, y) + w_tv * temporal_tv(x) + w_nuc * casorati_nuclear(x)

with ``A`` = coil sensitivities then per-frame NUFFT (see ``METHODS.md`` section 4 and
``docs/inr.md``). Coordinates: spatial ``(i + 0.5) / N`` and time ``(k + 0.5) / N`` (the frame step
equals the pixel step, so the frames occupy a thin slab of the unit cube and the coarse levels act
as a static background, as in the paper). Because the representation is continuous, other frame
counts (``frames_out``) and finer matrices (``matrix_out``) can be rendered.

CPU design (the default :class:`InrConfig`): the paper's setting (16 levels, 2^24 entries per
level, MLP 5 x 128, 1,600 full-batch iterations) needs a GPU. The defaults here fit a 2-core CPU:
8 levels with 2^17 entries, MLP 2 x 64, stochastic windows of consecutive frames (the data term
and temporal TV are separable over frames; the nuclear norm is taken on the window), a fixed
1,500 steps (chosen in advance; the result is the last iterate) with the hash tables at a 10x
larger learning rate than the MLP (1e-2, issue 17), temporal-TV weight 0.08 instead
of 0.02 (both chosen once on PINCAT at 5 spokes, see ``docs/inr.md``), a separable
interpolation plan of the fixed pixel grid (:class:`mrphys.nets.hash_encoding.GridPlan`; while
coarse-to-fine has the finer levels off, only the active ones are encoded), the MLP in
cache-sized chunks, a fused Adam step and a single-threaded finufft NUFFT. The
relative-L2 term is evaluated on k-space normalised to its peak. ``InrConfig.paper()`` restores
the paper's setting. ``InrConfig.fast()`` (issue 17, round 3) is the factorised INR
(``rank=32``) with two windows' gradients computed at once in two threads (``workers=2``):
about 2.7x less CPU time than the default at a similar PSNR on PINCAT at 5 spokes, 1.35 dB lower
on an 8-spoke case (``docs/inr.md``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from torch import nn

from mrphys.errors import MrphysError, check, check_finite
from mrphys.nets.hash_encoding import GridPlan, HashEncoding, encode_grid
from mrphys.nets.lowrank_inr import FactorisedInr, PixelPlan
from mrphys.nets.mlp import relu_mlp, relu_sequential
from mrphys.physics.coils import SenseOp
from mrphys.physics.nufft import RadialNUFFT, radial_dcf
from mrphys.resources import check_memory
from mrphys.train import Record, Trainer
from mrphys.utils import make_generator, resolve_device

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InrConfig:
    """All knobs of the INR reconstruction (defaults: the 2-core CPU design).

    Attributes:
        n_levels: hash-encoding levels ``L``.
        n_features: features per level ``F``.
        log2_table_size: ``log2`` of the table entries per level.
        base_resolution: grid cells per axis of the coarsest level.
        per_level_scale: resolution growth per level.
        hidden_width: MLP hidden width.
        hidden_layers: MLP hidden layers (ReLU after each).
        epochs: passes over all frames; only used when ``iterations`` is None (then one
            iteration = one window of frames).
        iterations: fixed number of optimisation steps (default 1,500); None derives it from
            ``epochs``.
        frames_per_batch: consecutive frames per step (None: all frames, the paper's full batch).
        lr: Adam learning rate (of the MLP; of the hash tables too unless ``table_lr`` is set).
        table_lr: Adam learning rate of the hash tables (default 1e-2; None: ``lr``).
        lr_halve_at: fraction of the iterations after which the learning rate is halved
            (``schedule="halve"``).
        schedule: ``"halve"`` (constant, halved after ``lr_halve_at``) or ``"cosine"`` (cosine
            decay from the learning rate to 1 % of it over the iterations).
        coarse_to_fine: switch on one more level every ``1/L`` of the iterations.
        tv_weight: weight of the temporal total variation (paper: 0.02; CPU default 0.08).
        nuclear_weight: weight of the Casorati nuclear norm.
        eps: the ``1e-4`` in the relative-L2 data term's denominator.
        nufft_eps: finufft accuracy (CPU backend).
        init_scale: hash tables start uniform in ``[-init_scale, init_scale]``.
        log_every: log the loss every this many iterations.
        rank: None (default): the per-point spatiotemporal INR. An integer ``K``: the factorised
            INR ``x(r, t) = sum_k U_k(r) V_k(t)`` (:class:`mrphys.nets.lowrank_inr.FactorisedInr`:
            a 2-D hash encoding + MLP of the pixels for ``U``, free per-frame ``V``), with the
            encoding and MLP sizes above.
        factor_lr: Adam learning rate of the temporal factors ``V`` (factorised INR only;
            None: ``table_lr``, else ``lr``).
        adam_betas: Adam's ``(beta1, beta2)``.
        adam_eps: Adam's ``eps``.
        workers: windows whose gradients are computed at once, one per thread with one
            intra-op thread each (torch's thread count is restored afterwards). 1: one window
            per step, torch's intra-op threads inside each operation. ``W > 1``: ``W`` windows
            at the same parameters, then ``W`` Adam steps in turn (the later ones with a
            gradient up to ``W - 1`` steps old); the same step count and values that do not
            depend on the machine's load or timing (deterministic for a seed and ``W``).
        average_tail: 0 (default): the result is the last iterate. ``f > 0``: the result is the
            uniform average of the parameters after each of the last ``f`` of the steps
            (Polyak tail averaging), counting only steps with every level switched on, so that
            no level is averaged with its untrained start.
    """

    n_levels: int = 8
    n_features: int = 2
    log2_table_size: int = 17
    base_resolution: float = 16.0
    per_level_scale: float = 1.5
    hidden_width: int = 64
    hidden_layers: int = 2
    epochs: int = 100
    iterations: int | None = 1500
    frames_per_batch: int | None = 5
    lr: float = 1e-3
    table_lr: float | None = 1e-2
    lr_halve_at: float = 0.5
    schedule: str = "halve"
    coarse_to_fine: bool = True
    tv_weight: float = 0.08
    nuclear_weight: float = 2e-4
    eps: float = 1e-4
    nufft_eps: float = 1e-4
    init_scale: float = 1e-4
    log_every: int = 100
    rank: int | None = None
    factor_lr: float | None = None
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    workers: int = 1
    average_tail: float = 0.0

    @classmethod
    def paper(cls) -> InrConfig:
        """The published setting (GPU scale): 16 levels x 2^24, MLP 5 x 128, 1,600 full batches."""
        return cls(
            n_levels=16,
            log2_table_size=24,
            base_resolution=16.0,
            per_level_scale=2.0,
            hidden_width=128,
            hidden_layers=5,
            iterations=1600,
            frames_per_batch=None,
            table_lr=None,
            tv_weight=0.02,
            nufft_eps=1e-6,
        )

    @classmethod
    def fast(cls) -> InrConfig:
        """The CPU preset for speed (issue 17): the factorised INR (:attr:`rank` 32, MLP lr
        3e-3, both frozen on PINCAT seed 1 at 8 spokes) with two windows per round in two
        threads (:attr:`workers` 2, fixed, so the numbers do not depend on the machine).
        The result is the average of the iterates of the last eighth of the steps (those with
        every level on; :attr:`average_tail`, chosen on PINCAT seed 1 at 5 spokes).
        About half the CPU time of the default per step; see ``docs/inr.md``."""
        return cls(rank=32, lr=3e-3, workers=2, average_tail=0.125)

    @classmethod
    def preset(cls, name: str) -> InrConfig:
        """The named configuration: ``"default"`` (``InrConfig()``), ``"fast"``
        (:meth:`fast`) or ``"paper"`` (:meth:`paper`)."""
        presets = {"default": cls, "fast": cls.fast, "paper": cls.paper}
        check(name in presets, f"INR preset must be one of {', '.join(presets)}; got {name!r}.")
        return presets[name]()

    def n_iterations(self, n_frames: int) -> int:
        """Optimisation steps for a series of ``n_frames`` frames."""
        if self.iterations is not None:
            return int(self.iterations)
        b = n_frames if self.frames_per_batch is None else min(self.frames_per_batch, n_frames)
        return int(self.epochs * math.ceil(n_frames / b))

    def validate(self) -> None:
        check(self.n_levels >= 1, f"n_levels must be >= 1; got {self.n_levels}.")
        check(self.hidden_layers >= 0, f"hidden_layers must be >= 0; got {self.hidden_layers}.")
        check(self.hidden_width >= 1, f"hidden_width must be >= 1; got {self.hidden_width}.")
        check(self.lr > 0, f"lr must be positive; got {self.lr}.")
        check(
            self.table_lr is None or self.table_lr > 0,
            f"table_lr must be positive; got {self.table_lr}.",
        )
        check(
            self.schedule in ("halve", "cosine"),
            f"schedule must be 'halve' or 'cosine'; got {self.schedule!r}.",
        )
        check(0 < self.lr_halve_at <= 1, f"lr_halve_at must be in (0, 1]; got {self.lr_halve_at}.")
        check(
            self.frames_per_batch is None or self.frames_per_batch >= 1,
            f"frames_per_batch must be None or >= 1; got {self.frames_per_batch}.",
        )
        check(
            self.iterations is None or self.iterations >= 1,
            f"iterations must be None or >= 1; got {self.iterations}.",
        )
        check(self.epochs >= 1, f"epochs must be >= 1; got {self.epochs}.")
        check(self.workers >= 1, f"workers must be >= 1; got {self.workers}.")
        check(
            0 <= self.average_tail < 1, f"average_tail must be in [0, 1); got {self.average_tail}."
        )
        check(
            len(self.adam_betas) == 2 and all(0 <= b < 1 for b in self.adam_betas),
            f"adam_betas must be two numbers in [0, 1); got {self.adam_betas}.",
        )
        check(self.adam_eps > 0, f"adam_eps must be positive; got {self.adam_eps}.")
        check(self.rank is None or self.rank >= 1, f"rank must be None or >= 1; got {self.rank}.")
        check(
            self.factor_lr is None or self.factor_lr > 0,
            f"factor_lr must be positive; got {self.factor_lr}.",
        )


@dataclass
class InrFit(Record):
    """What :func:`fit_inr` returns beside the model (and :func:`render_inr` needs).

    Attributes:
        scale: image units per network output unit (the network fits ``x / scale``).
        n_frames: acquired frames ``T``.
        im_size: acquired matrix ``(Y, X)``.
        iterations: optimisation steps run.
        seconds: wall time of the fit in s (interpolation plans included).
        final_loss: loss of the last step (dimensionless).
        config: the :class:`InrConfig` as a dict.
        losses: loss of every step, ``(iterations,)``; with ``workers = W > 1`` the mean loss
            of every round of ``W`` steps, ``(ceil(iterations / W),)``.
        plans: the interpolation plan of the acquired frames' pixel grid (reused by
            :func:`render_inr`; not part of the JSON form).
    """

    scale: float
    n_frames: int
    im_size: tuple[int, int]
    iterations: int
    seconds: float
    final_loss: float
    config: dict = field(default_factory=dict)
    losses: list[float] = field(default_factory=list)
    plans: GridPlan | PixelPlan | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d.pop("plans", None)
        return d


# --------------------------------------------------------------------------------------------
# loss terms
# --------------------------------------------------------------------------------------------


def relative_l2(y_hat: torch.Tensor, y: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """Relative-L2 k-space data term ``mean((y - y_hat)^2 / (stopgrad(y_hat)^2 + eps))``.

    Taken separately on the real and imaginary parts and averaged over all of them.

    Args:
        y_hat: predicted k-space, complex, any shape.
        y: measured k-space, same shape.
        eps: floor of the denominator (in squared k-space units).
    """
    check(
        y_hat.shape == y.shape, f"k-space shapes differ: {tuple(y_hat.shape)} vs {tuple(y.shape)}."
    )
    a = torch.view_as_real(y_hat) if y_hat.is_complex() else y_hat
    b = torch.view_as_real(y) if y.is_complex() else y
    return ((b - a) ** 2 / (a.detach() ** 2 + eps)).mean()


def temporal_tv(x: torch.Tensor) -> torch.Tensor:
    """Temporal total variation ``sum(|dRe| + |dIm|) / numel(d) / max|x|`` (max detached).

    ``d = x[1:] - x[:-1]`` are the frame differences; ``numel(d)`` counts complex elements.

    Args:
        x: image series ``(T, Y, X)`` (complex or real).
    """
    check(x.dim() >= 2, f"temporal_tv needs (T, ...); got {tuple(x.shape)}.")
    if x.shape[0] < 2:
        return x.real.sum() * 0.0
    d = x[1:] - x[:-1]
    dr = torch.view_as_real(d) if d.is_complex() else d[..., None]
    scale = x.detach().abs().max().clamp_min(1e-12)
    return dr.abs().sum() / d.numel() / scale


def casorati_nuclear(x: torch.Tensor) -> torch.Tensor:
    """Nuclear norm of the Casorati matrix (frames x pixels) divided by the number of frames.

    Args:
        x: image series ``(T, Y, X)`` (complex or real).
    """
    check(x.dim() >= 2, f"casorati_nuclear needs (T, ...); got {tuple(x.shape)}.")
    m = x.reshape(x.shape[0], -1)
    return _NuclearNorm.apply(m) / x.shape[0]


class _NuclearNorm(torch.autograd.Function):
    """Nuclear norm of a wide matrix ``m (T, P)`` (``T`` small) from the eigenvalues of its
    ``T x T`` Gram matrix in double precision (about 10x faster than an SVD of the wide matrix
    on a CPU). Singular values below ``sqrt(1e3 eps) * s_max`` (rounding of the Gram matrix) count
    as zero. The gradient is the polar factor ``U V^H = U S^-1 U^H m`` on the other ones (the
    SVD's gradient; zero, a valid subgradient, on the null space)."""

    @staticmethod
    def forward(ctx, m):  # type: ignore[override]
        wide = m.to(torch.complex128 if m.is_complex() else torch.float64)
        lam, u = torch.linalg.eigh(wide @ wide.mH)
        keep = lam > 1e3 * torch.finfo(torch.float64).eps * lam.max().clamp_min(0)
        sv = torch.where(keep, lam.clamp_min(0).sqrt(), torch.zeros_like(lam))
        ctx.save_for_backward(wide, u, sv, keep)
        ctx.dtype = m.dtype
        return sv.sum().to(m.real.dtype if m.is_complex() else m.dtype)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        wide, u, sv, keep = ctx.saved_tensors
        inv = torch.where(keep, 1.0 / torch.where(keep, sv, torch.ones_like(sv)), 0.0)
        polar = (u * inv.to(u.dtype)) @ (u.mH @ wide)
        return (g.to(polar.real.dtype) * polar).to(ctx.dtype)


# --------------------------------------------------------------------------------------------
# network
# --------------------------------------------------------------------------------------------


class SpatiotemporalInr(nn.Module):
    """Hash encoding of ``(x, y, t)`` -> ReLU MLP -> ``(real, imag)``.

    Input points ``(P, 3)`` in ``[0, 1]``; output ``(P, 2)``.
    """

    def __init__(self, config: InrConfig, generator: torch.Generator | None = None):
        super().__init__()
        self.encoding = HashEncoding(
            n_levels=config.n_levels,
            n_features=config.n_features,
            log2_table_size=config.log2_table_size,
            base_resolution=config.base_resolution,
            per_level_scale=config.per_level_scale,
            n_dims=3,
            init_scale=config.init_scale,
            generator=generator,
        )
        self.mlp = relu_sequential(
            self.encoding.out_features, config.hidden_width, config.hidden_layers, 2, generator
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return relu_mlp(self.encoding(x), self.mlp)

    def forward_grid(self, plan: GridPlan, frames: list[int] | torch.Tensor) -> torch.Tensor:
        """Output ``(B, Y * X, 2)`` on the plan's pixel grid at ``B`` of its frames.

        While coarse-to-fine has switched off the finer levels, only the active levels are
        encoded and only their columns of the first layer are used (the same values)."""
        feats = encode_grid(self.encoding, plan, frames, active_only=True)  # (B, P, k * F)
        return relu_mlp(feats.reshape(-1, feats.shape[-1]), self.mlp).reshape(*feats.shape[:2], -1)


def factorised_inr(
    config: InrConfig, n_frames: int, generator: torch.Generator | None = None
) -> FactorisedInr:
    """The factorised INR of ``config`` (``config.rank`` components) for ``n_frames`` frames."""
    check(config.rank is not None, "factorised_inr needs InrConfig.rank (an integer >= 1).")
    return FactorisedInr(
        n_frames,
        int(config.rank or 1),
        n_levels=config.n_levels,
        n_features=config.n_features,
        log2_table_size=config.log2_table_size,
        base_resolution=config.base_resolution,
        per_level_scale=config.per_level_scale,
        hidden_width=config.hidden_width,
        hidden_layers=config.hidden_layers,
        init_scale=config.init_scale,
        generator=generator,
    )


def pixel_plan(model: FactorisedInr, im_size: tuple[int, int]) -> PixelPlan:
    """The :class:`~mrphys.nets.lowrank_inr.PixelPlan` of the factorised INR's spatial encoding on
    a ``Y x X`` grid (the pixel axes of :func:`grid_coordinates`)."""
    xs, ys, _ = _grid_axes(1, im_size, 1, None, model.encoding.table.device)
    return PixelPlan(model.encoding, xs, ys)


def grid_plan(
    encoding: HashEncoding,
    n_frames: int,
    im_size: tuple[int, int],
    n_ref: int,
    frame_positions: torch.Tensor | None = None,
) -> GridPlan:
    """The :class:`GridPlan` of the points :func:`grid_coordinates` lists (same arguments)."""
    xs, ys, ts = _grid_axes(n_frames, im_size, n_ref, frame_positions, encoding.table.device)
    return GridPlan(encoding, xs, ys, ts)


def _grid_axes(
    n_frames: int,
    im_size: tuple[int, int],
    n_ref: int,
    frame_positions: torch.Tensor | None,
    device: torch.device | str | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The axes ``(xs, ys, ts)`` of the grid :func:`grid_coordinates` describes."""
    ny, nx = im_size
    ys = (torch.arange(ny, dtype=torch.float32, device=device) + 0.5) / ny
    xs = (torch.arange(nx, dtype=torch.float32, device=device) + 0.5) / nx
    if frame_positions is None:
        frame_positions = torch.arange(n_frames, dtype=torch.float32, device=device)
    ts = (frame_positions.to(device, torch.float32) + 0.5) / n_ref
    return xs, ys, ts


def grid_coordinates(
    n_frames: int,
    im_size: tuple[int, int],
    n_ref: int,
    frame_positions: torch.Tensor | None = None,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Coordinates ``(T, Y*X, 3)`` of ``(x, y, t)`` for a pixel grid over the unit field of view.

    Pixel ``i`` of ``Y`` along an axis sits at ``(i + 0.5) / Y`` and frame ``k`` at
    ``(k + 0.5) / n_ref`` where ``n_ref`` is the acquired matrix size (the paper's time scaling).
    ``frame_positions`` (in acquired-frame units, frame ``k`` at ``k``) replaces ``k`` for frames
    that were not acquired.
    """
    xs, ys, ts = _grid_axes(n_frames, im_size, n_ref, frame_positions, device)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    sp = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=-1)  # (Y*X, 2) as (x, y)
    t = ts[:, None, None].expand(-1, sp.shape[0], 1)
    return torch.cat([sp[None].expand(len(ts), -1, -1), t], dim=-1)


# --------------------------------------------------------------------------------------------
# fitting
# --------------------------------------------------------------------------------------------


def _get(data: Any, names: tuple[str, ...]) -> Any:
    for n in names:
        if isinstance(data, dict) and n in data:
            return data[n]
        if hasattr(data, n):
            return getattr(data, n)
    return None


def _windows(n_frames: int, size: int, gen: torch.Generator) -> list[list[int]]:
    """One epoch of consecutive-frame windows covering every frame once, in random order."""
    if size >= n_frames:
        return [list(range(n_frames))]
    offset = int(torch.randint(0, size, (1,), generator=gen))
    starts = list(range(offset - size, n_frames, size))
    wins = [list(range(max(0, s), min(n_frames, s + size))) for s in starts]
    wins = [w for w in wins if w]
    order = torch.randperm(len(wins), generator=gen).tolist()
    return [wins[i] for i in order]


def _intensity_scale(op: SenseOp, kspace: torch.Tensor, dcf: torch.Tensor | None) -> float:
    """Robust image scale from the time-averaged gridding image (all spokes together).

    ``op`` is the SENSE radial encoding of all frames, ``kspace`` ``(T, C, *K)`` and ``dcf``
    ``(T, *K)`` (computed from a radial ``(T, S, N, 2)`` trajectory when None).
    """
    if dcf is None:
        traj = op.encoding.traj
        check(
            traj.ndim == 4,
            "fit_inr needs dcf (T, K) with a flattened (T, K, 2) trajectory; pass dcf or the "
            "radial trajectory (T, S, N, 2).",
        )
        dcf = radial_dcf(traj.cpu(), im_size=op.im_size).to(kspace.device)
    x = op.adjoint(kspace * dcf.unsqueeze(1).to(kspace.real.dtype))
    norm = (op.maps.abs() ** 2).sum(0).clamp_min(1e-6)
    comp = (x / norm).mean(0).abs()  # a fully sampled-like composite
    s = float(torch.quantile(comp.flatten().float(), 0.99))
    return s if s > 0 and math.isfinite(s) else 1.0


def learning_rate(config: InrConfig, it: int, n_iter: int) -> float:
    """Learning rate of the MLP at (0-based) step ``it`` of ``n_iter`` (the tables get
    ``table_lr / lr`` times it): ``"halve"`` gives ``lr`` then ``lr / 2`` from step
    ``round(lr_halve_at * n_iter)``; ``"cosine"`` decays from ``lr`` to ``lr / 100``."""
    if config.schedule == "cosine":
        return config.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * it / max(1, n_iter))))
    halve_at = max(1, int(round(config.lr_halve_at * n_iter)))
    return config.lr if it < halve_at else config.lr / 2


def fit_inr(
    kspace: torch.Tensor,
    traj: torch.Tensor,
    maps: torch.Tensor,
    *,
    dcf: torch.Tensor | None = None,
    config: InrConfig | None = None,
    iterations: int | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = True,
    callback: Callable[[int, SpatiotemporalInr | FactorisedInr, InrFit], None] | None = None,
    callback_every: int = 100,
) -> tuple[SpatiotemporalInr | FactorisedInr, InrFit]:
    """Fit the INR to multi-coil radial k-space.

    Args:
        kspace: ``(T, C, S, N)`` complex k-space (any consistent units); ``(T, C, K)`` with a
            flattened trajectory.
        traj: ``(T, S, N, 2)`` radial trajectory in rad/pixel, last axis ``(ky, kx)``; or any
            ``(T, K, 2)`` trajectory (then ``dcf`` is required).
        maps: ``(C, Y, X)`` complex coil sensitivities.
        dcf: optional ``(T, S, N)`` (or ``(T, K)``) density compensation (only used to set the
            intensity scale).
        config: :class:`InrConfig` (CPU defaults when None).
        iterations: fixed number of steps (overrides the config).
        seed: seed of the initialisation and of the frame windows.
        device: ``auto|cpu|cuda`` or a device (default: the device of ``kspace``).
        progress: show a tqdm progress bar.
        callback: called as ``callback(iteration, model, info)`` every ``callback_every`` steps
            (monitoring only, e.g. a convergence curve; the result is always the last iterate).
        callback_every: steps between callback calls.

    Returns:
        The fitted model and its :class:`InrFit` (scale, sizes, iterations, seconds, losses).
        The steps run on the package's one training loop (:class:`mrphys.train.Trainer`).
    """
    config = config or InrConfig()
    if iterations is not None:
        config = replace(config, iterations=int(iterations))
    config.validate()
    check(
        kspace.dim() in (3, 4) and kspace.is_complex(),
        "kspace must be complex with shape (T, C, S, N) or (T, C, K); "
        f"got {tuple(kspace.shape)} {kspace.dtype}.",
    )
    t_frames, n_coils = int(kspace.shape[0]), int(kspace.shape[1])
    samples = tuple(kspace.shape[2:])
    check(
        tuple(traj.shape) == (t_frames, *samples, 2),
        f"traj must have shape {(t_frames, *samples, 2)} to match kspace; got {tuple(traj.shape)}.",
    )
    check(
        dcf is None or tuple(dcf.shape) == (t_frames, *samples),
        f"dcf must have shape {(t_frames, *samples)} to match kspace; "
        f"got {None if dcf is None else tuple(dcf.shape)}.",
    )
    check(
        maps.dim() == 3 and maps.shape[0] == n_coils,
        f"coil maps must have shape ({n_coils}, Y, X); got {tuple(maps.shape)}.",
    )
    check_finite("kspace", kspace)
    dev = resolve_device(device) if device is not None else kspace.device
    kspace = kspace.to(dev, torch.complex64)
    maps = maps.to(dev, torch.complex64)
    traj = traj.to(dev, torch.float32)
    im_size = (int(maps.shape[1]), int(maps.shape[2]))
    n_ref = max(im_size)
    # the scale uses the full-accuracy NUFFT; the windows the INR's own (config.nufft_eps)
    full = SenseOp(maps, RadialNUFFT(traj, im_size, threads=1))
    scale = _intensity_scale(full, kspace, None if dcf is None else dcf.to(dev))
    nufft = RadialNUFFT(traj, im_size, threads=1, eps=config.nufft_eps)
    y = kspace / scale
    # The relative-L2 term is evaluated on k-space normalised to max |y| = 1, so that its eps
    # (1e-4) is relative to the k-space peak: without this the weights 1 / (|y_hat|^2 + eps)
    # span many decades, the centre of k-space (image intensity) is barely fitted and the
    # regularisers shrink the image.
    kscale = float(y.abs().max()) or 1.0

    gen = make_generator(seed)
    model: SpatiotemporalInr | FactorisedInr
    if config.rank is None:
        model = SpatiotemporalInr(config, generator=gen).to(dev)
    else:
        model = factorised_inr(config, t_frames, gen).to(dev)
    t0 = time.perf_counter()
    plans: GridPlan | PixelPlan
    if isinstance(model, FactorisedInr):
        plans = pixel_plan(model, im_size)
    else:
        plans = grid_plan(model.encoding, t_frames, im_size, n_ref)
    log.info("INR: interpolation plan of %d frames in %.1f s", t_frames, time.perf_counter() - t0)

    n_iter = config.n_iterations(t_frames)
    batch = t_frames if config.frames_per_batch is None else min(config.frames_per_batch, t_frames)
    table_scale = 1.0 if config.table_lr is None else config.table_lr / config.lr
    tables: list[torch.Tensor] = [model.encoding.table]
    if isinstance(plans, PixelPlan):  # the dense levels' rows as their own leaf (same steps)
        lifted = plans.lift(model.encoding)
        if lifted is not None:
            tables = [lifted] + ([model.encoding.table] if plans.hashed else [])
    groups = [
        {"params": list(model.mlp.parameters())},
        {"params": tables, "lr_scale": table_scale},
    ]
    if isinstance(model, FactorisedInr):
        factor_lr = config.factor_lr or config.table_lr or config.lr
        groups.append({"params": [model.temporal], "lr_scale": factor_lr / config.lr})
    opt = torch.optim.Adam(
        groups,
        lr=config.lr,
        betas=tuple(config.adam_betas),
        eps=config.adam_eps,
        fused=True,  # one kernel per step (about 4x faster than the multi-tensor update on CPU)
    )

    log.info(
        "INR: %d frames %s, %d coils, %d iterations of %d frames, %d parameters",
        t_frames, im_size, n_coils, n_iter, batch, sum(p.numel() for p in model.parameters()),
    )  # fmt: skip
    fit = InrFit(
        scale=scale, n_frames=t_frames, im_size=im_size, iterations=n_iter, seconds=0.0,
        final_loss=float("nan"), config=asdict(config), plans=plans,
    )  # fmt: skip
    queue: list[list[int]] = []
    workers = max(1, min(int(config.workers), n_iter))
    # one NUFFT per worker (finufft plans hold buffers: a plan must not run in two threads)
    nuffts = [nufft] + [
        RadialNUFFT(traj, im_size, threads=1, eps=config.nufft_eps) for _ in range(workers - 1)
    ]

    if workers > 1:  # plan every frame here: FFTW planning must not run in two threads at once
        zeros = torch.zeros(t_frames, *im_size, dtype=torch.complex64, device=dev)
        for op in nuffts:
            SenseOp(maps, op).adjoint(SenseOp(maps, op).forward(zeros))

    def next_window() -> list[int]:
        nonlocal queue
        if not queue:
            queue = _windows(t_frames, batch, gen)
        return queue.pop()

    def window_loss(idx: list[int], op: RadialNUFFT) -> torch.Tensor:
        """The loss of one window of frames (data term + regularisers)."""
        out = model.forward_grid(plans, idx)  # (B, P, 2)
        x = torch.complex(out[..., 0], out[..., 1]).reshape(len(idx), *im_size)
        y_hat = SenseOp(maps, op.frames(idx)).forward(x)  # (B, C, S, N)
        loss = relative_l2(y_hat / kscale, y[idx] / kscale, config.eps)
        if config.tv_weight > 0:
            loss = loss + config.tv_weight * temporal_tv(x)
        if config.nuclear_weight > 0:
            loss = loss + config.nuclear_weight * casorati_nuclear(x)
        return loss

    def checked(loss_val: float, it: int) -> float:
        if not math.isfinite(loss_val):
            raise MrphysError(f"INR training diverged at iteration {it} (loss {loss_val}).")
        return loss_val

    params = [p for g in groups for p in g["params"]]
    # tail averaging: the steps from (1 - average_tail) n_iter on whose round has every level on
    avg_start = n_iter
    if config.average_tail > 0:
        avg_start = int(round((1 - config.average_tail) * n_iter))
    avg = [p.detach().clone() for p in params] if avg_start < n_iter else []
    n_avg = [0]
    pool: ThreadPoolExecutor | None = None  # set below when workers > 1

    def grads_of(idx: list[int], op: RadialNUFFT) -> tuple[float, tuple[torch.Tensor, ...]]:
        loss = window_loss(idx, op)
        return float(loss.detach()), torch.autograd.grad(loss, params)

    def step(unit: int) -> dict[str, float]:
        """One trainer unit: ``workers`` windows at the same parameters (one per thread when
        ``workers > 1``), then one Adam step per window in turn (step ``j`` of the round uses a
        gradient ``j`` steps old); with one worker, one window and one step."""
        s0 = unit * workers
        if config.coarse_to_fine:
            model.encoding.set_active_levels(1 + (s0 * config.n_levels) // n_iter)
        wins = [next_window() for _ in range(min(workers, n_iter - s0))]
        if pool is None:
            results = [grads_of(w, nuffts[j]) for j, w in enumerate(wins)]
        else:
            futures = [pool.submit(grads_of, w, nuffts[j]) for j, w in enumerate(wins)]
            results = [fut.result() for fut in futures]  # all done before any update
        losses = []
        for j, (loss_val, grads) in enumerate(results):
            losses.append(checked(loss_val, s0 + j))
            for p, g in zip(params, grads, strict=True):
                p.grad = g
            opt.step()
            if s0 + j >= avg_start and bool(model.encoding.level_mask.all()):  # tail average
                n_avg[0] += 1
                with torch.no_grad():
                    for a, p in zip(avg, params, strict=True):
                        a.lerp_(p, 1.0 / n_avg[0])
        return {"loss": sum(losses) / len(losses)}

    def after(trainer: Trainer) -> None:
        it = min(n_iter, trainer.epoch * workers)
        if callback is not None and (it % callback_every < workers or it == n_iter):
            fit.seconds = time.perf_counter() - t0
            was = model.encoding.level_mask.clone()
            if isinstance(plans, PixelPlan):
                plans.lower(model.encoding)  # the table up to date for the callback
            callback(it, model, fit)
            model.encoding.level_mask.copy_(was)

    # the one training loop of the package: a fixed count of steps (the result is the last
    # iterate), the learning rate halved after lr_halve_at of them, a progress bar; with
    # workers > 1 one unit is a round of `workers` steps
    trainer = Trainer(
        model,
        opt,
        {},
        units=math.ceil(n_iter / workers),
        schedule=lambda u: learning_rate(config, u * workers, n_iter),
        progress=progress,
        desc="INR",
        unit="it" if workers == 1 else "round",
        log_every=config.log_every,
        postfix=lambda rec: {"loss": f"{rec['loss']:.3g}"},
        on_unit=after if callback is not None else None,
    )
    threads = torch.get_num_threads()
    try:
        if workers == 1:
            trainer.run(step)
        else:  # each worker thread runs its ops on one core (restored afterwards)
            torch.set_num_threads(1)
            with ThreadPoolExecutor(workers, thread_name_prefix="mrphys-inr") as pool:
                trainer.run(step)
    finally:
        torch.set_num_threads(threads)
        if n_avg[0]:  # the result is the tail average
            with torch.no_grad():
                for a, p in zip(avg, params, strict=True):
                    p.copy_(a)
        if isinstance(plans, PixelPlan):  # the trained rows back into the table
            plans.lower(model.encoding, release=True)
    model.encoding.set_active_levels(config.n_levels)
    fit.seconds = time.perf_counter() - t0
    fit.final_loss = trainer.history[-1]["loss"] if trainer.history else float("nan")
    fit.losses = [rec["loss"] for rec in trainer.history]
    return model, fit


def check_render_memory(config: InrConfig, frames: int, size: tuple[int, int]) -> None:
    """Refuse a rendering of ``frames`` frames of ``size`` pixels that cannot fit in memory.

    The estimate: coordinates, network outputs and the complex series for every output pixel
    (48 B), plus one frame's hash-encoding lookups (8 corners x index, weight and features per
    level) and MLP activations.
    """
    pixels = size[0] * size[1]
    per_point = config.n_levels * 8 * (16 + 4 * config.n_features)
    per_point += 8 * config.hidden_width * (config.hidden_layers + 1)
    check_memory(
        48 * frames * pixels + per_point * pixels,
        f"rendering {frames} frames of {size[0]}x{size[1]}",
        "--frames-out or --matrix-out",
    )


@torch.no_grad()
def render_inr(
    model: SpatiotemporalInr | FactorisedInr,
    info: InrFit,
    frames_out: int | None = None,
    matrix_out: int | tuple[int, int] | None = None,
) -> torch.Tensor:
    """Query a fitted INR on a frame/pixel grid, ``(T', Y', X')`` complex64 in image units.

    ``frames_out`` frames span the acquired time interval (frame ``k'`` at acquired-frame position
    ``(k' + 0.5) T / T' - 0.5``); ``matrix_out`` pixels span the same field of view.
    """
    t_frames = info.n_frames
    im_size = tuple(info.im_size)
    n_ref = max(im_size)
    t_out = t_frames if frames_out is None else int(frames_out)
    if matrix_out is None:
        out_size = im_size
    elif isinstance(matrix_out, int):
        out_size = (int(matrix_out), int(matrix_out))
    else:
        out_size = (int(matrix_out[0]), int(matrix_out[1]))
    check(t_out >= 1, f"frames_out must be a positive integer; got {frames_out}.")
    check(min(out_size) >= 1, f"matrix_out must be positive; got {matrix_out}.")
    check_render_memory(InrConfig(**info.config), t_out, out_size)
    if isinstance(model, FactorisedInr):  # frame positions as below, V interpolated linearly
        pos = (torch.arange(t_out, dtype=torch.float32) + 0.5) * t_frames / t_out - 0.5
        plan = info.plans if out_size == im_size else None
        if not isinstance(plan, PixelPlan):
            plan = pixel_plan(model, out_size)
        return (model.render(pos, plan) * info.scale).to(torch.complex64)
    plan = info.plans
    if not (t_out == t_frames and out_size == im_size and plan is not None):
        pos = (torch.arange(t_out, dtype=torch.float32) + 0.5) * t_frames / t_out - 0.5
        plan = grid_plan(model.encoding, t_out, out_size, n_ref, frame_positions=pos)
    chunk = 5  # frames per pass (bounded memory)
    frames = [
        model.forward_grid(plan, list(range(k, min(k + chunk, t_out))))
        for k in range(0, t_out, chunk)
    ]
    out = torch.cat(frames)
    x = torch.complex(out[..., 0], out[..., 1]).reshape(t_out, *out_size)
    return (x * info.scale).to(torch.complex64)


def reconstruct_inr(
    data: Any,
    *,
    iterations: int | None = None,
    frames_out: int | None = None,
    matrix_out: int | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    config: InrConfig | None = None,
) -> torch.Tensor:
    """Spatiotemporal INR reconstruction of a radial acquisition.

    Args:
        data: a :class:`mrphys.physics.radial.RadialData` (or any object / dict with ``kspace``
            ``(T, C, S, N)``, ``traj`` ``(T, S, N, 2)`` rad/pixel, coil ``maps`` ``(C, Y, X)``
            and optionally ``dcf`` ``(T, S, N)``; see :func:`fit_inr` for flattened ones).
        iterations: fixed number of optimisation steps (default: from the config).
        frames_out: frames to render (default: the acquired ``T``); more frames interpolate in time.
        matrix_out: matrix size to render (default: the acquired ``N``); larger is finer.
        seed: seed of the initialisation and of the frame windows.
        device: ``auto|cpu|cuda`` or a device (default: where the data lives).
        config: :class:`InrConfig` (default: the CPU design).

    Returns:
        ``(T', Y', X')`` complex64 image series, in the units of the acquisition's truth.
    """
    kspace = _get(data, ("kspace", "ksp", "y"))
    traj = _get(data, ("traj", "trajectory"))
    maps = _get(data, ("maps", "coil_maps", "smaps", "sens"))
    dcf = _get(data, ("dcf",))
    check(
        frames_out is None or (isinstance(frames_out, int) and frames_out >= 1),
        f"frames_out must be a positive integer; got {frames_out}.",
    )
    check(
        matrix_out is None or (isinstance(matrix_out, int) and matrix_out >= 1),
        f"matrix_out must be a positive integer; got {matrix_out}.",
    )
    if kspace is None or traj is None or maps is None:
        raise MrphysError(
            "reconstruct_inr needs data with kspace (T, C, S, N), traj (T, S, N, 2) and coil "
            "maps (C, Y, X)."
        )
    # refuse an output that cannot be rendered before minutes of fitting
    t_in, size_in = int(kspace.shape[0]), tuple(int(v) for v in maps.shape[-2:])
    check_render_memory(
        config or InrConfig(),
        t_in if frames_out is None else frames_out,
        size_in if matrix_out is None else (matrix_out, matrix_out),
    )
    model, info = fit_inr(
        torch.as_tensor(kspace),
        torch.as_tensor(traj),
        torch.as_tensor(maps),
        dcf=None if dcf is None else torch.as_tensor(dcf),
        config=config,
        iterations=iterations,
        seed=seed,
        device=device,
    )
    x = render_inr(model, info, frames_out=frames_out, matrix_out=matrix_out)
    log.info("INR: %d iterations in %.1f s", info.iterations, info.seconds)
    return x
