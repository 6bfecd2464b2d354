"""Dynamic series: the shared .mat files and the synthetic beating phantom."""

from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from mrphys.errors import MrphysError
from mrphys.tissue.dynamic import load_series, synthetic_cine

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def _need(name):
    p = DATA / name
    if not p.is_file():
        pytest.skip(f"test data {p} not found (expected ../shared/data from the project root)")
    return p


def test_load_pincat_frames_last_axis():
    p = _need("pincat_128x128x50.mat")
    x = load_series(p)
    assert x.shape == (50, 128, 128) and x.dtype == torch.complex64
    assert abs(float(x.abs().max()) - 1) < 1e-6
    raw = scipy.io.loadmat(p)["new"]
    ref = torch.from_numpy(raw[:, :, 7] / np.abs(raw).max()).float()
    assert torch.allclose(x[7].real, ref, atol=1e-6) and float(x.imag.abs().max()) == 0


def test_load_rat_cine_by_name():
    x = load_series(_need("rat_cine_192x192x8.mat"), variable="image0")
    assert x.shape == (8, 192, 192)
    assert abs(float(x.abs().max()) - 1) < 1e-6


def test_load_series_bad_input(tmp_path):
    with pytest.raises(MrphysError, match="does not exist"):
        load_series(tmp_path / "missing.mat")
    scipy.io.savemat(tmp_path / "img.mat", {"img": np.ones((8, 8))})
    with pytest.raises(MrphysError, match="3-D"):
        load_series(tmp_path / "img.mat")
    scipy.io.savemat(tmp_path / "two.mat", {"a": np.ones((4, 4, 2)), "b": np.ones((4, 4, 3))})
    with pytest.raises(MrphysError, match="--variable"):
        load_series(tmp_path / "two.mat")
    assert load_series(tmp_path / "two.mat", variable="b").shape == (3, 4, 4)
    scipy.io.savemat(tmp_path / "zero.mat", {"z": np.zeros((4, 4, 2))})
    with pytest.raises(MrphysError, match="zeros"):
        load_series(tmp_path / "zero.mat")


def test_synthetic_cine_beats_and_is_seeded():
    x = synthetic_cine(12, 32, seed=1)
    assert x.shape == (12, 32, 32) and x.dtype == torch.complex64
    assert abs(float(x.abs().max()) - 1) < 1e-6
    assert torch.equal(x, synthetic_cine(12, 32, seed=1))
    assert not torch.allclose(x, synthetic_cine(12, 32, seed=2))
    # the heart moves: frames differ, and one beat later the series repeats
    d = (x[3] - x[0]).abs().max()
    assert float(d) > 0.2
    y = synthetic_cine(12, 32, seed=1, cycles=2.0)
    assert torch.allclose(y[0], y[6], atol=1e-5)
    with pytest.raises(MrphysError, match="n_frames must be a positive integer; got 0"):
        synthetic_cine(0, 32)


def test_unreadable_series_files_are_one_sentence(tmp_path, monkeypatch):
    import h5py

    with pytest.raises(
        MrphysError, match=f"MATLAB file {tmp_path} is a directory; expected a file"
    ):
        load_series(tmp_path)
    scipy.io.savemat(tmp_path / "v5.mat", {"x": np.ones((16, 16, 4))})
    cut = tmp_path / "cut5.mat"
    cut.write_bytes((tmp_path / "v5.mat").read_bytes()[:400])
    with pytest.raises(MrphysError, match=r"cut5.mat could not be read as a MATLAB file"):
        load_series(cut)
    with h5py.File(tmp_path / "v73.mat", "w", userblock_size=512) as f:  # MATLAB v7.3 = HDF5
        f["x"] = np.ones((4, 16, 16))
    with open(tmp_path / "v73.mat", "r+b") as f:  # the MATLAB header that marks version 7.3
        f.write(b"MATLAB 7.3 MAT-file".ljust(124) + b"\x00\x02IM")
    assert load_series(tmp_path / "v73.mat").shape == (4, 16, 16)  # the whole file reads
    cut = tmp_path / "cut73.mat"
    cut.write_bytes((tmp_path / "v73.mat").read_bytes()[:1000])
    with pytest.raises(MrphysError, match=r"cut73.mat could not be read as a MATLAB file"):
        load_series(cut)
    locked = tmp_path / "v5.mat"
    monkeypatch.setattr("mrphys.io.open", _denied, raising=False)  # a mode-000 file, not as root
    with pytest.raises(MrphysError, match=r"MATLAB file .*v5.mat cannot be read \(Permission"):
        load_series(locked)


def _denied(path, *args, **kwargs):
    raise PermissionError(13, "Permission denied", str(path))


def test_synthetic_cine_beyond_memory_is_refused(monkeypatch):
    monkeypatch.setenv("MRPHYS_MEMORY_LIMIT_GB", "1")
    assert synthetic_cine(4, 16).shape == (4, 16, 16)
    with pytest.raises(MrphysError, match=r"synthetic cine of 100000 frames.*--frames or --matrix"):
        synthetic_cine(100_000, 64)
