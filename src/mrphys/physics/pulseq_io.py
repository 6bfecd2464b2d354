"""Pulseq ``.seq`` export and import of :class:`~mrphys.physics.sequence.Sequence` (via pypulseq).

Mapping (Pulseq file format 1.5, written by pypulseq):

* a :class:`Block` becomes one Pulseq block of the same duration (a delay event sets it);
* a hard RF pulse becomes a block pulse of ``RFPulse.duration`` (20 us) at the block start, flip
  and phase kept (negative flips are written as ``|flip|`` with the phase turned by pi);
* a constant gradient becomes a trapezoid with zero rise and fall times over the whole block
  (instantaneous switching: exact for the simulator, **not** scanner-ready);
* an ADC keeps number of samples, dwell, delay and phase;
* a :class:`Loop` is written out repetition by repetition (Pulseq has no loops); the loop
  structure, the ideal spoilers (``spoil=True``, no Pulseq event), ``kspace_shape`` and the
  builder name go into ``[DEFINITIONS]`` (``MrphysLoops``, ``MrphysSpoilBlocks``,
  ``MrphysKspaceShape``, ``Name``) so that :func:`read_seq` rebuilds the same Sequence.

Rasters: 1 us for blocks, gradients and RF, 100 ns for ADC dwell; the file stores RF/ADC phases
and amplitudes to 6 significant digits and ADC delays to 1 us. A round trip therefore changes
the simulated signal by about 1e-5 relative (tested per builder).

Reading a foreign Pulseq file: trapezoids and arbitrary/extended gradients are cut into
piecewise-constant sub-blocks at their corner points (the moment of each piece is kept; a ramp
becomes its mean), an RF pulse of any shape becomes a hard pulse at its centre with the flip
angle of its integral, z gradients and frequency offsets are ignored (2-D simulation on
resonance), and an ADC must lie inside one constant-gradient piece (no ramp sampling).
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from mrphys.errors import MrphysError, check
from mrphys.physics.sequence import ADC, GAMMABAR, Block, Loop, RFPulse, Sequence, _num

__all__ = ["write_seq", "read_seq"]

log = logging.getLogger(__name__)

_RASTER = 1e-6  # block, gradient and RF raster in s
_ADC_RASTER = 1e-7
_MARK = "MrphysFormat"  # definition that says the file was written by write_seq
_TWO_PI = 2 * math.pi


def _system():
    import pypulseq as pp

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
    amp = g_t_per_m * GAMMABAR  # Hz/m
    return SimpleNamespace(
        type="trap", channel=channel, amplitude=amp, rise_time=0.0, flat_time=duration,
        fall_time=0.0, area=amp * duration, flat_area=amp * duration, delay=0.0, first=0.0,
        last=0.0,
    )  # fmt: skip


def _on_raster(t: float, raster: float) -> float:
    return round(t / raster) * raster


def write_seq(seq: Sequence, path: str | os.PathLike) -> None:
    """Write ``seq`` as a Pulseq 1.5 ``.seq`` file at ``path`` (atomic: temporary file + rename).

    Args:
        seq: the sequence; parameter values are read (detached) as floats.
        path: output file path (parent folder must exist).

    Raises:
        MrphysError: not a Sequence, a parent folder that does not exist, or timing that the
            1 us raster cannot hold.
    """
    if not isinstance(seq, Sequence):
        raise MrphysError(f"seq must be a mrphys Sequence; got {type(seq).__name__}.")
    path = Path(path)
    check(path.parent.is_dir(), f"the folder of the Pulseq file {path} does not exist.")
    import pypulseq as pp

    system = _system()
    pseq = pp.Sequence(system=system)
    loops: list[float] = []
    spoil_blocks: list[int] = []
    n_written = 0

    def add(b: Block) -> None:
        nonlocal n_written
        dur = _on_raster(_num(b.duration), _RASTER)
        check(
            abs(dur - _num(b.duration)) <= 0.05 * _RASTER + 5e-7 * abs(_num(b.duration)),
            f"block duration {_num(b.duration):.9g} s is not on the 1 us Pulseq raster.",
        )
        events: list = [pp.make_delay(dur)] if dur > 0 else []
        if b.rf is not None:
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
                        system=system,
                        use=use,
                    )  # fmt: skip
                )
        for ch, g in (("x", b.gx), ("y", b.gy)):
            if g is not None and _num(g) != 0.0 and dur > 0:
                events.append(_rect(ch, _num(g), dur))
        if b.adc is not None:
            events.append(
                pp.make_adc(
                    num_samples=int(b.adc.num),
                    dwell=_on_raster(_num(b.adc.dwell), _ADC_RASTER),
                    delay=_on_raster(_num(b.adc.delay), _RASTER),
                    phase_offset=_num(b.adc.phase) % _TWO_PI,
                    system=system,
                )
            )
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
    fov = seq.params.get("fov")
    if isinstance(fov, float):
        pseq.set_definition("FOV", [fov, fov, 0.005])
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


# ----------------------------------------------------------------------------------------------
# reading


class _Interner:
    """One tensor per distinct value, so that the simulator's per-tensor caches are shared."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype
        self.cache: dict[float, torch.Tensor] = {}

    def __call__(self, v: float) -> torch.Tensor:
        v = float(v)
        if v not in self.cache:
            self.cache[v] = torch.tensor(v, dtype=self.dtype)
        return self.cache[v]


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
        return [float(x) for x in v.split()]
    return [float(x) for x in np.atleast_1d(np.asarray(v, dtype=float))]


