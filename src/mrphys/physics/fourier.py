"""Cartesian Fourier encoding: the centred orthonormal 2-D FFT with an optional sampling mask.

Convention (shared with :mod:`mrphys.physics.nufft`): the image index ``n`` runs over
``0..N-1`` with the centre at ``N // 2``; k-space index ``m`` likewise, so that

    y[m] = 1/sqrt(Ny*Nx) * sum_n x[n] * exp(-i * 2*pi * (m - N//2) . (n - N//2) / N)

which is ``fftshift(fft2(ifftshift(x), norm="ortho"))``. The operator is unitary without a mask.
"""

from __future__ import annotations

import copy

import torch

from mrphys.errors import MrphysError, check
from mrphys.physics.linop import Linop, as_complex


def fft2c(x: torch.Tensor, norm: str = "ortho") -> torch.Tensor:
    """Centred 2-D FFT over the last two dims: ``(..., Y, X) -> (..., Y, X)``.

    ``norm`` is torch's: ``"ortho"`` (default, unitary), ``"backward"`` (no scaling forward).
    """
    x = torch.fft.ifftshift(x, dim=(-2, -1))
    x = torch.fft.fft2(x, norm=norm)
    return torch.fft.fftshift(x, dim=(-2, -1))


def ifft2c(y: torch.Tensor, norm: str = "ortho") -> torch.Tensor:
    """Inverse of :func:`fft2c` (the adjoint for ``norm="ortho"``): ``(..., Y, X) -> (..., Y, X)``.

    ``norm="backward"`` divides by ``Y X`` (numpy's ``ifft2``; the SPIN networks' convention).
    """
    y = torch.fft.ifftshift(y, dim=(-2, -1))
    y = torch.fft.ifft2(y, norm=norm)
    return torch.fft.fftshift(y, dim=(-2, -1))


def centred_idft_matrix(n: int, dtype: torch.dtype = torch.complex128) -> torch.Tensor:
    """Centred 1-D inverse DFT matrix ``(n, n)`` (``norm="backward"``):
    ``A @ v = fftshift(ifft(ifftshift(v)))``."""
    eye = torch.eye(n, dtype=dtype)
    return torch.fft.fftshift(torch.fft.ifft(torch.fft.ifftshift(eye, dim=0), dim=0), dim=0)


class CartesianFFT(Linop):
    """``A = M F``: centred orthonormal 2-D FFT ``F`` followed by a sampling mask ``M``.

    Args:
        shape: image shape ``(Y, X)``.
        mask: optional sampling mask broadcastable to ``(..., Y, X)`` (bool or 0/1 real); masked
            k-space is set to zero (the output keeps the full ``(Y, X)`` grid). A mask with
            leading dims (e.g. ``(T, 1, Y, X)`` for a per-frame mask beside a coil dim) broadcasts
            against the data.

    Shapes: image ``(..., Y, X)`` complex -> k-space ``(..., Y, X)`` complex; any leading batch,
    frame or coil dims pass through (:meth:`on_coils` states the coil axis in ``ishape``). Device
    and dtype follow the input.
    """

    def __init__(self, shape: tuple[int, int], mask: torch.Tensor | None = None):
        check(
            len(shape) == 2 and all(int(s) > 0 for s in shape),
            f"CartesianFFT shape must be two positive sizes (Y, X); got {tuple(shape)}.",
        )
        self.shape = (int(shape[0]), int(shape[1]))
        if mask is not None:
            mask = torch.as_tensor(mask)
            if tuple(mask.shape[-2:]) != self.shape:
                raise MrphysError(
                    f"CartesianFFT mask must end in the image shape {self.shape}; "
                    f"got {tuple(mask.shape)}."
                )
        self.mask = mask
        self.ishape = self.shape
        self.oshape = self.shape

    def on_coils(self, n_coils: int) -> CartesianFFT:
        """The same encoding of coil images ``(..., C, Y, X) -> (..., C, Y, X)`` (the FFT acts on
        the last two axes; a per-frame mask ``(T, 1, Y, X)`` broadcasts over the coils)."""
        check(int(n_coils) >= 1, f"n_coils must be a positive integer; got {n_coils}.")
        v = copy.copy(self)
        v.ishape = v.oshape = (int(n_coils),) + self.shape
        return v

    def _check(self, x: torch.Tensor, what: str) -> None:
        nd = len(self.ishape)
        check(
            x.ndim >= nd and tuple(x.shape[-nd:]) == self.ishape,
            f"CartesianFFT {what} must have shape (..., {', '.join(map(str, self.ishape))}); "
            f"got {tuple(x.shape)}.",
        )

    def _apply_mask(self, y: torch.Tensor) -> torch.Tensor:
        if self.mask is None:
            return y
        m = self.mask.to(device=y.device)
        if m.dtype == torch.bool:
            return torch.where(m, y, torch.zeros((), dtype=y.dtype, device=y.device))
        return y * m.to(dtype=y.real.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Image ``(..., Y, X)`` -> masked k-space ``(..., Y, X)``."""
        self._check(x, "input")
        return self._apply_mask(fft2c(as_complex(x)))

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """k-space ``(..., Y, X)`` -> image ``(..., Y, X)`` (mask applied first)."""
        self._check(y, "k-space")
        return ifft2c(self._apply_mask(as_complex(y)))
