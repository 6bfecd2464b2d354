"""Factorised (low-rank) implicit neural representation of an image series.

The series is ``x(r, t) = sum_k U_k(r) V_k(t)`` with rank ``K`` and complex factors:

- the spatial factors ``U (P, K)`` come from a 2-D multi-resolution hash encoding of the pixel
  coordinates ``(x, y)`` followed by a small ReLU MLP with ``2 K`` linear outputs (real and
  imaginary parts of the ``K`` components). It is evaluated once per step on the ``Y * X`` pixels,
  not on the ``Y * X * T`` points of a spatiotemporal representation;
- the temporal factors ``V (T, K)`` are free complex parameters, one row per acquired frame
  (linear interpolation between frames renders other frame counts; nothing is extrapolated
  beyond the first and last frame centre).

No physics here: :mod:`mrphys.recon.inr` fits it to k-space (``InrConfig.rank``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mrphys.errors import check
from mrphys.nets.hash_encoding import GridPlan, HashEncoding, _active_prefix, _Interp
from mrphys.nets.mlp import relu_mlp, relu_sequential

__all__ = ["FactorisedInr", "PixelPlan"]


class PixelPlan(GridPlan):
    """Interpolation of a 2-D hash encoding on a fixed pixel grid, computed once.

    The 2-D case of :class:`~mrphys.nets.hash_encoding.GridPlan`: per level, the table rows the
    pixels touch (:attr:`table_rows`, dense or hashed, level by level) are gathered once and
    interpolated bilinearly to the pixels by one sparse matrix (4 non-zeros per pixel and
    level); the gradient goes back through its transpose. While only the coarsest ``k`` levels
    are on, only their rows and matrix rows are used.

    Args:
        encoding: the 2-D :class:`HashEncoding` the plan indexes.
        xs: ``(X,)`` x coordinates in ``[0, 1]``.
        ys: ``(Y,)`` y coordinates in ``[0, 1]``.
    """

    def __init__(self, encoding: HashEncoding, xs: torch.Tensor, ys: torch.Tensor):
        super().__init__(encoding, xs, ys, None)
        self.hashed = not bool(encoding._dense.all())
        #: the gathered rows as their own leaf ``(n_rows, F)`` while lifted (:meth:`lift`)
        self.lifted: nn.Parameter | None = None

    def lift(self, encoding: HashEncoding) -> nn.Parameter | None:
        """Copy the table rows this plan reads into a leaf ``(n_rows, F)`` that
        :meth:`FactorisedInr.spatial` reads instead of the table, and return it; None (and
        nothing lifted) when two pixels' vertices hash to the same row, where separate copies
        would no longer be one parameter.

        The table's other rows never get a gradient from this plan, so Adam never moves them;
        optimising the lifted rows is the same update without a table-sized gradient, zero fill
        and Adam step every step (8x the rows at the CPU defaults). :meth:`lower` writes them
        back.
        """
        if torch.unique(self.table_rows).numel() != self.table_rows.numel():
            return None
        flat = encoding.table.detach().reshape(-1, encoding.n_features)
        self.lifted = nn.Parameter(flat.index_select(0, self.table_rows))
        return self.lifted

    @torch.no_grad()
    def lower(self, encoding: HashEncoding, release: bool = False) -> None:
        """Write the lifted rows back into the table (``release``: and read the table again)."""
        if self.lifted is None:
            return
        flat = encoding.table.data.view(-1, encoding.n_features)
        flat.index_copy_(0, self.table_rows, self.lifted.detach().to(flat.dtype))
        if release:
            self.lifted = None


class FactorisedInr(nn.Module):
    """``x(r, t) = sum_k U_k(r) V_k(t)``: 2-D hash encoding + MLP for ``U``, free ``V``.

    Args:
        n_frames: acquired frames ``T`` (rows of ``V``).
        rank: number of components ``K``.
        n_levels, n_features, log2_table_size, base_resolution, per_level_scale: the 2-D hash
            encoding of the pixel coordinates (see :class:`HashEncoding`).
        hidden_width, hidden_layers: the ReLU MLP from the encoding to ``2 K`` outputs.
        init_scale: hash tables start uniform in ``[-init_scale, init_scale]``.
        generator: optional :class:`torch.Generator` for the initialisation.

    ``V`` starts as the first ``K`` DCT-II vectors over the frames (a constant, then ever faster
    cosines), each with unit root-mean-square, the real part only: the components begin as a
    static image plus smooth temporal modes.
    """

    def __init__(
        self,
        n_frames: int,
        rank: int,
        *,
        n_levels: int = 8,
        n_features: int = 2,
        log2_table_size: int = 17,
        base_resolution: float = 16.0,
        per_level_scale: float = 1.5,
        hidden_width: int = 64,
        hidden_layers: int = 2,
        init_scale: float = 1e-4,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        check(int(rank) >= 1, f"rank must be >= 1; got {rank}.")
        check(int(n_frames) >= 1, f"n_frames must be >= 1; got {n_frames}.")
        self.rank = int(rank)
        self.n_frames = int(n_frames)
        self.encoding = HashEncoding(
            n_levels=n_levels,
            n_features=n_features,
            log2_table_size=log2_table_size,
            base_resolution=base_resolution,
            per_level_scale=per_level_scale,
            n_dims=2,
            init_scale=init_scale,
            generator=generator,
        )
        self.mlp = relu_sequential(
            self.encoding.out_features, hidden_width, hidden_layers, 2 * self.rank, generator
        )
        t = (torch.arange(self.n_frames, dtype=torch.float32) + 0.5) / self.n_frames
        k = torch.arange(self.rank, dtype=torch.float32)
        dct = torch.cos(math.pi * t[:, None] * k[None, :])  # (T, K)
        dct = dct / dct.pow(2).mean(0).sqrt().clamp_min(1e-6)
        self.temporal = nn.Parameter(torch.stack([dct, torch.zeros_like(dct)], dim=-1))  # (T,K,2)

    def spatial(self, plan: PixelPlan) -> torch.Tensor:
        """Spatial factors ``U (Y * X, K)`` complex on the plan's pixels."""
        enc = self.encoding
        mask = enc.level_mask
        k = _active_prefix(mask)  # coarse-to-fine: only the active levels' rows and features
        n = enc.n_levels if k is None else k
        end = plan._ends[n]
        if plan.lifted is not None:
            rows = plan.lifted[:end]
        else:  # gathered from the table; the gradient is one index_add_
            rows = enc.table.reshape(-1, enc.n_features)[plan.table_rows[:end]]
        if k is None:  # an arbitrary mask: every level, switched-off ones multiplied by zero
            rows = rows * mask.to(rows.dtype)[plan.level_of_row][:, None]
        feats = _Interp.apply(rows[:, None], plan, n)[0]  # (P, n F)
        # outputs 0..K-1 are the real parts, K..2K-1 the imaginary ones; computed interleaved
        # (re_0, im_0, re_1, ...) so that they view as complex without a copy
        k_idx = torch.arange(self.rank, device=feats.device)
        order = torch.stack([k_idx, k_idx + self.rank], dim=1).reshape(-1)
        out = relu_mlp(feats, self.mlp, out_index=order)  # (P, 2K) interleaved
        return torch.view_as_complex(out.view(-1, self.rank, 2))

    def temporal_at(self, positions: torch.Tensor) -> torch.Tensor:
        """Temporal factors ``V (B, K)`` complex at frame positions ``(B,)`` in acquired-frame
        units (frame ``k`` at ``k``), linearly interpolated and clamped to ``[0, T - 1]``."""
        v = torch.view_as_complex(self.temporal)  # (T, K)
        pos = positions.to(self.temporal.device, torch.float32).clamp(0, self.n_frames - 1)
        lo = pos.floor().long().clamp(max=self.n_frames - 1)
        hi = (lo + 1).clamp(max=self.n_frames - 1)
        w = (pos - lo.to(pos.dtype))[:, None]
        return v[lo] * (1 - w) + v[hi] * w

    def forward_grid(self, plan: PixelPlan, frames: list[int] | torch.Tensor) -> torch.Tensor:
        """Output ``(B, Y * X, 2)`` (real, imaginary) on the plan's pixels at ``B`` acquired frames
        (the interface of :meth:`mrphys.recon.inr.SpatiotemporalInr.forward_grid`)."""
        fr = torch.as_tensor(frames, dtype=torch.long, device=self.temporal.device).reshape(-1)
        v = torch.view_as_complex(self.temporal).index_select(0, fr)  # (B, K)
        x = v @ self.spatial(plan).transpose(0, 1)  # (B, P)
        return torch.view_as_real(x)

    @torch.no_grad()
    def render(self, positions: torch.Tensor, plan: PixelPlan) -> torch.Tensor:
        """The series ``(B, Y, X)`` complex at frame positions ``(B,)`` (acquired-frame units) on
        the plan's pixels."""
        u = self.spatial(plan)  # (P, K)
        return (self.temporal_at(positions) @ u.transpose(0, 1)).reshape(-1, *plan.size)
