"""Tests of the multi-resolution hash encoding (values, gradients, plans, masking)."""

from __future__ import annotations

import torch

from mrphys.nets.hash_encoding import GridPlan, HashEncoding, encode_grid


def test_dense_level_interpolates_linear_functions_exactly():
    # Trilinear interpolation reproduces a linear function of the vertex coordinates.
    enc = HashEncoding(n_levels=1, n_features=1, log2_table_size=12, base_resolution=7, n_dims=3)
    r = 7
    assert (r + 1) ** 3 <= enc.table_size  # dense indexing
    ii = torch.arange(r + 1, dtype=torch.float32)
    # dense index = ix + iy (R+1) + it (R+1)^2
    it, iy, ix = torch.meshgrid(ii, ii, ii, indexing="ij")
    f = 0.3 + 1.5 * ix / r - 0.7 * iy / r + 2.0 * it / r
    with torch.no_grad():
        enc.table.zero_()
        enc.table[0, : (r + 1) ** 3, 0] = f.reshape(-1)
    x = torch.rand(200, 3, generator=torch.Generator().manual_seed(1))
    out = enc(x)[:, 0]
    expected = 0.3 + 1.5 * x[:, 0] - 0.7 * x[:, 1] + 2.0 * x[:, 2]
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_vertex_hits_return_table_entry():
    enc = HashEncoding(
        n_levels=2,
        n_features=2,
        log2_table_size=6,
        base_resolution=4,
        per_level_scale=2.0,
        n_dims=3,
    )
    x = torch.tensor([[0.25, 0.5, 0.75]])  # a vertex of both levels
    idx, w = enc.vertex_index_and_weight(x)
    # one corner carries all the weight at a vertex
    assert torch.allclose(w.max(-1).values, torch.ones(2))
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 1))


def test_gradcheck_wrt_table_float64():
    g = torch.Generator().manual_seed(0)
    enc = HashEncoding(
        n_levels=3,
        n_features=2,
        log2_table_size=5,
        base_resolution=2,
        per_level_scale=2.0,
        n_dims=3,
        generator=g,
    ).double()
    x = torch.rand(6, 3, generator=g, dtype=torch.float64)

    def f(table):
        enc.table.data = table
        return enc(x)

    table = enc.table.detach().clone().requires_grad_(True)
    idx, w = enc.vertex_index_and_weight(x)

    def f2(table):
        flat = table.reshape(-1, 2)
        return (flat[idx] * w[..., None]).sum(2)

    assert torch.autograd.gradcheck(f2, (table,), eps=1e-6, atol=1e-6)
    # and the module's own path (embedding) has the same gradient
    enc.table = torch.nn.Parameter(table.detach().clone())
    out = enc(x)
    gmod = torch.autograd.grad((out * out).sum(), enc.table)[0]
    table2 = table.detach().clone().requires_grad_(True)
    out2 = f2(table2).permute(1, 0, 2).reshape(6, -1)
    gref = torch.autograd.grad((out2 * out2).sum(), table2)[0]
    torch.testing.assert_close(gmod, gref)


