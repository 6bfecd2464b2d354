"""Pulse sequences as event lists (Pulseq-block-like) with differentiable parameters.

A :class:`Sequence` is a list of :class:`Block` s (and :class:`Loop` s of blocks). A block lasts
``duration`` seconds and may hold

* a hard RF pulse (:class:`RFPulse`): an instantaneous rotation at the start of the block by
  ``flip`` rad about the axis ``(cos phase, sin phase, 0)``;
* constant gradients ``gx``, ``gy`` in T/m over the whole block;
* an ADC (:class:`ADC`): ``num`` samples at ``delay + (k + 0.5) * dwell`` s after the block start
  (the Pulseq convention), demodulated by the receiver phase ``phase``;
* an ideal spoiler (``spoil=True``): the transverse magnetisation is set to 0 at the block end.

Every numeric parameter is a 0-dim torch tensor and may require grad. Builders pass the SAME
tensor object to every repetition of an event (e.g. one ``flip1`` for all TRs); the simulator
caches per tensor identity, and gradients accumulate over all uses.

Conventions (see docs/physics.md): angles in rad, times in s, gradients in T/m, fov in m.
Cartesian builders order ADC samples so that sample ``k`` of line ``n`` has
``kx = (k - N//2)/fov``, ``ky = (n - N//2)/fov`` with ``k = gammabar * integral(G dt)``, and the
simulator's precession ``exp(-i 2 pi k.r)``; then the centred inverse FFT
:func:`mrphys.physics.fourier.ifft2c` of the k-space gives the image in
:class:`~mrphys.tissue.Phantom` orientation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from mrphys.errors import MrphysError, check
from mrphys.physics.system import System

__all__ = [
    "GAMMA",
    "GAMMABAR",
    "RX_OFFSET",
    "RFPulse",
    "ShapedRF",
    "Grad",
    "ADC",
    "Block",
    "Loop",
    "Sequence",
    "spin_echo",
    "bssfp",
    "gre",
    "System",
]

#: Gyromagnetic ratio of 1H in Hz/T and rad/s/T.
GAMMABAR = 42.577478e6
GAMMA = 2 * math.pi * GAMMABAR
#: Receiver phase relative to the RF phase in the bSSFP and GRE builders: an RF pulse of
#: phase ``p`` tips +z magnetisation to ``-i e^{ip}``; demodulating by ``p - pi/2`` reads it
#: real positive.
RX_OFFSET = math.pi / 2

Scalar = float | torch.Tensor


def _num(x: torch.Tensor | float) -> float:
    """A Python float of a 0-dim tensor (detached: no autograd warning) or number."""
    return float(x.detach()) if isinstance(x, torch.Tensor) else float(x)


def wrapped_multiple(inc: torch.Tensor, r: int) -> torch.Tensor:
    """``r * inc`` modulo ``2 pi`` computed in float64 (differentiable in ``inc``).

    RF phases of late repetitions (``r`` in the thousands) would lose ~1e-3 rad in float32.
    """
    return torch.remainder(inc.to(torch.float64) * int(r), 2 * math.pi).to(inc.dtype)


def _t(x: Scalar, name: str, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A 0-dim tensor from a float or a 0-dim tensor (kept as is so that its grad flows)."""
    if isinstance(x, torch.Tensor):
        check(
            x.numel() == 1,
            f"{name} must be a number or a 0-dim tensor; got shape {tuple(x.shape)}.",
        )
        check(bool(torch.isfinite(x).all()), f"{name} must be finite; got {x.detach().item()}.")
        return x.reshape(()) if x.dim() else x
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise MrphysError(
            f"{name} must be a number or a 0-dim tensor; got {type(x).__name__}."
        ) from None
    check(math.isfinite(v), f"{name} must be finite; got {v}.")
    return torch.tensor(v, dtype=dtype or torch.get_default_dtype())


@dataclass
class RFPulse:
    """Hard RF pulse: instantaneous rotation by ``flip`` (rad) about ``(cos phase, sin phase, 0)``.

    ``duration`` (s) is only used for Pulseq export (a block pulse of that length).
    """

    flip: torch.Tensor
    phase: torch.Tensor
    duration: float = 2e-5


@dataclass
class ShapedRF:
    """Finite RF pulse of any shape on the RF raster (block, sinc, Gaussian, arbitrary).

    Sample ``j`` of ``signal`` (complex or real, in Hz: ``gammabar * B1``) plays from
    ``delay + j dwell`` to ``delay + (j + 1) dwell`` s after the block start (the Pulseq
    convention puts the sample at the middle of that interval), multiplied by
    ``exp(i (phase + 2 pi freq_offset t))`` with ``t`` from the pulse start. The simulator
    applies the pulse as a product of one rotation per sample (with the block's gradients,
    off-resonance, B1 and relaxation during the pulse); gradients flow to ``signal`` and ``phase``.

    Attributes:
        signal: ``(S,)`` samples in Hz (may require grad).
        dwell: RF raster in s. delay: start of the pulse in the block in s.
        phase: 0-dim tensor in rad. freq_offset: Hz (slice offset: ``gammabar Gz z0``).
        use: Pulseq RF use (``excitation``, ``refocusing``, ``inversion``, ...).
        center: time of the effective rotation from the pulse start in s (default: the middle);
            echo times are measured from it.
    """

    signal: torch.Tensor
    dwell: float
    delay: float
    phase: torch.Tensor
    freq_offset: float = 0.0
    use: str = "excitation"
    center: float | None = None

    @property
    def n(self) -> int:
        return int(self.signal.shape[-1])

    @property
    def duration(self) -> float:
        """Length of the pulse in s (``S * dwell``)."""
        return self.n * float(self.dwell)

    @property
    def t_center(self) -> float:
        """Time of the effective rotation from the pulse start in s."""
        return self.duration / 2 if self.center is None else float(self.center)

    @property
    def flip(self) -> torch.Tensor:
        """Nominal (small-tip) flip angle ``2 pi |sum(signal)| dwell`` in rad (0-dim)."""
        return 2 * math.pi * self.signal.sum().abs() * self.dwell

    def with_phase(self, phase: torch.Tensor) -> ShapedRF:
        return ShapedRF(
            self.signal, self.dwell, self.delay, phase, self.freq_offset, self.use, self.center
        )


