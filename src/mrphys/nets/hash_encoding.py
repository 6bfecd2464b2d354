"""Multi-resolution hash encoding (Instant-NGP, Mueller et al. 2022) in plain PyTorch.

A point ``p`` in the unit cube ``[0, 1]^D`` (here ``D = 3``: x, y, t) is encoded level by level.
Level ``l`` has a regular grid of resolution ``R_l = floor(base * scale^l)`` cells per axis; the
``2^D`` vertices of the cell holding ``p`` are looked up in a table of ``2^log2_table_size``
feature vectors (``F`` features each) and blended with D-linear (trilinear) weights. Where the
grid's ``(R_l + 1)^D`` vertices fit in the table, the vertex index is dense (row-major); otherwise
it is the spatial hash ``xor_d(i_d * pi_d) mod table_size`` with the Instant-NGP primes. All levels
and points are computed at once (no Python loop over levels). The output concatenates the levels:
``(P, L * F)``.

Coarse-to-fine training switches levels on one at a time (:meth:`HashEncoding.set_active_levels`):
the features of switched-off levels are multiplied by zero, so those tables get no gradient.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn

from mrphys.errors import check

# Instant-NGP hashing primes (the first axis uses 1 for memory coherence).
_PRIMES = (1, 2654435761, 805459861, 3674653429)


class HashEncoding(nn.Module):
    """Multi-resolution hash encoding of points in ``[0, 1]^D``.

    Args:
        n_levels: number of levels ``L``.
        n_features: features per level ``F``.
        log2_table_size: each level's table holds ``2^log2_table_size`` entries.
        base_resolution: grid resolution (cells per axis) of the coarsest level.
        per_level_scale: resolution growth factor from one level to the next.
        n_dims: input dimension ``D`` (1 to 4; 3 for (x, y, t)).
        init_scale: table entries start uniform in ``[-init_scale, init_scale]``.
        generator: optional :class:`torch.Generator` for the initialisation.

    Input ``(P, D)`` float in ``[0, 1]`` (values outside are clamped); output ``(P, L * F)``, level
    ``l`` in columns ``l*F:(l+1)*F``. The table is one parameter of shape ``(L, 2^T, F)``.
    """

    def __init__(
        self,
        n_levels: int = 16,
        n_features: int = 2,
        log2_table_size: int = 19,
        base_resolution: float = 16.0,
        per_level_scale: float = 2.0,
        n_dims: int = 3,
        init_scale: float = 1e-4,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        check(1 <= n_dims <= 4, f"n_dims must be 1..4; got {n_dims}.")
        check(n_levels >= 1 and n_features >= 1, "n_levels and n_features must be at least 1.")
        check(1 <= log2_table_size <= 30, f"log2_table_size must be 1..30; got {log2_table_size}.")
        check(base_resolution >= 1, f"base_resolution must be >= 1; got {base_resolution}.")
        check(per_level_scale >= 1, f"per_level_scale must be >= 1; got {per_level_scale}.")
        self.n_levels = int(n_levels)
        self.n_features = int(n_features)
        self.n_dims = int(n_dims)
        self.table_size = 2 ** int(log2_table_size)
        res = [math.floor(base_resolution * per_level_scale**lv) for lv in range(n_levels)]
        dense = [(r + 1) ** n_dims <= self.table_size for r in res]
        self.resolutions = res
        self.register_buffer("_res", torch.tensor(res, dtype=torch.float64), persistent=False)
        self.register_buffer("_dense", torch.tensor(dense), persistent=False)
        # Row-major strides for dense levels: (L, D), stride of axis d is (R+1)^d.
        strides = torch.tensor([[(r + 1) ** d for d in range(n_dims)] for r in res])
        self.register_buffer("_strides", strides, persistent=False)
        self.register_buffer("_primes", torch.tensor(_PRIMES[:n_dims]), persistent=False)
        table = torch.empty(n_levels, self.table_size, n_features)
        table.uniform_(-init_scale, init_scale, generator=generator)
        self.table = nn.Parameter(table)
        self.register_buffer("level_mask", torch.ones(n_levels), persistent=False)

    @property
    def out_features(self) -> int:
        return self.n_levels * self.n_features

    def set_active_levels(self, n_active: int) -> None:
        """Switch on the coarsest ``n_active`` levels (the rest output zeros)."""
        n_active = max(1, min(int(n_active), self.n_levels))
        self.level_mask.zero_()
        self.level_mask[:n_active] = 1.0

    def vertex_index_and_weight(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Table rows and interpolation weights of the ``2^D`` cell corners for every point.

        Args:
            x: ``(P, D)`` points in ``[0, 1]``.

        Returns:
            ``index (L, P, 2^D)`` int64 rows into the flattened table ``(L * 2^T, F)``, and
            ``weight (L, P, 2^D)`` D-linear weights (same dtype as ``x``; they sum to 1).
        """
        check(
            x.dim() == 2 and x.shape[1] == self.n_dims,
            f"points must have shape (P, {self.n_dims}); got {tuple(x.shape)}.",
        )
        x = x.clamp(0.0, 1.0)
        res = self._res[:, None, None]  # (L, 1, 1)
        # Positions in grid units per level, floored in float64 so that the cell is exact.
        i0 = torch.floor(x.detach().to(torch.float64)[None] * res)
        # Points on the upper boundary fall in the last cell.
        i0 = torch.minimum(i0, res - 1).clamp_min(0)
        frac = x[None] * res.to(x.dtype) - i0.to(x.dtype)  # (L, P, D)
        i0 = i0.long()
        # Build the 2^D corners axis by axis (corner c has offset (c >> d) & 1 on axis d), so
        # that the work is O(L P 2^D) without a (L, P, 2^D, D) intermediate.
        lo_hi = torch.stack([i0, i0 + 1], dim=-1)  # (L, P, D, 2)
        w_lo_hi = torch.stack([1 - frac, frac], dim=-1)  # (L, P, D, 2)
        dense = lo_hi[:, :, 0] * self._strides[:, None, 0, None]
        hashed = lo_hi[:, :, 0] * self._primes[0]
        weight = w_lo_hi[:, :, 0]
        for d in range(1, self.n_dims):
            ax = lo_hi[:, :, d]  # (L, P, 2)
            dense = dense[..., None, :] + (ax * self._strides[:, None, d, None])[..., None]
            hashed = torch.bitwise_xor(hashed[..., None, :], (ax * self._primes[d])[..., None])
            weight = weight[..., None, :] * w_lo_hi[:, :, d, :, None]
            dense = dense.flatten(-2)
            hashed = hashed.flatten(-2)
            weight = weight.flatten(-2)
        hashed = hashed & (self.table_size - 1)
        index = torch.where(self._dense[:, None, None], dense, hashed)
        offset = torch.arange(self.n_levels, device=x.device) * self.table_size
        index = index + offset[:, None, None]
        return index, weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode points ``x (P, D)`` in ``[0, 1]`` to features ``(P, L * F)``."""
        index, weight = self.vertex_index_and_weight(x)
        return self.interpolate(index, weight)

    def interpolate(self, index: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """Blend table rows: ``index, weight (L, P, 2^D)`` -> features ``(P, L * F)``.

        Split from :meth:`forward` so that a caller evaluating the same points many times (a fixed
        pixel grid) can compute ``index`` and ``weight`` once.
        """
        flat = self.table.reshape(-1, self.n_features)
        feats = nn.functional.embedding(index, flat)  # (L, P, 2^D, F)
        out = (feats * weight[..., None].to(flat.dtype)).sum(2)  # (L, P, F)
        out = out * self.level_mask[:, None, None].to(out.dtype)
        return out.permute(1, 0, 2).reshape(index.shape[1], -1)

    def extra_repr(self) -> str:
        return (
            f"levels={self.n_levels}, features={self.n_features}, table=2^"
            f"{int(math.log2(self.table_size))}, resolutions={self.resolutions[0]}.."
            f"{self.resolutions[-1]}"
        )


# --------------------------------------------------------------------------------------------
# Precomputed interpolation for a fixed set of points (the pixel grid of a frame)
# --------------------------------------------------------------------------------------------


def _csr(
    rows: torch.Tensor,
    cols: torch.Tensor,
    vals: torch.Tensor,
    shape: tuple[int, int],
    rows_sorted: bool = False,
) -> torch.Tensor:
    """CSR matrix from COO triplets (duplicates allowed: sparse @ dense sums them)."""
    if not rows_sorted:
        order = torch.argsort(rows)
        rows, cols, vals = rows[order], cols[order], vals[order]
    counts = torch.bincount(rows, minlength=shape[0])
    crow = torch.zeros(shape[0] + 1, dtype=torch.int64, device=rows.device)
    crow[1:] = torch.cumsum(counts, 0)
    idx_dtype = torch.int32 if max(shape) < 2**31 and vals.numel() < 2**31 else torch.int64
    with warnings.catch_warnings():  # "sparse CSR support is in beta state"
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(
            crow.to(idx_dtype), cols.to(idx_dtype), vals, shape, check_invariants=False
        )


class InterpolationPlan:
    """The encoding of fixed points as a sparse matrix, built once and applied many times.

    The features of ``P`` fixed points are linear in the table: ``feat = S @ table``, where ``S``
    has ``L * P`` rows (level-major) and ``2^D`` non-zeros (the corner weights) per row. Sparse
    matrix products (and the transposed product for the gradient) are several times faster on CPU
    than gathering and scatter-adding the corner rows. Memory: about ``2 * L * P * 2^D * 8`` bytes.

    Args:
        encoding: the :class:`HashEncoding` whose table this plan indexes.
        x: ``(P, D)`` points in ``[0, 1]``.
    """

    def __init__(self, encoding: HashEncoding, x: torch.Tensor):
        with torch.no_grad():
            index, weight = encoding.vertex_index_and_weight(x)
        n_levels, n_points, n_corners = index.shape
        self.n_points = n_points
        self.n_levels = n_levels
        dtype = encoding.table.dtype
        rows = torch.arange(n_levels * n_points, device=x.device).repeat_interleave(n_corners)
        cols = index.reshape(-1)
        vals = weight.reshape(-1).to(dtype)
        shape = (n_levels * n_points, n_levels * encoding.table_size)
        self.matrix = _csr(rows, cols, vals, shape, rows_sorted=True)
        self.matrix_t = _csr(cols, rows, vals, (shape[1], shape[0]))


class _PlannedInterp(torch.autograd.Function):
    """``table (L*2^T, F) -> S @ table (L*P, F)``; the gradient is ``S^T @ g``."""

    @staticmethod
    def forward(ctx, table, plan):  # type: ignore[override]
        ctx.plan = plan
        return plan.matrix @ table

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        return ctx.plan.matrix_t @ g.contiguous(), None


def encode_with_plan(encoding: HashEncoding, plan: InterpolationPlan) -> torch.Tensor:
    """Features ``(P, L * F)`` of the plan's points; same values as ``encoding(x)``."""
    flat = encoding.table.reshape(-1, encoding.n_features)
    out = _PlannedInterp.apply(flat, plan).reshape(plan.n_levels, plan.n_points, -1)
    out = out * encoding.level_mask[:, None, None].to(out.dtype)
    return out.permute(1, 0, 2).reshape(plan.n_points, -1)