def test_gradcheck_wrt_points_float64():
    g = torch.Generator().manual_seed(2)
    enc = HashEncoding(
        n_levels=2,
        n_features=2,
        log2_table_size=8,
        base_resolution=3,
        per_level_scale=1.7,
        n_dims=3,
        generator=g,
        init_scale=1.0,
    ).double()
    x = (0.1 + 0.8 * torch.rand(5, 3, generator=g, dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(enc, (x,), eps=1e-7, atol=1e-5)


def test_grid_plan_matches_direct_encoding_with_collisions():
    g = torch.Generator().manual_seed(3)
    # tiny table: dense and hashed levels, hashed ones with many collisions
    enc = HashEncoding(
        n_levels=4,
        n_features=2,
        log2_table_size=6,
        base_resolution=2,
        per_level_scale=2.0,
        n_dims=3,
        generator=g,
        init_scale=1.0,
    )
    assert bool(enc._dense[0]) and not bool(enc._dense[-1])
    xs, ys, ts = torch.rand(7, generator=g), torch.rand(5, generator=g), torch.rand(4, generator=g)
    ts[0] = 1.0  # the upper boundary falls in the last cell
    plan = GridPlan(enc, xs, ys, ts)
    frames = [3, 0, 2]
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    pts = [torch.stack([gx.flatten(), gy.flatten(), ts[k].expand(35)], -1) for k in frames]
    a = torch.stack([enc(p) for p in pts])  # (3, 35, 8)
    b = encode_grid(enc, plan, frames)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    w = torch.randn(a.shape, generator=g)
    ga = torch.autograd.grad((a.sin() * w).sum(), enc.table)[0]
    gb = torch.autograd.grad((b.sin() * w).sum(), enc.table)[0]
    torch.testing.assert_close(ga, gb, atol=1e-5, rtol=1e-5)
    # switched-off levels: zero features, zero gradient (same as the direct encoding)
    enc.set_active_levels(2)
    b = encode_grid(enc, plan, frames)
    assert torch.all(b[..., 4:] == 0) and torch.any(b[..., :4] != 0)
    gb = torch.autograd.grad(b.sum(), enc.table)[0]
    assert torch.all(gb[2:] == 0) and torch.any(gb[:2] != 0)


def test_grid_plan_gathers_fewer_rows_than_per_point_corners():
    enc = HashEncoding(8, 2, 17, base_resolution=16, per_level_scale=1.5, n_dims=3)
    c = (torch.arange(128) + 0.5) / 128
    plan = GridPlan(enc, c, c, c[:10])
    # two time slices of the touched vertices against 8 corners of every pixel, per level
    assert 2 * plan.n_rows < 8 * 128 * 128 * 8 / 3.5
    assert plan.rows(torch.tensor([1, 2])).shape == (2, plan.n_rows, 2)
    # coarse-to-fine: the coarsest 3 levels touch a prefix of the rows, far fewer
    assert plan.rows(torch.tensor([1, 2]), 3).shape[1] < plan.n_rows / 20


def test_grid_plan_active_levels_only_same_values_and_gradients():
    g = torch.Generator().manual_seed(5)
    enc = HashEncoding(4, 2, 6, base_resolution=2, per_level_scale=2.0, n_dims=3, generator=g)
    with torch.no_grad():
        enc.table.uniform_(-1, 1, generator=g)
    xs, ys, ts = torch.rand(6, generator=g), torch.rand(5, generator=g), torch.rand(3, generator=g)
    plan = GridPlan(enc, xs, ys, ts)
    frames = [2, 0]
    enc.set_active_levels(2)
    full = encode_grid(enc, plan, frames)  # (2, 30, 8), levels 2-3 zero
    short = encode_grid(enc, plan, frames, active_only=True)  # (2, 30, 4)
    assert short.shape == (2, 30, 4) and torch.all(full[..., 4:] == 0)
    torch.testing.assert_close(full[..., :4], short)
    # an arbitrary (non-prefix) mask takes the general path: same as the direct encoding
    enc.level_mask.copy_(torch.tensor([0.0, 1.0, 0.0, 1.0]))
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    pts = torch.stack([gx.flatten(), gy.flatten(), ts[2].expand(30)], -1)
    torch.testing.assert_close(encode_grid(enc, plan, [2])[0], enc(pts), atol=1e-6, rtol=1e-5)


def test_coarse_to_fine_mask_zeroes_levels_and_their_gradient():
    enc = HashEncoding(
        n_levels=4, n_features=2, log2_table_size=8, base_resolution=2, init_scale=1.0
    )
    enc.set_active_levels(2)
    x = torch.rand(50, 3)
    out = enc(x)
    assert torch.all(out[:, 4:] == 0) and torch.any(out[:, :4] != 0)
    grad = torch.autograd.grad(out.sum(), enc.table)[0]
    assert torch.all(grad[2:] == 0) and torch.any(grad[:2] != 0)


def test_init_range_and_shape():
    enc = HashEncoding(n_levels=3, n_features=4, log2_table_size=10)
    assert enc.table.shape == (3, 1024, 4)
    assert float(enc.table.detach().abs().max()) <= 1e-4
    assert enc(torch.rand(7, 3)).shape == (7, 12)
