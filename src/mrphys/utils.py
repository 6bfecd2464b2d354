"""Small shared helpers: device choice, seeds and seeded generators."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from mrphys.errors import MrphysError

#: the largest seed a user may give (``--seed`` takes 0 .. 2^63 - 1)
SEED_MAX = 2**63 - 1
#: derived seeds (``seed * k + unit``) are reduced modulo this: the 64-bit seed space of a
#: ``torch.Generator``, which reads every value below it unchanged (so every seed that worked
#: before the reduction gives the same numbers)
_SEED_SPACE = 2**64


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """Map ``auto|cpu|cuda`` to a :class:`torch.device`; ``auto`` picks CUDA when present."""
    if isinstance(name, torch.device):
        return name
    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if str(name).startswith("cuda"):
        if not torch.cuda.is_available():
            raise MrphysError("--device cuda was requested but no CUDA device is available.")
        return torch.device(name)
    raise MrphysError(f"device must be one of auto, cpu, cuda; got {name!r}.")


def check_seed(seed: object, name: str = "seed") -> int:
    """``seed`` as an int in ``0 .. 2^63 - 1``; anything else raises :class:`MrphysError`."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise MrphysError(f"{name} must be an integer in 0 .. 2^63 - 1; got {seed!r}.")
    if not 0 <= seed <= SEED_MAX:
        raise MrphysError(f"{name} must lie in 0 .. 2^63 - 1; got {seed}.")
    return int(seed)


def derived_seed(seed: int, factor: int = 1, offset: int = 0) -> int:
    """The seed ``seed * factor + offset`` of a sub-stream (an epoch, a chunk), reduced modulo
    2^64 so that it never overflows a generator's 64-bit seed (unchanged below 2^64)."""
    return (int(seed) * int(factor) + int(offset)) % _SEED_SPACE


def make_generator(seed: int | None, device: torch.device | str = "cpu") -> torch.Generator:
    """A :class:`torch.Generator` on ``device`` seeded with ``seed`` (0 when None)."""
    g = torch.Generator(device=device)
    g.manual_seed(0 if seed is None else int(seed))
    return g


def cache_dir() -> Path:
    """Folder for cached models and data: ``$MRPHYS_CACHE``, else ``$XDG_CACHE_HOME/mrphys``,
    else ``~/.cache/mrphys``."""
    if os.environ.get("MRPHYS_CACHE"):
        return Path(os.environ["MRPHYS_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mrphys"
