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


# --------------------------------------------------------------------------------------------
# Tensor-product grids (the pixel grid of a series of frames): separable interpolation
# --------------------------------------------------------------------------------------------


class _Axis:
    """Cells of one axis' points on one level: the vertices touched, first-corner positions
    among them and the upper-corner weights (float32 as in ``vertex_index_and_weight``)."""

    def __init__(self, coords: torch.Tensor, res: int):
        c = coords.clamp(0.0, 1.0)
        i0 = torch.floor(c.to(torch.float64) * res).clamp(0, res - 1)
        self.frac = c * float(res) - i0.to(c.dtype)  # (n,)
        i0 = i0.long()
        self.vertices = torch.unique(torch.cat([i0, i0 + 1]))  # sorted, (U,)
        self.pos = torch.searchsorted(self.vertices, i0)  # (n,); pos + 1 is the upper corner


class GridPlan:
    """Encoding of the tensor-product grid ``(t_k, y_i, x_j)`` precomputed per level.

    On a product grid trilinear interpolation separates into time and space. Per level and
    frame, the two time slices of the ``U_y x U_x`` vertices the pixels touch are gathered from
    the table (``2 U_y U_x`` rows instead of ``8 Y X`` corners per point), blended in time, and
    the blended slices of all levels and frames are interpolated bilinearly to the pixels by one
    sparse matrix (4 non-zeros per pixel and level) shared by every frame, applied to all frames
    of a window in one product. On a 128 x 128 grid with the default 8 levels this touches about
    4x fewer table rows than per-point interpolation, and the gradient flows back the same way
    (one scatter-add into the table). Same values as :meth:`HashEncoding.forward` on the grid's
    points (to float rounding).

    Slice rows and matrix rows are ordered level by level (coarsest first), so that while only
    the coarsest ``k`` levels are switched on (coarse-to-fine) the work is restricted to them:
    a prefix of the rows and of the matrix (:meth:`matrices`).

    Without ``ts`` the plan is that of a 2-D encoding of the pixels alone: each level's slice is
    the table rows its pixels touch (:attr:`table_rows`, no time corners), interpolated by the
    same matrix (:class:`mrphys.nets.lowrank_inr.PixelPlan`).

    Args:
        encoding: the :class:`HashEncoding` (``n_dims = 3``; 2 without ``ts``) whose table this
            plan indexes.
        xs: ``(X,)`` x coordinates in ``[0, 1]``.
        ys: ``(Y,)`` y coordinates.
        ts: ``(T,)`` time coordinates (one per frame), or None for a 2-D encoding.
    """

    def __init__(
        self,
        encoding: HashEncoding,
        xs: torch.Tensor,
        ys: torch.Tensor,
        ts: torch.Tensor | None,
    ):
        two_d = ts is None
        want = 2 if two_d else 3
        check(
            encoding.n_dims == want,
            f"{type(self).__name__} needs a {want}-D encoding; got {encoding.n_dims}-D.",
        )
        dev = encoding.table.device
        xs, ys = (v.detach().to(dev, torch.float32).reshape(-1) for v in (xs, ys))
        ny, nx = int(ys.numel()), int(xs.numel())
        n_pix = ny * nx
        self.size = (ny, nx)
        self.n_frames = 0 if ts is None else int(ts.numel())
        ts = torch.zeros(1, device=dev) if ts is None else ts.detach().to(dev, torch.float32)
        ts = ts.reshape(-1)
        self.n_levels = encoding.n_levels
        self.n_features = encoding.n_features
        self._mask = encoding.table_size - 1
        self._levels: list[tuple[torch.Tensor, torch.Tensor, bool, int]] = []
        wts, rows, cols, vals, level_of_row, table_rows = [], [], [], [], [], []
        ends = [0]  # slice rows of the coarsest k levels: [0, ends[k])
        start = 0
        for lv, res in enumerate(encoding.resolutions):
            ax, ay, at = _Axis(xs, res), _Axis(ys, res), _Axis(ts, res)
            vx, vy = ax.vertices, ay.vertices
            t0 = at.vertices[at.pos]  # (T,) lower time vertex of each frame
            dense_lv = bool(encoding._dense[lv])
            if dense_lv:
                st = [int(v) for v in encoding._strides[lv]]
                base = (vy[:, None] * st[1] + vx[None, :] * st[0]).reshape(-1)
                step = 0 if two_d else st[2]
            else:
                pr = [int(v) for v in encoding._primes]
                base = torch.bitwise_xor(vy[:, None] * pr[1], vx[None, :] * pr[0]).reshape(-1)
                step = 0 if two_d else pr[2]
            t = torch.stack([t0 * step, (t0 + 1) * step], 1)
            self._levels.append((base, t, dense_lv, lv * encoding.table_size))
            if two_d:  # the table rows themselves (no time corners)
                rows_lv = base if dense_lv else base & self._mask
                table_rows.append(rows_lv + lv * encoding.table_size)
            wts.append(at.frac[:, None].expand(-1, base.numel()))
            level_of_row.append(torch.full((base.numel(),), lv, dtype=torch.long, device=dev))
            # bilinear weights of the 4 corners of every pixel into this level's slice; matrix
            # row lv * P + p (level-major)
            ux = int(vx.numel())
            for a in (0, 1):
                for b in (0, 1):
                    wy = ay.frac if a else 1 - ay.frac
                    wx = ax.frac if b else 1 - ax.frac
                    col = (ay.pos[:, None] + a) * ux + (ax.pos[None, :] + b) + start
                    rows.append(torch.arange(n_pix, device=dev) + lv * n_pix)
                    cols.append(col.reshape(-1))
                    vals.append((wy[:, None] * wx[None, :]).reshape(-1))
            start += base.numel()
            ends.append(start)
        self.n_rows = start  # blended slice rows of all levels
        #: 2-D plans: the table row of every slice row ``(n_rows,)`` (level by level)
        self.table_rows = torch.cat(table_rows) if two_d else None
        self._ends = ends
        self.level_of_row = torch.cat(level_of_row)
        self._wt_rows = torch.cat(wts, 1).contiguous()  # (T, n_rows) upper time weights
        r, c, v = torch.cat(rows), torch.cat(cols), torch.cat(vals).to(encoding.table.dtype)
        shape = (self.n_levels * n_pix, start)
        self.matrix = _csr(r, c, v, shape)  # (L * P, n_rows)
        self.matrix_t = _csr(c, r, v, (shape[1], shape[0]))  # (n_rows, L * P)
        self._prefix: dict[int, tuple[torch.Tensor, torch.Tensor]] = {
            self.n_levels: (self.matrix, self.matrix_t)
        }
        # the gathered rows of every frame, kept when they take at most 256 MB
        self._rows = None
        if not two_d and self.n_rows * self.n_frames * 8 <= 2**28:
            self._rows = self._rows_of(torch.arange(self.n_frames, device=dev))

    def rows(self, frames: torch.Tensor, n_active: int | None = None) -> torch.Tensor:
        """Rows of the flattened table ``(L * 2^T, F)`` to gather for the coarsest
        ``n_active`` levels (default all): ``(B, n_rows_k, 2)`` int32 (two time corners)."""
        end = self._ends[self.n_levels if n_active is None else n_active]
        if self._rows is not None:
            return self._rows[:, :end].index_select(0, frames)
        return self._rows_of(frames)[:, :end]

    def _rows_of(self, frames: torch.Tensor) -> torch.Tensor:
        out = []
        for base, t, dense, offset in self._levels:
            tb = t[frames][:, None]  # (B, 1, 2)
            b = base[None, :, None]
            idx = b + tb if dense else torch.bitwise_xor(b, tb) & self._mask
            out.append((idx + offset).to(torch.int32))
        return torch.cat(out, dim=1)

    def time_weights(self, frames: torch.Tensor, n_active: int | None = None) -> torch.Tensor:
        """Upper time-corner weight of every frame and slice row, ``(B, n_rows_k)``."""
        end = self._ends[self.n_levels if n_active is None else n_active]
        return self._wt_rows[:, :end].index_select(0, frames)

    def matrices(self, n_active: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The interpolation matrix of the coarsest ``n_active`` levels, ``(k P, n_rows_k)``
        CSR, and its transpose (row prefixes of the full ones, made once and kept)."""
        if n_active not in self._prefix:
            m, m_t = self.matrix, self.matrix_t
            n_pix = self.size[0] * self.size[1]
            self._prefix[n_active] = (
                _csr_prefix(m, n_active * n_pix, self._ends[n_active]),
                _csr_prefix(m_t, self._ends[n_active], n_active * n_pix),
            )
        return self._prefix[n_active]


def _csr_prefix(m: torch.Tensor, n_rows: int, n_cols: int) -> torch.Tensor:
    """The first ``n_rows`` rows of CSR ``m`` as an ``(n_rows, n_cols)`` CSR matrix (their
    columns must all be below ``n_cols``)."""
    crow = m.crow_indices()[: n_rows + 1]
    nnz = int(crow[-1])
    with warnings.catch_warnings():  # "sparse CSR support is in beta state"
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(
            crow.clone(),
            m.col_indices()[:nnz].clone(),
            m.values()[:nnz].clone(),
            (n_rows, n_cols),
            check_invariants=False,
        )


class _GatherBlend(torch.autograd.Function):
    """``table (R, F), rows (n, B, 2), w (n, B) -> (1 - w) table[rows[..., 0]] + w table[...1]``.

    Output ``(n, B, F)``. The gradient is one ``index_add_`` into the table. With ``F = 2`` the
    table is viewed as complex (one 8-byte element per row), which makes the gather and the
    scatter-add about 3x faster on a CPU than on rows of two floats.
    """

    @staticmethod
    def forward(ctx, table, rows, w):  # type: ignore[override]
        flat = rows.reshape(-1)
        ctx.save_for_backward(flat, w)
        ctx.shape = table.shape
        if _as_complex(table):
            s = torch.view_as_real(torch.view_as_complex(table).index_select(0, flat))
        else:
            s = table.index_select(0, flat)
        s = s.reshape(*rows.shape, table.shape[1])
        return torch.lerp(s[:, :, 0], s[:, :, 1], w[..., None])

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        flat, w = ctx.saved_tensors
        w = w[..., None]
        gs = torch.stack([g - g * w, g * w], dim=2)  # (n, B, 2, F), the layout of flat
        grad = g.new_zeros(ctx.shape)
        if _as_complex(grad):
            torch.view_as_complex(grad).index_add_(
                0, flat, torch.view_as_complex(gs.reshape(-1, 2))
            )
        else:
            grad.index_add_(0, flat, gs.reshape(-1, ctx.shape[1]))
        return grad, None, None


def _as_complex(t: torch.Tensor) -> bool:
    """Whether rows of ``t (R, F)`` can be handled as one complex element (``F = 2``)."""
    return t.shape[1] == 2 and t.dtype in (torch.float32, torch.float64)


def _swap_outer(x: torch.Tensor, f: int) -> torch.Tensor:
    """``(A, P, B, f)`` -> ``(B, P, A, f)`` contiguous (pairs of floats moved as one complex)."""
    if f == 2 and x.dtype in (torch.float32, torch.float64):
        z = torch.view_as_complex(x.contiguous())
        return torch.view_as_real(z.permute(2, 1, 0).contiguous())
    return x.permute(2, 1, 0, 3).contiguous()


class _Interp(torch.autograd.Function):
    """Blended slices ``(n_rows_k, B, F)`` -> pixel features ``(B, P, k F)`` by the plan's CSR
    matrix of the coarsest ``k`` levels, all frames in one product; the gradient goes back
    through its transpose."""

    @staticmethod
    def forward(ctx, x, plan, k):  # type: ignore[override]
        m, m_t = plan.matrices(k)
        ctx.m_t = m_t
        n, b, f = x.shape
        ctx.shape = (n, b, f)
        out = m @ x.reshape(n, b * f)  # (k P, B F), row l P + p
        n_pix = out.shape[0] // k
        return _swap_outer(out.reshape(k, n_pix, b, f), f).reshape(b, n_pix, k * f)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        n, b, f = ctx.shape
        n_pix = g.shape[1]
        k = g.shape[2] // f
        gt = _swap_outer(g.reshape(b, n_pix, k, f), f).reshape(k * n_pix, b * f)
        return (ctx.m_t @ gt).reshape(n, b, f), None, None


def _active_prefix(mask: torch.Tensor) -> int | None:
    """``k`` when exactly the coarsest ``k`` levels are switched on (mask ``1...10...0``)."""
    on = mask == 1
    k = int(on.sum())
    if k >= 1 and bool(on[:k].all()) and bool((mask[k:] == 0).all()):
        return k
    return None


def encode_grid(
    encoding: HashEncoding,
    plan: GridPlan,
    frames: list[int] | torch.Tensor,
    active_only: bool = False,
) -> torch.Tensor:
    """Features ``(B, Y * X, L * F)`` of the plan's grid at ``frames`` (``B`` frame indices).

    Same values as ``encoding(points)`` on the grid's points of those frames (pixel ``(i, j)``
    at row ``i * X + j``). While only the coarsest ``k < L`` levels are switched on, only their
    rows are gathered and interpolated; the switched-off levels' columns are zeros, or, with
    ``active_only``, left out (output ``(B, Y * X, k * F)``; a network whose first layer has
    ``L * F`` inputs then uses only its first ``k * F`` input columns, see
    :func:`mrphys.nets.mlp.relu_mlp`).
    """
    fr = torch.as_tensor(frames, dtype=torch.long, device=encoding.table.device).reshape(-1)
    n_f = encoding.n_features
    flat = encoding.table.reshape(-1, n_f)
    mask = encoding.level_mask
    k = _active_prefix(mask)
    n = plan.n_levels if k is None else k
    rows = plan.rows(fr, n).transpose(0, 1)  # (n_rows_k, B, 2)
    w = plan.time_weights(fr, n).to(flat.dtype).t()  # (n_rows_k, B)
    blended = _GatherBlend.apply(flat, rows, w)  # (n_rows_k, B, F)
    if k is None:  # an arbitrary mask: every level, switched-off ones multiplied by zero
        blended = blended * mask.to(blended.dtype)[plan.level_of_row][:, None, None]
    out = _Interp.apply(blended, plan, n)  # (B, P, n F)
    if n < plan.n_levels and not active_only:
        out = torch.nn.functional.pad(out, (0, (plan.n_levels - n) * n_f))
    return out
