"""BART radial k-space as input: the layout BART's tools write, read as RadialData (rad/pixel)."""

from __future__ import annotations

import math
import shutil
import subprocess

import numpy as np
import pytest
import torch

from mrphys.errors import MrphysError
from mrphys.physics.cfl import read_cfl, read_cfl_radial, write_cfl, write_cfl_radial
from mrphys.physics.nufft import golden_angle_radial


def _bart_layout(t: int, s: int, n: int, c: int, *, half_sample: bool) -> tuple:
    """k-space and trajectory laid out by hand as BART does: k-space [1, N, S, C, 1 x 6, T],
    trajectory [3, N, S, 1 x 7, T] with sample i at radius (i [+ 1/2] - N/2) in 1/FOV units of
    an N x N matrix, spoke j of frame f at angle (f S + j) x golden angle, (k0, k1) = r (sin,
    cos)."""
    rng = np.random.default_rng(1)
    ksp = np.zeros((1, n, s, c) + (1,) * 6 + (t,), np.complex64)
    ksp[...] = rng.standard_normal(ksp.shape) + 1j * rng.standard_normal(ksp.shape)
    traj = np.zeros((3, n, s) + (1,) * 7 + (t,), np.complex64)
    r = np.arange(n) + (0.5 if half_sample else 0.0) - n / 2
    for f in range(t):
        for j in range(s):
            theta = math.radians((f * s + j) * 180 * (math.sqrt(5) - 1) / 2)
            traj[(0, slice(None), j) + (0,) * 7 + (f,)] = r * math.sin(theta)
            traj[(1, slice(None), j) + (0,) * 7 + (f,)] = r * math.cos(theta)
    return ksp, traj


def test_hand_built_bart_layout_reads_as_radial_data(tmp_path) -> None:
    t, s, n, c = 3, 5, 32, 4
    ksp, traj = _bart_layout(t, s, n, c, half_sample=False)
    write_cfl(tmp_path / "k", ksp)
    write_cfl(tmp_path / "t", traj)
    noise = np.ones((1, 100, 1, c), np.complex64) * np.arange(1, c + 1)
    write_cfl(tmp_path / "n", noise)
    data, info = read_cfl_radial(tmp_path / "k.cfl", tmp_path / "t", tmp_path / "n.hdr")
    assert data.im_size == (n, n) and info.traj_units == "1/FOV" and info.traj_max == n / 2
    assert tuple(data.kspace.shape) == (t, c, s, n)
    # kspace (T, C, S, N)[f, coil, j, i] is BART [0, i, j, coil, ..., f]
    assert data.kspace[2, 3, 1, 7] == torch.tensor(ksp[0, 7, 1, 3, 0, 0, 0, 0, 0, 0, 2])
    # the same spokes as the library's golden-angle trajectory, in rad/pixel (ky, kx)
    torch.testing.assert_close(data.traj, golden_angle_radial(t, s, n), atol=1e-5, rtol=0)
    assert tuple(info.noise.shape) == (c, 100)
    assert torch.allclose(info.noise[:, 0].real, torch.arange(1.0, c + 1))
    assert "4 coils x 3 frames (dim 10)" in info.system["layout"]
    # a trajectory stored once for all frames is repeated; an explicit matrix is honoured
    write_cfl(tmp_path / "t1", traj[..., :1])
    d1, _ = read_cfl_radial(tmp_path / "k", tmp_path / "t1", matrix=2 * n)
    torch.testing.assert_close(d1.traj[2], golden_angle_radial(1, s, n)[0] / 2, atol=1e-5, rtol=0)
    assert d1.im_size == (2 * n, 2 * n)


def test_bart_half_sample_trajectory_and_oversampling_give_the_matrix(tmp_path) -> None:
    """`bart traj -r -x N` (no -c) puts samples at i + 1/2 - N/2: |k| < N/2, matrix N."""
    ksp, traj = _bart_layout(1, 3, 16, 2, half_sample=True)
    write_cfl(tmp_path / "k", ksp)
    write_cfl(tmp_path / "t", traj)
    data, info = read_cfl_radial(tmp_path / "k", tmp_path / "t")
    assert data.im_size == (16, 16) and info.traj_max == pytest.approx(7.5)
    r = data.traj[0, 0, :, 1]  # spoke 0 lies along kx
    torch.testing.assert_close(r, (torch.arange(16.0) + 0.5 - 8) * 2 * math.pi / 16)
    write_cfl(tmp_path / "t2", traj / 2)  # 2x oversampled readout: 16 samples, matrix 8
    data, _ = read_cfl_radial(tmp_path / "k", tmp_path / "t2")
    assert data.im_size == (8, 8)


