"""Tissue: what is imaged (phantoms, dynamic series)."""

from mrphys.tissue.phantom import Phantom
from mrphys.tissue.shepp_logan import gach_shepp_logan, spin_shepp_logan

__all__ = ["Phantom", "gach_shepp_logan", "spin_shepp_logan"]
