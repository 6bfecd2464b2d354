"""Process-wide runtime settings, applied by the command line (never on ``import mrphys``).

Library users who call the simulators directly get the same OpenMP behaviour as the ``mrphys``
command by calling :func:`openmp_wait_defaults` before their first ``import torch`` (the OpenMP
runtime reads these variables once, when torch's library is loaded).
"""

from __future__ import annotations

import os

__all__ = ["openmp_wait_defaults"]


def openmp_wait_defaults() -> None:
    """How torch's OpenMP threads wait between operations; set before torch is first imported.

    The simulators issue thousands of small element-wise operations. Threads that go to sleep
    after each one (``OMP_WAIT_POLICY=PASSIVE``) pay a wake-up of ~0.1 ms per operation: on a quiet
    2-core machine that made the 1,000-phantom SPIN simulation 2.5x slower than threads that spin
    briefly (``GOMP_SPINCOUNT=10000``). Threads that spin for long (the libgomp default) were
    20-45x slower on a machine busy with other jobs. So: a short spin, or sleeping threads where
    the load average already exceeds 1.5x the cores (measured at load 8 on 2 cores: sleeping 68 s,
    short spin 116 s for 1,000 phantoms). A value the user sets wins (benchmarks/bloch.py,
    docs/physics.md).
    """
    if "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        return
    try:
        busy = os.getloadavg()[0] > 1.5 * (os.cpu_count() or 1)
    except OSError:  # no load average on this platform
        busy = False
    if busy:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    else:
        os.environ["GOMP_SPINCOUNT"] = "10000"
