"""mrphys.physics.mrd: radial MRD files built with the ``ismrmrd`` package itself (not our writer)
are read in every trajectory convention; noise scans stay apart; bad files get one sentence."""

from __future__ import annotations

import math

import h5py
import ismrmrd
import numpy as np
import pytest
import torch
from ismrmrd import xsd

from mrphys.errors import MrphysError
from mrphys.physics.mrd import read_mrd, write_mrd
from mrphys.physics.nufft import GOLDEN_ANGLE_DEG

pytestmark = pytest.mark.usefixtures("one_thread")

M, N, C = 16, 32, 3  # matrix, samples per spoke (2x oversampled), coils


def _header(traj="radial", receivers=C, matrix=M, inc=None) -> str:
    fov = xsd.fieldOfViewMm(x=200.0, y=200.0, z=5.0)
    space = xsd.encodingSpaceType(matrixSize=xsd.matrixSizeType(x=matrix, y=matrix, z=1),
                                  fieldOfView_mm=fov)  # fmt: skip
    enc = xsd.encodingType(
        encodedSpace=space,
        reconSpace=space,
        encodingLimits=xsd.encodingLimitsType(),
        trajectory=xsd.trajectoryType(traj),
    )
    params = None
    if inc is not None:
        params = xsd.userParametersType(
            userParameterDouble=[xsd.userParameterDoubleType(name="angle_increment_deg", value=inc)]
        )
    hdr = xsd.ismrmrdHeader(
        experimentalConditions=xsd.experimentalConditionsType(H1resonanceFrequency_Hz=63_000_000),
        encoding=[enc],
        acquisitionSystemInformation=xsd.acquisitionSystemInformationType(
            receiverChannels=receivers
        ),
        userParameters=params,
    )
    return xsd.ToXML(hdr)


