"""BART ``.cfl/.hdr`` files: the exchange format of the field, read and written.

A BART array ``NAME`` is two files: ``NAME.hdr`` (text: a ``# Dimensions`` line, then the sizes
separated by spaces) and ``NAME.cfl`` (the samples as little-endian complex64 in **column-major**
(Fortran) order: dimension 0 varies fastest). :func:`read_cfl` / :func:`write_cfl` move such an
array to and from NumPy with the same dimension order (``shape == hdr dims``).

Mapping to mrphys arrays (:func:`radial_to_cfl`, :func:`radial_from_cfl`, :func:`read_maps`):

=============  ====================================  =========================================
array          BART dims                             mrphys
=============  ====================================  =========================================
k-space        ``[1, N, S, C, 1 .. 1, T]`` (T: dim    ``kspace (T, C, S, N)``
               10, BART's TIME_DIM)
trajectory     ``[3, N, S, 1 .. 1, T]``, 1/FOV units  ``traj (T, S, N, 2)`` rad/pixel ``(ky, kx)``:
               (``|k| <= matrix/2``), coordinate 0    ``ky = 2 pi k0 / Y``, ``kx = 2 pi k1 / X``
               pairs with image dim 0, 1 with dim 1,
               2 (kz) is 0
coil maps      ``[Y, X, 1, C]`` (image dims 0, 1 are  ``maps (C, Y, X)``
               mrphys's ``(Y, X)``)
=============  ====================================  =========================================

The files are read with :func:`numpy.fromfile` after the header's sizes are checked against the
file size (no code, no pickle).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mrphys.errors import MrphysError, check

TIME_DIM = 10  # BART's frame axis
_MAX_DIMS = 16


def _base(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p.with_suffix("") if p.suffix in (".cfl", ".hdr") else p


def read_cfl(path: str | os.PathLike) -> np.ndarray:
    """Read the BART array ``path`` (``NAME``, ``NAME.cfl`` or ``NAME.hdr``): complex64 with the
    header's dimensions in BART order (trailing size-1 dimensions kept)."""
    from mrphys.io import input_file

    base = _base(path)
    hdr = input_file(base.with_suffix(".hdr"), "BART header")
    cfl = input_file(base.with_suffix(".cfl"), "BART data file")
    lines = [ln.strip() for ln in hdr.read_text(errors="replace").splitlines()]
    dims: list[int] | None = None
    for i, ln in enumerate(lines):
        if ln.startswith("# Dimensions") and i + 1 < len(lines):
            try:
                dims = [int(v) for v in lines[i + 1].split()]
            except ValueError:
                dims = None
            break
    if not dims or len(dims) > _MAX_DIMS or min(dims) < 1:
        raise MrphysError(
            f"{hdr} is not a BART header (expected '# Dimensions' and up to {_MAX_DIMS} positive "
            "sizes on the next line)."
        )
    n = math.prod(dims)
    size = cfl.stat().st_size
    if size != 8 * n:
        raise MrphysError(
            f"{cfl} holds {size} bytes; its header's dimensions {dims} need {8 * n} (complex64)."
        )
    x = np.fromfile(cfl, dtype="<c8", count=n)
    return x.reshape(dims, order="F").astype(np.complex64)


def write_cfl(path: str | os.PathLike, array: Any) -> None:
    """Write ``array`` (any complex or real array, up to 16 dims) as ``NAME.hdr`` + ``NAME.cfl``."""
    x = np.asarray(array.detach().cpu() if isinstance(array, torch.Tensor) else array)
    check(1 <= x.ndim <= _MAX_DIMS, f"a BART array has 1..16 dims; got {x.ndim}.")
    base = _base(path)
    dims = list(x.shape) + [1] * max(0, 16 - x.ndim)
    base.with_suffix(".hdr").write_text("# Dimensions\n" + " ".join(map(str, dims)) + "\n")
    np.asarray(x, dtype="<c8").ravel(order="F").tofile(base.with_suffix(".cfl"))


