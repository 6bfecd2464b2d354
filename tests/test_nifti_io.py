"""NIfTI writers and the pc-bSSFP reader: gzip level, uncompressed ``.nii``, float32/complex64
round trips that keep the affine, and single precision on the way into a fit."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest
import torch

from mrphys.errors import MrphysError
from mrphys.io import load_nifti, save_nifti, save_nifti_raw
from mrphys.relax.data import Protocol
from mrphys.relax.inputs import load_pc_bssfp, write_volume
from mrphys.relax.volume import simulate_volume

AFFINE = np.array([[0, -1.5, 0, 10], [2.0, 0, 0, -4], [0, 0, 3.0, 7], [0, 0, 0, 1]])


def _xfl(path) -> int:
    """The gzip header's XFL byte: 4 = fastest level (1), 2 = best (9), 0 = any other."""
    return path.read_bytes()[8]


@pytest.mark.parametrize("name", ["x.nii.gz", "x.nii"])
def test_round_trip_keeps_float32_complex64_and_the_affine(tmp_path, name) -> None:
    rng = np.random.default_rng(0)
    for arr in (
        rng.standard_normal((5, 4, 3)).astype(np.float32),
        (rng.standard_normal((5, 4, 3, 2)) + 1j * rng.standard_normal((5, 4, 3, 2))).astype(
            np.complex64
        ),
    ):
        save_nifti_raw(tmp_path / name, arr, AFFINE)
        back, aff = load_nifti(tmp_path / name)
        assert back.dtype == arr.dtype and np.array_equal(back, arr)
        assert np.array_equal(aff, AFFINE)
    # double precision is stored in single precision (what every mrphys computation uses)
    save_nifti_raw(tmp_path / name, np.full((2, 2), 1 / 3), AFFINE)
    save_nifti(tmp_path / ("c" + name), np.full((2, 2), 1j / 3))
    assert load_nifti(tmp_path / name)[0].dtype == np.float32
    assert load_nifti(tmp_path / ("c" + name))[0].dtype == np.complex64


def test_nii_is_uncompressed_and_nii_gz_uses_the_fast_gzip_level(tmp_path) -> None:
    arr = np.zeros((32, 32, 8), np.float32)
    arr[8:24, 8:24] = 1.0
    save_nifti_raw(tmp_path / "a.nii", arr, np.eye(4))
    raw = (tmp_path / "a.nii").read_bytes()
    assert raw[:2] != b"\x1f\x8b" and len(raw) == 352 + arr.nbytes  # header + data, no gzip
    save_nifti_raw(tmp_path / "a.nii.gz", arr, np.eye(4))
    gz = tmp_path / "a.nii.gz"
    assert gz.read_bytes()[:2] == b"\x1f\x8b" and _xfl(gz) == 4  # level 1 by default
    assert gzip.decompress(gz.read_bytes()) == raw  # the same NIfTI inside
    sizes = {}
    for level in (0, 9):
        save_nifti_raw(tmp_path / f"l{level}.nii.gz", arr, np.eye(4), compresslevel=level)
        sizes[level] = (tmp_path / f"l{level}.nii.gz").stat().st_size
    assert _xfl(tmp_path / "l9.nii.gz") == 2 and sizes[9] < len(raw) < sizes[0]


def test_a_bad_gzip_level_is_refused_and_nothing_is_written(tmp_path) -> None:
    for level in (-1, 10, 1.5):
        with pytest.raises(MrphysError, match="compresslevel must be a gzip level 0-9"):
            save_nifti_raw(tmp_path / "x.nii.gz", np.zeros(3), np.eye(4), compresslevel=level)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("ext", [".nii", ".nii.gz"])
def test_a_simulated_volume_reads_back_as_complex64_in_c_order(tmp_path, ext) -> None:
    vol = simulate_volume(Protocol(6), matrix=16, n_slices=2, seed=1)
    files = write_volume(tmp_path, vol, ext=ext)
    assert sorted(files) == sorted(
        f"{n}{ext}" for n in ("pc_bssfp", "b1", "t1", "t2", "db0", "mask")
    )
    pc = load_pc_bssfp(tmp_path / f"pc_bssfp{ext}", tmp_path / f"b1{ext}")
    assert pc.signals.dtype == np.complex64 and np.array_equal(pc.signals, vol["signals"].numpy())
    sig, b1, mask = pc.tensors()
    assert sig.dtype == torch.complex64 and b1.dtype == torch.float32 and bool(mask.all())
    assert sig.is_contiguous() and b1.is_contiguous()  # each voxel's phase cycles together
    assert torch.equal(sig, vol["signals"]) and torch.equal(b1, vol["b1"])


def test_real_and_imaginary_or_magnitude_and_phase_inputs_give_complex64(tmp_path) -> None:
    rng = np.random.default_rng(2)
    z = (rng.standard_normal((4, 3, 2, 6)) + 1j * rng.standard_normal((4, 3, 2, 6))).astype(
        np.complex64
    )
    parts = {
        "re": z.real,
        "im": z.imag,
        "mag": np.abs(z),
        "ph": np.angle(z),
        "b1": np.ones(z.shape[:3]),
    }
    for k, v in parts.items():
        nib.save(nib.Nifti1Image(v.astype(np.float64), np.eye(4)), tmp_path / f"{k}.nii")
    a = load_pc_bssfp(tmp_path / "re.nii", tmp_path / "b1.nii", input_imag=tmp_path / "im.nii")
    b = load_pc_bssfp(tmp_path / "mag.nii", tmp_path / "b1.nii", input_phase=tmp_path / "ph.nii")
    assert a.signals.dtype == b.signals.dtype == np.complex64
    assert np.array_equal(a.signals, z)
    np.testing.assert_allclose(b.signals, z, rtol=0, atol=1e-6 * np.abs(z).max())


def test_a_prefetched_read_is_taken_once_and_equals_a_plain_read(tmp_path) -> None:
    """prefetch_nifti (relax fit: reading overlaps the torch import) gives load_nifti the same
    values and affine (in C order when asked), once; a file changed since is read again."""
    from mrphys import io

    rng = np.random.default_rng(2)
    x = (rng.standard_normal((5, 4, 3, 6)) + 1j * rng.standard_normal((5, 4, 3, 6))).astype(
        np.complex64
    )
    p = tmp_path / "x.nii.gz"
    save_nifti_raw(p, x, AFFINE)
    plain, aff = load_nifti(p)
    io.prefetch_nifti([p, tmp_path / "missing.nii.gz"], contiguous=True)
    got, aff2 = load_nifti(p)
    np.testing.assert_array_equal(got, plain)
    np.testing.assert_allclose(aff2, aff)
    assert got.flags.c_contiguous and plain.flags.f_contiguous and not io._PREFETCHED
    io.prefetch_nifti([p])
    save_nifti_raw(p, 2 * x, AFFINE)  # rewritten after the prefetch: never served stale
    np.testing.assert_array_equal(load_nifti(p)[0], 2 * x)
    io.prefetch_nifti([])  # a new call forgets the reads never taken
    assert not io._PREFETCHED
    (tmp_path / "bad.nii.gz").write_bytes(b"not a nifti")
    io.prefetch_nifti([tmp_path / "bad.nii.gz"])
    with pytest.raises(MrphysError, match="could not be read as NIfTI"):
        load_nifti(tmp_path / "bad.nii.gz")
