"""mrphys.physics.radial.simulate_raw: no inverse crime, and each ingredient as stated."""

from __future__ import annotations

import math

import pytest
import torch

from mrphys.physics.nufft import golden_angle_radial
from mrphys.physics.radial import coil_noise_covariance, delayed_trajectory, simulate_raw
from mrphys.recon.calib import GradientDelay
from mrphys.tissue.dynamic import synthetic_cine

pytestmark = pytest.mark.usefixtures("one_thread")


def test_delayed_trajectory_is_the_ring_model() -> None:
    """The simulated delay is the shift GradientDelay(diag(dy, dx)).correct applies."""
    traj = golden_angle_radial(2, 5, 32)
    moved = delayed_trajectory(traj, 0.4, -0.2)
    ring = GradientDelay(torch.tensor([[-0.2, 0.0], [0.0, 0.4]], dtype=torch.float64))
    diff = torch.remainder(moved - ring.correct(traj) + math.pi, 2 * math.pi) - math.pi  # 2 pi
    assert float(diff.abs().max()) < 1e-5  # periodic: correct() wraps into [-pi, pi)
    # a spoke along kx moves by 0.4 samples (dk = 2 pi / 32) along kx only
    along_x = golden_angle_radial(1, 1, 32)  # angle 0
    d = delayed_trajectory(along_x, 0.4, -0.2) - along_x
    torch.testing.assert_close(d[..., 1], torch.full_like(d[..., 1], 0.4 * 2 * math.pi / 32))
    assert float(d[..., 0].abs().max()) < 1e-6


def test_noise_scan_has_the_stated_covariance() -> None:
    cov = coil_noise_covariance(4, 0.3, seed=1)
    assert torch.allclose(cov, cov.mH) and float(torch.linalg.eigvalsh(cov)[0]) > 0
    assert float(cov.diagonal().real.mean()) == pytest.approx(1.0)
    sim = simulate_raw(synthetic_cine(2, 32), 4, coils=4, snr=10, seed=1, noise_samples=40000)
    n = sim.noise.to(torch.complex128)
    emp = n @ n.mH / n.shape[1]
    ref = sim.covariance.to(torch.complex128)
    assert float((emp - ref).abs().max() / ref.abs().max()) < 0.05
    sigma = sim.data.meta["noise_std"]
    assert float(ref.diagonal().real.mean()) == pytest.approx(sigma**2, rel=1e-4)


def test_object_off_the_grid_has_the_units_of_the_reconstruction_grid() -> None:
    """The same smooth object drawn on a 2x finer grid gives nearly the k-space of the coarse
    grid (the fine NUFFT at k/2, divided by 2) and a truth of the same scale."""
    fine = synthetic_cine(2, 48)
    coarse_sim = simulate_raw(fine, 6, coils=2, seed=0, factor=2, background_phase=False)
    same_sim = simulate_raw(fine, 6, coils=2, seed=0, factor=1, background_phase=False)
    assert coarse_sim.data.im_size == (24, 24) and same_sim.data.im_size == (48, 48)
    t = coarse_sim.data.truth
    assert float(t.abs().max()) == pytest.approx(1.0, abs=0.15)  # same units as the object
    # the k-space centre (DC) of both is the object's integral in coarse-grid units
    k2 = coarse_sim.data.kspace[..., 24]
    k1 = same_sim.data.kspace[..., 48] / 2  # factor 1 at 48: half the coarse-grid DC
    assert float((k2 - k1).abs().max() / k1.abs().max()) < 0.02
    assert coarse_sim.data.meta["inverse_crime"] is False


def test_bad_simulation_settings_are_refused() -> None:
    from mrphys.errors import MrphysError

    x = synthetic_cine(1, 30)
    with pytest.raises(MrphysError, match="multiple of factor 4"):
        simulate_raw(x, 4, factor=4)
    with pytest.raises(MrphysError, match="gradient_delay"):
        simulate_raw(x, 4, factor=2, gradient_delay=(1.0, 2.0, 3.0))
    with pytest.raises(MrphysError, match="correlation"):
        coil_noise_covariance(4, 1.0)