def radial_to_cfl(prefix: str | os.PathLike, data: Any) -> list[Path]:
    """Write ``data`` (:class:`~.radial.RadialData`) as ``PREFIXksp``, ``PREFIXtraj`` and
    ``PREFIXmaps`` BART arrays (dims in the module table); returns the ``.cfl`` paths."""
    k = data.kspace.detach().cpu().numpy()  # (T, C, S, N)
    tr = data.traj.detach().cpu().numpy().astype(np.float64)  # (T, S, N, 2)
    t, c, s, n = k.shape
    my, mx = data.im_size
    # (N, S, C, T) with singleton dims inserted: BART [1, N, S, C, 1, .., T]
    bart_k = k.transpose(3, 2, 1, 0).reshape(1, n, s, c, *([1] * (TIME_DIM - 4)), t)
    coords = np.zeros((3, n, s, t))
    coords[0] = (tr[..., 0] * my / (2 * math.pi)).transpose(2, 1, 0)
    coords[1] = (tr[..., 1] * mx / (2 * math.pi)).transpose(2, 1, 0)
    bart_t = coords.reshape(3, n, s, *([1] * (TIME_DIM - 3)), t)
    maps = data.maps.detach().cpu().numpy().transpose(1, 2, 0)[:, :, None, :]  # (Y, X, 1, C)
    p = Path(prefix)
    out = []
    for name, arr in (("ksp", bart_k), ("traj", bart_t), ("maps", maps)):
        base = p.parent / f"{p.name}{name}"
        write_cfl(base, arr)
        out.append(base.with_suffix(".cfl"))
    return out


def _squeeze_to(x: np.ndarray, lead: int, what: str, path: Any) -> tuple[np.ndarray, int]:
    """``x`` of BART dims ``[d0 .. d_{lead-1}, 1 ..., T]`` -> ``(d0, .., d_{lead-1}, T)``."""
    dims = list(x.shape) + [1] * (TIME_DIM + 1 - x.ndim)
    middle = dims[lead:TIME_DIM] + dims[TIME_DIM + 1 :]
    if any(d != 1 for d in middle):
        raise MrphysError(
            f"{path}: a BART {what} must have dims [{', '.join(['*'] * lead)}, 1, ..., T (dim "
            f"{TIME_DIM})]; got {dims}."
        )
    t = dims[TIME_DIM]
    return x.reshape(dims[:lead] + [t], order="F"), t


def radial_from_cfl(
    ksp: str | os.PathLike, traj: str | os.PathLike, im_size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Read a BART radial k-space ``[1, N, S, C, .., T]`` and trajectory ``[3, N, S, .., T]``
    (1/FOV units of the ``im_size = (Y, X)`` matrix) as mrphys ``kspace (T, C, S, N)`` and
    ``traj (T, S, N, 2)`` rad/pixel."""
    k = read_cfl(ksp)
    k, t = _squeeze_to(k, 4, "k-space", ksp)
    check(k.shape[0] == 1, f"{ksp}: BART radial k-space has dim 0 of size 1; got {k.shape[0]}.")
    tr = read_cfl(traj)
    tr, t2 = _squeeze_to(tr, 3, "trajectory", traj)
    n, s, c = k.shape[1:4]
    check(
        tr.shape[:3] == (3, n, s) and t2 == t,
        f"{traj}: the trajectory must have dims [3, {n}, {s}, .., {t}] to match {ksp}; got "
        f"{list(tr.shape)}.",
    )
    kspace = torch.from_numpy(np.ascontiguousarray(k[0].transpose(3, 2, 1, 0)))
    my, mx = int(im_size[0]), int(im_size[1])
    ky = tr[0].real.transpose(2, 1, 0) * (2 * math.pi / my)
    kx = tr[1].real.transpose(2, 1, 0) * (2 * math.pi / mx)
    coords = np.clip(np.stack([ky, kx], -1), -math.pi, math.pi).astype(np.float32)
    return kspace.to(torch.complex64), torch.from_numpy(coords)


def read_maps(path: str | os.PathLike) -> torch.Tensor:
    """Coil maps ``(C, Y, X)`` complex64 from a ``.npy`` file (``(C, Y, X)``) or a BART array
    (``[Y, X, 1, C]``, ``.cfl``/``.hdr``)."""
    p = Path(path)
    if p.suffix in (".cfl", ".hdr"):
        m = read_cfl(p)
        dims = list(m.shape) + [1] * max(0, 4 - m.ndim)
        if m.ndim > 4 and any(d != 1 for d in m.shape[4:]) or dims[2] != 1:
            raise MrphysError(f"{p}: BART coil maps must have dims [Y, X, 1, C]; got {dims}.")
        m = m.reshape(dims[:4], order="F")[:, :, 0, :].transpose(2, 0, 1)
    else:
        from mrphys.physics.radial import _load_npy

        m = _load_npy(p)
        check(m.dtype.kind in "fc", f"{p}: coil maps must be a numeric (C, Y, X) array.")
    check(m.ndim == 3, f"{p}: coil maps must be a (C, Y, X) array; got shape {m.shape}.")
    check(bool(np.isfinite(m).all()), f"{p}: coil maps hold NaN or infinite values.")
    return torch.from_numpy(np.ascontiguousarray(m)).to(torch.complex64)