@dataclass
class Grad:
    """Piecewise-linear gradient waveform of one axis in a block.

    Amplitude ``amps[i]`` (T/m) at ``times[i]`` (s from the block start, non-decreasing), linear
    in between and 0 outside ``[times[0], times[-1]]`` (a trapezoid, an extended trapezoid, or
    an arbitrary waveform given at its raster points). Moments are computed in closed form
    (:meth:`moment`), never by time stepping; both tensors may require grad.
    """

    times: torch.Tensor
    amps: torch.Tensor

    @staticmethod
    def trapezoid(amp: Scalar, rise: Scalar, flat: Scalar, fall: Scalar, delay: Scalar = 0.0):
        """Trapezoid: 0 at ``delay``, ``amp`` from ``delay + rise`` to ``delay + rise + flat``,
        0 at ``delay + rise + flat + fall`` (all in s; ``amp`` in T/m, may require grad)."""
        a = _t(amp, "amp")
        z = torch.zeros((), dtype=a.dtype, device=a.device)

        def tt(v: Scalar) -> torch.Tensor:
            if isinstance(v, torch.Tensor):
                return v.to(device=a.device, dtype=a.dtype)
            return torch.tensor(float(v), dtype=a.dtype, device=a.device)

        t0 = tt(delay)
        t1 = t0 + tt(rise)
        t2 = t1 + tt(flat)
        t3 = t2 + tt(fall)
        return Grad(torch.stack([t0, t1, t2, t3]), torch.stack([z, a, a, z]))

    @property
    def end(self) -> float:
        """Last corner time in s."""
        return _num(self.times[-1])

    def area(self) -> torch.Tensor:
        """``integral G dt`` over the waveform in T s / m (0-dim)."""
        dt = self.times[1:] - self.times[:-1]
        return (0.5 * (self.amps[1:] + self.amps[:-1]) * dt).sum()

    def moment(self, t: torch.Tensor) -> torch.Tensor:
        """``integral_0^t G dt'`` in T s / m at the times ``t`` (s from the block start),
        closed form per linear piece; ``t`` of any shape."""
        t0, t1 = self.times[:-1], self.times[1:]
        a0, a1 = self.amps[:-1], self.amps[1:]
        seg = t1 - t0
        tt = t.unsqueeze(-1)
        # branches chosen from the left at the corners (t == t1 is still "inside"), so that
        # the derivatives w.r.t. corner times are one-sided and consistent across pieces
        u = tt - t0
        inside = (tt > t0) & (tt <= t1)
        safe = torch.where(seg > 0, seg, torch.ones_like(seg))
        part = a0 * u + (a1 - a0) * u * u / (2 * safe)
        full = 0.5 * (a0 + a1) * seg
        zero = torch.zeros_like(part)
        return torch.where(tt > t1, full, torch.where(inside, part, zero)).sum(-1)

    def amp_at(self, t: torch.Tensor) -> torch.Tensor:
        """Amplitude in T/m at the times ``t`` (s from the block start)."""
        t0, t1 = self.times[:-1], self.times[1:]
        a0, a1 = self.amps[:-1], self.amps[1:]
        seg = t1 - t0
        tt = t.unsqueeze(-1)
        inside = (tt >= t0) & (tt < t1) & (seg > 0)
        safe = torch.where(seg > 0, seg, torch.ones_like(seg))
        val = a0 + (a1 - a0) * (tt - t0) / safe
        return torch.where(inside, val, torch.zeros_like(val)).sum(-1)


def moment(g: torch.Tensor | Grad | None, duration: torch.Tensor) -> torch.Tensor | None:
    """Gradient moment of one axis over a block in T s / m: ``g * duration`` for a constant
    ``g``, the closed-form area of a :class:`Grad`; None without a gradient."""
    if g is None:
        return None
    if isinstance(g, Grad):
        return g.area()
    return g * duration


@dataclass
class ADC:
    """``num`` samples at ``delay + (k + 0.5) * dwell`` s from the block start, demodulated by
    ``exp(-i phase)`` (receiver phase in rad)."""

    num: int
    dwell: torch.Tensor
    delay: torch.Tensor
    phase: torch.Tensor


@dataclass
class Block:
    """One event block: optional RF, gradients, ADC, spoiler at the end.

    ``rf``: a hard :class:`RFPulse` (instantaneous, at the block start) or a finite
    :class:`ShapedRF` (samples on the RF raster, simulated as a product of rotations with the
    gradients and relaxation during the pulse). ``gx``, ``gy``, ``gz``: a 0-dim tensor (constant
    over the whole block, T/m) or a piecewise-linear :class:`Grad` (trapezoids with ramps,
    arbitrary and extended-trapezoid waveforms). ``gz`` acts on isochromats through the slice
    (``simulate(..., slice_positions=...)``) and is 0 at z = 0.
    """

    duration: torch.Tensor
    rf: RFPulse | ShapedRF | None = None
    gx: torch.Tensor | Grad | None = None
    gy: torch.Tensor | Grad | None = None
    adc: ADC | None = None
    spoil: bool = False
    gz: torch.Tensor | Grad | None = None
    #: Pulseq labels set or incremented in this block, ``[(kind, name, value)]`` with kind
    #: ``"set"`` or ``"inc"`` (e.g. ``("set", "LIN", 3)``); kept for export and k-space sorting.
    labels: list[tuple[str, str, int]] = field(default_factory=list)

    def tensors(self) -> list[torch.Tensor]:
        out = [self.duration]
        if isinstance(self.rf, RFPulse):
            out += [self.rf.flip, self.rf.phase]
        elif isinstance(self.rf, ShapedRF):
            out += [self.rf.signal, self.rf.phase]
        for g in (self.gx, self.gy, self.gz):
            if isinstance(g, Grad):
                out += [g.times, g.amps]
            elif g is not None:
                out.append(g)
        if self.adc is not None:
            out += [self.adc.dwell, self.adc.delay, self.adc.phase]
        return out

    def with_phase(self, inc: torch.Tensor) -> Block:
        """A copy with ``inc`` (rad) added to the RF and receiver phases (same other tensors)."""
        rf = self.rf
        if isinstance(rf, RFPulse):
            rf = RFPulse(rf.flip, rf.phase + inc, rf.duration)
        elif isinstance(rf, ShapedRF):
            rf = rf.with_phase(rf.phase + inc)
        adc = self.adc
        if adc is not None:
            adc = ADC(adc.num, adc.dwell, adc.delay, adc.phase + inc)
        return Block(
            self.duration, rf, self.gx, self.gy, adc, self.spoil, self.gz, list(self.labels)
        )


@dataclass
class Loop:
    """``blocks`` repeated ``count`` times; repetition ``r`` (0-based) adds ``r * phase_increment``
    to every RF and receiver phase (RF phase cycling). Used for dummy repetitions: the simulator
    applies a loop without ADC in one step (power of its per-voxel affine map)."""

    blocks: list[Block]
    count: int
    phase_increment: torch.Tensor

    def expand(self) -> list[Block]:
        """The flat list of blocks (new phase tensors per repetition, differentiable)."""
        out: list[Block] = []
        for r in range(self.count):
            for b in self.blocks:
                if r == 0:
                    out.append(b)
                    continue
                out.append(b.with_phase(wrapped_multiple(self.phase_increment, r)))
        return out


