"""Pulseq export/import: every builder round-trips to the same simulated signal."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mrphys.errors import MrphysError
from mrphys.physics import bloch, pulseq_io
from mrphys.physics.sequence import Grad, Loop, ShapedRF, bssfp, gre, spin_echo
from mrphys.physics.system import System
from mrphys.tissue import Phantom, spin_shepp_logan

F64 = torch.float64


@pytest.fixture(scope="module")
def phantom() -> Phantom:
    ph = spin_shepp_logan(1, matrix=32, fov=0.032, dtype=F64)
    db0 = torch.linspace(-20.0, 20.0, 32, dtype=F64).expand(1, 32, 32).contiguous()
    return Phantom(ph.rho, ph.t1, ph.t2, fov=ph.fov, db0=db0)


CASES = {
    # name: (builder, relative tolerance of the round trip; balanced and RF-spoiled sequences
    # are sensitive to the 6 significant digits that Pulseq stores for amplitudes and phases)
    "spin_echo": (lambda: spin_echo(matrix=32, fov=0.032, tr=2.0), 1e-4),
    "bssfp_imaging": (lambda: bssfp(matrix=32, fov=0.032, n_cycles=2, n_dummy=40), 2e-3),
    "bssfp_voxel": (lambda: bssfp(n_cycles=4, n_dummy=100), 1e-4),
    "gre_ideal": (lambda: gre(matrix=32, fov=0.032, n_dummy=20), 1e-4),
    "gre_rf_spoiled": (lambda: gre(matrix=32, fov=0.032, n_dummy=20, spoiling="rf"), 3e-3),
}


@pytest.mark.parametrize("name", list(CASES))
def test_round_trip_simulates_the_same_signal(name, phantom, tmp_path):
    build, tol = CASES[name]
    seq = build()
    path = tmp_path / f"{name}.seq"
    pulseq_io.write_seq(seq, path)
    assert path.is_file() and path.read_text().startswith("# Pulseq sequence file")
    assert not list(tmp_path.glob("*.part*"))  # atomic write leaves no temporary file
    back = pulseq_io.read_seq(path)
    assert back.kspace_shape == seq.kspace_shape
    assert back.name == seq.name
    assert back.n_blocks == seq.n_blocks
    assert abs(back.duration - seq.duration) < 1e-6 * seq.duration + 1e-6
    # loops come back as loops (dummies stay one step in the simulator)
    assert sum(isinstance(i, Loop) for i in back.items) == sum(
        isinstance(i, Loop) for i in seq.items
    )
    a = bloch.simulate_kspace(seq, phantom)
    b = bloch.simulate_kspace(back, phantom)
    rel = float((a - b).norm() / a.norm())
    assert rel < tol, rel


def test_round_trip_keeps_spoilers_and_flip(tmp_path):
    seq = spin_echo(matrix=4, fov=0.004, tr=1.0, flip1=math.radians(70.0))
    pulseq_io.write_seq(seq, tmp_path / "se.seq")
    back = pulseq_io.read_seq(tmp_path / "se.seq")
    assert [b.spoil for b in back.blocks] == [b.spoil for b in seq.blocks]
    flips = [float(b.rf.flip) for b in back.blocks if b.rf is not None]
    assert flips[0] == pytest.approx(math.radians(70.0), rel=1e-5)
    assert flips[1] == pytest.approx(math.pi, rel=1e-5)


def test_foreign_trapezoid_file_keeps_ramps_and_moments(tmp_path):
    """A file with ramped trapezoids (not from write_seq) reads exactly: the trapezoid's
    corners and moment, the block pulse's samples and flip."""
    import pypulseq as pp

    sys = pp.Opts(max_grad=30, grad_unit="mT/m", max_slew=100, slew_unit="T/m/s")
    s = pp.Sequence(system=sys)
    s.add_block(
        pp.make_block_pulse(flip_angle=math.pi / 2, duration=1e-4, system=sys, use="excitation")
    )
    g = pp.make_trapezoid("x", area=1000.0, duration=2e-3, system=sys)
    s.add_block(g)
    s.add_block(pp.make_adc(num_samples=8, dwell=1e-5, delay=1e-5, system=sys), pp.make_delay(1e-3))
    s.write(str(tmp_path / "foreign.seq"))
    seq = pulseq_io.read_seq(tmp_path / "foreign.seq")
    gx = next(b.gx for b in seq.blocks if b.gx is not None)
    assert isinstance(gx, Grad)
    assert float(gx.area()) * pulseq_io.GAMMABAR == pytest.approx(float(g.area), rel=1e-6)
    assert float(gx.times[1] - gx.times[0]) == pytest.approx(float(g.rise_time), abs=1e-9)
    assert seq.adc_count == 8 and seq.kspace_shape == (1, 8)
    rf = next(b for b in seq.blocks if b.rf is not None).rf
    assert isinstance(rf, ShapedRF)
    assert float(rf.flip) == pytest.approx(math.pi / 2, rel=1e-6)


