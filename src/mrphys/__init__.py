"""mrphys: physics-driven deep learning for MRI.

Data flows one way: tissue -> physics -> applications (recon, relax, design) -> command line.
Units are SI inside the code (s, T, T/m, Hz, rad, m); complex data are ``torch.complex64``.
"""

import os

# Before torch is first imported: OpenMP threads that sleep instead of spinning while they wait.
# On a busy 2-core machine spinning threads made torch 20-45x slower (benchmarks/bloch.py,
# docs/physics.md); a value the user sets wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from mrphys.errors import MrphysError  # noqa: E402

__version__ = "0.1.0"

__all__ = ["MrphysError", "__version__"]
