"""What is imaged: per-voxel tissue maps on a Cartesian grid.

The spin-echo image of a phantom (the SPIN ground truth) is a signal model and lives with the
other closed forms: :func:`mrphys.physics.signal.spin_echo_image`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch

from mrphys.errors import MrphysError, check, check_finite

#: the per-voxel maps of a phantom
_MAPS = ("rho", "t1", "t2", "b1", "db0")


@dataclass
class Phantom:
    """Tissue maps of a 2-D slice (optionally a batch of slices).

    Attributes:
        rho: proton density, arbitrary units, shape ``(B, Y, X)`` or ``(Y, X)``.
        t1: longitudinal relaxation time in s, same shape; 0 where there is no tissue.
        t2: transverse relaxation time in s, same shape; 0 where there is no tissue.
        fov: field of view ``(fov_y, fov_x)`` in m.
        b1: relative transmit field (1 = nominal flip angle), same shape, or None.
        db0: off-resonance in Hz, same shape, or None.

    All maps must be on one device; maps of different dtypes (float32 beside float64) are
    promoted to the common dtype (``torch.promote_types``).

    Voxel ``(i, j)`` sits at ``y = (i - Y//2) * fov_y / Y``, ``x = (j - X//2) * fov_x / X``, the
    convention under which a centred FFT of Cartesian k-space gives the image back
    (see :meth:`positions`).
    """

    rho: torch.Tensor
    t1: torch.Tensor
    t2: torch.Tensor
    fov: tuple[float, float] = (0.064, 0.064)
    b1: torch.Tensor | None = None
    db0: torch.Tensor | None = None
    names: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        shape = self.rho.shape
        check(
            self.rho.dim() in (2, 3),
            f"rho must have shape (B, Y, X) or (Y, X); got {tuple(shape)}.",
        )
        for name in ("t1", "t2", "b1", "db0"):
            v = getattr(self, name)
            if v is None:
                continue
            if not isinstance(v, torch.Tensor):
                raise MrphysError(f"{name} must be a torch.Tensor; got {type(v).__name__}.")
            check(
                v.shape == shape,
                f"{name} must have the shape of rho {tuple(shape)}; got {tuple(v.shape)}.",
            )
        self._common_dtype()
        for name in ("rho", "t1", "t2"):
            check_finite(name, getattr(self, name))
        check(
            bool((self.t1 >= 0).all()) and bool((self.t2 >= 0).all()), "t1 and t2 must be >= 0 s."
        )
        check(
            len(self.fov) == 2 and min(self.fov) > 0,
            f"fov must be two positive lengths in m; got {self.fov}.",
        )
        check(
            max(self.fov) < 2.0,
            f"fov is in metres and must be below 2 m; got {self.fov} (mm given?).",
        )
        if float(self.t1.detach().max()) > 100 or float(self.t2.detach().max()) > 100:
            raise MrphysError(
                "t1 and t2 are in seconds and must be below 100 s (milliseconds given?)."
            )

    def _common_dtype(self) -> None:
        """Put every map on one device (else refuse) and one dtype (promoted, as torch would)."""
        maps = {n: getattr(self, n) for n in _MAPS if getattr(self, n) is not None}
        devices = sorted({str(v.device) for v in maps.values()})
        check(
            len(devices) == 1,
            f"the phantom maps must be on one device; got {', '.join(devices)} (use .to(device)).",
        )
        dtypes = {v.dtype for v in maps.values()}
        if len(dtypes) == 1:
            return
        common = functools.reduce(torch.promote_types, dtypes)
        if not common.is_floating_point:  # integer maps beside complex ones: keep torch's choice
            common = torch.promote_types(common, torch.get_default_dtype())
        for n, v in maps.items():
            setattr(self, n, v.to(common))

    @property
    def batched(self) -> bool:
        return self.rho.dim() == 3

    @property
    def matrix(self) -> tuple[int, int]:
        return int(self.rho.shape[-2]), int(self.rho.shape[-1])

    @property
    def device(self) -> torch.device:
        return self.rho.device

    @property
    def dtype(self) -> torch.dtype:
        return self.rho.dtype

    def positions(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Voxel centres ``(y, x)`` in m, each of shape ``(Y, X)``."""
        ny, nx = self.matrix
        dy, dx = self.fov[0] / ny, self.fov[1] / nx
        iy = torch.arange(ny, device=self.device, dtype=self.dtype) - ny // 2
        ix = torch.arange(nx, device=self.device, dtype=self.dtype) - nx // 2
        y, x = torch.meshgrid(iy * dy, ix * dx, indexing="ij")
        return y, x

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Phantom:
        """The phantom with ``fn`` applied to every map (``b1``, ``db0`` only where present)."""

        def opt(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else fn(t)

        maps = {"rho": fn(self.rho), "t1": fn(self.t1), "t2": fn(self.t2)}
        return replace(self, **maps, b1=opt(self.b1), db0=opt(self.db0))

    def to(self, device=None, dtype=None) -> Phantom:
        return self._map(lambda t: t.to(device=device, dtype=dtype))

    def __getitem__(self, idx) -> Phantom:
        """Select phantoms of a batch: ``ph[0]``, ``ph[2:5]``."""
        check(self.batched, "indexing needs a batched phantom of shape (B, Y, X).")
        return self._map(lambda t: t[idx])

    def __len__(self) -> int:
        return int(self.rho.shape[0]) if self.batched else 1

    def as_batch(self) -> Phantom:
        """The same phantom with a leading batch dimension."""
        return self if self.batched else self._map(lambda t: t.unsqueeze(0))
