"""Pulseq ``.seq`` export and import of :class:`~mrphys.physics.sequence.Sequence` (via pypulseq),
and simulating any Pulseq file (:func:`simulate_file`, what ``mrphys simulate --seq`` runs).

Writing (Pulseq 1.5): a :class:`Block` becomes one Pulseq block of the same duration; a
:class:`ShapedRF` an arbitrary RF event (samples, phase, frequency offset, delay, use); a hard
:class:`RFPulse` a 20 us block pulse at the block start (idealised sequences only); a constant
gradient a zero-ramp trapezoid over the block, a :class:`Grad` a trapezoid (4 corners) or an
extended trapezoid through its corners; an ADC keeps samples, dwell, delay and phase; labels are
written (LIN is added to the readouts of a Cartesian ``kspace_shape``). A :class:`Loop` is written
out repetition by repetition; loops, ideal spoilers, hard pulses, ``kspace_shape`` and the name go
into ``[DEFINITIONS]`` (``MrphysLoops``, ``MrphysSpoilBlocks``, ``MrphysHardRF``,
``MrphysKspaceShape``, ``Name``) so that :func:`read_seq` rebuilds the same Sequence. The rasters,
dead and ringdown times are those of ``seq.system`` (a :class:`System`; the scanner-ready builders
set it and their files pass pypulseq's ``check_timing()``), else 1 us rasters without limits (the
idealised sequences: exact for the simulator, **not** scanner-ready). The file stores amplitudes
and phases to 6 significant digits (a round trip changes the signal by about 1e-5 relative).

Reading (Pulseq 1.4 and 1.5, any writer): every block exactly as one :class:`Block`: trapezoids,
extended trapezoids and arbitrary gradients as piecewise-linear :class:`Grad` waveforms (moments
in closed form, ADC samples on ramps included), RF with its samples, phase and frequency offset
(finite pulse, simulated as a product of rotations), x, y and z gradients (z acts on isochromats
through the slice), ADC phase offsets, delays, labels (LIN, PAR, SLC, ... counted at every ADC).
Not represented (a warning, once): RF/ADC offsets in ppm, ADC frequency offsets, triggers; soft
delays take their default duration. pypulseq 1.5.0 cannot read the rotation extension, so a file
with rotations is refused with the reader's message. An ADC in the block of an RF pulse, or an
event longer than its block, raises an error naming the block.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from mrphys.errors import MrphysError, check
from mrphys.physics.sequence import (
    ADC,
    GAMMABAR,
    Block,
    Grad,
    Loop,
    RFPulse,
    Sequence,
    ShapedRF,
    _num,
)
from mrphys.physics.system import System
from mrphys.tissue import Phantom

__all__ = [
    "write_seq",
    "read_seq",
    "check_timing",
    "simulate_file",
    "FileAcquisition",
    "write_mrd",
]

log = logging.getLogger(__name__)

_RASTER = 1e-6  # block, gradient and RF raster in s
_ADC_RASTER = 1e-7
_MARK = "MrphysFormat"  # definition that says the file was written by write_seq
_TWO_PI = 2 * math.pi


def _system(system: System | None = None):
    """pypulseq limits: the given :class:`System`, or (None) the idealised ones of the
    builders without a system (1 us rasters, no dead times, no amplitude or slew limit)."""
    import pypulseq as pp

    if system is not None:
        return pp.Opts(
            max_grad=system.max_grad * GAMMABAR,
            grad_unit="Hz/m",
            max_slew=system.max_slew * GAMMABAR,
            slew_unit="Hz/m/s",
            rf_dead_time=system.rf_dead_time,
            rf_ringdown_time=system.rf_ringdown_time,
            adc_dead_time=system.adc_dead_time,
            rf_raster_time=system.rf_raster,
            grad_raster_time=system.grad_raster,
            block_duration_raster=system.block_raster,
            adc_raster_time=system.adc_raster,
        )
    return pp.Opts(
        max_grad=1e4,
        grad_unit="mT/m",
        max_slew=1e9,
        slew_unit="T/m/s",
        rf_dead_time=0.0,
        rf_ringdown_time=0.0,
        adc_dead_time=0.0,
        rf_raster_time=_RASTER,
        grad_raster_time=_RASTER,
        block_duration_raster=_RASTER,
        adc_raster_time=_ADC_RASTER,
    )


def _rect(channel: str, g_t_per_m: float, duration: float) -> SimpleNamespace:
    """A Pulseq trapezoid with zero ramps: constant ``g`` (T/m) over ``duration`` (s)."""
    return _trap(channel, g_t_per_m, 0.0, duration, 0.0, 0.0)


def _trap(channel: str, g: float, rise: float, flat: float, fall: float, delay: float):
    """A Pulseq trapezoid event of amplitude ``g`` (T/m) and timings in s."""
    amp = g * GAMMABAR  # Hz/m
    return SimpleNamespace(
        type="trap", channel=channel, amplitude=amp, rise_time=rise, flat_time=flat,
        fall_time=fall, area=amp * (flat + (rise + fall) / 2), flat_area=amp * flat, delay=delay,
        first=0.0, last=0.0,
    )  # fmt: skip


def _on_raster(t: float, raster: float) -> float:
    return round(t / raster) * raster


def _grad_event(ch: str, g, dur: float, raster: float, opts) -> SimpleNamespace | None:
    """The Pulseq event of one axis of a block: a constant (zero-ramp trapezoid over the block),
    a trapezoid, or an extended trapezoid through the corner points of a :class:`Grad`."""
    import pypulseq as pp

    if g is None:
        return None
    if not isinstance(g, Grad):
        v = _num(g)
        return _rect(ch, v, dur) if v != 0.0 and dur > 0 else None
    t = g.times.detach().double().cpu().numpy()
    a = g.amps.detach().double().cpu().numpy()
    if not np.any(a != 0):
        return None
    t = np.round(t / raster) * raster
    if t.size == 4 and a[0] == 0 and a[3] == 0 and abs(a[1] - a[2]) <= 1e-12 * abs(a[1]):
        return _trap(ch, float(a[1]), t[1] - t[0], t[2] - t[1], t[3] - t[2], t[0])
    if t[0] > 0:
        check(a[0] == 0, "a gradient waveform that starts inside its block must start at 0.")
        t, a = np.concatenate([[0.0], t]), np.concatenate([[0.0], a])
    keep = np.concatenate([[True], np.diff(t) > 0.5 * raster])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pp.make_extended_trapezoid(
            channel=ch, times=t[keep], amplitudes=a[keep] * GAMMABAR, system=opts, skip_check=True
        )


def write_seq(
    seq: Sequence,
    path: str | os.PathLike,
    system: System | None = None,
    definitions: dict | None = None,
) -> None:
    """Write ``seq`` as a Pulseq 1.5 ``.seq`` file at ``path`` (atomic: temporary file + rename).

    Args:
        seq: the sequence; parameter values are read (detached) as floats.
        path: output file path (parent folder must exist).
        system: the limits and rasters written into the file (default ``seq.system``; None for
            the idealised sequences of the builders without a system: 1 us rasters).
        definitions: extra ``[DEFINITIONS]`` entries (numbers, lists of numbers or strings),
            e.g. the learned values of an optimised sequence.

    Raises:
        MrphysError: not a Sequence, a parent folder that does not exist, or timing that the
            raster cannot hold.
    """
    if not isinstance(seq, Sequence):
        raise MrphysError(f"seq must be a mrphys Sequence; got {type(seq).__name__}.")
    path = Path(path)
    check(path.parent.is_dir(), f"the folder of the Pulseq file {path} does not exist.")
    import pypulseq as pp

    system = system or seq.system
    opts = _system(system)
    b_raster = system.block_raster if system else _RASTER
    g_raster = system.grad_raster if system else _RASTER
    r_raster = system.rf_raster if system else _RASTER
    pseq = pp.Sequence(system=opts)
    loops: list[float] = []
    spoil_blocks: list[int] = []
    hard_blocks: list[int] = []
    n_written = 0
    n_adc = 0
    auto_lin = len(seq.kspace_shape) >= 2

    def add(b: Block) -> None:
        nonlocal n_written, n_adc
        dur = _on_raster(_num(b.duration), b_raster)
        check(
            abs(dur - _num(b.duration)) <= 0.05 * b_raster + 5e-7 * abs(_num(b.duration)),
            f"block duration {_num(b.duration):.9g} s is not on the {b_raster:g} s Pulseq raster.",
        )
        events: list = [pp.make_delay(dur)] if dur > 0 else []
        if isinstance(b.rf, RFPulse):
            flip, phase = _num(b.rf.flip), _num(b.rf.phase)
            if flip < 0:
                flip, phase = -flip, phase + math.pi
            rf_dur = _on_raster(min(b.rf.duration, dur), _RASTER)
            check(rf_dur > 0, "an RF pulse needs a block of at least 1 us.")
            use = "excitation" if flip <= math.pi / 2 + 1e-9 else "refocusing"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                events.append(
                    pp.make_block_pulse(
                        flip_angle=flip,
                        duration=rf_dur,
                        phase_offset=phase % _TWO_PI,
                        system=_system(None),
                        use=use,
                    )  # fmt: skip
                )
            hard_blocks.append(n_written + 1)
        elif isinstance(b.rf, ShapedRF):
            rf = b.rf
            sig = rf.signal.detach().cpu().numpy().astype(complex)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ev = pp.make_arbitrary_rf(
                    sig, flip_angle=float(_num(rf.flip)), dwell=float(rf.dwell),
                    delay=_on_raster(float(rf.delay), r_raster), no_signal_scaling=True,
                    phase_offset=_num(rf.phase) % _TWO_PI, freq_offset=float(rf.freq_offset),
                    use=rf.use, system=opts, center=rf.t_center,
                )  # fmt: skip
            events.append(ev)
        for ch, g in (("x", b.gx), ("y", b.gy), ("z", b.gz)):
            ev = _grad_event(ch, g, dur, g_raster, opts)
            if ev is not None:
                events.append(ev)
        labels = list(b.labels)
        if b.adc is not None:
            if auto_lin and not labels:
                per = seq.kspace_shape[-1] // max(b.adc.num, 1) or 1
                labels = [("set", "LIN", (n_adc // per) % seq.kspace_shape[-2])]
            events.append(
                pp.make_adc(
                    num_samples=int(b.adc.num),
                    dwell=_on_raster(_num(b.adc.dwell), opts.adc_raster_time),
                    delay=_on_raster(_num(b.adc.delay), r_raster),
                    phase_offset=_num(b.adc.phase) % _TWO_PI,
                    system=opts,
                )
            )
            n_adc += 1
        for kind, name, value in labels:
            events.append(pp.make_label(label=name, type=kind.upper(), value=int(value)))
        check(bool(events), "a block of zero duration without events cannot be written.")
        pseq.add_block(*events)
        n_written += 1
        if b.spoil:
            spoil_blocks.append(n_written)

    for it in seq.items:
        if isinstance(it, Loop):
            loops += [n_written + 1, len(it.blocks), it.count, _num(it.phase_increment)]
            for b in it.expand():
                add(b)
        else:
            add(it)
    check(n_written > 0, "the sequence has no blocks to write.")
    pseq.set_definition("Name", seq.name)
    pseq.set_definition(_MARK, 1)
    pseq.set_definition("MrphysKspaceShape", list(seq.kspace_shape))
    if loops:
        pseq.set_definition("MrphysLoops", loops)
    if spoil_blocks:
        pseq.set_definition("MrphysSpoilBlocks", spoil_blocks)
    if hard_blocks:
        pseq.set_definition("MrphysHardRF", hard_blocks)
    fov = seq.params.get("fov")
    if isinstance(fov, float):
        pseq.set_definition("FOV", [fov, fov, 0.005])
    for k, v in (definitions or {}).items():
        pseq.set_definition(str(k), v)
    tmp = path.with_name(f".{path.name}.part.seq")  # pypulseq appends .seq otherwise
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pseq.write(str(tmp), create_signature=True)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    log.info("wrote %s (%d blocks)", path, n_written)


def check_timing(path: str | os.PathLike) -> list[str]:
    """pypulseq's ``check_timing()`` of a ``.seq`` file: the list of its timing errors (empty
    when the file respects the rasters, dead times and ringdown times it declares)."""
    import pypulseq as pp

    pseq = pp.Sequence()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pseq.read(str(path))
        ok, report = pseq.check_timing()
    return [] if ok else [str(e) for e in report]


# ----------------------------------------------------------------------------------------------
# reading


class _Interner:
    """One tensor (or waveform) per distinct value, so that the simulator's per-tensor caches
    are shared by every block that uses it."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype
        self.cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64
        self.cache: dict = {}

    def __call__(self, v: float) -> torch.Tensor:
        v = float(v)
        if v not in self.cache:
            self.cache[v] = torch.tensor(v, dtype=self.dtype)
        return self.cache[v]

    def grad(self, t: np.ndarray, a: np.ndarray) -> Grad:
        key = ("g", t.tobytes(), a.tobytes())
        if key not in self.cache:
            self.cache[key] = Grad(
                torch.tensor(t, dtype=self.dtype), torch.tensor(a, dtype=self.dtype)
            )
        return self.cache[key]

    def signal(self, s: np.ndarray) -> torch.Tensor:
        key = ("s", s.tobytes())
        if key not in self.cache:
            self.cache[key] = torch.tensor(s, dtype=self.cdtype)
        return self.cache[key]