def test_bad_files_raise(tmp_path):
    with pytest.raises(MrphysError, match="missing.seq does not exist"):
        pulseq_io.read_seq(tmp_path / "missing.seq")
    bad = tmp_path / "bad.seq"
    bad.write_text("[VERSION]\nmajor 1\nminor 4\nrevision 1\n\n[BLOCKS]\n1 10 7 0 0 0 0 0\n")
    with pytest.raises(MrphysError, match="bad.seq is not a readable Pulseq file"):
        pulseq_io.read_seq(bad)
    junk = tmp_path / "junk.seq"
    junk.write_bytes(b"\x00\x01 not a pulseq file")
    with pytest.raises(MrphysError, match="junk.seq is not a readable Pulseq file"):
        pulseq_io.read_seq(junk)
    with pytest.raises(MrphysError, match="seq must be a mrphys Sequence; got str"):
        pulseq_io.write_seq("not a sequence", tmp_path / "x.seq")
    with pytest.raises(MrphysError, match="the folder of the Pulseq file .* does not exist"):
        pulseq_io.write_seq(spin_echo(matrix=4, fov=0.004), tmp_path / "no" / "such" / "x.seq")


def test_foreign_sinc_pulse_keeps_its_samples_and_slice_gradient(tmp_path):
    import pypulseq as pp

    sys = pp.Opts(max_grad=30, grad_unit="mT/m", max_slew=100, slew_unit="T/m/s")
    s = pp.Sequence(system=sys)
    rf, gz, _ = pp.make_sinc_pulse(
        flip_angle=math.radians(30), duration=2e-3, slice_thickness=5e-3, system=sys,
        return_gz=True, use="excitation", phase_offset=0.3,
    )  # fmt: skip
    s.add_block(rf, gz)
    s.add_block(pp.make_adc(num_samples=4, dwell=1e-5, system=sys), pp.make_delay(1e-3))
    s.write(str(tmp_path / "sinc.seq"))
    seq = pulseq_io.read_seq(tmp_path / "sinc.seq")
    b = seq.blocks[0]
    assert isinstance(b.rf, ShapedRF) and b.rf.n == len(rf.signal)
    assert float(b.rf.flip) == pytest.approx(math.radians(30), rel=1e-3)
    assert float(b.rf.phase) == pytest.approx(0.3, abs=1e-6)
    assert b.rf.delay == pytest.approx(float(rf.delay), abs=1e-9)
    assert isinstance(b.gz, Grad)
    assert float(b.gz.area()) * pulseq_io.GAMMABAR == pytest.approx(float(gz.area), rel=1e-6)


def test_unsupported_block_is_named(tmp_path):
    import pypulseq as pp

    sys = pp.Opts()
    s = pp.Sequence(system=sys)
    s.add_block(pp.make_delay(1e-3))
    s.add_block(
        pp.make_block_pulse(flip_angle=0.1, duration=1e-4, system=sys),
        pp.make_adc(num_samples=4, dwell=1e-5, delay=2e-4, system=sys),
    )
    s.write(str(tmp_path / "rfadc.seq"))
    with pytest.raises(MrphysError, match="block 2: an ADC in the block of an RF pulse"):
        pulseq_io.read_seq(tmp_path / "rfadc.seq")


S = System()
SYSTEM_CASES = {
    "spin_echo": lambda: spin_echo(matrix=16, fov=0.032, tr=0.5, te=0.03, n_dummy=2, system=S),
    "bssfp_imaging": lambda: bssfp(
        tr=6e-3, matrix=16, fov=0.032, readout_dt=2e-5, n_cycles=2, n_dummy=10, system=S
    ),
    "bssfp_voxel": lambda: bssfp(n_cycles=2, n_dummy=10, system=S),
    "gre_ideal": lambda: gre(tr=0.02, te=0.005, matrix=16, fov=0.032, n_dummy=5, system=S),
    "gre_rf_spoiled": lambda: gre(
        tr=0.02, te=0.005, matrix=16, fov=0.032, n_dummy=5, spoiling="rf", system=S
    ),
}


@pytest.mark.parametrize("name", list(SYSTEM_CASES))
def test_scanner_ready_builders_pass_check_timing_and_round_trip(name, phantom, tmp_path):
    seq = SYSTEM_CASES[name]()
    path = tmp_path / f"{name}.seq"
    pulseq_io.write_seq(seq, path)
    assert pulseq_io.check_timing(path) == []
    back = pulseq_io.read_seq(path)
    assert back.kspace_shape == seq.kspace_shape
    a = bloch.simulate_kspace(seq, phantom)
    b = bloch.simulate_kspace(back, phantom)
    assert float((a - b).norm() / a.norm()) < 5e-3


