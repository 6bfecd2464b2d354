"""Receive coil sensitivities and the SENSE encoding operator.

:func:`birdcage_maps` builds smooth synthetic sensitivities of ``C`` loop coils spaced evenly on a
circle around the object (the usual "birdcage" simulation: magnitude falling off as the inverse
distance to the coil, phase turning with the azimuth). :class:`SenseOp` multiplies an image series
by the maps and applies any per-coil Fourier encoding (:class:`~mrphys.physics.nufft.RadialNUFFT`
or :class:`~mrphys.physics.fourier.CartesianFFT`).
"""

from __future__ import annotations

import math

import torch

from mrphys.errors import MrphysError, check, check_finite
from mrphys.physics.fourier import CartesianFFT
from mrphys.physics.linop import Linop
from mrphys.physics.nufft import RadialNUFFT


def birdcage_maps(
    n_coils: int,
    im_size: tuple[int, int],
    radius: float = 1.5,
    dtype: torch.dtype = torch.complex64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Synthetic birdcage coil sensitivities, ``(C, Y, X)`` complex.

    Coil ``c`` sits at angle ``2 pi c / C`` on a circle of ``radius`` (in units of half the field
    of view; the image spans ``[-1, 1)`` on both axes, so ``radius > 1`` puts the coils outside
    the field of view). Its raw sensitivity at position ``r`` is ``exp(i phi_c(r)) / |r - r_c|``
    with ``phi_c`` the azimuth of ``r - r_c`` plus the coil angle. The maps are then divided by
    the root-sum-of-squares, so ``sum_c |S_c|^2 = 1`` at every pixel (exactly, up to rounding):
    the coil-combined adjoint of :class:`SenseOp` returns the image itself.

    Args:
        n_coils: number of coils ``C >= 1``.
        im_size: image size ``(Y, X)``.
        radius: coil circle radius relative to half the field of view (> 1).
        dtype: complex dtype of the result.
        device: device of the result.
    """
    check(int(n_coils) >= 1, f"n_coils must be a positive integer; got {n_coils}.")
    check(
        len(im_size) == 2 and all(int(s) > 0 for s in im_size),
        f"im_size must be two positive sizes (Y, X); got {tuple(im_size)}.",
    )
    check_finite("radius", radius)
    check(radius > 1.0, f"radius must exceed 1 (coils outside the image); got {radius}.")
    ny, nx = int(im_size[0]), int(im_size[1])
    real = torch.float64
    y = (torch.arange(ny, dtype=real, device=device) - ny // 2) / (ny / 2)
    x = (torch.arange(nx, dtype=real, device=device) - nx // 2) / (nx / 2)
    ang = torch.arange(int(n_coils), dtype=real, device=device) * (2 * math.pi / int(n_coils))
    dy = y[None, :, None] - radius * torch.sin(ang)[:, None, None]  # (C, Y, 1)
    dx = x[None, None, :] - radius * torch.cos(ang)[:, None, None]  # (C, 1, X)
    dist = torch.sqrt(dy**2 + dx**2)
    phase = torch.atan2(dy, dx) + ang[:, None, None]
    maps = torch.polar(1.0 / dist, phase)
    rss = torch.sqrt((maps.abs() ** 2).sum(0, keepdim=True))
    return (maps / rss).to(dtype)


class SenseOp(Linop):
    """SENSE encoding ``A = F S``: coil maps then a per-coil Fourier encoding.

    Args:
        maps: coil sensitivities ``(C, Y, X)`` complex.
        encoding: a :class:`~mrphys.physics.nufft.RadialNUFFT` (image ``(..., T, Y, X)`` ->
            ``(..., T, K)``) or a :class:`~mrphys.physics.fourier.CartesianFFT` (``(..., Y, X)``
            -> ``(..., Y, X)``; a per-frame mask is given as ``(T, 1, Y, X)``).

    Shapes:
        radial: image ``(..., T, Y, X)`` -> k-space ``(..., T, C, K)``.
        Cartesian: image ``(..., T, Y, X)`` -> k-space ``(..., T, C, Y, X)``.

    The adjoint combines the coils: ``A^H y = sum_c conj(S_c) F^H y_c``. Device and dtype follow
    the input (the maps are moved and cast as needed). Differentiable through autograd.
    """

    def __init__(self, maps: torch.Tensor, encoding: Linop):
        maps = torch.as_tensor(maps)
        check(
            maps.ndim == 3 and maps.is_complex(),
            f"coil maps must be complex (C, Y, X); got {tuple(maps.shape)} {maps.dtype}.",
        )
        check_finite("coil maps", maps)
        if isinstance(encoding, RadialNUFFT):
            im = encoding.im_size
            self.radial = True
        elif isinstance(encoding, CartesianFFT):
            im = encoding.shape
            self.radial = False
        else:
            raise MrphysError(
                f"SenseOp encoding must be a RadialNUFFT or CartesianFFT; got "
                f"{type(encoding).__name__}."
            )
        check(
            tuple(maps.shape[1:]) == tuple(im),
            f"coil maps must have the encoding's image size {tuple(im)}; got {tuple(maps.shape)}.",
        )
        self.maps = maps
        self.encoding = encoding
        self.n_coils = int(maps.shape[0])
        self.im_size = tuple(int(s) for s in im)
        if self.radial:
            self.ishape = encoding.ishape
            self.oshape = (encoding.n_frames, self.n_coils, encoding.n_k)
        else:
            self.ishape = self.im_size
            self.oshape = (self.n_coils,) + self.im_size

    def _maps(self, x: torch.Tensor) -> torch.Tensor:
        return self.maps.to(device=x.device, dtype=x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Image ``(..., T, Y, X)`` -> ``(..., T, C, K)`` (radial) or ``(..., T, C, Y, X)``."""
        check(
            x.ndim >= 3 and tuple(x.shape[-2:]) == self.im_size,
            f"SenseOp input must have shape (..., T, {self.im_size[0]}, {self.im_size[1]}); "
            f"got {tuple(x.shape)}.",
        )
        if not x.is_complex():
            x = x.to(torch.complex128 if x.dtype == torch.float64 else torch.complex64)
        xc = x.unsqueeze(-3) * self._maps(x)  # (..., T, C, Y, X)
        if self.radial:
            k = self.encoding.forward(xc.movedim(-3, -4))  # (..., C, T, K)
            return k.movedim(-3, -2)  # (..., T, C, K)
        return self.encoding.forward(xc)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """k-space ``(..., T, C, K)`` or ``(..., T, C, Y, X)`` -> image ``(..., T, Y, X)``."""
        if not y.is_complex():
            y = y.to(torch.complex128 if y.dtype == torch.float64 else torch.complex64)
        if self.radial:
            check(
                y.ndim >= 3 and tuple(y.shape[-3:]) == self.oshape,
                f"SenseOp k-space must have shape (..., {self.oshape[0]}, {self.n_coils}, "
                f"{self.oshape[2]}) (frames, coils, samples); got {tuple(y.shape)}.",
            )
            xc = self.encoding.adjoint(y.movedim(-2, -3)).movedim(-4, -3)  # (..., T, C, Y, X)
        else:
            check(
                y.ndim >= 4 and tuple(y.shape[-3:]) == self.oshape,
                f"SenseOp k-space must have shape (..., T, {self.n_coils}, {self.im_size[0]}, "
                f"{self.im_size[1]}); got {tuple(y.shape)}.",
            )
            xc = self.encoding.adjoint(y)
        return (xc * self._maps(xc).conj()).sum(-3)
