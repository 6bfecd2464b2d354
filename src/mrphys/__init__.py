"""mrphys: physics-driven deep learning for MRI.

Data flows one way: tissue -> physics -> applications (recon, relax, design) -> command line.
Units are SI inside the code (s, T, T/m, Hz, rad, m); complex data are ``torch.complex64``.

Importing mrphys has no side effects: it sets no environment variable and does not import torch.
The ``mrphys`` command sets the OpenMP wait policy before torch is loaded; library users who want
the same call :func:`mrphys.runtime.openmp_wait_defaults` before their first ``import torch``.
"""

from mrphys.errors import MrphysError

__version__ = "0.1.0"

__all__ = ["MrphysError", "__version__"]
