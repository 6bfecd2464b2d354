"""Dynamic image series: cine/perfusion series from MATLAB files and a synthetic beating phantom.

Both return ``(T, Y, X)`` complex64 tensors scaled to ``max |x| = 1`` (the scale every dynamic
reconstruction and metric in mrphys works in).

File layout: the test series in ``shared/data`` (``pincat_128x128x50.mat``: variable ``new``;
``rat_cine_192x192x8.mat``: variable ``image0``) are stored MATLAB-style as ``(rows, columns,
frames)`` = ``(Y, X, T)``. :func:`load_series` therefore takes the **last** axis of the 3-D array
as the frame axis (override with ``frames_axis``).
"""

from __future__ import annotations

import logging
import math
import os

import numpy as np
import torch

from mrphys.errors import MrphysError, check
from mrphys.io import load_mat_array
from mrphys.resources import check_memory

log = logging.getLogger(__name__)

#: peak bytes of :func:`synthetic_cine` per pixel and frame (float64 ellipses and their
#: temporaries; measured 170-360 on the CPU)
CINE_BYTES_PER_PIXEL = 400


def _scale_to_unit(x: torch.Tensor, what: str) -> torch.Tensor:
    check(bool(torch.isfinite(x).all()), f"{what} contains NaN or infinite values.")
    peak = float(x.abs().max()) if x.numel() else 0.0
    check(peak > 0, f"{what} is all zeros; expected an image series with signal.")
    return (x / peak).to(torch.complex64)


def load_series(
    path: str | os.PathLike,
    variable: str | None = None,
    frames_axis: int = -1,
) -> torch.Tensor:
    """Load a dynamic series from a ``.mat`` file as ``(T, Y, X)`` complex64, max ``|x| = 1``.

    Args:
        path: MATLAB file (v5 or v7.3).
        variable: the variable to read; by default the file's single numeric array with two or
            more non-singleton dimensions.
        frames_axis: axis of the stored array that counts frames (default ``-1``: the files are
            ``(Y, X, T)``); the other two, in order, become ``(Y, X)``.

    Raises:
        MrphysError: missing file, no or several candidate variables, a variable that is not
            3-D, or a series without signal.
    """
    arr = np.asarray(load_mat_array(path, variable))
    arr = np.squeeze(arr)
    name = variable if variable is not None else "the series"
    if arr.ndim != 3:
        raise MrphysError(
            f"{name} in {path} must be a 3-D array (Y, X, frames); got shape {arr.shape}."
        )
    check(
        -3 <= int(frames_axis) <= 2,
        f"frames_axis must be one of -3..2 for a 3-D array; got {frames_axis}.",
    )
    arr = np.moveaxis(arr, int(frames_axis), 0)
    x = torch.from_numpy(np.ascontiguousarray(arr))
    if not x.is_complex():
        x = x.to(torch.float64)
    log.info("loaded %s from %s: %d frames of %dx%d", name, path, *x.shape)
    return _scale_to_unit(x, f"{name} in {path}")


def synthetic_cine(
    n_frames: int = 20,
    matrix: int | tuple[int, int] = 64,
    seed: int = 0,
    cycles: float = 1.0,
) -> torch.Tensor:
    """A beating-heart phantom: ``(T, Y, X)`` complex64 with max ``|x| = 1`` (no file needed).

    A static elliptical body (fat ring, muscle) holds a left-ventricle-like pair of ellipses (bright
    blood pool inside a darker myocardium) whose half axes contract and dilate sinusoidally over
    ``cycles`` heart beats in ``n_frames`` frames, a right ventricle that beats in antiphase, and
    a static bright spot (spine). Edges are smoothed over about one pixel (anti-aliased), and a
    smooth background phase (a gentle linear ramp) makes the series complex. ``seed`` draws the
    position of the heart, its beat amplitude (15-25 % of the radius) and the tissue intensities.

    Args:
        n_frames: frames ``T >= 1``.
        matrix: ``N`` (square) or ``(Y, X)``, each >= 8.
        seed: random seed.
        cycles: heart beats over the series.
    """
    check(int(n_frames) >= 1, f"n_frames must be a positive integer; got {n_frames}.")
    ny, nx = (int(matrix), int(matrix)) if isinstance(matrix, int) else map(int, matrix)
    check(min(ny, nx) >= 8, f"matrix must be at least 8 pixels per side; got {(ny, nx)}.")
    check_memory(
        int(n_frames) * ny * nx * CINE_BYTES_PER_PIXEL,
        f"a synthetic cine of {n_frames} frames of {ny}x{nx}",
        "--frames or --matrix",
    )
    g = torch.Generator().manual_seed(int(seed))

    def u(lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(torch.rand((), generator=g, dtype=torch.float64))

    t = torch.arange(int(n_frames), dtype=torch.float64)
    beat = torch.sin(2 * math.pi * float(cycles) * t / max(int(n_frames), 1))  # (T,)
    yy = ((torch.arange(ny, dtype=torch.float64) - ny // 2) / (ny / 2))[:, None]
    xx = ((torch.arange(nx, dtype=torch.float64) - nx // 2) / (nx / 2))[None, :]
    edge = 2.0 / min(ny, nx) / 3.0  # sigmoid slope: 10-90 % edge rise over ~1.5 pixels

    def ellipse(cy, cx, ay, ax):
        """Soft indicator of an ellipse; cy/cx/ay/ax broadcast against (T, 1, 1)."""
        r = torch.sqrt(((yy - cy) / ay) ** 2 + ((xx - cx) / ax) ** 2)
        return torch.sigmoid(
            (1.0 - r) * torch.minimum(torch.as_tensor(ay), torch.as_tensor(ax)) / edge
        )

    amp = u(0.15, 0.25)
    hy, hx = u(-0.1, 0.1), u(-0.1, 0.1)
    s = (1.0 + amp * beat)[:, None, None]  # LV scale over time (T, 1, 1)
    s_rv = (1.0 - 0.7 * amp * beat)[:, None, None]
    muscle, fat, myo, blood, spine = u(0.3, 0.4), u(0.7, 0.8), u(0.2, 0.3), u(0.9, 1.0), u(0.6, 0.8)
    img = muscle * ellipse(0.0, 0.0, 0.8, 0.9)
    img = img + (fat - muscle) * (ellipse(0.0, 0.0, 0.8, 0.9) - ellipse(0.0, 0.0, 0.72, 0.82))
    img = img.expand(int(n_frames), ny, nx).clone()
    lv_out = ellipse(hy, hx, 0.30 * s, 0.26 * s)
    lv_in = ellipse(hy, hx, 0.20 * s, 0.17 * s)
    img = img * (1 - lv_out) + myo * lv_out + (blood - myo) * lv_in
    rv = ellipse(hy - 0.05, hx - 0.36, 0.22 * s_rv, 0.12 * s_rv)
    img = img * (1 - rv) + 0.85 * blood * rv
    sp = ellipse(0.6, 0.0, 0.08, 0.08)
    img = img * (1 - sp) + spine * sp
    phase = 0.3 * math.pi * (0.5 * yy + 0.3 * xx)
    x = torch.polar(img, phase.expand_as(img))
    return _scale_to_unit(x, "synthetic cine")
