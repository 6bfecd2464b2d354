"""Tests of the spatiotemporal INR reconstruction (losses, encoding, fit, rendering, errors)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from mrphys.errors import MrphysError
from mrphys.metrics import psnr
from mrphys.physics.coils import SenseOp
from mrphys.physics.nufft import RadialNUFFT, golden_angle_radial, radial_dcf
from mrphys.recon.inr import (
    InrConfig,
    SpatiotemporalInr,
    casorati_nuclear,
    fit_inr,
    grid_coordinates,
    grid_plan,
    learning_rate,
    reconstruct_inr,
    relative_l2,
    render_inr,
    temporal_tv,
)
from mrphys.utils import make_generator

# many small ops: one intra-op thread is fastest and avoids oversubscribing a shared CPU
pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------------------------
# small self-made dynamic acquisition
# --------------------------------------------------------------------------------------------


def _series(n_frames: int = 8, n: int = 32) -> torch.Tensor:
    """A disc that moves and pulses on a static ellipse background, ``(T, N, N)`` in [0, 1]."""
    c = (torch.arange(n) + 0.5) / n - 0.5
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    body = ((xx / 0.42) ** 2 + (yy / 0.34) ** 2 <= 1).float() * 0.4
    frames = []
    for k in range(n_frames):
        ph = 2 * math.pi * k / n_frames
        r = 0.12 + 0.04 * math.sin(ph)
        disc = ((xx - 0.08 * math.cos(ph)) ** 2 + (yy - 0.05) ** 2 <= r**2).float()
        frames.append(torch.maximum(body, disc))
    return torch.stack(frames)


def _maps(n_coils: int, n: int) -> torch.Tensor:
    """Smooth coil sensitivities around the field of view, ``sum_c |S_c|^2 = 1``."""
    c = torch.linspace(-1, 1, n)
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    maps = []
    for i in range(n_coils):
        a = 2 * math.pi * i / n_coils
        mag = torch.exp(-((yy - 1.2 * math.sin(a)) ** 2 + (xx - 1.2 * math.cos(a)) ** 2) / 1.5)
        maps.append(mag * torch.exp(1j * (a + 0.5 * (xx * math.cos(a) + yy * math.sin(a)))))
    m = torch.stack(maps).to(torch.complex64)
    return m / (m.abs() ** 2).sum(0).sqrt()[None]


def _acquire(x: torch.Tensor, spokes: int, n_coils: int = 4, sigma: float = 0.0, seed: int = 0):
    t, n, _ = x.shape
    traj = golden_angle_radial(t, spokes, 2 * n)
    maps = _maps(n_coils, n)
    op = RadialNUFFT(traj, (n, n))
    ks = op.forward((x.to(torch.complex64)[:, None] * maps[None]).transpose(0, 1)).transpose(0, 1)
    if sigma > 0:
        g = torch.Generator().manual_seed(seed)
        noise = torch.complex(
            torch.randn(ks.shape, generator=g), torch.randn(ks.shape, generator=g)
        )
        ks = ks + sigma / math.sqrt(2) * noise
    return {"kspace": ks, "traj": traj, "maps": maps, "dcf": radial_dcf(traj, im_size=(n, n))}


def _gridding(data: dict) -> torch.Tensor:
    ks, traj, maps, dcf = data["kspace"], data["traj"], data["maps"], data["dcf"]
    op = RadialNUFFT(traj, tuple(maps.shape[1:]))
    xc = op.adjoint((ks * dcf[:, None]).transpose(0, 1)).transpose(0, 1)
    return (xc * maps.conj()[None]).sum(1)


def _series_psnr(x: torch.Tensor, ref: torch.Tensor) -> float:
    t, ny, nx = ref.shape
    a, b = x.abs().reshape(1, t * ny, nx), ref.abs().reshape(1, t * ny, nx)
    return float(psnr(a, b, data_range=float(b.max())))


# --------------------------------------------------------------------------------------------
# loss terms against closed forms
# --------------------------------------------------------------------------------------------


def test_relative_l2_closed_form_and_stopgrad():
    y_hat = torch.full((3, 4), 1 + 1j, dtype=torch.complex128, requires_grad=True)
    y = torch.full((3, 4), 2 + 0j, dtype=torch.complex128)
    eps = 1e-4
    # real parts: (2-1)^2/(1+eps); imaginary parts: (0-1)^2/(1+eps)
    val = relative_l2(y_hat, y, eps)
    assert math.isclose(float(val.detach()), 1 / (1 + eps), rel_tol=1e-12)
    # the denominator is detached: dL/dRe = -2 (2 - 1) / (1 + eps) / 24 (24 real numbers),
    # dL/dIm = -2 (0 - 1) / (1 + eps) / 24; torch's complex gradient is dL/dRe + i dL/dIm
    (g,) = torch.autograd.grad(val, y_hat)
    expected = complex(-2, 2) / (1 + eps) / 24
    torch.testing.assert_close(g, torch.full_like(g, expected))


def test_temporal_tv_closed_form():
    # frames constant in space: 0, 1+2i, -1 (max |x| = sqrt(5))
    vals = torch.tensor([0, 1 + 2j, -1], dtype=torch.complex128)
    x = vals[:, None, None].expand(3, 2, 5).clone()
    # differences 1+2i and -2-2i: |Re|+|Im| = 3 and 4 per pixel; 10 pixels each; 20 elements
    expected = (3 * 10 + 4 * 10) / 20 / math.sqrt(5)
    assert math.isclose(float(temporal_tv(x)), expected, rel_tol=1e-12)
    assert float(temporal_tv(x[:1])) == 0.0
    # scale invariance (the max is part of the normalisation)
    assert math.isclose(float(temporal_tv(7 * x)), expected, rel_tol=1e-12)


def test_casorati_nuclear_closed_form_and_gradient():
    # rank one: x[t] = u_t * v -> nuclear norm |u| |v|
    u = torch.tensor([1.0, 2.0, 2.0], dtype=torch.float64)
    v = torch.randn(4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = (u[:, None, None] * v[None]).to(torch.complex128)
    expected = 3.0 * float(v.norm()) / 3
    assert math.isclose(float(casorati_nuclear(x)), expected, rel_tol=1e-10)
    # orthogonal frames: singular values are the frame norms
    e = torch.zeros(2, 2, 2, dtype=torch.float64)
    e[0, 0, 0], e[1, 1, 1] = 3.0, 4.0
    assert math.isclose(float(casorati_nuclear(e)), 7.0 / 2, rel_tol=1e-12)
    # differentiable (distinct singular values)
    xr = torch.randn(3, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert torch.autograd.gradcheck(casorati_nuclear, (xr.requires_grad_(True),))
    # complex float32 against the SVD: value and gradient; a zero series: 0 and no NaN
    z = torch.randn(5, 6, 7, dtype=torch.complex64, generator=torch.Generator().manual_seed(2))
    z.requires_grad_(True)
    ref = torch.linalg.svdvals(z.detach().reshape(5, -1).requires_grad_(True))
    val = casorati_nuclear(z)
    zr = z.detach().reshape(5, -1).requires_grad_(True)
    (g_ref,) = torch.autograd.grad(torch.linalg.svdvals(zr).sum() / 5, zr)
    (g,) = torch.autograd.grad(val, z)
    torch.testing.assert_close(val, ref.sum().detach() / 5, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g.reshape(5, -1), g_ref, rtol=1e-4, atol=1e-5)
    zero = torch.zeros(3, 4, 4, dtype=torch.complex64, requires_grad=True)
    (g0,) = torch.autograd.grad(casorati_nuclear(zero), zero)
    assert float(casorati_nuclear(zero.detach())) == 0.0 and torch.all(g0 == 0)


# --------------------------------------------------------------------------------------------
# encoding operator and network
# --------------------------------------------------------------------------------------------


def test_window_encoding_adjoint_and_autograd_match():
    """The INR's per-window encoding: SENSE on a frame subset of one NUFFT (finufft eps 1e-4)."""
    x = _series(4, 16)
    data = _acquire(x, spokes=3, n_coils=3)
    nufft = RadialNUFFT(data["traj"], (16, 16), threads=1, eps=1e-4)
    idx = [1, 3]
    enc = SenseOp(data["maps"], nufft.frames(idx))
    g = torch.Generator().manual_seed(0)
    u = torch.complex(torch.randn(2, 16, 16, generator=g), torch.randn(2, 16, 16, generator=g))
    v = torch.complex(torch.randn(2, 3, 3, 32, generator=g), torch.randn(2, 3, 3, 32, generator=g))
    au = enc.forward(u)
    ahv = enc.adjoint(v)
    lhs = torch.vdot(au.flatten(), v.flatten())
    rhs = torch.vdot(u.flatten(), ahv.flatten())
    assert abs(lhs - rhs) / abs(lhs) < 1e-5
    # the autograd backward is the adjoint: d/du Re<A u, v> = A^H v
    ur = u.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(
        torch.real(torch.vdot(v.flatten(), enc.forward(ur).flatten())), ur
    )
    torch.testing.assert_close(grad, ahv, rtol=1e-4, atol=1e-4 * float(ahv.abs().max()))
    # the windows of the coarse NUFFT agree with the full-accuracy encoding of the data
    full = SenseOp(data["maps"], nufft.frames(range(4))).forward(x.to(torch.complex64))
    torch.testing.assert_close(full, data["kspace"], rtol=1e-3, atol=1e-3 * float(full.abs().max()))