_warned: set[str] = set()


def _warn_once(msg: str) -> None:
    if msg not in _warned:
        _warned.add(msg)
        log.warning(msg)


def _definition(defs: dict, key: str) -> list[float] | None:
    if key not in defs:
        return None
    v = defs[key]
    if isinstance(v, str):
        try:
            return [float(x) for x in v.split()]
        except ValueError:
            return None
    return [float(x) for x in np.atleast_1d(np.asarray(v, dtype=float))]


def _rf_samples(rf: SimpleNamespace, raster: float) -> tuple[np.ndarray, float]:
    """RF samples (Hz, complex) on a uniform raster and that raster (s): the file's own samples
    when they lie at ``(j + 0.5) dwell``, else the shape (linear between its time points, as
    Pulseq time-shaped RF) sampled at ``(j + 0.5) raster``."""
    signal = np.asarray(rf.signal, dtype=complex)
    t = np.asarray(rf.t, dtype=float)
    check(signal.size >= 1 and signal.size == t.size, "an RF event has an empty or bad shape.")
    if signal.size >= 2:
        dt = float(t[1] - t[0])
        if (
            dt > 0
            and np.allclose(np.diff(t), dt, rtol=1e-6, atol=1e-12)
            and abs(t[0] - dt / 2) < 1e-3 * dt
        ):
            return signal, dt
    dur = float(getattr(rf, "shape_dur", t[-1]))
    n = max(1, int(round(dur / raster)))
    tj = (np.arange(n) + 0.5) * dur / n
    if signal.size == 1:
        return np.full(n, signal[0]), dur / n
    re = np.interp(tj, t, signal.real)
    im = np.interp(tj, t, signal.imag)
    return re + 1j * im, dur / n


