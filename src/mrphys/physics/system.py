"""Scanner limits (:class:`System`) and the gradient and RF shapes a scanner can play.

A :class:`System` holds the hardware limits that every scanner-ready builder of
:mod:`mrphys.physics.sequence` respects: maximum gradient amplitude and slew rate, the gradient,
RF, ADC and block rasters, and the RF dead / ringdown and ADC dead times (defaults of a common
3 T scanner). :func:`trapezoid` designs the shortest trapezoid of a given area (or one of a given
duration) with every corner on the gradient raster; :func:`block_pulse`, :func:`sinc_pulse` and
:func:`gauss_pulse` give RF shapes on the RF raster as :class:`~mrphys.physics.sequence.ShapedRF`.

Units: SI (T/m, T/m/s, s, rad); gradient areas in T s / m (the moment ``integral G dt``; k-space
is ``GAMMABAR * area``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mrphys.errors import check

__all__ = ["System", "trapezoid", "trapezoid_times", "on_raster", "ceil_raster"]


@dataclass(frozen=True)
class System:
    """Hardware limits (SI units). Defaults: a common clinical 3 T scanner.

    Attributes:
        max_grad: maximum gradient amplitude per axis in T/m (40 mT/m).
        max_slew: maximum slew rate per axis in T/m/s (150 T/m/s).
        grad_raster: gradient raster in s (10 us): trapezoid corners lie on it.
        rf_raster: RF raster in s (1 us): RF samples and RF / ADC start times lie on it.
        adc_raster: ADC dwell raster in s (100 ns).
        block_raster: block duration raster in s (10 us).
        rf_dead_time: time before an RF pulse in its block in s (100 us).
        rf_ringdown_time: time after an RF pulse in its block in s (30 us).
        adc_dead_time: time before and after an ADC in its block in s (10 us).
    """

    max_grad: float = 40e-3
    max_slew: float = 150.0
    grad_raster: float = 10e-6
    rf_raster: float = 1e-6
    adc_raster: float = 100e-9
    block_raster: float = 10e-6
    rf_dead_time: float = 100e-6
    rf_ringdown_time: float = 30e-6
    adc_dead_time: float = 10e-6

    def __post_init__(self) -> None:
        for name in ("max_grad", "max_slew", "grad_raster", "rf_raster", "adc_raster"):
            v = getattr(self, name)
            check(math.isfinite(v) and v > 0, f"System.{name} must be > 0; got {v}.")
        check(self.max_grad < 1.0, f"System.max_grad is in T/m (e.g. 0.04); got {self.max_grad}.")
        for name in ("rf_dead_time", "rf_ringdown_time", "adc_dead_time"):
            v = getattr(self, name)
            check(math.isfinite(v) and 0 <= v < 0.01, f"System.{name} must be in [0, 10 ms) s.")

    @property
    def min_rise(self) -> float:
        """Shortest ramp from 0 to ``max_grad`` in s, on the gradient raster."""
        return ceil_raster(self.max_grad / self.max_slew, self.grad_raster)


def on_raster(t: float, raster: float) -> float:
    """``t`` rounded to the nearest multiple of ``raster``."""
    return round(t / raster) * raster


def ceil_raster(t: float, raster: float) -> float:
    """The smallest multiple of ``raster`` that is >= ``t`` (up to 1e-9 raster of float noise)."""
    return math.ceil(t / raster - 1e-9) * raster


def trapezoid_times(area: float, system: System, duration: float | None = None) -> tuple:
    """Ramp and flat times of a trapezoid of ``|area|`` (T s/m) within the limits.

    Args:
        area: the gradient moment in T s / m (its sign is ignored here).
        system: the limits.
        duration: total duration in s (on the gradient raster); None: the shortest.

    Returns:
        ``(rise, flat, duration)`` in s, each on the gradient raster (fall = rise); the amplitude
        is ``area / (rise + flat)``. With ``duration`` too short for the area, a
        :class:`~mrphys.errors.MrphysError` names the shortest duration.
    """
    a = abs(float(area))
    r = system.grad_raster
    if duration is None:
        if a == 0:
            return r, 0.0, 2 * r
        # triangle if the peak stays below max_grad, else trapezoid at max_grad
        rise = ceil_raster(math.sqrt(a / system.max_slew), r)
        if a / rise <= system.max_grad:
            return rise, 0.0, 2 * rise
        rise = system.min_rise
        flat = ceil_raster(a / system.max_grad - rise, r)
        return rise, flat, 2 * rise + flat
    duration = on_raster(duration, r)
    shortest = trapezoid_times(a, system)[2]
    check(
        duration >= shortest - 1e-12,
        f"a gradient lobe of {a * 1e3:.4g} mT ms/m needs at least {shortest * 1e3:.4g} ms with "
        f"{system.max_grad * 1e3:g} mT/m and {system.max_slew:g} T/m/s; got {duration * 1e3:.4g}"
        " ms.",
    )
    # the shortest ramp that keeps the amplitude and the slew within the limits
    rise = r
    while True:
        flat = duration - 2 * rise
        if flat < -1e-12:
            rise -= r
            flat = duration - 2 * rise
            break
        amp = a / (rise + flat) if rise + flat > 0 else 0.0
        if amp <= system.max_grad * (1 + 1e-9) and amp / rise <= system.max_slew * (1 + 1e-9):
            break
        rise += r
    return rise, max(on_raster(flat, r), 0.0), duration


def trapezoid(
    area: torch.Tensor | float,
    system: System,
    duration: float | None = None,
    delay: float = 0.0,
    dtype: torch.dtype | None = None,
):
    """A trapezoid :class:`~mrphys.physics.sequence.Grad` of moment ``area`` (T s / m).

    The timings come from :func:`trapezoid_times` (floats on the raster, for the largest
    ``|area|`` the caller plans for when ``duration`` is given); the amplitude
    ``area / (rise + flat)`` stays a differentiable function of a tensor ``area``.
    """
    from mrphys.physics.sequence import Grad

    a = area if isinstance(area, torch.Tensor) else torch.tensor(float(area), dtype=dtype)
    rise, flat, _ = trapezoid_times(float(a.detach()), system, duration)
    amp = a / (rise + flat)
    return Grad.trapezoid(amp, rise, flat, rise, delay)