@dataclass
class Sequence:
    """An event list. ``items`` are :class:`Block` or :class:`Loop`.

    Attributes:
        items: the events in time order.
        kspace_shape: how the ADC samples (in acquisition order) reshape, e.g. ``(n_pe, n_ro)``
            for Cartesian, ``(n_cycles,)`` for a bSSFP voxel sequence,
            ``(n_cycles, n_pe, n_ro)`` for a phase-cycled bSSFP image.
        name: builder name.
        params: builder parameters (floats) for :meth:`describe`.
        system: the hardware limits the sequence was built for (None: idealised, not
            scanner-ready); :func:`~mrphys.physics.pulseq_io.write_seq` writes them.
    """

    items: list[Block | Loop]
    kspace_shape: tuple[int, ...] = ()
    name: str = "custom"
    params: dict[str, Any] = field(default_factory=dict)
    system: System | None = None

    def __post_init__(self) -> None:
        n = self.adc_count
        if not self.kspace_shape:
            self.kspace_shape = (n,)
        check(
            math.prod(self.kspace_shape) == n,
            f"kspace_shape {self.kspace_shape} does not hold the {n} ADC samples of the sequence.",
        )
        for b, _ in self._iter_blocks_counted():
            check(_num(b.duration) >= 0, f"block durations must be >= 0 s; got {_num(b.duration)}.")
            if b.adc is not None:
                end = _num(b.adc.delay) + b.adc.num * _num(b.adc.dwell)
                check(
                    end <= _num(b.duration) * (1 + 1e-6) + 1e-9,
                    f"an ADC ({end:g} s) must end inside its block ({_num(b.duration):g} s).",
                )

    @property
    def blocks(self) -> list[Block]:
        """Flat list of blocks (loops expanded)."""
        out: list[Block] = []
        for it in self.items:
            out += it.expand() if isinstance(it, Loop) else [it]
        return out

    def _iter_blocks_counted(self) -> Iterator[tuple[Block, int]]:
        """Each distinct block once (loop bodies once) with its repetition count."""
        for it in self.items:
            if isinstance(it, Loop):
                for b in it.blocks:
                    yield b, it.count
            else:
                yield it, 1

    @property
    def adc_count(self) -> int:
        """Total number of ADC samples."""
        return sum(c * b.adc.num for b, c in self._iter_blocks_counted() if b.adc is not None)

    @property
    def n_blocks(self) -> int:
        return sum(c for _, c in self._iter_blocks_counted())

    @property
    def duration(self) -> float:
        """Total duration in s."""
        return sum(c * _num(b.duration) for b, c in self._iter_blocks_counted())

    def parameters(self) -> list[torch.Tensor]:
        """The distinct parameter tensors (by identity) of the sequence."""
        seen: dict[int, torch.Tensor] = {}
        for b, _ in self._iter_blocks_counted():
            for t in b.tensors():
                seen.setdefault(id(t), t)
        for it in self.items:
            if isinstance(it, Loop):
                seen.setdefault(id(it.phase_increment), it.phase_increment)
        return list(seen.values())

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> Sequence:
        """A copy on ``device``/``dtype``; shared tensors stay shared (differentiable copy)."""
        memo: dict[int, torch.Tensor] = {}

        def mv(t: torch.Tensor | None) -> torch.Tensor | None:
            if t is None:
                return None
            if id(t) not in memo:
                memo[id(t)] = t.to(device=device, dtype=dtype)
            return memo[id(t)]

        gmemo: dict[int, Grad] = {}
        cdtype = None
        if dtype is not None:
            cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64

        def mvc(t: torch.Tensor) -> torch.Tensor:
            if id(t) not in memo:
                memo[id(t)] = t.to(device=device, dtype=cdtype if t.is_complex() else dtype)
            return memo[id(t)]

        def mvg(g: torch.Tensor | Grad | None) -> torch.Tensor | Grad | None:
            if not isinstance(g, Grad):
                return mv(g)
            if id(g) not in gmemo:
                gmemo[id(g)] = Grad(mv(g.times), mv(g.amps))
            return gmemo[id(g)]

        def mvb(b: Block) -> Block:
            rf = b.rf
            if isinstance(rf, RFPulse):
                rf = RFPulse(mv(rf.flip), mv(rf.phase), rf.duration)
            elif isinstance(rf, ShapedRF):
                rf = ShapedRF(mvc(rf.signal), rf.dwell, rf.delay, mv(rf.phase), rf.freq_offset,
                              rf.use, rf.center)  # fmt: skip
            adc = None
            if b.adc is not None:
                adc = ADC(b.adc.num, mv(b.adc.dwell), mv(b.adc.delay), mv(b.adc.phase))
            return Block(
                mv(b.duration), rf, mvg(b.gx), mvg(b.gy), adc, b.spoil, mvg(b.gz), list(b.labels)
            )

        items: list[Block | Loop] = []
        for it in self.items:
            if isinstance(it, Loop):
                items.append(Loop([mvb(b) for b in it.blocks], it.count, mv(it.phase_increment)))
            else:
                items.append(mvb(it))
        return Sequence(items, tuple(self.kspace_shape), self.name, dict(self.params), self.system)

    def describe(self) -> dict[str, Any]:
        """A JSON-serialisable summary for config files."""
        return {
            "name": self.name,
            "params": {
                k: (_num(v) if isinstance(v, torch.Tensor) else v) for k, v in self.params.items()
            },
            "n_blocks": self.n_blocks,
            "adc_count": self.adc_count,
            "kspace_shape": list(self.kspace_shape),
            "duration_s": self.duration,
        }


# ----------------------------------------------------------------------------------------------
# builders