def _grad_waveform(g: SimpleNamespace) -> tuple[np.ndarray, np.ndarray]:
    """Corner times (s from the block start) and amplitudes (T/m) of a Pulseq gradient."""
    if g.type == "trap":
        a = _num(g.amplitude) / GAMMABAR
        t0 = _num(g.delay)
        r, f, fa = _num(g.rise_time), _num(g.flat_time), _num(g.fall_time)
        return np.array([t0, t0 + r, t0 + r + f, t0 + r + f + fa]), np.array([0.0, a, a, 0.0])
    tt = np.asarray(g.tt, dtype=float)
    w = np.asarray(g.waveform, dtype=float)
    check(tt.size == w.size and tt.size >= 1, "a gradient event has a bad waveform.")
    end = float(getattr(g, "shape_dur", tt[-1]))
    first, last = float(getattr(g, "first", w[0])), float(getattr(g, "last", w[-1]))
    t = np.concatenate([[0.0], tt, [max(end, tt[-1])]])
    a = np.concatenate([[first], w, [last]])
    keep = np.concatenate([[True], np.diff(t) > 1e-12])
    keep[-1] = True
    # a duplicated time keeps the later point's value only when they agree
    t, a = t[keep], a[keep]
    return t + _num(g.delay), a / GAMMABAR


