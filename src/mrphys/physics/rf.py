"""RF pulse shapes on the RF raster and slice-selective excitation blocks.

Every function returns a :class:`~mrphys.physics.sequence.ShapedRF` whose samples (in Hz,
``gammabar * B1``) are a differentiable function of the flip angle (rad, float or 0-dim
tensor): ``2 pi * sum(signal) * dwell = flip`` (small-tip convention). The pulse starts at
``system.rf_dead_time`` in its block. Formulas (facts, not code, of the usual designs):

* block: constant amplitude over ``duration``;
* sinc: ``sinc(tbw (t - T/2) / T)`` times the apodisation window
  ``(1 - a) + a cos(2 pi (t - T/2) / T)`` (``a = 0.5``: Hann), bandwidth ``tbw / T`` Hz;
* Gaussian: ``exp(-pi (BW (t - T/2))^2)`` with ``BW = tbw / T`` Hz.
"""

from __future__ import annotations

import math

import torch

from mrphys.errors import check
from mrphys.physics.sequence import GAMMABAR, Block, Grad, Scalar, ShapedRF, _t
from mrphys.physics.system import System, ceil_raster

__all__ = ["block_pulse", "sinc_pulse", "gauss_pulse", "slice_selective", "bandwidth"]


def _samples(duration: float, system: System) -> tuple[int, torch.Tensor]:
    n = round(duration / system.rf_raster)
    check(n >= 1, f"an RF pulse of {duration:g} s is shorter than the RF raster.")
    check(
        abs(n * system.rf_raster - duration) < 1e-3 * system.rf_raster,
        f"the RF duration {duration:g} s is not on the {system.rf_raster:g} s RF raster.",
    )
    tc = (torch.arange(n, dtype=torch.float64) + 0.5) * system.rf_raster - duration / 2
    return n, tc


def _scaled(shape: torch.Tensor, flip: Scalar, phase: Scalar, system: System, use: str):
    f = _t(flip, "flip")
    shape = shape.to(f.dtype)
    norm = 2 * math.pi * float(shape.sum()) * system.rf_raster
    sig = f * (shape / norm)
    cdt = torch.complex128 if f.dtype == torch.float64 else torch.complex64
    sig = torch.complex(sig, torch.zeros_like(sig)).to(cdt)
    return ShapedRF(sig, system.rf_raster, system.rf_dead_time, _t(phase, "phase"), 0.0, use)


def block_pulse(
    flip: Scalar,
    duration: float,
    system: System,
    phase: Scalar = 0.0,
    use: str = "excitation",
) -> ShapedRF:
    """A rectangular pulse of ``duration`` s (on the RF raster) and flip angle ``flip`` rad."""
    n, _ = _samples(duration, system)
    return _scaled(torch.ones(n, dtype=torch.float64), flip, phase, system, use)


def sinc_pulse(
    flip: Scalar,
    duration: float,
    system: System,
    tbw: float = 4.0,
    apodization: float = 0.5,
    phase: Scalar = 0.0,
    use: str = "excitation",
) -> ShapedRF:
    """An apodised sinc pulse: time-bandwidth product ``tbw``, bandwidth ``tbw / duration`` Hz."""
    check(tbw > 0, f"tbw must be > 0; got {tbw}.")
    n, tc = _samples(duration, system)
    x = tbw * tc / duration
    shape = torch.sinc(x) * (
        (1 - apodization) + apodization * torch.cos(2 * math.pi * tc / duration)
    )
    return _scaled(shape, flip, phase, system, use)


def gauss_pulse(
    flip: Scalar,
    duration: float,
    system: System,
    tbw: float = 4.0,
    phase: Scalar = 0.0,
    use: str = "excitation",
) -> ShapedRF:
    """A Gaussian pulse ``exp(-pi (BW t)^2)`` with ``BW = tbw / duration`` Hz."""
    check(tbw > 0, f"tbw must be > 0; got {tbw}.")
    n, tc = _samples(duration, system)
    shape = torch.exp(-math.pi * (tbw / duration * tc) ** 2)
    return _scaled(shape, flip, phase, system, use)


def bandwidth(rf: ShapedRF, tbw: float) -> float:
    """Nominal bandwidth ``tbw / duration`` in Hz of a sinc or Gaussian pulse."""
    return tbw / rf.duration


def slice_selective(
    rf: ShapedRF,
    thickness: float,
    tbw: float,
    system: System,
    dtype: torch.dtype | None = None,
) -> tuple[Block, torch.Tensor]:
    """A slice-selective excitation block and the moment its rephaser must have.

    The slice gradient ``Gz = BW / (gammabar * thickness)`` (``BW = tbw / T``) is a trapezoid
    whose flat top holds the pulse; the pulse starts after the RF dead time and the ramp, and the
    block ends after the ringdown time and the fall, on the block raster.

    Returns:
        ``(block, rephase_area)``: the :class:`Block` (``rf`` and ``gz``) and the z moment in
        T s / m that refocuses the slice (minus the slice gradient's moment after the pulse's
        centre), for a following block.
    """
    check(0 < thickness < 0.5, f"thickness must be in m, in (0, 0.5); got {thickness}.")
    dt = dtype or torch.get_default_dtype()
    g = tbw / rf.duration / (GAMMABAR * thickness)  # T/m
    check(
        g <= system.max_grad,
        f"a {thickness * 1e3:g} mm slice with this pulse needs {g * 1e3:.3g} mT/m, above "
        f"max_grad {system.max_grad * 1e3:g} mT/m: use a longer pulse or a thicker slice.",
    )
    rise = ceil_raster(g / system.max_slew, system.grad_raster)
    delay = ceil_raster(max(system.rf_dead_time, rise), system.grad_raster)
    flat = ceil_raster(rf.duration, system.grad_raster)
    rf = ShapedRF(rf.signal, rf.dwell, delay, rf.phase, rf.freq_offset, rf.use, rf.center)
    gz = Grad.trapezoid(torch.tensor(g, dtype=dt), rise, flat, rise, delay - rise)
    end = max(delay + rf.duration + system.rf_ringdown_time, delay + flat + rise)
    dur = ceil_raster(end, system.block_raster)
    after = g * (flat - rf.t_center) + g * rise / 2  # moment after the pulse centre
    return Block(torch.tensor(dur, dtype=dt), rf=rf, gz=gz), torch.tensor(-after, dtype=dt)
