"""mrphys.physics.cfl: BART .cfl/.hdr arrays round-trip, column-major on disk, radial mapping."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mrphys.errors import MrphysError
from mrphys.physics.cfl import radial_from_cfl, radial_to_cfl, read_cfl, read_maps, write_cfl


def test_cfl_round_trip_is_column_major(tmp_path) -> None:
    rng = np.random.default_rng(0)
    a = (rng.standard_normal((2, 3, 4)) + 1j * rng.standard_normal((2, 3, 4))).astype(np.complex64)
    write_cfl(tmp_path / "a", a)
    assert (tmp_path / "a.hdr").read_text().splitlines()[:2] == [
        "# Dimensions",
        "2 3 4" + " 1" * 13,
    ]
    raw = np.fromfile(tmp_path / "a.cfl", dtype=np.complex64)
    assert raw[1] == a[1, 0, 0] and raw[2] == a[0, 1, 0]  # dim 0 varies fastest
    b = read_cfl(tmp_path / "a.cfl")
    np.testing.assert_array_equal(b.reshape(2, 3, 4), a)


def test_radial_data_and_maps_round_trip_through_bart_files(tmp_path) -> None:
    from mrphys.physics.radial import simulate_radial
    from mrphys.tissue.dynamic import synthetic_cine

    d = simulate_radial(synthetic_cine(3, 16), 4, coils=2)
    paths = radial_to_cfl(tmp_path / "x_", d)
    assert [p.name for p in paths] == ["x_ksp.cfl", "x_traj.cfl", "x_maps.cfl"]
    dims = (tmp_path / "x_ksp.hdr").read_text().split("\n")[1].split()
    assert dims[:4] == ["1", "32", "4", "2"] and dims[10] == "3"  # [1, N, S, C, .., T]
    tr = read_cfl(tmp_path / "x_traj")
    assert tr.shape[:3] == (3, 32, 4) and float(np.abs(tr).max()) <= 8 + 1e-4  # 1/FOV, N/2
    k, traj = radial_from_cfl(tmp_path / "x_ksp", tmp_path / "x_traj", (16, 16))
    torch.testing.assert_close(k, d.kspace)
    torch.testing.assert_close(traj, d.traj, atol=1e-5, rtol=0)
    torch.testing.assert_close(read_maps(tmp_path / "x_maps.cfl"), d.maps)
    np.save(tmp_path / "m.npy", d.maps.numpy())
    torch.testing.assert_close(read_maps(tmp_path / "m.npy"), d.maps)
    assert read_cfl(tmp_path / "x_maps").shape[:4] == (16, 16, 1, 2)  # [Y, X, 1, C]
    assert math.isclose(float(traj.abs().max()), math.pi, rel_tol=1e-5)


def test_broken_bart_files_are_refused(tmp_path) -> None:
    write_cfl(tmp_path / "a", np.ones((4, 4), np.complex64))
    (tmp_path / "a.cfl").write_bytes((tmp_path / "a.cfl").read_bytes()[:40])
    with pytest.raises(MrphysError, match="holds 40 bytes"):
        read_cfl(tmp_path / "a")
    (tmp_path / "b.hdr").write_text("nothing\n")
    (tmp_path / "b.cfl").write_bytes(b"")
    with pytest.raises(MrphysError, match="not a BART header"):
        read_cfl(tmp_path / "b")
    with pytest.raises(MrphysError, match="does not exist"):
        read_cfl(tmp_path / "none")
    write_cfl(tmp_path / "m", np.ones((4, 4, 2, 3), np.complex64))
    with pytest.raises(MrphysError, match=r"\[Y, X, 1, C\]"):
        read_maps(tmp_path / "m.cfl")
    np.save(tmp_path / "flat.npy", np.ones((4, 4)))
    with pytest.raises(MrphysError, match=r"\(C, Y, X\)"):
        read_maps(tmp_path / "flat.npy")
