"""mrphys: physics-driven deep learning for MRI.

Data flows one way: tissue -> physics -> applications (recon, relax, design) -> command line.
Units are SI inside the code (s, T, T/m, Hz, rad, m); complex data are ``torch.complex64``.
"""

from mrphys.errors import MrphysError

__version__ = "0.1.0"

__all__ = ["MrphysError", "__version__"]
