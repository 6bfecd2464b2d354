"""relax.inputs: a pc-bSSFP volume from its NIfTI parts, the protocol in ms, the network choice."""

from __future__ import annotations

import math
import os

import nibabel as nib
import numpy as np
import pytest
import torch

from mrphys.errors import MrphysError
from mrphys.relax.data import Protocol
from mrphys.relax.inputs import (
    load_network,
    load_pc_bssfp,
    protocol_from_ms,
    protocol_ms,
    write_volume,
)
from mrphys.relax.volume import simulate_volume


@pytest.fixture(scope="module")
def vol():
    return simulate_volume(Protocol(4), matrix=16, n_slices=2, snr=100.0, seed=0)


@pytest.fixture
def files(vol, tmp_path):
    files = write_volume(tmp_path, vol)
    assert set(files) == {f"{n}.nii.gz" for n in ("pc_bssfp", "b1", "t1", "t2", "db0", "mask")}
    return tmp_path


def _save(path, arr, aff=None):
    nib.save(nib.Nifti1Image(arr, np.eye(4) if aff is None else aff), str(path))
    return path


def test_written_volume_reads_back_with_its_units(vol, files) -> None:
    v = load_pc_bssfp(files / "pc_bssfp.nii.gz", files / "b1.nii.gz", mask=files / "mask.nii.gz")
    assert v.signals.shape == (16, 16, 2, 4) and v.n_cycles == 4
    assert np.array_equal(v.signals.astype(np.complex64), vol["signals"].numpy())
    assert np.array_equal(v.mask, vol["mask"].numpy()) and np.allclose(v.affine, np.eye(4))
    t1 = np.asarray(nib.load(files / "t1.nii.gz").dataobj)
    assert np.allclose(t1, vol["t1"].numpy() * 1e3)  # ms on disk
    sig, b1, mask = v.tensors()
    assert sig.dtype == torch.complex64 and b1.dtype == torch.float32 and mask.dtype == torch.bool


def test_real_imag_and_magnitude_phase_give_the_complex_input(vol, files, tmp_path) -> None:
    s = vol["signals"].numpy()
    ref = load_pc_bssfp(files / "pc_bssfp.nii.gz", files / "b1.nii.gz").signals
    re, im = _save(tmp_path / "re.nii", s.real.copy()), _save(tmp_path / "im.nii", s.imag.copy())
    mag, pha = _save(tmp_path / "m.nii", np.abs(s)), _save(tmp_path / "p.nii", np.angle(s))
    a = load_pc_bssfp(re, files / "b1.nii.gz", input_imag=im).signals
    b = load_pc_bssfp(mag, files / "b1.nii.gz", input_phase=pha).signals
    assert np.allclose(a, ref, atol=1e-6) and np.allclose(b, ref, atol=1e-6)
    with pytest.raises(MrphysError, match="input must be a non-negative magnitude"):
        load_pc_bssfp(re, files / "b1.nii.gz", input_phase=pha)
    with pytest.raises(MrphysError, match="input_imag and input_phase exclude each other"):
        load_pc_bssfp(re, files / "b1.nii.gz", input_imag=im, input_phase=pha)


def test_bad_parts_name_the_input(vol, files, tmp_path) -> None:
    inp, b1 = files / "pc_bssfp.nii.gz", files / "b1.nii.gz"
    s, b = vol["signals"].numpy(), vol["b1"].numpy()
    shifted = np.eye(4)
    shifted[0, 3] = 5.0
    cases = [
        ((inp, b1), {"phase_cycles": 6}, "input has 4 phase cycles .* but phase_cycles is 6"),
        ((_save(tmp_path / "3d.nii", s[..., 0]), b1), {}, "input must be a 4-D NIfTI"),
        ((_save(tmp_path / "2.nii", s[..., :2]), b1), {}, "input needs at least 3 phase cycles"),
        ((_save(tmp_path / "r.nii", s.real.copy()), b1), {}, "input is real-valued"),
        ((inp, _save(tmp_path / "b1s.nii", b[:8])), {}, "b1 has shape"),
        ((inp, _save(tmp_path / "b1p.nii", b * 100)), {}, "b1 must be a relative flip-angle"),
        ((inp, _save(tmp_path / "b1a.nii", b, shifted)), {}, "b1 has a different affine"),
        ((inp, b1), {"mask": _save(tmp_path / "m0.nii", 0 * b)}, "mask selects no voxel"),
        ((tmp_path / "none.nii", b1), {}, "does not exist"),
    ]
    for args, kwargs, message in cases:
        with pytest.raises(MrphysError, match=message):
            load_pc_bssfp(*args, **kwargs)