def _cartesian_readout(
    n: int, fov: float, dt: float, tet: torch.Tensor, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """A Cartesian line with sample ``n//2`` at TE, excited at t = 0 (bSSFP imaging, GRE).

    Args:
        n: matrix size (lines and samples). fov: field of view in m. dt: dwell time in s.
        tet: echo time in s (0-dim tensor, may require grad).
    Returns:
        ``(tp, g_ro, g_pre, gys)``: the prephase/phase-encode duration ``TE - (n//2 + 0.5) dt``
        in s, the readout and prephase amplitudes in T/m, and the phase-encode amplitude of
        each line ``m`` in T/m (``ky = (m - n//2) / fov`` at the readout).
    """
    dk = 1.0 / fov
    tp = tet - (n // 2 + 0.5) * dt
    check(_num(tp) > 0, "te is too short for the readout: lower matrix or readout_dt.")
    g_ro = torch.tensor(float(dk / (GAMMABAR * dt)), dtype=dtype)
    g_pre = -(n // 2 + 0.5) * dk / (GAMMABAR * tp)
    gys = [(m - n // 2) * dk / (GAMMABAR * tp) for m in range(n)]
    return tp, g_ro, g_pre, gys


def _check_matrix(matrix: int) -> int:
    check(
        isinstance(matrix, int) and matrix >= 1,
        f"matrix must be a positive integer; got {matrix!r}.",
    )
    return matrix


def spin_echo(
    matrix: int = 64,
    fov: float = 0.064,
    tr: Scalar = 10.0,
    te: Scalar = 0.04,
    flip1: Scalar = math.pi / 2,
    flip2: Scalar = math.pi,
    readout_dt: float = 1e-4,
    n_dummy: int = 10,
    prephase_start: float | None = None,
    phase1: Scalar = math.pi / 2,
    phase2: Scalar = 0.0,
    spoil: bool = True,
    n_ro: int | None = None,
    system: System | None = None,
    rf_duration: float = 1e-3,
) -> Sequence:
    """Cartesian 2-D spin echo, the SPIN acquisition (METHODS section 2).

    Per TR: RF ``flip1`` (phase ``phase1``) at t = 0; phase encode and read prephase from
    ``prephase_start`` to TE/2 (before the refocusing pulse, so with the sign the 180 flips);
    RF ``flip2`` (phase ``phase2``) at TE/2; readout of ``n_ro`` samples at ``readout_dt``
    with sample ``n_ro//2`` exactly at TE (block from ``TE - (n_ro//2 + 0.5) dt``; SPIN:
    36.75-43.15 ms, samples 36.8..43.1 ms); ideal spoiling at the end of the TR (``spoil``).
    ``n_dummy`` repetitions without ADC (first line's gradients) reach the steady state
    (TR 10 s leaves CSF partly saturated). With the default phases (90_y, 180_x) the echo of a
    voxel at the centre is real and positive:
    ``rho (1 - 2 e^{-(TR-TE/2)/T1} + e^{-TR/T1}) e^{-TE/T2}``.

    Gradients follow from FOV and matrix: ``gammabar * G * dt = 1/fov``.

    Args:
        matrix: phase-encode lines (and readout samples unless ``n_ro``).
        fov: field of view in m (square).
        tr, te: repetition and echo time in s (float or 0-dim tensor, may require grad).
        flip1, flip2: flip angles in rad (may require grad).
        readout_dt: ADC dwell time in s.
        n_dummy: dummy repetitions before the first line.
        prephase_start: start of the prephase/phase-encode lobe in s (ends at TE/2); default
            ``TE/2 - 3.2 ms`` (SPIN: 16.8 ms), or ``TE/4`` when TE/2 is below 6.4 ms.
        phase1, phase2: RF phases in rad.
        spoil: ideal spoiling at the end of each TR.
        n_ro: readout samples (default ``matrix``).
        system: None: the idealised SPIN sequence above. A :class:`System`: scanner-ready
            (block pulses of ``rf_duration`` s after the RF dead time, the 180 centred at TE/2
            after the 90's centre, trapezoids with ramps, the ADC on the readout's flat top,
            rasters; TE and TR checked against their minima; ``prephase_start`` unused).

    Returns:
        a :class:`Sequence` with ``kspace_shape == (matrix, n_ro)``.
    """
    n = _check_matrix(matrix)
    n_ro = n if n_ro is None else _check_matrix(n_ro)
    check(0 < fov < 2, f"fov must be in m, in (0, 2); got {fov}.")
    check(int(n_dummy) >= 0, f"n_dummy must be >= 0; got {n_dummy}.")
    if system is not None:
        return _spin_echo_system(n, n_ro, fov, tr, te, flip1, flip2, readout_dt, n_dummy,
                                 phase1, phase2, spoil, system, rf_duration)  # fmt: skip
    trt, tet = _t(tr, "tr"), _t(te, "te")
    dtype = trt.dtype if trt.is_floating_point() else torch.get_default_dtype()

    def c(x: float) -> torch.Tensor:
        return torch.tensor(float(x), dtype=dtype)

    f1, f2 = _t(flip1, "flip1"), _t(flip2, "flip2")
    p1, p2 = _t(phase1, "phase1"), _t(phase2, "phase2")
    dt = float(readout_dt)
    check(dt > 0, f"readout_dt must be > 0 s; got {dt}.")
    te_f, tr_f = _num(tet), _num(trt)
    if prephase_start is None:
        prephase_start = te_f / 2 - 3.2e-3 if te_f / 2 >= 6.4e-3 else te_f / 4
    ro_start_f = te_f - (n_ro // 2 + 0.5) * dt
    check(
        0 < prephase_start < te_f / 2,
        f"prephase_start must lie in (0, TE/2) = (0, {te_f / 2:g}) s; got {prephase_start}.",
    )
    check(
        ro_start_f > te_f / 2,
        f"the readout ({n_ro} x {dt:g} s) must start after TE/2; TE too short.",
    )
    check(
        ro_start_f + n_ro * dt < tr_f,
        f"TR {tr_f:g} s is too short for TE {te_f:g} s and the readout.",
    )

    # durations (derived tensors, shared by every TR)
    d1 = c(prephase_start)
    d2 = tet / 2 - prephase_start
    ro_start = tet - (n_ro // 2 + 0.5) * dt
    d3 = ro_start - tet / 2
    d4 = c(n_ro * dt)
    d5 = trt - ro_start - n_ro * dt

    dk_x = 1.0 / fov
    dk_y = 1.0 / fov
    g_ro = c(dk_x / (GAMMABAR * dt))
    # after the 180 the phase is conjugated, k -> -k: prephase to +(n_ro//2 + 0.5) dk so that
    # sample k sits at (k - n_ro//2) dk; phase encode of line m to -(m - n//2) dk.
    g_pre = (n_ro // 2 + 0.5) * dk_x / (GAMMABAR * d2)
    lines = []
    for m in range(n):
        gy = -(m - n // 2) * dk_y / (GAMMABAR * d2)
        lines.append(gy)
    zero = c(0.0)
    adc = ADC(n_ro, c(dt), zero, zero)
    rf1 = RFPulse(f1, p1)
    rf2 = RFPulse(f2, p2)

    def tr_blocks(gy: torch.Tensor, with_adc: bool) -> list[Block]:
        return [
            Block(d1, rf=rf1),
            Block(d2, gx=g_pre, gy=gy),
            Block(d3, rf=rf2),
            Block(d4, gx=g_ro, adc=adc if with_adc else None),
            Block(d5, spoil=spoil),
        ]

    items: list[Block | Loop] = []
    if n_dummy > 0:
        items.append(Loop(tr_blocks(lines[0], False), int(n_dummy), zero))
    for gy in lines:
        items += tr_blocks(gy, True)
    params = dict(
        matrix=n,
        fov=fov,
        tr=tr_f,
        te=te_f,
        flip1=_num(f1),
        flip2=_num(f2),
        readout_dt=dt,
        n_dummy=int(n_dummy),
        prephase_start=prephase_start,
        phase1=_num(p1),
        phase2=_num(p2),
        spoil=spoil,
        n_ro=n_ro,
    )
    return Sequence(items, (n, n_ro), "spin_echo", params, system)


def _increments(n_cycles: int | None, phase_increment, dtype: torch.dtype) -> list[torch.Tensor]:
    """RF phase increments: the one given, or ``pi (2j - 1) / N`` for ``j = 1..N``."""
    if phase_increment is not None:
        return [_t(phase_increment, "phase_increment")]
    check(
        n_cycles is not None and int(n_cycles) >= 1,
        f"n_cycles must be a positive integer; got {n_cycles!r}.",
    )
    ncyc = int(n_cycles)
    return [torch.tensor(math.pi * (2 * j - 1) / ncyc, dtype=dtype) for j in range(1, ncyc + 1)]


def bssfp(
    tr: Scalar = 4.8e-3,
    te: Scalar | None = None,
    flip: Scalar = math.radians(15.0),
    n_cycles: int | None = 12,
    phase_increment: Scalar | None = None,
    n_dummy: int = 2000,
    matrix: int | None = None,
    fov: float = 0.064,
    readout_dt: float = 1e-5,
    phase0: Scalar = math.pi / 2,
    system: System | None = None,
    rf_duration: float = 2e-4,
) -> Sequence:
    """Phase-cycled balanced SSFP (METHODS section 3).

    Phase cycle ``j = 1..N`` is a separate steady state: RF pulse ``n`` has phase
    ``phase0 + n * phi_j`` with ``phi_j = pi (2j - 1)/N`` (or the single ``phase_increment``),
    and the receiver phase follows the RF phase (minus :data:`RX_OFFSET`). ``n_dummy``
    repetitions without ADC precede the acquired ones of each cycle (the simulator applies them
    in one step).

    ``matrix=None`` (voxel/relaxometry mode): no gradients, one ADC sample at TE per cycle,
    ``kspace_shape == (n_cycles,)``. ``matrix=N``: Cartesian balanced imaging, one line per TR,
    sample ``N//2`` at TE, all gradient moments rewound in every TR,
    ``kspace_shape == (n_cycles, N, N)``.

    For any ``phase0`` the signal equals :func:`mrphys.physics.ssfp.pc_bssfp_signal` at
    ``theta = -2 pi db0 TR`` (tested; docs/physics.md).

    Args:
        tr, te: repetition and echo time in s (``te`` default ``tr/2``).
        flip: flip angle in rad.
        n_cycles: number of phase cycles N (ignored when ``phase_increment`` is given).
        phase_increment: one RF phase increment in rad instead of N cycles.
        n_dummy: dummy repetitions per cycle.
        matrix: None for one ADC per cycle, or the Cartesian matrix size.
        fov: field of view in m.
        readout_dt: dwell time in s (imaging mode; the voxel mode uses a 1 us sample).
        phase0: RF phase of pulse 0 in rad.
        system: None: the idealised sequence (hard pulses, instantaneous gradients). A
            :class:`System`: scanner-ready (block pulse of ``rf_duration`` s, trapezoids with
            ramps, zero net gradient moment per TR on every axis, rasters; TE measured from the
            RF centre; TE and TR checked against their minima; see :func:`gre`).
    """
    if system is not None:
        return _bssfp_system(tr, te, flip, n_cycles, phase_increment, n_dummy, matrix, fov,
                             readout_dt, phase0, system, rf_duration)  # fmt: skip
    trt = _t(tr, "tr")
    tet = trt / 2 if te is None else _t(te, "te")
    dtype = trt.dtype if trt.is_floating_point() else torch.get_default_dtype()
    ft, p0 = _t(flip, "flip"), _t(phase0, "phase0")
    check(int(n_dummy) >= 0, f"n_dummy must be >= 0; got {n_dummy}.")

    def c(x: float) -> torch.Tensor:
        return torch.tensor(float(x), dtype=dtype)

    incs = _increments(n_cycles, phase_increment, dtype)
    tr_f, te_f = _num(trt), _num(tet)
    check(0 < te_f < tr_f, f"te must lie in (0, tr) = (0, {tr_f:g}) s; got {te_f:g}.")
    zero = c(0.0)
    items: list[Block | Loop] = []
    if matrix is None:
        sdt = 2e-6  # one sample centred at TE; delay te - 1 us stays on the 1 us Pulseq raster
        check(te_f > sdt / 2, "te is too short.")
        adc_delay = tet - sdt / 2
        for inc in incs:
            rf = RFPulse(ft, p0)
            if n_dummy > 0:
                items.append(Loop([Block(trt, rf=rf)], int(n_dummy), inc))
            ph = p0 + wrapped_multiple(inc, int(n_dummy))
            items.append(
                Block(trt, rf=RFPulse(ft, ph), adc=ADC(1, c(sdt), adc_delay, ph - RX_OFFSET))
            )
        shape: tuple[int, ...] = (len(incs),)
    else:
        n = _check_matrix(matrix)
        check(0 < fov < 2, f"fov must be in m, in (0, 2); got {fov}.")
        dt = float(readout_dt)
        tp, g_ro, g_pre, gys = _cartesian_readout(n, fov, dt, tet, dtype)
        t_ro = c(n * dt)
        t_rw = trt - tp - n * dt
        check(_num(t_rw) > 0, "tr is too short for te and the readout.")
        # rewind the whole readout moment: -(pre + ro)
        g_rw_x = -(g_pre * tp + g_ro * n * dt) / t_rw
        adc_t = ADC(n, c(dt), zero, zero)
        for inc in incs:

            def tr_blocks(r: int, gy: torch.Tensor, with_adc: bool, inc=inc) -> list[Block]:
                ph = p0 + wrapped_multiple(inc, r)
                adc = ADC(n, adc_t.dwell, zero, ph - RX_OFFSET) if with_adc else None
                return [
                    Block(tp, rf=RFPulse(ft, ph), gx=g_pre, gy=gy),
                    Block(t_ro, gx=g_ro, adc=adc),
                    Block(t_rw, gx=g_rw_x, gy=-gy * tp / t_rw),
                ]

            if n_dummy > 0:
                items.append(Loop(tr_blocks(0, gys[n // 2], False), int(n_dummy), inc))
            for m, gy in enumerate(gys):
                items += tr_blocks(n_dummy + m, gy, True)
        shape = (len(incs), n, n)
    params = dict(
        tr=tr_f,
        te=te_f,
        flip=_num(ft),
        n_cycles=len(incs),
        phase_increments=[_num(i) for i in incs],
        n_dummy=int(n_dummy),
        matrix=matrix,
        fov=fov,
        readout_dt=readout_dt,
        phase0=_num(p0),
    )
    return Sequence(items, shape, "bssfp", params)


def gre(
    tr: Scalar = 0.01,
    te: Scalar = 0.005,
    flip: Scalar = math.radians(15.0),
    matrix: int = 64,
    fov: float = 0.064,
    spoiling: str = "ideal",
    readout_dt: float = 2e-5,
    n_dummy: int = 100,
    rf_spoil_increment: float = math.radians(117.0),
    phase0: Scalar = math.pi / 2,
    system: System | None = None,
    rf_duration: float = 2e-4,
) -> Sequence:
    """Cartesian spoiled (or unspoiled) gradient echo.

    Per TR: RF (phase ``phase0`` plus the RF-spoiling phase), prephase + phase encode lobe,
    readout with sample ``matrix//2`` at TE, then a rest block. ``spoiling``:

    * ``"ideal"``: transverse magnetisation set to 0 at the end of each TR;
    * ``"rf"``: quadratic RF phase ``phase0 + inc * r (r + 1) / 2`` (receiver follows) plus a
      readout spoiler lobe of 4 cycles per voxel in the rest block: realistic, needs several
      isochromats per voxel (``simulate(..., isochromats=...)``) to spoil;
    * ``"none"``: no spoiling (gradient moments not rewound).

    The receiver follows the RF phase minus :data:`RX_OFFSET`: a voxel at the centre gives a real
    positive echo.
    ``n_dummy`` repetitions without ADC (first line) precede the lines.

    ``system``: None keeps the idealised sequence above (instantaneous gradients, hard pulse at
    the TR start: the closed-form model, not scanner-ready). A :class:`System` gives the
    scanner-ready layout: a block pulse of ``rf_duration`` s after the RF dead time, trapezoids
    with ramps within the limits, the ADC on the readout's flat top, everything on its raster;
    TE (RF centre to the k = 0 sample) and TR are checked against the minimum the limits allow
    (``te=None``: the minimum). ``params`` holds ``te_actual``, ``tr_actual``, ``te_min``,
    ``tr_min``. Timings are then floats (not differentiable); flip and phases stay tensors.
    Returns a :class:`Sequence` with ``kspace_shape == (matrix, matrix)``.
    """
    n = _check_matrix(matrix)
    check(
        spoiling in ("ideal", "rf", "none"),
        f"spoiling must be 'ideal', 'rf' or 'none'; got {spoiling!r}.",
    )
    check(0 < fov < 2, f"fov must be in m, in (0, 2); got {fov}.")
    if system is not None:
        return _gre_system(tr, te, flip, n, fov, spoiling, readout_dt, n_dummy,
                           rf_spoil_increment, phase0, system, rf_duration)  # fmt: skip
    trt, tet = _t(tr, "tr"), _t(te, "te")
    dtype = trt.dtype if trt.is_floating_point() else torch.get_default_dtype()
    ft, p0 = _t(flip, "flip"), _t(phase0, "phase0")

    def c(x: float) -> torch.Tensor:
        return torch.tensor(float(x), dtype=dtype)

    dt = float(readout_dt)
    tp, g_ro, g_pre, gys = _cartesian_readout(n, fov, dt, tet, dtype)
    t_rest = trt - tp - n * dt
    check(_num(t_rest) > 0, "tr is too short for te and the readout.")
    zero = c(0.0)
    g_sp = c(4 * n * (1.0 / fov) / GAMMABAR) / t_rest if spoiling == "rf" else None
    items: list[Block | Loop] = []

    def rf_phase(r: int) -> torch.Tensor:
        if spoiling == "rf":
            return p0 + (rf_spoil_increment * r * (r + 1) / 2) % (2 * math.pi)
        return p0

    def tr_blocks(r: int, gy: torch.Tensor, with_adc: bool) -> list[Block]:
        ph = rf_phase(r)
        adc = ADC(n, c(dt), zero, ph - RX_OFFSET) if with_adc else None
        return [
            Block(tp, rf=RFPulse(ft, ph), gx=g_pre, gy=gy),
            Block(c(n * dt), gx=g_ro, adc=adc),
            Block(t_rest, gx=g_sp, spoil=spoiling == "ideal"),
        ]

    if spoiling == "rf":
        for r in range(int(n_dummy)):
            items += tr_blocks(r, gys[0], False)
    elif n_dummy > 0:
        items.append(Loop(tr_blocks(0, gys[0], False), int(n_dummy), zero))
    for m, gy in enumerate(gys):
        items += tr_blocks(int(n_dummy) + m, gy, True)
    params = dict(
        tr=_num(trt),
        te=_num(tet),
        flip=_num(ft),
        matrix=n,
        fov=fov,
        spoiling=spoiling,
        readout_dt=dt,
        n_dummy=int(n_dummy),
        phase0=_num(p0),
    )
    return Sequence(items, (n, n), "gre", params)


# ----------------------------------------------------------------------------------------------
# scanner-ready layouts (a System given to a builder)


def _blk(d: float, dtype: torch.dtype) -> torch.Tensor:
    return torch.tensor(float(d), dtype=dtype)


def _rf_block(flip, phase, duration: float, system, use: str, dtype) -> tuple[Block, float]:
    """A block pulse after the RF dead time, the block ending after its ringdown time.
    Returns the block and the time of the pulse centre from the block start (s)."""
    from mrphys.physics import rf as rfm
    from mrphys.physics.system import ceil_raster

    p = rfm.block_pulse(flip, duration, system, phase=phase, use=use)
    d = ceil_raster(p.delay + p.duration + system.rf_ringdown_time, system.block_raster)
    return Block(_blk(d, dtype), rf=p), p.delay + p.t_center


class _Readout:
    """A readout trapezoid with the ADC on its flat top, k = 0 at sample ``n//2``."""

    def __init__(self, n: int, fov: float, dt: float, system, dtype) -> None:
        from mrphys.physics.system import ceil_raster, on_raster

        check(
            abs(on_raster(dt, system.adc_raster) - dt) < 1e-3 * system.adc_raster,
            f"readout_dt {dt:g} s is not on the {system.adc_raster:g} s ADC raster.",
        )
        # a dwell too short for max_grad is lengthened to the shortest that fits (1 us steps)
        dt_min = ceil_raster(1.0 / fov / (GAMMABAR * system.max_grad), 1e-6)
        dt = max(dt, dt_min)
        amp = 1.0 / fov / (GAMMABAR * dt)  # T/m
        self.rise = max(ceil_raster(amp / system.max_slew, system.grad_raster), system.grad_raster)
        self.flat = ceil_raster(n * dt, system.grad_raster)
        delay = on_raster(self.rise + (self.flat - n * dt) / 2, system.rf_raster)
        self.duration = ceil_raster(2 * self.rise + self.flat, system.block_raster)
        self.amp = amp
        self.t_center = delay + (n // 2 + 0.5) * dt  # k = 0 sample from the block start
        # moment up to the k = 0 sample, and over the whole lobe (T s / m)
        self.m_center = amp * self.rise / 2 + amp * (self.t_center - self.rise)
        self.area = amp * (self.rise + self.flat)
        self.grad = Grad.trapezoid(torch.tensor(amp, dtype=dtype), self.rise, self.flat, self.rise)
        self.n, self.dt, self.delay, self.dtype = n, dt, delay, dtype

        # one dwell and delay tensor for every line: the simulator builds one ADC matrix
        self._dwell = torch.tensor(dt, dtype=dtype)
        self._delay = torch.tensor(delay, dtype=dtype)

    def adc(self, phase: torch.Tensor) -> ADC:
        return ADC(self.n, self._dwell, self._delay, phase)


def _lobes_duration(areas: list[float], system, extra: float = 0.0) -> float:
    """The shortest common duration (block raster) of trapezoids of ``areas``."""
    from mrphys.physics.system import ceil_raster, trapezoid_times

    d = max([trapezoid_times(a, system)[2] for a in areas if a] + [system.grad_raster])
    return ceil_raster(d + extra, system.block_raster)


def _fit(name: str, value: float, minimum: float, unit_ms: bool = True) -> None:
    check(
        value >= minimum - 1e-9,
        f"{name} {value * 1e3:.4g} ms is below the minimum {minimum * 1e3:.4g} ms that the "
        "system limits allow for this matrix, FOV and readout.",
    )


def _cartesian_system(
    kind: str,
    n: int,
    fov: float,
    tr: float,
    te: float | None,
    flip,
    phase0,
    dt: float,
    system,
    rf_duration: float,
    dtype,
) -> tuple[list, Callable, dict]:
    """Timing of one TR of the scanner-ready GRE (``kind`` ``gre``/``gre-rf``/``gre-none``)
    or balanced SSFP (``bssfp``): RF block, prephase/phase-encode block, readout block,
    rewinder/spoiler block. Returns the per-line phase-encode areas, a factory
    ``tr_blocks(gy_area, rf_phase, rx_phase, with_adc)`` and the actual timings."""
    from mrphys.physics.system import on_raster, trapezoid

    ro = _Readout(n, fov, dt, system, dtype)
    dk = 1.0 / fov / GAMMABAR  # T s / m per k-space step
    pe = [(m - n // 2) * dk for m in range(n)]
    pre = -ro.m_center
    probe, c1 = _rf_block(flip, phase0, rf_duration, system, "excitation", dtype)
    d1 = float(probe.duration)
    d2_min = _lobes_duration([pre, max(abs(p) for p in pe)], system)
    te_min = d1 - c1 + d2_min + ro.t_center
    te = te_min if te is None else te
    _fit("TE", te, te_min)
    d2 = on_raster(te - (d1 - c1) - ro.t_center, system.block_raster)
    if kind == "bssfp":
        rw = ro.m_center - ro.area
        d4_min = _lobes_duration([rw, max(abs(p) for p in pe)], system)
    elif kind == "gre-rf":
        sp = 4 * n * dk
        d4_min = _lobes_duration([sp], system)
    else:
        d4_min = system.block_raster
    tr_min = d1 + d2 + ro.duration + d4_min
    _fit("TR", tr, tr_min)
    d4 = on_raster(tr - d1 - d2 - ro.duration, system.block_raster)
    g_pre = trapezoid(pre, system, d2, dtype=dtype)
    g_pe = {}
    g_rw_y = {}
    for a in pe:
        g_pe[a] = trapezoid(a, system, d2, dtype=dtype) if a else None
        g_rw_y[a] = trapezoid(-a, system, d4, dtype=dtype) if a and kind == "bssfp" else None
    g4 = None
    if kind == "bssfp":
        g4 = trapezoid(rw, system, d4, dtype=dtype)
    elif kind == "gre-rf":
        g4 = trapezoid(sp, system, d4, dtype=dtype)
    t2, t3, t4 = _blk(d2, dtype), _blk(ro.duration, dtype), _blk(d4, dtype)
    rf_tmpl = probe.rf

    def tr_blocks(a: float, ph: torch.Tensor, rx: torch.Tensor | None) -> list[Block]:
        return [
            Block(probe.duration, rf=rf_tmpl.with_phase(ph)),
            Block(t2, gx=g_pre, gy=g_pe[a]),
            Block(t3, gx=ro.grad, adc=None if rx is None else ro.adc(rx)),
            Block(t4, gx=g4, gy=g_rw_y[a], spoil=kind == "gre"),
        ]

    timing = dict(
        te_actual=d1 - c1 + d2 + ro.t_center,
        tr_actual=d1 + d2 + ro.duration + d4,
        te_min=te_min,
        tr_min=tr_min,
        readout_dt_actual=ro.dt,
    )
    return pe, tr_blocks, timing


def _gre_system(tr, te, flip, n, fov, spoiling, dt, n_dummy, inc, phase0, system, rf_duration):
    dtype = torch.get_default_dtype()
    ft, p0 = _t(flip, "flip"), _t(phase0, "phase0")
    kind = {"ideal": "gre", "rf": "gre-rf", "none": "gre-none"}[spoiling]
    pe, tr_blocks, timing = _cartesian_system(
        kind, n, fov, _num(tr), None if te is None else _num(te), ft, p0, float(dt), system,
        rf_duration, dtype,
    )  # fmt: skip

    def rf_phase(r: int) -> torch.Tensor:
        if spoiling == "rf":
            return p0 + (inc * r * (r + 1) / 2) % (2 * math.pi)
        return p0

    items: list[Block | Loop] = []
    if spoiling == "rf":
        for r in range(int(n_dummy)):
            items += tr_blocks(pe[0], rf_phase(r), None)
    elif n_dummy > 0:
        items.append(Loop(tr_blocks(pe[0], p0, None), int(n_dummy), torch.zeros((), dtype=dtype)))
    for m, a in enumerate(pe):
        ph = rf_phase(int(n_dummy) + m)
        items += tr_blocks(a, ph, ph - RX_OFFSET)
    params = dict(tr=timing["tr_actual"], te=timing["te_actual"], flip=_num(ft), matrix=n, fov=fov,
                  spoiling=spoiling, readout_dt=float(dt), n_dummy=int(n_dummy),
                  phase0=_num(p0), rf_duration=rf_duration, **timing)  # fmt: skip
    return Sequence(items, (n, n), "gre", params, system)


def _bssfp_system(tr, te, flip, n_cycles, phase_increment, n_dummy, matrix, fov, dt, phase0,
                  system, rf_duration):  # fmt: skip
    from mrphys.physics.system import on_raster

    dtype = torch.get_default_dtype()
    ft, p0 = _t(flip, "flip"), _t(phase0, "phase0")
    check(int(n_dummy) >= 0, f"n_dummy must be >= 0; got {n_dummy}.")
    incs = _increments(n_cycles, phase_increment, dtype)
    tr_f = _num(tr)
    te_f = tr_f / 2 if te is None else _num(te)
    items: list[Block | Loop] = []
    if matrix is None:
        rfb, c1 = _rf_block(ft, p0, rf_duration, system, "excitation", dtype)
        d1 = float(rfb.duration)
        sdt = 2e-6
        delay = on_raster(te_f - (d1 - c1) - sdt / 2, system.rf_raster)
        te_min = d1 - c1 + system.adc_dead_time + sdt / 2
        _fit("TE", te_f, te_min)
        d2 = on_raster(tr_f - d1, system.block_raster)
        tr_min = d1 + delay + sdt + system.adc_dead_time
        _fit("TR", tr_f, tr_min)
        t2 = _blk(d2, dtype)
        dly, dwell = _blk(delay, dtype), _blk(sdt, dtype)
        for inc in incs:
            if n_dummy > 0:
                items.append(Loop([rfb, Block(t2)], int(n_dummy), inc))
            ph = p0 + wrapped_multiple(inc, int(n_dummy))
            items += [
                Block(rfb.duration, rf=rfb.rf.with_phase(ph)),
                Block(t2, adc=ADC(1, dwell, dly, ph - RX_OFFSET)),
            ]
        shape: tuple[int, ...] = (len(incs),)
        timing = dict(te_actual=d1 - c1 + delay + sdt / 2, tr_actual=d1 + d2, te_min=te_min,
                      tr_min=tr_min)  # fmt: skip
    else:
        n = _check_matrix(matrix)
        check(0 < fov < 2, f"fov must be in m, in (0, 2); got {fov}.")
        pe, tr_blocks, timing = _cartesian_system(
            "bssfp", n, fov, tr_f, te_f, ft, p0, float(dt), system, rf_duration, dtype
        )
        for inc in incs:
            if n_dummy > 0:
                items.append(Loop(tr_blocks(pe[n // 2], p0, None), int(n_dummy), inc))
            for m, a in enumerate(pe):
                ph = p0 + wrapped_multiple(inc, int(n_dummy) + m)
                items += tr_blocks(a, ph, ph - RX_OFFSET)
        shape = (len(incs), n, n)
    params = dict(tr=tr_f, te=timing["te_actual"], flip=_num(ft), n_cycles=len(incs),
                  phase_increments=[_num(i) for i in incs], n_dummy=int(n_dummy),
                  matrix=matrix, fov=fov, readout_dt=dt, phase0=_num(p0),
                  rf_duration=rf_duration, **timing)  # fmt: skip
    return Sequence(items, shape, "bssfp", params, system)


def _spin_echo_system(n, n_ro, fov, tr, te, flip1, flip2, dt, n_dummy, phase1, phase2, spoil,
                      system, rf_duration):  # fmt: skip
    from mrphys.physics.system import on_raster, trapezoid

    dtype = torch.get_default_dtype()
    f1, f2 = _t(flip1, "flip1"), _t(flip2, "flip2")
    p1, p2 = _t(phase1, "phase1"), _t(phase2, "phase2")
    tr_f, te_f = _num(tr), _num(te)
    dt = float(dt)
    check(dt > 0, f"readout_dt must be > 0 s; got {dt}.")
    ro = _Readout(n_ro, fov, dt, system, dtype)
    b90, c1 = _rf_block(f1, p1, rf_duration, system, "excitation", dtype)
    b180, c3 = _rf_block(f2, p2, rf_duration, system, "refocusing", dtype)
    d1, d3 = float(b90.duration), float(b180.duration)
    dk = 1.0 / fov / GAMMABAR
    # after the 180 the phase is conjugated: prephase to +m_center, phase encode to -(m - n//2)
    pre = ro.m_center
    pe = [-(m - n // 2) * dk for m in range(n)]
    d2_min = _lobes_duration([pre, max(abs(p) for p in pe)], system)
    half_min = max(d1 - c1 + d2_min + c3, d3 - c3 + ro.t_center)
    _fit("TE", te_f, 2 * half_min)
    d2 = on_raster(te_f / 2 - (d1 - c1) - c3, system.block_raster)
    gap = on_raster(te_f / 2 - (d3 - c3) - ro.t_center, system.block_raster)
    tr_min = d1 + d2 + d3 + gap + ro.duration + system.block_raster
    _fit("TR", tr_f, tr_min)
    d6 = on_raster(tr_f - (d1 + d2 + d3 + gap + ro.duration), system.block_raster)
    g_pre = trapezoid(pre, system, d2, dtype=dtype)
    g_pe = {a: (trapezoid(a, system, d2, dtype=dtype) if a else None) for a in pe}
    t2, tg, t5, t6 = (_blk(v, dtype) for v in (d2, gap, ro.duration, d6))
    zero = torch.zeros((), dtype=dtype)

    def tr_blocks(a: float, with_adc: bool) -> list[Block]:
        out = [b90, Block(t2, gx=g_pre, gy=g_pe[a]), b180]
        if gap > 0:
            out.append(Block(tg))
        out += [
            Block(t5, gx=ro.grad, adc=ro.adc(zero) if with_adc else None),
            Block(t6, spoil=spoil),
        ]
        return out

    items: list[Block | Loop] = []
    if n_dummy > 0:
        items.append(Loop(tr_blocks(pe[0], False), int(n_dummy), zero))
    for a in pe:
        items += tr_blocks(a, True)
    te_act = 2 * (d1 - c1 + d2 + c3)
    params = dict(matrix=n, fov=fov, tr=tr_f, te=te_act, flip1=_num(f1), flip2=_num(f2),
                  readout_dt=ro.dt, n_dummy=int(n_dummy), phase1=_num(p1), phase2=_num(p2),
                  spoil=spoil, n_ro=n_ro, rf_duration=rf_duration, te_actual=te_act,
                  tr_actual=d1 + d2 + d3 + gap + ro.duration + d6, te_min=2 * half_min,
                  tr_min=tr_min)  # fmt: skip
    return Sequence(items, (n, n_ro), "spin_echo", params, system)