def test_flattened_layout_fits_the_same():
    x = _series(4, 16)
    data = _acquire(x, spokes=4, n_coils=2)
    cfg = InrConfig(n_levels=3, log2_table_size=10, hidden_width=8, hidden_layers=1, iterations=4)
    t = x.shape[0]
    flat = {
        "kspace": data["kspace"].flatten(2),  # (T, C, K)
        "traj": data["traj"].reshape(t, -1, 2),  # (T, K, 2)
        "maps": data["maps"],
        "dcf": data["dcf"].reshape(t, -1),
    }
    torch.testing.assert_close(
        reconstruct_inr(flat, config=cfg, seed=1), reconstruct_inr(data, config=cfg, seed=1)
    )
    with pytest.raises(MrphysError, match="needs dcf"):
        reconstruct_inr({k: v for k, v in flat.items() if k != "dcf"}, config=cfg)


def test_planned_and_direct_queries_agree():
    cfg = InrConfig(
        n_levels=3, log2_table_size=10, hidden_width=16, hidden_layers=1, init_scale=1.0
    )
    model = SpatiotemporalInr(cfg, generator=torch.Generator().manual_seed(0))
    coords = grid_coordinates(3, (8, 6), 8)
    assert coords.shape == (3, 48, 3)
    # pixel centres and the paper's time scaling
    assert (
        abs(float(coords[0, 0, 0]) - 0.5 / 6) < 1e-7
        and abs(float(coords[0, 0, 1]) - 0.5 / 8) < 1e-7
    )
    assert abs(float(coords[2, 0, 2]) - 2.5 / 8) < 1e-7
    plan = grid_plan(model.encoding, 3, (8, 6), 8)
    torch.testing.assert_close(
        model.forward_grid(plan, [1, 2]), torch.stack([model(coords[1]), model(coords[2])]),
        atol=1e-5, rtol=1e-4,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# fitting and rendering
# --------------------------------------------------------------------------------------------

_TINY = InrConfig(
    n_levels=6,
    log2_table_size=14,
    base_resolution=4.0,
    per_level_scale=1.5,
    hidden_width=32,
    hidden_layers=1,
    iterations=200,
    frames_per_batch=None,
    lr=1e-2,
    log_every=1000,
)


def test_inr_beats_gridding_on_tiny_case():
    x = _series(8, 32)
    data = _acquire(x, spokes=6, n_coils=4, sigma=0.002, seed=1)
    grid = _gridding(data)
    rec = reconstruct_inr(data, config=_TINY, seed=0)
    assert rec.shape == x.shape and rec.dtype == torch.complex64
    p_grid, p_inr = _series_psnr(grid, x), _series_psnr(rec, x)
    assert p_inr > p_grid + 3.0, (p_inr, p_grid)


def test_same_seed_same_numbers():
    x = _series(4, 16)
    data = _acquire(x, spokes=4, n_coils=2)
    cfg = InrConfig(n_levels=3, log2_table_size=10, hidden_width=8, hidden_layers=1, iterations=4)
    a = reconstruct_inr(data, config=cfg, seed=5)
    b = reconstruct_inr(data, config=cfg, seed=5)
    c = reconstruct_inr(data, config=cfg, seed=6)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


def test_parallel_windows_are_deterministic_and_restore_threads():
    x = _series(8, 16)
    data = _acquire(x, spokes=4, n_coils=2, sigma=0.002, seed=1)
    cfg = InrConfig(
        n_levels=3, log2_table_size=10, hidden_width=8, hidden_layers=1, iterations=7,
        frames_per_batch=2, workers=2,
    )  # fmt: skip
    threads = torch.get_num_threads()
    a = reconstruct_inr(data, config=cfg, seed=3)
    b = reconstruct_inr(data, config=cfg, seed=3)
    one = reconstruct_inr(data, config=replace(cfg, workers=1), seed=3)
    assert torch.get_num_threads() == threads
    torch.testing.assert_close(a, b, rtol=0, atol=0)  # no race between the threads
    assert a.shape == x.shape and bool(torch.isfinite(torch.view_as_real(a)).all())
    # the first round's steps use the same windows; only the staler gradients differ
    assert not torch.equal(a, one)
    assert _series_psnr(a, x) > _series_psnr(one, x) - 1.0
    _, fit = fit_inr(data["kspace"], data["traj"], data["maps"], config=cfg, seed=3, progress=False)
    assert fit.iterations == 7 and len(fit.losses) == 4  # rounds of 2 steps, the last of 1


def test_frames_out_and_matrix_out_shapes_and_continuity():
    x = _series(6, 16)
    data = _acquire(x, spokes=4, n_coils=2)
    cfg = InrConfig(
        n_levels=4, log2_table_size=12, base_resolution=4.0, hidden_width=16, hidden_layers=1,
        iterations=20, frames_per_batch=3, lr=1e-2,
    )  # fmt: skip
    model, info = fit_inr(data["kspace"], data["traj"], data["maps"], config=cfg, progress=False)
    assert info.iterations == 20 and len(info.losses) == 20
    base = render_inr(model, info)
    assert base.shape == (6, 16, 16)
    more = render_inr(model, info, frames_out=12)
    assert more.shape == (12, 16, 16)
    fine = render_inr(model, info, matrix_out=40)
    assert fine.shape == (6, 40, 40)
    both = render_inr(model, info, frames_out=3, matrix_out=(20, 24))
    assert both.shape == (3, 20, 24) and both.dtype == torch.complex64
    # frames_out = T renders the acquired frames (direct query equals the planned one)
    same = render_inr(model, info, frames_out=6, matrix_out=16)
    torch.testing.assert_close(same, base, atol=1e-5 * float(base.abs().max()), rtol=1e-4)
    # with 2T frames, frames 2k and 2k+1 sit a quarter frame either side of acquired frame k:
    # their mean is close to it (continuity in time)
    mid = 0.5 * (more[0::2] + more[1::2])
    assert float((mid - base).abs().max()) <= 0.5 * float(base.abs().max())


def test_reconstruct_inr_signature_passes_options():
    x = _series(4, 16)
    data = _acquire(x, spokes=4, n_coils=2)
    cfg = InrConfig(n_levels=2, log2_table_size=10, hidden_width=8, hidden_layers=1)
    out = reconstruct_inr(
        data, iterations=3, frames_out=5, matrix_out=24, seed=3, device="cpu", config=cfg
    )
    assert out.shape == (5, 24, 24)
    assert torch.isfinite(torch.view_as_real(out)).all()


def test_learning_rate_schedules_and_table_rate():
    cfg = InrConfig(lr=2e-3)
    assert learning_rate(cfg, 0, 100) == 2e-3 and learning_rate(cfg, 49, 100) == 2e-3
    assert learning_rate(cfg, 50, 100) == 1e-3
    cos = InrConfig(lr=2e-3, schedule="cosine")
    assert learning_rate(cos, 0, 100) == pytest.approx(2e-3)
    assert learning_rate(cos, 50, 100) == pytest.approx(2e-3 * (0.01 + 0.99 * 0.5))
    assert learning_rate(cos, 100, 100) == pytest.approx(2e-5)
    # the tables' rate is table_lr / lr times the MLP's, through the whole run
    x = _series(4, 16)
    data = _acquire(x, spokes=4, n_coils=2)
    tiny = InrConfig(
        n_levels=2, log2_table_size=10, hidden_width=8, hidden_layers=1, iterations=3,
        lr=1e-3, table_lr=1e-2, schedule="cosine",
    )  # fmt: skip
    seen = []

    def spy(it, model, fit):
        seen.append(it)

    model, fit = fit_inr(
        data["kspace"], data["traj"], data["maps"], config=tiny, progress=False,
        callback=spy, callback_every=1,
    )  # fmt: skip
    assert seen == [1, 2, 3] and all(math.isfinite(v) for v in fit.losses)
    init = SpatiotemporalInr(tiny, generator=make_generator(0)).encoding.table.detach()
    same = fit_inr(
        data["kspace"], data["traj"], data["maps"], config=replace(tiny, table_lr=None),
        progress=False,
    )[0]  # fmt: skip
    moved = float((model.encoding.table.detach() - init).abs().max())
    moved_same = float((same.encoding.table.detach() - init).abs().max())
    assert moved > 3 * moved_same  # Adam moves each entry by about its learning rate a step
    with pytest.raises(MrphysError, match="schedule"):
        InrConfig(schedule="step").validate()
    with pytest.raises(MrphysError, match="table_lr"):
        InrConfig(table_lr=0.0).validate()


def test_paper_config_is_kept():
    p = InrConfig.paper()
    assert (p.n_levels, p.log2_table_size, p.hidden_layers, p.hidden_width) == (16, 24, 5, 128)
    assert p.n_iterations(50) == 1600 and p.frames_per_batch is None
    assert (p.tv_weight, p.nuclear_weight, p.lr, p.table_lr) == (0.02, 2e-4, 1e-3, None)


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------


def test_bad_input_raises_mrphys_error():
    x = _series(3, 16)
    data = _acquire(x, spokes=2, n_coils=2)
    ks, traj, maps = data["kspace"], data["traj"], data["maps"]
    with pytest.raises(MrphysError, match="kspace"):
        fit_inr(ks.real, traj, maps, iterations=1, progress=False)
    with pytest.raises(MrphysError, match="traj"):
        fit_inr(ks, traj[:, :-1], maps, iterations=1, progress=False)
    with pytest.raises(MrphysError, match="dcf must have shape"):
        fit_inr(ks, traj, maps, dcf=data["dcf"][:, :-1], iterations=1, progress=False)
    with pytest.raises(MrphysError, match="coil maps"):
        fit_inr(ks, traj, maps[:1], iterations=1, progress=False)
    bad = ks.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(MrphysError, match="NaN"):
        fit_inr(bad, traj, maps, iterations=1, progress=False)
    with pytest.raises(MrphysError, match="iterations"):
        fit_inr(ks, traj, maps, iterations=0, progress=False)
    with pytest.raises(MrphysError, match="needs data"):
        reconstruct_inr({"kspace": ks})
    cfg = InrConfig(n_levels=2, log2_table_size=10, hidden_width=8, hidden_layers=1)
    with pytest.raises(MrphysError, match="frames_out"):
        reconstruct_inr(data, iterations=1, frames_out=0, config=cfg)
    with pytest.raises(MrphysError, match="matrix_out"):
        reconstruct_inr(data, iterations=1, matrix_out=-4, config=cfg)
    with pytest.raises(MrphysError, match="lr"):
        InrConfig(lr=-1.0).validate()
    with pytest.raises(MrphysError, match="workers"):
        InrConfig(workers=0).validate()
    with pytest.raises(MrphysError, match="adam_betas"):
        InrConfig(adam_betas=(0.9, 1.0)).validate()