_LABELS = ("SLC", "SEG", "REP", "AVG", "SET", "ECO", "PHS", "LIN", "PAR", "ACQ")


def _convert_block(
    idx: int, b: SimpleNamespace, own: bool, hard: bool, c: _Interner, spoil: bool
) -> Block:
    """One Pulseq block as one :class:`Block`, exactly: trapezoids and waveforms as
    :class:`Grad` (constants when they fill the block), RF as :class:`ShapedRF` on its raster
    (a hard :class:`RFPulse` for the hard pulses of :func:`write_seq`)."""
    dur = _num(b.block_duration)
    rf = getattr(b, "rf", None)
    adc = getattr(b, "adc", None)

    def grad(g):
        if g is None:
            return None
        t, a = _grad_waveform(g)
        check(
            t[0] >= -1e-9 and t[-1] <= dur + 1e-9,
            f"block {idx}: a gradient lasts beyond its block; not supported.",
        )
        if t.size == 4 and abs(t[0]) < 1e-12 and t[1] == t[0] and t[3] == t[2]:
            if abs(t[2] - dur) < 1e-9 and a[1] == a[2]:
                return c(a[1])  # constant over the whole block
        if not np.any(a != 0):
            return None
        return c.grad(t, a)

    out_rf: RFPulse | ShapedRF | None = None
    if rf is not None:
        if getattr(rf, "freq_ppm", 0.0) or getattr(rf, "phase_ppm", 0.0):
            _warn_once("RF frequency and phase offsets in ppm are ignored.")
        sig, dwell = _rf_samples(rf, _RASTER)
        if hard:
            area = np.sum(sig) * dwell
            out_rf = RFPulse(
                c(_TWO_PI * abs(area)), c(_num(rf.phase_offset) + float(np.angle(area))),
                _num(rf.shape_dur),
            )  # fmt: skip
        else:
            check(
                _num(rf.delay) + sig.size * dwell <= dur + 1e-9,
                f"block {idx}: an RF pulse lasts beyond its block; not supported.",
            )
            centre = getattr(rf, "center", None)
            out_rf = ShapedRF(
                c.signal(sig), dwell, _num(rf.delay), c(_num(rf.phase_offset)),
                float(_num(rf.freq_offset)), str(getattr(rf, "use", "undefined")),
                None if centre is None else float(centre),
            )  # fmt: skip
    out_adc = None
    if adc is not None:
        check(
            not isinstance(out_rf, ShapedRF),
            f"block {idx}: an ADC in the block of an RF pulse is not supported.",
        )
        if getattr(adc, "freq_offset", 0.0):
            _warn_once("ADC frequency offsets are ignored.")
        check(
            _num(adc.delay) + int(adc.num_samples) * _num(adc.dwell) <= dur * (1 + 1e-6) + 1e-9,
            f"block {idx}: an ADC lasts beyond its block; not supported.",
        )
        out_adc = ADC(int(adc.num_samples), c(adc.dwell), c(adc.delay), c(adc.phase_offset))
    if getattr(b, "soft_delay", None) is not None:
        _warn_once("soft delays take the block's default duration.")
    labels = []
    lab = getattr(b, "label", None)
    if lab:
        for v in lab.values():
            labels.append(("set" if v.type == "labelset" else "inc", str(v.label), int(v.value)))
    return Block(c(dur), out_rf, grad(getattr(b, "gx", None)), grad(getattr(b, "gy", None)),
                 out_adc, spoil, grad(getattr(b, "gz", None)), labels)  # fmt: skip