def _timestep(seq, x: np.ndarray, y: np.ndarray, t1: float, t2: float, h: float = 5e-6):
    """Independent reference: steps of ``h`` through every block of ``seq`` (sample-and-hold
    RF, gradients interpolated at the step centre, Rodrigues rotations, exact relaxation per
    step) for spins at (x, y); returns the ADC signal summed over the spins."""
    m = np.zeros((x.size, 3))
    m[:, 2] = 1.0
    out = []
    for b in seq.blocks:
        d = float(b.duration)
        row = None
        if b.adc is not None:
            at = {round((float(b.adc.delay) + (k + 0.5) * float(b.adc.dwell)) / h): k
                  for k in range(b.adc.num)}  # fmt: skip
            row = np.zeros(b.adc.num, complex)
        for j in range(round(d / h)):
            if row is not None and j in at:
                row[at[j]] = (m[:, 0] + 1j * m[:, 1]).sum() * np.exp(-1j * float(b.adc.phase))
            tm = (j + 0.5) * h
            v = np.zeros((x.size, 3))
            rf = b.rf
            if isinstance(rf, ShapedRF) and rf.delay <= tm < rf.delay + rf.duration:
                s = complex(rf.signal[int((tm - rf.delay) / rf.dwell)]) * np.exp(
                    1j * float(rf.phase)
                )
                v[:, 0], v[:, 1] = 2 * np.pi * h * s.real, 2 * np.pi * h * s.imag
            g = [0.0 if gg is None else float(np.interp(tm, gg.times.numpy(), gg.amps.numpy(),
                 left=0, right=0)) if isinstance(gg, Grad) else float(gg)
                 for gg in (b.gx, b.gy)]  # fmt: skip
            v[:, 2] = -2 * np.pi * pulseq_io.GAMMABAR * (g[0] * x + g[1] * y) * h
            th = np.linalg.norm(v, axis=1, keepdims=True)
            nv = v / np.maximum(th, 1e-30)
            m = (m * np.cos(th) + np.cross(nv, m) * np.sin(th)
                 + nv * (nv * m).sum(1, keepdims=True) * (1 - np.cos(th)))  # fmt: skip
            e1 = np.exp(-h / t1)
            m[:, :2] *= np.exp(-h / t2)
            m[:, 2] = m[:, 2] * e1 + (1 - e1)
        if row is not None:
            out.append(row)
    return np.concatenate(out)


@pytest.mark.slow
def test_foreign_unspoiled_gre_matches_an_independent_time_stepped_reference(tmp_path):
    """A pypulseq GRE (block pulse after the dead time, ramped trapezoids, spoiler lobe, no RF
    spoiling, TR 10 ms: unspoiled coherences) against 5 us time stepping on a few spins."""
    import pypulseq as pp

    n, fov = 8, 0.032
    sys = pp.Opts(max_grad=32, grad_unit="mT/m", max_slew=130, slew_unit="T/m/s",
                  rf_ringdown_time=30e-6, rf_dead_time=100e-6, adc_dead_time=10e-6)  # fmt: skip
    s = pp.Sequence(system=sys)
    rf = pp.make_block_pulse(math.radians(30), duration=2e-4, delay=1e-4, system=sys)
    gx = pp.make_trapezoid("x", flat_area=n / fov, flat_time=n * 4e-5, system=sys)
    adc = pp.make_adc(n, duration=gx.flat_time, delay=gx.rise_time, system=sys)
    pre = pp.make_trapezoid("x", area=-gx.area / 2, duration=8e-4, system=sys)
    sp = pp.make_trapezoid("x", area=2.3 * n / fov, system=sys)
    for i, line in enumerate([0] * 4 + list(range(n))):
        gy = pp.make_trapezoid("y", area=(line - n / 2) / fov, duration=8e-4, system=sys)
        s.add_block(rf)
        s.add_block(pre, gy)
        s.add_block(gx, adc) if i >= 4 else s.add_block(gx)
        gy.amplitude = -gy.amplitude
        s.add_block(sp, gy, pp.make_delay(1e-2 - 2e-3 - pp.calc_duration(gx) - 4e-4))
    s.write(str(tmp_path / "g.seq"))
    seq = pulseq_io.read_seq(tmp_path / "g.seq", dtype=F64)
    vox = [(4, 1), (4, 6), (2, 4), (5, 5)]
    rho = torch.zeros(n, n, dtype=F64)
    for yy, xx in vox:
        rho[yy, xx] = 1.0
    ph = Phantom(rho, rho * 0.8, rho * 0.08, fov=(fov, fov))
    sig = bloch.simulate(seq, ph).numpy()
    dx = fov / n
    x = np.array([(xx - n // 2) * dx for _, xx in vox])
    y = np.array([(yy - n // 2) * dx for yy, _ in vox])
    ref = _timestep(seq, x, y, 0.8, 0.08)
    assert np.abs(sig - ref).max() < 3e-3 * np.abs(ref).max()