def _rf_hard(rf: SimpleNamespace, own: bool) -> tuple[float, float, float]:
    """(flip rad, phase rad, time of the hard pulse from the block start in s)."""
    signal = np.asarray(rf.signal, dtype=complex)
    t = np.asarray(rf.t, dtype=float)
    check(signal.size >= 1 and signal.size == t.size, "an RF event has an empty or bad shape.")
    if signal.size == 1:
        area = signal[0] * float(getattr(rf, "shape_dur", 0.0))
    else:
        area = np.sum(0.5 * (signal[1:] + signal[:-1]) * np.diff(t))
    flip = _TWO_PI * abs(area)
    phase = _num(rf.phase_offset) + float(np.angle(area))
    if own:
        return flip, phase, _num(rf.delay)
    weights = np.abs(signal)
    centre = float(np.sum(weights * t) / max(np.sum(weights), 1e-30))
    if getattr(rf, "freq_offset", 0.0):
        _warn_once("RF frequency offsets are ignored (2-D on-resonance simulation).")
    return flip, phase, _num(rf.delay) + centre


def _grad_pieces(g: SimpleNamespace | None, dur: float) -> list[tuple[float, float, float]]:
    """Gradient as (t0, t1, amplitude T/m) pieces covering its support inside the block."""
    if g is None:
        return []
    if g.type == "trap":
        a = _num(g.amplitude) / GAMMABAR
        t0 = _num(g.delay)
        r, f, fa = _num(g.rise_time), _num(g.flat_time), _num(g.fall_time)
        pieces = []
        if r > 0:
            pieces.append((t0, t0 + r, a / 2))
        if f > 0:
            pieces.append((t0 + r, t0 + r + f, a))
        if fa > 0:
            pieces.append((t0 + r + f, t0 + r + f + fa, a / 2))
        return pieces
    tt = np.asarray(g.tt, dtype=float) + _num(g.delay)
    w = np.asarray(g.waveform, dtype=float) / GAMMABAR
    check(tt.size == w.size and tt.size >= 2, "a gradient event has a bad waveform.")
    return [(tt[i], tt[i + 1], 0.5 * (w[i] + w[i + 1])) for i in range(tt.size - 1)]


def _mean_on(pieces: list[tuple[float, float, float]], a: float, b: float) -> float:
    """Mean gradient over [a, b] of piecewise-constant pieces (0 outside them)."""
    tot = 0.0
    for t0, t1, g in pieces:
        lo, hi = max(a, t0), min(b, t1)
        if hi > lo:
            tot += g * (hi - lo)
    return tot / (b - a)


