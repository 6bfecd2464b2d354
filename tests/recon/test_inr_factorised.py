"""Tests of the factorised INR ``x(r, t) = sum_k U_k(r) V_k(t)`` (``InrConfig.rank``)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from mrphys.errors import MrphysError
from mrphys.metrics import psnr
from mrphys.nets.lowrank_inr import FactorisedInr
from mrphys.physics.radial import simulate_radial
from mrphys.recon.baselines import gridding
from mrphys.recon.inr import InrConfig, fit_inr, pixel_plan, reconstruct_inr, render_inr
from mrphys.tissue.dynamic import synthetic_cine

pytestmark = pytest.mark.usefixtures("one_thread")


def _pixels(ny: int, nx: int) -> torch.Tensor:
    """Pixel centres ``(Y * X, 2)`` as ``(x, y)``, row ``i * X + j``."""
    ys, xs = (torch.arange(ny) + 0.5) / ny, (torch.arange(nx) + 0.5) / nx
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=-1)


def _score(rec: torch.Tensor, truth: torch.Tensor) -> float:
    return float(psnr(rec, truth).mean())


@pytest.mark.parametrize("log2_table", [12, 8])  # all levels dense; most levels hashed
def test_planned_spatial_factors_equal_direct_encoding_and_gradients(log2_table):
    g = torch.Generator().manual_seed(0)
    model = FactorisedInr(
        5, 3, n_levels=6, log2_table_size=log2_table, base_resolution=4.0, hidden_width=16,
        hidden_layers=1, init_scale=0.5, generator=g,
    )  # fmt: skip
    model.encoding.set_active_levels(4)  # coarse-to-fine: two levels off
    plan = pixel_plan(model, (12, 20))
    assert plan.hashed == (log2_table == 8)
    direct = model.mlp(model.encoding(_pixels(12, 20)))
    direct = torch.complex(direct[:, :3], direct[:, 3:])
    planned = model.spatial(plan)
    torch.testing.assert_close(planned, direct, atol=1e-6, rtol=1e-5)
    w = torch.randn(planned.shape, dtype=torch.complex64, generator=g)
    ga = torch.autograd.grad((planned * w).real.sum(), model.encoding.table)[0]
    gb = torch.autograd.grad((direct * w).real.sum(), model.encoding.table)[0]
    torch.testing.assert_close(ga, gb, atol=1e-6, rtol=1e-5)
    assert float(ga[4:].abs().max()) == 0.0  # switched-off levels get no gradient


@pytest.mark.parametrize(
    "log2_table, size, hashed, shared",  # dense; hashed without, and with, shared rows
    [(12, (12, 20), False, False), (9, (3, 4), True, False), (6, (12, 20), True, True)],
)
def test_lifted_rows_give_the_same_factors_and_gradients_and_write_back(
    log2_table, size, hashed, shared
):
    g = torch.Generator().manual_seed(0)
    model = FactorisedInr(
        5, 3, n_levels=6, log2_table_size=log2_table, base_resolution=4.0, hidden_width=16,
        hidden_layers=1, init_scale=0.5, generator=g,
    )  # fmt: skip
    plan = pixel_plan(model, size)
    assert plan.hashed == hashed
    assert (torch.unique(plan.table_rows).numel() < plan.table_rows.numel()) == shared
    ref = model.spatial(plan)
    w = torch.randn(ref.shape, dtype=torch.complex64, generator=g)
    g_table = torch.autograd.grad((ref * w).real.sum(), model.encoding.table)[0]
    lifted = plan.lift(model.encoding)
    if shared:  # rows shared by several pixels' vertices: nothing lifted
        assert lifted is None and plan.lifted is None
        return
    got = model.spatial(plan)
    assert torch.equal(got, ref)
    g_lift = torch.autograd.grad((got * w).real.sum(), lifted)[0]
    assert torch.equal(g_lift, g_table.reshape(-1, 2)[plan.table_rows])  # the same gradient, moved
    rest = g_table.reshape(-1, 2).clone()
    rest[plan.table_rows] = 0
    assert float(rest.abs().max()) == 0.0  # the table's other rows get none
    before = model.encoding.table.detach().clone().reshape(-1, 2)
    with torch.no_grad():
        lifted.add_(1.0)
    new = lifted.detach().clone()
    plan.lower(model.encoding, release=True)
    assert plan.lifted is None
    after = model.encoding.table.detach().reshape(-1, 2)
    assert torch.equal(after[plan.table_rows], new)
    after[plan.table_rows] = before[plan.table_rows]
    assert torch.equal(after, before)  # no other row touched


def test_series_has_rank_at_most_k_and_v_interpolates_linearly():
    model = FactorisedInr(7, 2, n_levels=4, base_resolution=4.0, hidden_width=16, init_scale=0.5)
    with torch.no_grad():
        model.temporal.normal_(generator=torch.Generator().manual_seed(1))
    plan = pixel_plan(model, (10, 10))
    out = model.forward_grid(plan, list(range(7)))  # (T, P, 2)
    assert out.shape == (7, 100, 2)
    x = torch.view_as_complex(out.contiguous())
    sv = torch.linalg.svdvals(x.detach())
    assert float(sv[2:].max()) < 1e-5 * float(sv[0])  # rank 2 Casorati matrix
    v = torch.view_as_complex(model.temporal.detach())
    torch.testing.assert_close(model.temporal_at(torch.tensor([0.0, 3.0, 6.0])), v[[0, 3, 6]])
    between = model.temporal_at(torch.tensor([2.25]))
    torch.testing.assert_close(between, 0.75 * v[2:3] + 0.25 * v[3:4])
    # no extrapolation beyond the first and last frame
    torch.testing.assert_close(model.temporal_at(torch.tensor([-0.4, 6.4])), v[[0, 6]])
    # the rendering of the acquired frames is forward_grid's
    torch.testing.assert_close(model.render(torch.arange(7.0), plan).reshape(7, -1), x)


_TINY = InrConfig(
    rank=6, n_levels=6, log2_table_size=14, base_resolution=4.0, hidden_width=32,
    hidden_layers=1, iterations=150, frames_per_batch=None, lr=1e-2, log_every=1000,
)  # fmt: skip


def test_factorised_inr_beats_gridding_and_renders_other_grids():
    x = synthetic_cine(8, 32, seed=2)
    data = simulate_radial(x, 6, coils=4, snr=50.0, seed=1)
    model, info = fit_inr(data.kspace, data.traj, data.maps, config=_TINY, seed=0, progress=False)
    assert isinstance(model, FactorisedInr) and info.iterations == 150
    assert info.to_dict()["config"]["rank"] == 6  # the plan stays out of the JSON form
    rec = render_inr(model, info)
    assert rec.shape == x.shape and rec.dtype == torch.complex64
    p_inr, p_grid = _score(rec, data.truth), _score(gridding(data), data.truth)
    assert p_inr > p_grid + 3.0, (p_inr, p_grid)
    # other frame counts and matrices: continuous in time, the same image on a finer grid
    more = render_inr(model, info, frames_out=16)
    assert more.shape == (16, 32, 32)
    # frame 2k + 1 of 16 sits a quarter frame after acquired frame k: V, hence x, is linear there
    lin = 0.75 * rec[:-1] + 0.25 * rec[1:]
    torch.testing.assert_close(more[1:-1:2], lin, atol=1e-5 * float(rec.abs().max()), rtol=1e-4)
    fine = render_inr(model, info, matrix_out=64)
    assert fine.shape == (8, 64, 64)
    coarse = fine.reshape(8, 32, 2, 32, 2).mean((2, 4))  # 2x2 means: close to the acquired grid
    assert _score(coarse, rec) > 25.0
    same = render_inr(model, info, frames_out=8, matrix_out=32)
    torch.testing.assert_close(same, rec, atol=1e-5 * float(rec.abs().max()), rtol=1e-4)


def test_same_seed_same_numbers_and_rank_changes_the_model():
    x = synthetic_cine(4, 16, seed=0)
    data = simulate_radial(x, 4, coils=2, snr=None, seed=0)
    cfg = replace(_TINY, iterations=5)
    a = reconstruct_inr(data, config=cfg, seed=3)
    torch.testing.assert_close(a, reconstruct_inr(data, config=cfg, seed=3))
    assert not torch.allclose(a, reconstruct_inr(data, config=cfg, seed=4))
    model, _ = fit_inr(
        data.kspace, data.traj, data.maps, config=replace(cfg, rank=3), progress=False
    )
    assert model.temporal.shape == (4, 3, 2) and model.mlp[-1].out_features == 6


def test_temporal_factors_get_their_own_learning_rate():
    x = synthetic_cine(4, 16, seed=0)
    data = simulate_radial(x, 4, coils=2, snr=None, seed=0)
    init = FactorisedInr(4, 6).temporal.detach().clone()  # the DCT start (no randomness)
    moved = []
    for lr in (1e-4, 1e-2):
        cfg = replace(_TINY, iterations=3, frames_per_batch=None, factor_lr=lr)
        model, _ = fit_inr(data.kspace, data.traj, data.maps, config=cfg, progress=False)
        moved.append(float((model.temporal.detach() - init).abs().max()))
    assert moved[1] > 30 * moved[0]  # Adam moves each entry by about its rate a step


def test_bad_rank_raises_mrphys_error():
    with pytest.raises(MrphysError, match="rank"):
        InrConfig(rank=0).validate()
    with pytest.raises(MrphysError, match="factor_lr"):
        InrConfig(rank=4, factor_lr=-1.0).validate()
    with pytest.raises(MrphysError, match="rank"):
        FactorisedInr(4, 0)


def test_fast_preset_is_the_factorised_inr_in_two_threads(tmp_path, cli):
    fast = InrConfig.preset("fast")
    assert (fast.rank, fast.lr, fast.workers) == (32, 3e-3, 2)
    assert InrConfig.preset("default") == InrConfig()
    assert InrConfig.preset("paper") == InrConfig.paper()
    with pytest.raises(MrphysError, match="preset"):
        InrConfig.preset("quick")
    bad = tmp_path / "bad"  # refused before the input is read
    cli.fails("dynamic", "recon", "--input", tmp_path / "none", "--method", "grasp",
              "--inr-preset", "fast", "--out", bad, out=bad,
              says="--inr-preset is only available")  # fmt: skip


@pytest.mark.parametrize("coarse_to_fine", [False, True])
def test_tail_average_is_the_mean_of_the_last_iterates_with_every_level_on(coarse_to_fine):
    x = synthetic_cine(4, 16, seed=0)
    data = simulate_radial(x, 4, coils=2, snr=None, seed=0)
    cfg = replace(_TINY, iterations=12, rank=2, coarse_to_fine=coarse_to_fine)
    seen: dict[int, dict[str, torch.Tensor]] = {}

    def keep(it, model, info):
        seen[it] = {k: v.detach().clone() for k, v in model.state_dict().items()}

    args = (data.kspace, data.traj, data.maps)
    fit_inr(*args, config=cfg, progress=False, callback=keep, callback_every=1)
    model, _ = fit_inr(*args, config=replace(cfg, average_tail=0.5), progress=False)
    # the last half (steps 6..11), from step 10 on with coarse-to-fine (the finest level's start)
    first = 10 if coarse_to_fine else 6
    for k, v in model.state_dict().items():
        want = torch.stack([seen[it + 1][k] for it in range(first, 12)]).mean(0)
        torch.testing.assert_close(v, want, atol=1e-6, rtol=1e-5)
    with pytest.raises(MrphysError, match="average_tail"):
        replace(cfg, average_tail=1.0).validate()
