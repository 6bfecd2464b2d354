"""Classical radial reconstructions: gridding, CG-SENSE, GRASP (temporal TV), L+S."""

import logging

import pytest
import torch

from mrphys.errors import MrphysError
from mrphys.metrics import psnr
from mrphys.physics.coils import SenseOp
from mrphys.physics.radial import RadialData, simulate_radial
from mrphys.recon import baselines as B
from mrphys.tissue.dynamic import synthetic_cine

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def full():
    """Fully sampled (32 spokes >= pi/2 * 16), noise free, 16 x 16, 4 frames, 4 coils."""
    return simulate_radial(synthetic_cine(4, 16, seed=0), spokes=32, coils=4)


@pytest.fixture(scope="module")
def under():
    """6.7x undersampled (3 spokes for 20 x 20), 8 frames, 4 coils, SNR 20."""
    return simulate_radial(synthetic_cine(8, 20, seed=1), spokes=3, coils=4, snr=20.0, seed=1)


def test_gridding_of_fully_sampled_series(full):
    x = B.gridding(full)
    assert x.shape == (4, 16, 16) and x.dtype == torch.complex64
    # a one-shot density-compensated adjoint: Voronoi DCF quadrature error limits it (~35 dB)
    assert float(psnr(x, full.truth).min()) > 33.0


def test_gridding_interference_combination(full, under):
    """``combine="interference"`` keeps a fully sampled series (nothing to reject) and beats the
    plain combination by a wide margin when the frames are undersampled (streaks)."""
    assert float(psnr(B.gridding(full, combine="interference"), full.truth).min()) > 33.0
    plain = float(psnr(B.gridding(under), under.truth).mean())
    opt = float(psnr(B.gridding(under, combine="interference"), under.truth).mean())
    assert opt > plain + 1.0
    with pytest.raises(MrphysError, match="combine"):
        B.gridding(under, combine="rss")


@pytest.mark.parametrize(
    "method",
    [
        lambda d: B.cg_sense(d, iterations=20, lam=0.0),
        lambda d: B.grasp(d, lam_tv=1e-4, iterations=30),
        lambda d: B.low_rank_sparse(d, lam_l=1e-4, lam_s=1e-4, iterations=30),
    ],
    ids=["cg_sense", "grasp", "low_rank_sparse"],
)
def test_iterative_methods_recover_fully_sampled_series(full, method):
    x = method(full)
    assert x.shape == (4, 16, 16) and x.dtype == torch.complex64
    assert float(psnr(x, full.truth).min()) > 40.0


def test_defaults_beat_gridding_when_undersampled(under):
    ref = under.truth
    p_grid = float(psnr(B.gridding(under), ref).mean())
    p_cg = float(psnr(B.cg_sense(under), ref).mean())
    p_grasp = float(psnr(B.grasp(under), ref).mean())
    p_ls = float(psnr(B.low_rank_sparse(under), ref).mean())
    assert p_cg > p_grid + 1.0
    # exploiting the temporal redundancy helps beyond frame-by-frame SENSE
    assert p_grasp > p_cg + 1.0
    assert p_ls > p_cg + 1.0


def test_cg_sense_runs_frames_as_independent_systems(under):
    """Solving all frames in one batch equals solving each frame on its own (per-frame steps and
    per-frame discrepancy stops, the noise level taken from the same acquisition facts)."""
    for iterations in (5, 30):
        together = B.cg_sense(under, iterations=iterations)
        for t in (0, 5):
            frame = RadialData(
                under.kspace[t : t + 1],
                under.traj[t : t + 1],
                under.maps,
                under.dcf[t : t + 1],
                meta=dict(under.meta),
            )
            alone = B.cg_sense(frame, iterations=iterations)
            assert torch.allclose(alone[0], together[t], rtol=1e-4, atol=1e-5)


def test_cg_sense_stops_at_the_noise_level_and_beats_a_fixed_count(under):
    """The default (unweighted, discrepancy stop at tau = 1) fits each frame down to its noise
    energy and no further; the density-weighted solve is the fallback, not the default."""
    s2, source = B.noise_variance(under)
    assert source == "meta noise_std" and s2 == pytest.approx(under.meta["noise_std"] ** 2)
    x = B.cg_sense(under)
    misfit = (under.operator().forward(x) - under.kspace).abs().pow(2).sum(dim=(1, 2, 3))
    energy = s2 * under.kspace[0].numel()
    assert bool((misfit <= 1.01 * energy).all())
    unweighted = B.cg_sense(under, density=False)
    assert torch.equal(x, unweighted)  # true maps: no fallback
    p_auto = float(psnr(x, under.truth).mean())
    assert p_auto > float(psnr(B.cg_sense(under, density=True), under.truth).mean())


