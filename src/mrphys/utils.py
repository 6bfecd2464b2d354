"""Small shared helpers: device choice and seeded generators."""

from __future__ import annotations

import torch

from mrphys.errors import MrphysError


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


def make_generator(seed: int | None, device: torch.device | str = "cpu") -> torch.Generator:
    """A :class:`torch.Generator` on ``device`` seeded with ``seed`` (0 when None)."""
    g = torch.Generator(device=device)
    g.manual_seed(0 if seed is None else int(seed))
    return g
