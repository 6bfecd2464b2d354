"""Receive coil sensitivities and the SENSE encoding operator.

:func:`birdcage_maps` builds smooth synthetic sensitivities of ``C`` loop coils spaced evenly on a
circle around the object (the usual "birdcage" simulation: magnitude falling off as the inverse
distance to the coil, phase turning with the azimuth). :class:`CoilMultiply` multiplies an image
by the maps, and :class:`SenseOp` composes it with any Fourier encoding of coil images:
``SenseOp(maps, E) = E.on_coils(C) @ CoilMultiply(maps)`` for
:class:`~mrphys.physics.nufft.RadialNUFFT` and :class:`~mrphys.physics.fourier.CartesianFFT`
alike.
"""

from __future__ import annotations

import math

import torch

from mrphys.errors import check, check_finite
from mrphys.physics.linop import Linop, as_complex


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


def loop_coil_maps(
    n_coils: int,
    im_size: tuple[int, int],
    seed: int = 0,
    radius: float = 1.25,
    dtype: torch.dtype = torch.complex64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Receive sensitivities of rectangular loop coils by the Biot-Savart law, ``(C, Y, X)``.

    A model the map estimators do not assume (unlike :func:`birdcage_maps`, not a closed-form
    smooth function): coil ``c`` is a rectangular wire loop in the plane tangent to a cylinder of
    ``radius`` (half-FOV units; the image spans ``[-1, 1)`` as in :func:`birdcage_maps`) at
    azimuth ``2 pi c / C`` plus a random jitter, its width ``0.9`` of the arc per coil, its
    length along ``z`` random in ``[0.8, 1.6]``. The field ``B`` of each straight side at the
    image plane ``z = 0`` is the closed-form Biot-Savart segment field
    ``(u x r1) / |u x r1|^2 (u . r1/|r1| - u . r2/|r2|)`` (unit current, ``u`` the unit side
    direction, ``r1``, ``r2`` from its ends); the receive sensitivity is the transverse part
    ``B_x - i B_y`` times a random coil phase and gain in ``[0.7, 1.3]``. Normalised to
    ``sum_c |S_c|^2 = 1`` at every pixel.

    The same ``seed`` gives the same coils on any grid (the maps are evaluated at the pixel
    centres ``(n - N//2) / (N/2)``), so a finer grid samples the same continuous sensitivities.
    """
    check(int(n_coils) >= 1, f"n_coils must be a positive integer; got {n_coils}.")
    check(
        len(im_size) == 2 and all(int(s) > 0 for s in im_size),
        f"im_size must be two positive sizes (Y, X); got {tuple(im_size)}.",
    )
    check(radius > 1.0, f"radius must exceed 1 (coils outside the image); got {radius}.")
    real = torch.float64
    g = torch.Generator().manual_seed(int(seed))
    c = int(n_coils)
    jitter = (torch.rand(c, generator=g, dtype=real) - 0.5) * (math.pi / c) * 0.3
    half_z = 0.4 + 0.4 * torch.rand(c, generator=g, dtype=real)
    gain = 0.7 + 0.6 * torch.rand(c, generator=g, dtype=real)
    phase0 = 2 * math.pi * torch.rand(c, generator=g, dtype=real)
    ny, nx = int(im_size[0]), int(im_size[1])
    y = (torch.arange(ny, dtype=real) - ny // 2) / (ny / 2)
    x = (torch.arange(nx, dtype=real) - nx // 2) / (nx / 2)
    pts = torch.stack(
        [x[None, :].expand(ny, nx), y[:, None].expand(ny, nx), torch.zeros(ny, nx, dtype=real)],
        -1,
    )  # (Y, X, 3) as (x, y, z)
    maps = []
    for i in range(c):
        phi = 2 * math.pi * i / c + float(jitter[i])
        centre = torch.tensor([radius * math.cos(phi), radius * math.sin(phi), 0.0], dtype=real)
        tang = torch.tensor([-math.sin(phi), math.cos(phi), 0.0], dtype=real)
        ez = torch.tensor([0.0, 0.0, 1.0], dtype=real)
        hw = 0.9 * radius * math.sin(math.pi / max(c, 2))
        hz = float(half_z[i])
        corners = [
            centre - hw * tang - hz * ez,
            centre + hw * tang - hz * ez,
            centre + hw * tang + hz * ez,
            centre - hw * tang + hz * ez,
        ]
        b = torch.zeros(ny, nx, 3, dtype=real)
        for a, e in zip(corners, corners[1:] + corners[:1], strict=True):
            u = (e - a) / torch.linalg.vector_norm(e - a)
            r1, r2 = pts - a, pts - e
            cross = torch.linalg.cross(u.expand_as(r1), r1)
            d2 = (cross**2).sum(-1, keepdim=True)
            cos1 = (r1 @ u)[..., None] / torch.linalg.vector_norm(r1, dim=-1, keepdim=True)
            cos2 = (r2 @ u)[..., None] / torch.linalg.vector_norm(r2, dim=-1, keepdim=True)
            b = b + cross / d2 * (cos1 - cos2)
        s = torch.complex(b[..., 0], -b[..., 1]) * float(gain[i])
        maps.append(s * torch.polar(torch.ones((), dtype=real), phase0[i]))
    m = torch.stack(maps)
    rss = torch.sqrt((m.abs() ** 2).sum(0, keepdim=True))
    return (m / rss).to(device=device, dtype=dtype)


class CoilMultiply(Linop):
    """Coil sensitivity weighting ``S``: image ``(..., Y, X)`` -> coil images ``(..., C, Y, X)``.

    ``forward(x)[..., c, :, :] = S_c * x`` and the adjoint combines the coils,
    ``adjoint(y) = sum_c conj(S_c) * y[..., c, :, :]``. Leading dims (batch, frames) pass through:
    an image series ``(..., T, Y, X)`` becomes ``(..., T, C, Y, X)``. Device and dtype follow the
    input (the maps are moved and cast as needed; real input is promoted to complex).

    Args:
        maps: coil sensitivities ``(C, Y, X)`` complex, finite.
    """

    def __init__(self, maps: torch.Tensor):
        maps = torch.as_tensor(maps)
        check(
            maps.ndim == 3 and maps.is_complex(),
            f"coil maps must be complex (C, Y, X); got {tuple(maps.shape)} {maps.dtype}.",
        )
        check_finite("coil maps", maps)
        self.maps = maps
        self.n_coils = int(maps.shape[0])
        self.im_size = (int(maps.shape[1]), int(maps.shape[2]))
        self.ishape = self.im_size
        self.oshape = (self.n_coils,) + self.im_size

    def _checked(self, v: torch.Tensor, shape: tuple[int, ...], what: str) -> torch.Tensor:
        """``v`` as complex after checking that it ends in ``shape``."""
        check(
            v.ndim >= len(shape) and tuple(v.shape[-len(shape) :]) == shape,
            f"CoilMultiply {what} must have shape (..., {', '.join(map(str, shape))}); "
            f"got {tuple(v.shape)}.",
        )
        return as_complex(v)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Image ``(..., Y, X)`` -> coil images ``(..., C, Y, X)``."""
        x = self._checked(x, self.ishape, "input")
        return x.unsqueeze(-3) * self.maps.to(device=x.device, dtype=x.dtype)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Coil images ``(..., C, Y, X)`` -> coil-combined image ``(..., Y, X)``."""
        y = self._checked(y, self.oshape, "coil images (coils, Y, X)")
        return (y * self.maps.to(device=y.device, dtype=y.dtype).conj()).sum(-3)


class SenseOp(Linop):
    """SENSE encoding ``A = E S``, built by composition: ``encoding.on_coils(C) @ CoilMultiply``.

    Args:
        maps: coil sensitivities ``(C, Y, X)`` complex.
        encoding: a Fourier encoding of images with an ``on_coils(n_coils)`` method that returns
            the same encoding of coil images (``(..., C, Y, X)`` where the image was
            ``(..., Y, X)``): a :class:`~mrphys.physics.nufft.RadialNUFFT` (image
            ``(..., T, Y, X)``) or a :class:`~mrphys.physics.fourier.CartesianFFT`
            (``(..., Y, X)``; a per-frame mask is given as ``(T, 1, Y, X)``).

    Shapes:
        radial: image ``(..., T, Y, X)`` -> k-space ``(..., T, C, S, N)`` (``(..., T, C, K)`` for
        a ``(T, K, 2)`` trajectory). Cartesian: image ``(..., T, Y, X)`` -> k-space
        ``(..., T, C, Y, X)``.

    The adjoint combines the coils: ``A^H y = sum_c conj(S_c) E^H y_c``. Device and dtype follow
    the input (the maps are moved and cast as needed). Differentiable through autograd.
    Attributes: ``maps``, ``n_coils``, ``im_size``, ``encoding`` (as given), ``coils``
    (the :class:`CoilMultiply`) and ``op`` (the composition).
    """

    def __init__(self, maps: torch.Tensor, encoding: Linop):
        self.coils = CoilMultiply(maps)
        on_coils = getattr(encoding, "on_coils", None)
        check(
            callable(on_coils),
            "SenseOp encoding must provide on_coils(n_coils) (an encoding of coil images, such "
            f"as RadialNUFFT or CartesianFFT); got {type(encoding).__name__}.",
        )
        im = tuple(encoding.ishape[-2:])
        check(
            im == self.coils.im_size,
            f"coil maps must have the encoding's image size {im}; "
            f"got {tuple(self.coils.maps.shape)}.",
        )
        self.maps = self.coils.maps
        self.n_coils = self.coils.n_coils
        self.im_size = self.coils.im_size
        self.encoding = encoding
        coil_encoding = on_coils(self.n_coils)
        self.op = coil_encoding @ self.coils
        self.ishape = tuple(encoding.ishape)
        self.oshape = tuple(coil_encoding.oshape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Image ``(..., T, Y, X)`` -> k-space ``(..., T, C, S, N)`` or ``(..., T, C, Y, X)``."""
        return self.op.forward(x)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """k-space ``(..., T, C, S, N)`` or ``(..., T, C, Y, X)`` -> image ``(..., T, Y, X)``."""
        return self.op.adjoint(y)