def test_cg_sense_skips_stopped_frames_without_changing_the_result(under):
    s2 = under.meta["noise_std"] ** 2
    lam = B.DEFAULTS["cg_sense"]["lam"] * B._mean_eigenvalue(under)
    op = under.operator()
    args = (op, under.kspace, None, lam, 30, None, 1, False, s2, 1.0)
    every = B.cg_sense_operator(*args)  # all frames computed at every step
    assert int(every.stops.min()) < int(every.stops.max())  # frames stop at different steps
    skipping = B.cg_sense_operator(
        *args, frames=lambda idx: SenseOp(op.maps, op.encoding.frames(idx))
    )
    assert torch.equal(every.stops, skipping.stops)
    assert torch.allclose(every.x, skipping.x, rtol=1e-5, atol=1e-6)
    assert torch.equal(B.cg_sense(under, tol=None), skipping.x.to(torch.complex64))


def test_cg_sense_falls_back_to_density_weighting_when_the_maps_are_wrong(under, caplog):
    wrong = RadialData(
        under.kspace, under.traj, torch.roll(under.maps, 1, dims=0), under.dcf, under.truth,
        meta=dict(under.meta),
    )  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="mrphys.recon.baselines"):
        x = B.cg_sense(wrong)
    assert "do not explain the data" in caplog.text
    assert torch.equal(x, B.cg_sense(wrong, density=True))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mrphys.recon.baselines"):
        B.cg_sense(wrong, mismatch=None)  # the fallback switched off
    assert "do not explain the data" not in caplog.text


def test_noise_variance_sources(under):
    bare = RadialData(under.kspace, under.traj, under.maps, under.dcf)
    s2, source = B.noise_variance(bare)
    # the outer k-space: the noise plus what signal is left there, never below the noise
    assert source == "outer k-space" and s2 >= 0.9 * under.meta["noise_std"] ** 2
    whitened = RadialData(
        under.kspace, under.traj, under.maps, under.dcf,
        meta={"calibration": {"noise_source": "noise scan"}},
    )  # fmt: skip
    assert B.noise_variance(whitened) == (1.0, "prewhitened (noise scan)")
    clean = RadialData(under.kspace, under.traj, under.maps, under.dcf, meta={"noise_std": 0.0})
    assert B.noise_variance(clean)[0] == 0.0


def test_grasp_single_frame_warns_and_still_reconstructs(full, caplog):
    one = RadialData(full.kspace[:1], full.traj[:1], full.maps, full.dcf[:1], full.truth[:1])
    with caplog.at_level(logging.WARNING, logger="mrphys.recon.baselines"):
        x = B.grasp(one, iterations=20)
    assert "temporal TV has no effect" in caplog.text
    assert float(psnr(x, one.truth).min()) > 33.0


def test_bad_arguments(full):
    with pytest.raises(MrphysError, match="iterations must be a positive integer; got 0"):
        B.cg_sense(full, iterations=0)
    with pytest.raises(MrphysError, match="lam must be finite and >= 0; got -1"):
        B.cg_sense(full, lam=-1.0)
    with pytest.raises(MrphysError, match="lam_tv must be finite and >= 0; got -1.0"):
        B.grasp(full, lam_tv=-1.0)
    with pytest.raises(MrphysError, match="lam_s must be finite and >= 0; got nan"):
        B.low_rank_sparse(full, lam_s=float("nan"))
    with pytest.raises(MrphysError, match="tol must be None or a finite number >= 0"):
        B.cg_sense(full, tol=-1e-3)
    with pytest.raises(MrphysError, match="tau must be None or finite and > 0; got 0"):
        B.cg_sense(full, tau=0.0, density=False)
    with pytest.raises(MrphysError, match="mismatch must be None or finite and > 0; got -1"):
        B.cg_sense(full, mismatch=-1.0)
    with pytest.raises(MrphysError, match="density must be None, True or False; got 'yes'"):
        B.cg_sense(full, density="yes")
    with pytest.raises(MrphysError, match="data must be a RadialData; got dict"):
        B.gridding({"kspace": full.kspace})
