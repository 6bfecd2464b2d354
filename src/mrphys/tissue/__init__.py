"""Tissue: what is imaged (phantoms, dynamic series)."""

from mrphys.tissue.phantom import Phantom, spin_echo_image
from mrphys.tissue.shepp_logan import gach_shepp_logan, spin_shepp_logan

__all__ = ["Phantom", "gach_shepp_logan", "spin_echo_image", "spin_shepp_logan"]
