"""Resource limits: refuse work that cannot fit in this machine's memory or would run for days.

The estimates live beside the code that allocates (``simulate_volume``, ``simulate_radial``, the
training data ...); this module holds only the memory probe and the checks, so that every refusal
reads the same: one sentence naming what was estimated, the limit and the option to change.

The available memory is read once per process from ``/proc/meminfo`` (``MemAvailable``), else
from ``os.sysconf`` (free physical pages). ``MRPHYS_MEMORY_LIMIT_GB`` overrides it (tests, shared
servers that want a smaller share).
"""

from __future__ import annotations

import functools
import logging
import os

from mrphys.errors import MrphysError

log = logging.getLogger(__name__)

__all__ = [
    "MAX_HOURS",
    "available_memory",
    "check_memory",
    "check_time",
    "format_bytes",
]

#: the longest run started without a question: a week
MAX_HOURS = 7 * 24.0
#: environment variable that sets the memory limit in GB (10^9 bytes)
LIMIT_ENV = "MRPHYS_MEMORY_LIMIT_GB"


@functools.lru_cache(maxsize=1)
def _probe_memory() -> int:
    """Bytes of memory available to a new allocation now (read once per process)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # the value is in kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, AttributeError):
        return 1 << 62  # unknown: an unknown limit never refuses a run


def available_memory() -> int:
    """The memory limit in bytes: ``$MRPHYS_MEMORY_LIMIT_GB`` when set, else the memory the
    operating system reports as available (``MemAvailable``, read once per process)."""
    text = os.environ.get(LIMIT_ENV)
    if text:
        try:
            gb = float(text)
        except ValueError:
            gb = float("nan")
        if not gb > 0 or gb == float("inf"):
            raise MrphysError(f"{LIMIT_ENV} must be a positive number of GB; got {text!r}.")
        return int(gb * 1e9)
    return _probe_memory()


def format_bytes(n: float) -> str:
    """``1.5e9`` -> ``"1.5 GB"`` (powers of 1000, as the limit variable)."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n / 1e3:.3g} kB"


def check_memory(estimate: float, what: str, option: str) -> None:
    """Raise :class:`MrphysError` when ``estimate`` bytes exceed the available memory.

    Args:
        estimate: estimated peak memory of the work in bytes.
        what: the work, for the sentence (``"the simulated volume"``).
        option: what the user can change (``"--matrix or --slices"``).
    """
    limit = available_memory()
    log.debug("%s: estimated %s, limit %s", what, format_bytes(estimate), format_bytes(limit))
    if estimate > limit:
        raise MrphysError(
            f"{what} needs about {format_bytes(estimate)} of memory but {format_bytes(limit)} "
            f"is available (set {LIMIT_ENV} to change the limit); reduce {option}."
        )


def check_time(hours: float, what: str, option: str, limit_hours: float = MAX_HOURS) -> None:
    """Raise :class:`MrphysError` when a run is estimated to take longer than ``limit_hours``."""
    log.debug("%s: estimated %.3g h (limit %.3g h)", what, hours, limit_hours)
    if hours > limit_hours:
        raise MrphysError(
            f"{what} would take about {hours:,.0f} hours, more than the {limit_hours:g}-hour "
            f"limit; reduce {option}."
        )
