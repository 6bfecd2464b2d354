"""`mrphys simulate --seq`: a GRE written by another program (pypulseq directly, finite block
pulse with dead times, ramps, spoiler, RF spoiling, LIN labels in a shuffled order) simulates to
its closed-form image; coils go to an MRD file; unsupported content is named."""

from __future__ import annotations

import json
import math

import nibabel as nib
import numpy as np
import pytest
import torch

from mrphys.metrics import psnr
from mrphys.physics.signal import spoiled_gre_steady_state

N = 32
FOV = 0.032
TR, TE, FLIP = 10.0, 8e-3, 40.0


def write_gre(path, order: list[int], n_dummy: int = 2) -> None:
    """A Cartesian spoiled GRE as a pypulseq user writes it (TR long enough for T2 to decay:
    the Ernst closed form then holds with one isochromat per voxel)."""
    import pypulseq as pp

    sys = pp.Opts(max_grad=32, grad_unit="mT/m", max_slew=130, slew_unit="T/m/s",
                  rf_ringdown_time=30e-6, rf_dead_time=100e-6, adc_dead_time=10e-6)  # fmt: skip
    seq = pp.Sequence(system=sys)
    dk = 1 / FOV
    rf = pp.make_block_pulse(
        math.radians(FLIP), duration=5e-4, delay=1e-4, system=sys, use="excitation"
    )
    gx = pp.make_trapezoid("x", flat_area=N * dk, flat_time=1.28e-3, system=sys)
    adc = pp.make_adc(N, duration=gx.flat_time, delay=gx.rise_time, system=sys)
    gx_pre = pp.make_trapezoid("x", area=-gx.area / 2, duration=1e-3, system=sys)
    gx_sp = pp.make_trapezoid("x", area=4 * N * dk, system=sys)
    t_rf = rf.delay + rf.shape_dur / 2
    pre_dur = pp.calc_duration(gx_pre)
    d_te = TE - (pp.calc_duration(rf) - t_rf) - pre_dur - gx.rise_time - N / 2 * adc.dwell
    d_te = round(d_te / sys.block_duration_raster) * sys.block_duration_raster
    phase = 0.0
    inc = 0.0
    for i, line in enumerate([0] * n_dummy + list(order)):
        dummy = i < n_dummy
        rf.phase_offset = phase
        adc.phase_offset = phase
        inc += math.radians(117)
        phase = (phase + inc) % (2 * math.pi)
        seq.add_block(rf)
        gy = pp.make_trapezoid("y", area=(line - N / 2) * dk, duration=1e-3, system=sys)
        seq.add_block(gx_pre, gy)
        seq.add_block(pp.make_delay(d_te))
        if dummy:
            seq.add_block(gx)
        else:
            seq.add_block(gx, adc, pp.make_label(type="SET", label="LIN", value=line))
        gy.amplitude = -gy.amplitude
        rest = TR - (seq.duration()[0] % TR)
        seq.add_block(gx_sp, gy, pp.make_delay(round(rest / 1e-5) * 1e-5))
    seq.set_definition("FOV", [FOV, FOV, 5e-3])
    assert seq.check_timing()[0]
    seq.write(str(path))


@pytest.fixture(scope="module")
def gre_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("gre") / "gre.seq"
    order = list(range(N))[::2] + list(range(N))[1::2][::-1]  # interleaved: labels must sort
    write_gre(path, order)
    return path, order


def test_foreign_gre_simulates_to_its_closed_form_image(gre_file, tmp_path, cli):
    path, order = gre_file
    out = tmp_path / "sim"
    cli.ok("simulate", "--seq", path, "--phantom", "spin-shepp-logan", "--matrix", str(N),
           "--seed", "1", "--out", out)  # fmt: skip
    k = np.load(out / "kspace.npy")
    assert k.dtype == np.complex64 and k.shape == (N, N)  # [readouts, samples], acquisition order
    assert json.loads((out / "labels.json").read_text())["LIN"] == order
    ks = np.load(out / "kspace_sorted.npy")
    assert ks.shape == (1, 1, N, N)
    assert np.array_equal(ks[0, 0, order], k)  # sorted by LIN
    image = np.asarray(nib.load(out / "image.nii.gz").dataobj).T  # NIfTI (X, Y) -> (Y, X)
    ph = np.load(out / "phantom.npz")
    truth = spoiled_gre_steady_state(
        *(torch.from_numpy(ph[k]) for k in ("rho", "t1", "t2")), tr=TR, te=TE,
        flip=math.radians(FLIP),
    )  # fmt: skip
    p = float(psnr(torch.from_numpy(image).float(), truth.float()))
    assert p > 30, p


def test_coils_write_an_mrd_file(gre_file, tmp_path, cli):
    import ismrmrd

    path, order = gre_file
    out = tmp_path / "coils"
    cli.ok("simulate", "--seq", path, "--matrix", str(N), "--coils", "4", "--out", out)
    k = np.load(out / "kspace.npy")
    assert k.shape == (4, N, N)
    ds = ismrmrd.Dataset(str(out / "raw.mrd"), "dataset", create_if_needed=False)
    try:
        assert ds.number_of_acquisitions() == N
        acq = ds.read_acquisition(3)
        assert acq.data.shape == (4, N)
        assert acq.idx.kspace_encode_step_1 == order[3]
        assert np.allclose(acq.data, k[:, 3], atol=1e-6 * np.abs(k).max())
    finally:
        ds.close()


def test_unsupported_block_and_missing_fov_are_named(tmp_path, cli):
    import pypulseq as pp

    sys = pp.Opts()
    s = pp.Sequence(system=sys)
    s.add_block(pp.make_delay(1e-3))
    s.add_block(
        pp.make_block_pulse(flip_angle=0.1, duration=1e-4, system=sys),
        pp.make_adc(num_samples=4, dwell=1e-5, delay=2e-4, system=sys),
    )
    s.set_definition("FOV", [0.03, 0.03, 0.005])
    s.write(str(tmp_path / "bad.seq"))
    out = tmp_path / "o"
    cli.fails("simulate", "--seq", tmp_path / "bad.seq", "--matrix", "32", "--out", out,
              out=out, says="block 2: an ADC in the block of an RF pulse")  # fmt: skip
    s2 = pp.Sequence(system=sys)
    s2.add_block(pp.make_adc(num_samples=4, dwell=1e-5, system=sys))
    s2.write(str(tmp_path / "nofov.seq"))
    cli.fails("simulate", "--seq", tmp_path / "nofov.seq", "--out", out, out=out,
              says="--fov-mm is needed")  # fmt: skip
    cli.fails("simulate", "--seq", tmp_path / "missing.seq", "--out", out, out=out,
              says="does not exist")  # fmt: skip