def test_protocol_in_ms_and_degrees() -> None:
    p = protocol_from_ms(6, tr_ms=5.0, flip_deg=20.0)
    assert p == Protocol(6, 5e-3, 2.5e-3, math.radians(20.0))  # TE defaults to TR / 2
    assert protocol_ms(p) == pytest.approx(
        {"n_cycles": 6, "tr_ms": 5, "te_ms": 2.5, "flip_deg": 20}
    )
    for kwargs, message in (
        ({"tr_ms": 120.0}, "tr_ms must lie in \\[1, 100\\] ms"),
        ({"tr_ms": 1e-6}, "tr_ms must lie in \\[1, 100\\] ms \\(a bSSFP TR\\); got 1e-06"),
        ({"tr_ms": math.nan}, "tr_ms must lie in"),
        ({"te_ms": 6.0}, "te_ms must be positive and below the TR"),
        ({"flip_deg": 180.0}, "flip_deg must lie in \\(0, 180\\) degrees"),
    ):
        with pytest.raises(MrphysError, match=message):
            protocol_from_ms(6, **kwargs)
    with pytest.raises(MrphysError, match="phase_cycles must be at least 3"):
        protocol_from_ms(2)


def test_miracle_needs_no_network(tmp_path) -> None:
    assert load_network("miracle", Protocol(6)) == (None, None)
    with pytest.raises(MrphysError, match="model is for network methods"):
        load_network("miracle", Protocol(6), tmp_path / "model.pt")
    with pytest.raises(MrphysError, match="does not exist"):
        load_network("pinn", Protocol(6), tmp_path / "model.pt")


def test_a_complex_imaginary_or_phase_part_is_refused(vol, files, tmp_path) -> None:
    s = vol["signals"].numpy()
    re = _save(tmp_path / "re.nii", s.real.copy())
    cplx = _save(tmp_path / "c.nii", s)  # the imaginary part would be dropped silently
    b1 = files / "b1.nii.gz"
    with pytest.raises(MrphysError, match=r"input_imag .*c.nii is complex but must hold the imag"):
        load_pc_bssfp(re, b1, input_imag=cplx)
    with pytest.raises(
        MrphysError, match=r"input_phase .*c.nii is complex but must hold the phase"
    ):
        load_pc_bssfp(_save(tmp_path / "m.nii", np.abs(s)), b1, input_phase=cplx)


def test_unreadable_inputs_are_one_sentence_naming_the_file(files, tmp_path, monkeypatch) -> None:
    inp, b1 = files / "pc_bssfp.nii.gz", files / "b1.nii.gz"
    with pytest.raises(MrphysError, match=f"NIfTI file {tmp_path} is a directory; expected a file"):
        load_pc_bssfp(tmp_path, b1)
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(inp.read_bytes()[:300])  # truncated mid-stream
    with pytest.raises(MrphysError, match=r"cut.nii.gz could not be read as NIfTI"):
        load_pc_bssfp(cut, b1)
    locked = tmp_path / "locked.nii.gz"
    locked.write_bytes(inp.read_bytes())
    locked.chmod(0)
    if os.geteuid() == 0:  # root reads a mode-000 file: refuse the opening as for a user
        monkeypatch.setattr("mrphys.io.open", _denied, raising=False)
    with pytest.raises(MrphysError, match=r"NIfTI file .*locked.nii.gz cannot be read \(Permis"):
        load_pc_bssfp(locked, b1)


def _denied(path, *args, **kwargs):
    raise PermissionError(13, "Permission denied", str(path))


def test_a_prefetched_volume_fits_as_the_plain_one(files) -> None:
    """relax fit prefetches its inputs in C order: the same volume and tensors as read plainly."""
    from mrphys.io import prefetch_nifti

    args = (files / "pc_bssfp.nii.gz", files / "b1.nii.gz")
    plain = load_pc_bssfp(*args, mask=files / "mask.nii.gz")
    prefetch_nifti([*args, files / "mask.nii.gz"], contiguous=True)
    pre = load_pc_bssfp(*args, mask=files / "mask.nii.gz")
    assert pre.signals.flags.c_contiguous
    for a, b in zip(plain.tensors(), pre.tensors(), strict=True):
        assert torch.equal(a, b)