def _spoke(theta: float) -> np.ndarray:
    """(N, 2) (kx, ky) cycles/pixel of a spoke at theta: radii (i - N/2) / N."""
    r = (np.arange(N) - N // 2) / N
    return np.stack([r * math.cos(theta), r * math.sin(theta)], -1)


def _build(path, n_spokes=6, units="cycles", phase_of=None, rep_of=None, noise=0, header=None,
           samples=None, channels=None):  # fmt: skip
    """An MRD file with the ismrmrd package: returns the (A, C, N) samples and the angles."""
    rng = np.random.default_rng(0)
    ds = ismrmrd.Dataset(str(path), "dataset", create_if_needed=True)
    ds.write_xml_header(header or _header())
    for _ in range(noise):
        z = (rng.standard_normal((C, 64)) + 1j * rng.standard_normal((C, 64))).astype(np.complex64)
        acq = ismrmrd.Acquisition.from_array(z)
        acq.set_flag(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
        ds.append_acquisition(acq)
    data, angles = [], []
    for s in range(n_spokes):
        theta = math.radians(s * GOLDEN_ANGLE_DEG)
        angles.append(theta)
        n = N if samples is None else samples[s]
        c = C if channels is None else channels[s]
        k = (rng.standard_normal((c, n)) + 1j * rng.standard_normal((c, n))).astype(np.complex64)
        traj = None
        if units == "cycles":
            traj = _spoke(theta).astype(np.float32)
        elif units == "fov":
            traj = (_spoke(theta) * M).astype(np.float32)
        elif units == "fov+weight":
            traj = np.concatenate([_spoke(theta) * M, np.ones((N, 1))], 1).astype(np.float32)
        acq = ismrmrd.Acquisition.from_array(k, traj) if traj is not None else (
            ismrmrd.Acquisition.from_array(k))  # fmt: skip
        acq.idx.kspace_encode_step_1 = s
        acq.center_sample = N // 2
        if phase_of is not None:
            acq.idx.phase = phase_of(s)
        if rep_of is not None:
            acq.idx.repetition = rep_of(s)
        ds.append_acquisition(acq)
        data.append(k)
    ds.close()
    return data, angles


def _expected_traj(theta: float) -> np.ndarray:
    """(N, 2) (ky, kx) rad/pixel."""
    s = _spoke(theta) * 2 * math.pi
    return s[:, ::-1]


@pytest.mark.parametrize("units,said", [("cycles", "cycles/pixel"), ("fov", "1/FOV"),
                                        ("fov+weight", "1/FOV")])  # fmt: skip
def test_stored_trajectory_units_are_detected_and_converted(tmp_path, units, said) -> None:
    p = tmp_path / "r.h5"
    samples, angles = _build(p, n_spokes=6, units=units, phase_of=lambda s: s // 2)
    data, info = read_mrd(p)
    assert info.traj_units == said and info.frames_from == "phase"
    assert data.kspace.shape == (3, C, 2, N) and data.traj.shape == (3, 2, N, 2)
    assert info.matrix == (M, M) and info.n_coils == C and info.fov_mm == (200.0, 200.0, 5.0)
    for s in range(6):
        t, j = s // 2, s % 2
        np.testing.assert_array_equal(data.kspace[t, :, j].numpy(), samples[s])
        np.testing.assert_allclose(data.traj[t, j].numpy(), _expected_traj(angles[s]), atol=1e-5)
    assert data.dcf.shape == (3, 2, N) and info.noise is None


def test_forced_units_override_detection(tmp_path) -> None:
    p = tmp_path / "r.h5"
    _build(p, units="cycles")
    data, info = read_mrd(p, traj_units="1/FOV")  # cycles read as 1/FOV: 16x smaller
    assert info.traj_units == "1/FOV"
    assert float(data.traj.abs().max()) == pytest.approx(math.pi / M, rel=1e-5)


def test_missing_trajectory_is_computed_from_the_spoke_index(tmp_path) -> None:
    p = tmp_path / "r.h5"
    _build(p, n_spokes=4, units=None)
    data, info = read_mrd(p)
    assert info.traj_units == "computed" and info.angle_increment_deg == pytest.approx(
        GOLDEN_ANGLE_DEG
    )
    assert info.frames_from == "single" and data.kspace.shape == (1, C, 4, N)
    for s in range(4):
        want = _expected_traj(math.radians(s * GOLDEN_ANGLE_DEG))
        np.testing.assert_allclose(data.traj[0, s].numpy(), want, atol=1e-5)
    # an explicit increment, and the header's user parameter
    data, info = read_mrd(p, angle_increment_deg=45.0)
    np.testing.assert_allclose(data.traj[0, 1].numpy(), _expected_traj(math.pi / 4), atol=1e-5)
    q = tmp_path / "q.h5"
    _build(q, n_spokes=4, units=None, header=_header(inc=30.0))
    data, info = read_mrd(q)
    assert info.angle_increment_deg == 30.0
    np.testing.assert_allclose(data.traj[0, 2].numpy(), _expected_traj(math.pi / 3), atol=1e-5)


def test_frames_from_repetition_or_rebinned_with_a_sliding_window(tmp_path) -> None:
    p = tmp_path / "r.h5"
    samples, _ = _build(p, n_spokes=9, rep_of=lambda s: s // 3)
    data, info = read_mrd(p)
    assert info.frames_from == "repetition" and data.kspace.shape == (3, C, 3, N)
    data, info = read_mrd(p, spokes_per_frame=4, frame_step=2)  # frames 0-3, 2-5, 4-7
    assert info.frames_from == "spokes_per_frame" and data.kspace.shape == (3, C, 4, N)
    np.testing.assert_array_equal(data.kspace[1, :, 0].numpy(), samples[2])
    assert info.dropped_spokes == 1  # spoke 8 is in no full window
    data, _ = read_mrd(p, frames_from="none")
    assert data.kspace.shape == (1, C, 9, N)
    uneven = tmp_path / "u.h5"  # 3 + 2 spokes: both frames keep 2
    _build(uneven, n_spokes=5, phase_of=lambda s: 0 if s < 3 else 1)
    data, info = read_mrd(uneven)
    assert data.kspace.shape == (2, C, 2, N) and info.dropped_spokes == 1


def test_noise_acquisitions_are_kept_apart(tmp_path) -> None:
    p = tmp_path / "r.h5"
    samples, _ = _build(p, n_spokes=4, noise=3)
    data, info = read_mrd(p)
    assert info.noise is not None and info.noise.shape == (C, 3 * 64)
    assert info.n_noise_acquisitions == 3 and data.kspace.shape == (1, C, 4, N)
    np.testing.assert_array_equal(data.kspace[0, :, 0].numpy(), samples[0])


def test_writer_output_reads_back_with_ismrmrd_and_with_read_mrd(tmp_path) -> None:
    from mrphys.physics.radial import simulate_radial
    from mrphys.tissue.dynamic import synthetic_cine

    d = simulate_radial(synthetic_cine(2, 16), 3, coils=2)
    noise = torch.randn(2, 300, dtype=torch.complex64)
    for units in ("cycles/pixel", "1/FOV", "none"):
        p = tmp_path / f"w{units.replace('/', '_')}.h5"
        write_mrd(p, d, noise=noise, traj_units=units, frames_in="repetition")
        ds = ismrmrd.Dataset(str(p), "dataset", create_if_needed=False)
        assert ds.number_of_acquisitions() == 2 + 2 * 3  # 300 noise samples in 256-chunks
        acq = ds.read_acquisition(3)
        assert acq.data.shape == (2, 32) and acq.idx.repetition == 0
        hdr = xsd.CreateFromDocument(ds.read_xml_header())
        assert hdr.encoding[0].reconSpace.matrixSize.x == 16
        ds.close()
        back, info = read_mrd(p)
        assert info.frames_from == "repetition"
        torch.testing.assert_close(back.kspace, d.kspace)
        torch.testing.assert_close(back.traj, d.traj, atol=1e-5, rtol=0)
        torch.testing.assert_close(info.noise, noise)
    with pytest.raises(MrphysError, match="exists"):
        write_mrd(p, d)


def test_bad_files_are_refused_with_one_sentence(tmp_path) -> None:
    cart = tmp_path / "cart.h5"
    _build(cart, header=_header(traj="cartesian"))
    with pytest.raises(MrphysError, match="cartesian data"):
        read_mrd(cart)
    mixed = tmp_path / "mixed.h5"
    _build(mixed, n_spokes=3, units=None, samples=[N, N, N - 2])
    with pytest.raises(MrphysError, match="different sample counts"):
        read_mrd(mixed)
    fewer = tmp_path / "fewer.h5"
    _build(fewer, n_spokes=3, header=_header(receivers=C + 1))
    with pytest.raises(MrphysError, match="missing channels: .* 3 of the header's 4"):
        read_mrd(fewer)
    uneven = tmp_path / "uneven.h5"
    _build(uneven, n_spokes=3, units=None, channels=[C, C - 1, C])
    with pytest.raises(MrphysError, match="missing channels"):
        read_mrd(uneven)
    far = tmp_path / "far.h5"
    _build(far, units="fov", header=_header(matrix=4))  # |k| 8 > matrix/2 = 2
    with pytest.raises(MrphysError, match="beyond both cycles/pixel"):
        read_mrd(far)
    text = tmp_path / "text.h5"
    text.write_text("not hdf5")
    with pytest.raises(MrphysError, match="not an HDF5 file"):
        read_mrd(text)
    empty = tmp_path / "empty.h5"
    with h5py.File(empty, "w") as f:
        f.create_group("other")
    with pytest.raises(MrphysError, match="no /dataset/data"):
        read_mrd(empty)
    with pytest.raises(MrphysError, match="does not exist"):
        read_mrd(tmp_path / "none.h5")


def test_an_xml_header_with_entities_is_refused(tmp_path) -> None:
    p = tmp_path / "xxe.h5"
    evil = '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
    _build(p, header=evil + "<ismrmrdHeader>&e;</ismrmrdHeader>")
    with pytest.raises(MrphysError, match="DTD or entities"):
        read_mrd(p)
