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
from mrphys.nets.hash_encoding import HashEncoding, _Axis, _GatherBlend
from mrphys.nets.mlp import relu_mlp, relu_sequential

__all__ = ["FactorisedInr", "PixelPlan"]


def _interp_matrix(coords: torch.Tensor, res: int) -> torch.Tensor:
    """Linear interpolation weights ``(n, res + 1)`` of points ``coords (n,)`` in ``[0, 1]`` on
    the ``res + 1`` vertices of a grid of ``res`` cells (cells as in :class:`HashEncoding`)."""
    axis = _Axis(coords, res)  # the cells of HashEncoding's convention
    i0, frac = axis.vertices[axis.pos], axis.frac
    w = torch.zeros(coords.numel(), res + 1, dtype=frac.dtype, device=frac.device)
    rows = torch.arange(coords.numel(), device=frac.device)
    w[rows, i0] = 1 - frac
    w[rows, i0 + 1] += frac
    return w


class PixelPlan:
    """Interpolation of a 2-D hash encoding on a fixed pixel grid, computed once.

    On a product grid bilinear interpolation separates: a level whose grid vertices fit in the
    table (dense, row-major index ``y (R + 1) + x``) is the matrix product
    ``W_y T W_x^T`` of its ``(R + 1) x (R + 1)`` vertex grid ``T`` with two interpolation
    matrices (a few dense products instead of ``4 Y X`` gathers and a scatter-add); a hashed level
    keeps the per-pixel gather (``index, weight (1, Y * X, 4)``).

    Args:
        encoding: the 2-D :class:`HashEncoding` the plan indexes.
        xs: ``(X,)`` x coordinates in ``[0, 1]``.
        ys: ``(Y,)`` y coordinates in ``[0, 1]``.
    """

    def __init__(self, encoding: HashEncoding, xs: torch.Tensor, ys: torch.Tensor):
        check(encoding.n_dims == 2, f"PixelPlan needs a 2-D encoding; got {encoding.n_dims}-D.")
        dev = encoding.table.device
        xs = xs.detach().to(dev, torch.float32).reshape(-1)
        ys = ys.detach().to(dev, torch.float32).reshape(-1)
        self.size = (int(ys.numel()), int(xs.numel()))
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        pts = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=-1)  # (P, 2) as (x, y)
        index, weight = encoding.vertex_index_and_weight(pts)  # (L, P, 4)
        # per level: ("dense", first row in `rows`, R + 1, W_y, W_x) or ("hash", index, weight)
        self.levels: list[tuple] = []
        rows, start = [], 0
        for lv, res in enumerate(encoding.resolutions):
            if bool(encoding._dense[lv]):
                n = (res + 1) ** 2
                rows.append(lv * encoding.table_size + torch.arange(n, device=dev))
                wy, wx = _interp_matrix(ys, res), _interp_matrix(xs, res)
                self.levels.append(("dense", start, res + 1, wy, wx.t().contiguous()))
                start += n
            else:
                self.levels.append(("hash", index[lv : lv + 1], weight[lv : lv + 1]))
        self.rows = torch.cat(rows) if rows else torch.zeros(0, dtype=torch.long, device=dev)
        self.rows_w = torch.zeros(self.rows.numel(), 1, device=dev)
        self.hashed = any(spec[0] == "hash" for spec in self.levels)
        #: the dense levels' vertex rows as their own leaf ``(F, n)`` while lifted (:meth:`lift`)
        self.lifted: nn.Parameter | None = None

    def lift(self, encoding: HashEncoding) -> nn.Parameter | None:
        """Copy the dense levels' vertex rows out of the table into a leaf ``(F, n)`` that
        :meth:`FactorisedInr.spatial` reads instead of the table, and return it (None: no dense
        level).

        The table's other rows never get a gradient from this plan, so Adam never moves them;
        optimising the lifted rows (and the table only when a level is hashed) is the same update
        without a table-sized gradient, zero fill and Adam step (8x the rows here) every step.
        :meth:`lower` writes them back.
        """
        if not self.rows.numel():
            return None
        flat = encoding.table.detach().reshape(-1, encoding.n_features)
        self.lifted = nn.Parameter(flat.index_select(0, self.rows).t().contiguous())
        return self.lifted

    @torch.no_grad()
    def lower(self, encoding: HashEncoding, release: bool = False) -> None:
        """Write the lifted rows back into the table (``release``: and read the table again)."""
        if self.lifted is None:
            return
        flat = encoding.table.data.view(-1, encoding.n_features)
        flat.index_copy_(0, self.rows, self.lifted.detach().t().to(flat.dtype))
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
        flat = enc.table.reshape(-1, enc.n_features)
        sub = plan.lifted  # the dense levels' vertex rows (F, n)
        if sub is None and plan.rows.numel():  # from the table; the gradient is one index_add_
            rows = plan.rows[:, None, None].expand(-1, 1, 2)  # both "time corners" the same row
            sub = _GatherBlend.apply(flat, rows, plan.rows_w)[:, 0].t()
        mask = enc.level_mask
        ny, nx = plan.size
        out: list[torch.Tensor] = []
        for lv, spec in enumerate(plan.levels):
            if float(mask[lv]) == 0:  # coarse-to-fine: a switched-off level gives zeros
                out.append(flat.new_zeros(ny * nx, enc.n_features))
            elif spec[0] == "dense":
                _, start, n, wy, wx_t = spec
                grid = sub[:, start : start + n * n].reshape(-1, n, n)  # (F, y, x)
                f = torch.matmul(torch.matmul(wy, grid), wx_t)  # (F, Y, X)
                out.append(f.permute(1, 2, 0).reshape(ny * nx, -1))
            else:
                _, index, weight = spec
                feats = nn.functional.embedding(index[0], flat)  # (P, 4, F)
                out.append((feats * weight[0, :, :, None].to(flat.dtype)).sum(1))
        feats = torch.stack(out, dim=1).reshape(ny * nx, -1)  # (P, L * F)
        out = relu_mlp(feats, self.mlp)  # (P, 2K)
        return torch.complex(out[:, : self.rank], out[:, self.rank :])

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