@pytest.mark.skipif(shutil.which("bart") is None, reason="the system `bart` is not installed")
def test_bart_traj_equals_the_readers_trajectory(tmp_path) -> None:
    """`bart traj -r -G -c -x N -y S -t T` is mrphys's golden-angle trajectory in rad/pixel;
    without -c, and with -o 2, it is shifted by half a readout sample."""
    t, s, n = 3, 5, 32
    subprocess.run(["bart", "traj", "-r", "-G", "-c", "-x", str(n), "-y", str(s), "-t", str(t),
                    "tc"], cwd=tmp_path, check=True, capture_output=True)  # fmt: skip
    subprocess.run(["bart", "traj", "-r", "-G", "-o", "2", "-x", str(n), "-y", str(s), "-t",
                    str(t), "to"], cwd=tmp_path, check=True, capture_output=True)  # fmt: skip
    write_cfl(tmp_path / "k", np.ones((1, n, s, 2) + (1,) * 6 + (t,), np.complex64))
    write_cfl(tmp_path / "k2", np.ones((1, 2 * n, s, 2) + (1,) * 6 + (t,), np.complex64))
    data, _ = read_cfl_radial(tmp_path / "k", tmp_path / "tc")
    assert data.im_size == (n, n)
    torch.testing.assert_close(data.traj, golden_angle_radial(t, s, n), atol=1e-5, rtol=0)
    data, _ = read_cfl_radial(tmp_path / "k2", tmp_path / "to")
    assert data.im_size == (n, n)
    g = golden_angle_radial(t, s, 2 * n).double()
    unit = g[:, :, -1:] / g[:, :, -1:].norm(dim=-1, keepdim=True)  # spoke direction
    shifted = g + unit * (math.pi / (2 * n))  # half a sample of the oversampled readout
    torch.testing.assert_close(data.traj.double(), shifted, atol=1e-5, rtol=0)


def test_simulated_spokes_round_trip_through_bart_files(tmp_path) -> None:
    from mrphys.physics.radial import simulate_raw
    from mrphys.tissue.dynamic import synthetic_cine

    sim = simulate_raw(synthetic_cine(3, 32), 6, coils=3, snr=20.0, seed=0)
    paths = write_cfl_radial(tmp_path, sim.data, sim.noise)
    assert [p.name for p in paths] == ["kspace.cfl", "traj.cfl", "noise.cfl"]
    assert read_cfl(tmp_path / "noise").shape[:4] == (sim.noise.shape[1], 1, 1, 3)
    data, info = read_cfl_radial(tmp_path / "kspace", tmp_path / "traj", tmp_path / "noise")
    torch.testing.assert_close(data.kspace, sim.data.kspace)
    torch.testing.assert_close(data.traj, sim.data.traj, atol=1e-5, rtol=0)
    torch.testing.assert_close(info.noise, sim.noise.to(torch.complex64))
    assert data.im_size == sim.data.im_size and data.meta["source"] == "bart"


@pytest.mark.parametrize(
    ("what", "says"),
    [
        ("cartesian", "Cartesian readout"),
        ("two_rows", "2 coordinate rows"),
        ("spokes", "to match the k-space"),
        ("frames", "to match the k-space"),
        ("slices", "size > 1 in dims [13]"),
        ("kz", "kz != 0"),
        ("noise", "has 3 coils in dim 3"),
        ("beyond", "give a larger matrix"),
    ],
)
def test_unreadable_bart_layouts_are_refused_in_one_sentence(tmp_path, what, says) -> None:
    ksp, traj = _bart_layout(2, 4, 16, 2, half_sample=False)
    noise = None
    matrix = None
    if what == "cartesian":
        ksp = np.ones((16, 16, 1, 2), np.complex64)
    elif what == "two_rows":
        traj = traj[:2]
    elif what == "spokes":
        traj = traj[:, :, :3]
    elif what == "frames":
        traj = np.concatenate([traj, traj], axis=10)
    elif what == "slices":
        ksp = np.repeat(ksp.reshape(ksp.shape + (1, 1, 1)), 2, axis=13)
    elif what == "kz":
        traj[2] = 1.0
    elif what == "noise":
        write_cfl(tmp_path / "n", np.ones((1, 10, 1, 3), np.complex64))
        noise = tmp_path / "n"
    elif what == "beyond":
        matrix = 8
    write_cfl(tmp_path / "k", ksp)
    write_cfl(tmp_path / "t", traj)
    with pytest.raises(MrphysError, match=None) as e:
        read_cfl_radial(tmp_path / "k", tmp_path / "t", noise, matrix=matrix)
    assert says in str(e.value) and len(str(e.value).splitlines()) == 1