def _adc_labels(blocks: list[Block]) -> dict[str, list[int]]:
    """LIN, PAR, SLC (and the other counters a file sets) at every ADC, in acquisition order."""
    state: dict[str, int] = {}
    out: dict[str, list[int]] = {}
    n_adc = 0
    for b in blocks:
        for kind, name, value in b.labels:
            if name not in _LABELS:
                continue
            state[name] = value if kind == "set" else state.get(name, 0) + value
            if name not in out:
                out[name] = [0] * n_adc
        if b.adc is not None:
            for name in out:
                out[name].append(state.get(name, 0))
            n_adc += 1
    return out


def read_seq(path: str | os.PathLike, dtype: torch.dtype | None = None) -> Sequence:
    """Read a Pulseq 1.4 or 1.5 ``.seq`` file into a :class:`Sequence`.

    Every block is kept as one :class:`Block`, exactly: trapezoids, extended trapezoids and
    arbitrary gradients become piecewise-linear :class:`Grad` waveforms (their moments are
    computed in closed form by the simulator), RF pulses keep their samples, phase and frequency
    offset (:class:`ShapedRF`), ADCs their dwell, delay and phase offset, labels are kept per
    block and the LIN/PAR/SLC counters at every ADC go to ``params["labels"]``. Files from
    :func:`write_seq` also get back their loops, ideal spoilers, hard pulses and k-space shape
    from ``[DEFINITIONS]``.

    Args:
        path: the ``.seq`` file.
        dtype: dtype of the parameter tensors (default: torch's default dtype).

    Returns:
        a :class:`Sequence` (parameters are plain tensors; set ``requires_grad`` as needed);
        ``kspace_shape`` is ``(readouts, samples)`` for a foreign file whose readouts have the
        same number of samples.

    Raises:
        MrphysError: a missing or unreadable file, or content the simulator cannot represent
            (naming the block).
    """
    path = Path(path)
    check(path.is_file(), f"the Pulseq file {path} does not exist.")
    import pypulseq as pp

    pseq = pp.Sequence(system=_system())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pseq.read(str(path))
            ids = list(pseq.block_events)
            blocks = [pseq.get_block(i) for i in ids]
    except MrphysError:
        raise
    except Exception as exc:  # pypulseq raises many types on malformed files
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MrphysError(f"{path} is not a readable Pulseq file ({msg}).") from None
    check(len(blocks) > 0, f"the Pulseq file {path} holds no blocks.")
    defs = dict(pseq.definitions)
    own = _definition(defs, _MARK) is not None
    c = _Interner(dtype or torch.get_default_dtype())
    spoil = {int(v) for v in (_definition(defs, "MrphysSpoilBlocks") or [])}
    hard = {int(v) for v in (_definition(defs, "MrphysHardRF") or [])} if own else set()
    converted = [
        _convert_block(i, b, own, (n + 1) in hard, c, (n + 1) in spoil)
        for n, (i, b) in enumerate(zip(ids, blocks, strict=True))
    ]  # per Pulseq block (1-based numbering in the definitions)
    items: list[Block | Loop] = []
    loops = _definition(defs, "MrphysLoops") or []
    check(len(loops) % 4 == 0, "MrphysLoops in the Pulseq definitions must hold groups of 4.")
    starts = {int(loops[i]): (int(loops[i + 1]), int(loops[i + 2]), loops[i + 3])
              for i in range(0, len(loops), 4)}  # fmt: skip
    n = 1
    while n <= len(converted):
        if n in starts:
            nb, count, inc = starts[n]
            check(
                nb >= 1 and count >= 1 and n - 1 + nb * count <= len(converted),
                "MrphysLoops in the Pulseq definitions does not fit the blocks of the file.",
            )
            items.append(Loop(converted[n - 1 : n - 1 + nb], count, c(inc)))
            n += nb * count
        else:
            items.append(converted[n - 1])
            n += 1
    name = defs.get("Name", "pulseq")
    name = name if isinstance(name, str) else "pulseq"
    shape = _definition(defs, "MrphysKspaceShape") if own else None
    labels = _adc_labels(converted)
    seq = Sequence(items, (), name, {"source": str(path), "labels": labels})
    if shape:
        ks = tuple(int(v) for v in shape)
        check(
            math.prod(ks) == seq.adc_count,
            f"MrphysKspaceShape {ks} does not hold the {seq.adc_count} ADC samples of {path}.",
        )
        seq.kspace_shape = ks
    else:
        nums = {b.adc.num for b in converted if b.adc is not None}
        if len(nums) == 1:
            k = nums.pop()
            seq.kspace_shape = (seq.adc_count // k, k)
    return seq


# ----------------------------------------------------------------------------------------------
# simulating a Pulseq file


@dataclass
class FileAcquisition:
    """A Pulseq file simulated on a phantom (:func:`simulate_file`).

    Attributes:
        sequence: the sequence read from the file.
        kspace: complex64 ``(readouts, samples)`` in acquisition order, or
            ``(coils, readouts, samples)`` with coils (CPU).
        labels: LIN/PAR/SLC/... counter at every readout, acquisition order.
        sorted_kspace: ``([coils,] SLC, PAR, LIN, samples)`` sorted by the labels (readouts
            without a label at index 0; the last readout of a repeated index wins), or None
            when the readouts differ in length.
        image: centred inverse FFT magnitude ``(Y, X)`` (coil root-sum-of-squares) of the first
            slice and partition of ``sorted_kspace`` when it is a 2-D Cartesian grid, else None.
        fov: field of view in m used for the phantom.
    """

    sequence: Sequence
    kspace: torch.Tensor
    labels: dict[str, list[int]]
    sorted_kspace: torch.Tensor | None
    image: torch.Tensor | None
    fov: float


def file_fov(path: str | os.PathLike) -> float | None:
    """The in-plane FOV in m from a Pulseq file's ``FOV`` definition (None when absent)."""
    fov = None
    with open(path, errors="replace") as f:
        in_defs = False
        for line in f:
            s = line.strip()
            if s.startswith("["):
                in_defs = s == "[DEFINITIONS]"
                continue
            if in_defs and s.split()[:1] == ["FOV"]:
                try:
                    fov = float(s.split()[1])
                except (IndexError, ValueError):
                    return None
    return fov


def sort_by_labels(k: torch.Tensor, labels: dict[str, list[int]]) -> torch.Tensor:
    """``(..., readouts, samples)`` in acquisition order to ``(..., SLC, PAR, LIN, samples)``."""
    n = k.shape[-2]
    idx = []
    for name in ("SLC", "PAR", "LIN"):
        v = labels.get(name)
        v = [0] * n if v is None else v
        check(min(v) >= 0, f"negative {name} labels cannot index k-space.")
        idx.append(torch.tensor(v, dtype=torch.long))
    shape = [int(i.max()) + 1 for i in idx]
    out = torch.zeros(*k.shape[:-2], *shape, k.shape[-1], dtype=k.dtype)
    out[..., idx[0], idx[1], idx[2], :] = k
    return out


def simulate_file(
    path: str | os.PathLike,
    phantom: Phantom,
    coils: torch.Tensor | None = None,
    slice_positions: torch.Tensor | None = None,
    isochromats: int = 1,
) -> FileAcquisition:
    """Simulate any Pulseq file on ``phantom`` (what ``mrphys simulate --seq`` computes).

    Args:
        path: the ``.seq`` file (Pulseq 1.4 or 1.5).
        phantom: a 2-D phantom whose FOV matches the sequence's.
        coils: receive sensitivities ``(C, Y, X)`` or None (one ideal coil).
        slice_positions: ``(Z,)`` z positions in m of isochromats through the slice, or None.
        isochromats: in-plane isochromats per voxel (along x).
    """
    from mrphys.physics import bloch
    from mrphys.physics.fourier import ifft2c

    seq = read_seq(path, dtype=phantom.dtype)
    check(seq.adc_count > 0, f"the Pulseq file {path} has no ADC: nothing to simulate.")
    with torch.no_grad():
        sig = bloch.simulate(seq, phantom, isochromats=isochromats,
                             slice_positions=slice_positions, coils=coils)  # fmt: skip
    sig = sig.to(torch.complex64).cpu()
    labels = seq.params.get("labels", {})
    nums = {b.adc.num for b, _ in seq._iter_blocks_counted() if b.adc is not None}
    sorted_k = image = None
    if len(nums) == 1:
        s = nums.pop()
        k = sig.reshape(*sig.shape[:-1], -1, s)
        sorted_k = sort_by_labels(k, labels) if labels else k[..., None, None, :, :]
        grid = sorted_k[..., 0, 0, :, :]
        if grid.shape[-2] > 1 and grid.shape[-2] == grid.shape[-1]:
            img = ifft2c(grid, norm="backward").abs()
            image = img if coils is None else img.pow(2).sum(0).sqrt()
    else:
        k = sig
    return FileAcquisition(seq, k, labels, sorted_k, image, phantom.fov[0])


def write_mrd(
    path: str | os.PathLike,
    kspace: torch.Tensor,
    labels: dict[str, list[int]],
    fov: float,
    matrix: int,
    dwell: float,
) -> None:
    """Raw data ``(coils, readouts, samples)`` (acquisition order) as an ISMRMRD/MRD file, one
    acquisition per readout with its LIN/PAR/SLC labels in the encoding counters.

    A small writer of its own (the raw-data issue's MRD module is not on main yet)."""
    import ismrmrd
    import ismrmrd.xsd as x

    check(kspace.dim() == 3, "MRD raw data must be (coils, readouts, samples).")
    c, r, s = kspace.shape
    lin = labels.get("LIN", list(range(r)))
    fov_mm = x.fieldOfViewMm(x=fov * 1e3, y=fov * 1e3, z=5.0)
    enc = x.encodingType(
        encodedSpace=x.encodingSpaceType(matrixSize=x.matrixSizeType(x=s, y=r, z=1),
                                         fieldOfView_mm=fov_mm),
        reconSpace=x.encodingSpaceType(matrixSize=x.matrixSizeType(x=matrix, y=matrix, z=1),
                                       fieldOfView_mm=fov_mm),
        encodingLimits=x.encodingLimitsType(kspace_encoding_step_1=x.limitType(
            minimum=0, maximum=max(lin), center=max(lin) // 2)),
        trajectory=x.trajectoryType("cartesian"),
    )  # fmt: skip
    hdr = x.ismrmrdHeader(
        experimentalConditions=x.experimentalConditionsType(
            H1resonanceFrequency_Hz=int(GAMMABAR * 3.0)
        ),
        acquisitionSystemInformation=x.acquisitionSystemInformationType(receiverChannels=c),
        encoding=[enc],
    )
    tmp = Path(path).with_name(f".{Path(path).name}.part")
    if tmp.exists():
        tmp.unlink()
    data = kspace.numpy().astype(np.complex64)
    ds = ismrmrd.Dataset(str(tmp), "dataset", create_if_needed=True)
    try:
        ds.write_xml_header(hdr.toXML("utf-8"))
        for i in range(r):
            acq = ismrmrd.Acquisition.from_array(np.ascontiguousarray(data[:, i, :]))
            acq.idx.kspace_encode_step_1 = int(lin[i])
            acq.idx.kspace_encode_step_2 = int(labels.get("PAR", [0] * r)[i])
            acq.idx.slice = int(labels.get("SLC", [0] * r)[i])
            acq.sample_time_us = dwell * 1e6
            acq.scan_counter = i
            ds.append_acquisition(acq)
    finally:
        ds.close()
    os.replace(tmp, path)


def write_learned_spin_echo(
    path: str | os.PathLike,
    matrix: int,
    fov: float,
    tr: float,
    te: float,
    flip1: float,
    flip2: float,
    learned: dict[str, float | list[float]],
    system: System | None = None,
) -> Sequence:
    """Write a learned SPIN spin echo as a scanner-ready ``.seq`` (passes ``check_timing()``).

    The sequence is :func:`~mrphys.physics.sequence.spin_echo` with ``system`` (default
    :class:`System`) at the learned values (s, rad); ``learned`` (e.g. ``{"Flip1Deg": 73.2}``)
    goes into ``[DEFINITIONS]`` with a ``Learned`` prefix, so the file says what was learned.
    Returns the sequence written.
    """
    from mrphys.physics.sequence import spin_echo

    seq = spin_echo(matrix=matrix, fov=fov, tr=tr, te=te, flip1=flip1, flip2=flip2,
                    n_dummy=2, system=system or System())  # fmt: skip
    defs = {f"Learned{k}": v for k, v in learned.items()}
    write_seq(seq, path, definitions=defs)
    return seq
