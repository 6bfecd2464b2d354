"""The one error type a user sees: a clear sentence naming the input and what was expected."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where a tensor is checked, not on `import mrphys`
    import torch


class MrphysError(ValueError):
    """Wrong input: the message is one sentence naming the input and what was expected.

    The command line prints the message and exits with status 2 (no traceback).
    """


def check(condition: bool, message: str) -> None:
    """Raise :class:`MrphysError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise MrphysError(message)


def check_finite(name: str, x: torch.Tensor | float) -> None:
    """Raise if ``x`` holds NaN or infinity."""
    import torch

    if isinstance(x, torch.Tensor):
        ok = bool(torch.isfinite(x).all()) if x.numel() else True
    else:
        ok = math.isfinite(float(x))
    check(ok, f"{name} contains NaN or infinite values; expected finite numbers.")


def check_range(name: str, x: torch.Tensor | float, lo: float, hi: float, unit: str = "") -> None:
    """Raise unless every value of ``x`` lies in ``[lo, hi]``."""
    import torch

    check_finite(name, x)
    if isinstance(x, torch.Tensor):
        if x.numel() == 0:
            return
        xmin, xmax = float(x.min()), float(x.max())
    else:
        xmin = xmax = float(x)
    u = f" {unit}" if unit else ""
    check(
        lo <= xmin and xmax <= hi,
        f"{name} must lie in [{lo:g}, {hi:g}]{u}; got values from {xmin:g} to {xmax:g}{u}.",
    )