def _convert_block(b: SimpleNamespace, own: bool, c: _Interner, spoil: bool) -> list[Block]:
    dur = _num(b.block_duration)
    rf = getattr(b, "rf", None)
    adc = getattr(b, "adc", None)
    gx, gy = getattr(b, "gx", None), getattr(b, "gy", None)
    gz = getattr(b, "gz", None)
    if gz is not None:
        _warn_once("z gradients are ignored (2-D simulation at z = 0).")
    rf_hard = None if rf is None else _rf_hard(rf, own)
    if own:
        # written by write_seq: rectangular gradients over the whole block, RF at the start
        def amp(g):
            return None if g is None else c(_num(g.amplitude) / GAMMABAR)

        out_rf = None
        if rf_hard is not None:
            out_rf = RFPulse(c(rf_hard[0]), c(rf_hard[1]), _num(rf.shape_dur))
        out_adc = None
        if adc is not None:
            out_adc = ADC(int(adc.num_samples), c(adc.dwell), c(adc.delay), c(adc.phase_offset))
        return [Block(c(dur), out_rf, amp(gx), amp(gy), out_adc, spoil)]
    # general case: cut at gradient corners and at the RF time
    px, py = _grad_pieces(gx, dur), _grad_pieces(gy, dur)
    cuts = {0.0, dur}
    for t0, t1, _ in px + py:
        cuts.update((min(max(t0, 0.0), dur), min(max(t1, 0.0), dur)))
    if rf_hard is not None:
        check(0 <= rf_hard[2] <= dur, "an RF pulse lies outside its block.")
        cuts.add(rf_hard[2])
    edges = sorted(cuts)
    edges = [e for i, e in enumerate(edges) if i == 0 or e - edges[i - 1] > 1e-12]
    out: list[Block] = []
    adc_done = adc is None
    for a, bnd in zip(edges[:-1], edges[1:], strict=True):
        out_rf = None
        if rf_hard is not None and abs(rf_hard[2] - a) < 1e-12:
            out_rf = RFPulse(c(rf_hard[0]), c(rf_hard[1]), _num(rf.shape_dur))
        out_adc = None
        if adc is not None and not adc_done:
            start = _num(adc.delay)
            end = start + int(adc.num_samples) * _num(adc.dwell)
            if a - 1e-12 <= start < bnd:
                check(
                    end <= bnd + 1e-9,
                    "an ADC spans a gradient ramp or an RF pulse; only ADCs inside one "
                    "constant-gradient piece are supported.",
                )
                out_adc = ADC(int(adc.num_samples), c(adc.dwell), c(start - a), c(adc.phase_offset))
                adc_done = True
        mx = _mean_on(px, a, bnd) if px else 0.0
        my = _mean_on(py, a, bnd) if py else 0.0
        out.append(
            Block(c(bnd - a), out_rf, c(mx) if mx else None, c(my) if my else None, out_adc, False)
        )
    if not out:
        out = [Block(c(0.0), None, None, None, None, False)]
    check(adc_done, "an ADC lies outside its block.")
    out[-1].spoil = spoil
    return out


def read_seq(path: str | os.PathLike, dtype: torch.dtype | None = None) -> Sequence:
    """Read a Pulseq ``.seq`` file into a :class:`Sequence`.

    Files from :func:`write_seq` come back block for block (loops and ideal spoilers restored
    from ``[DEFINITIONS]``); other files are converted as described in the module docstring.

    Args:
        path: the ``.seq`` file.
        dtype: dtype of the parameter tensors (default: torch's default dtype).

    Returns:
        a :class:`Sequence` (parameters are plain tensors; set ``requires_grad`` as needed).

    Raises:
        MrphysError: a missing or unreadable file, or content the simulator cannot represent.
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
    converted = [
        _convert_block(b, own, c, (n + 1) in spoil) for n, b in enumerate(blocks)
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
            body = [b for bl in converted[n - 1 : n - 1 + nb] for b in bl]
            items.append(Loop(body, count, c(inc)))
            n += nb * count
        else:
            items += converted[n - 1]
            n += 1
    name = defs.get("Name", "pulseq")
    name = name if isinstance(name, str) else "pulseq"
    shape = _definition(defs, "MrphysKspaceShape")
    seq = Sequence(items, (), name, {"source": str(path)})
    if shape:
        ks = tuple(int(v) for v in shape)
        check(
            math.prod(ks) == seq.adc_count,
            f"MrphysKspaceShape {ks} does not hold the {seq.adc_count} ADC samples of {path}.",
        )
        seq.kspace_shape = ks
    return seq
