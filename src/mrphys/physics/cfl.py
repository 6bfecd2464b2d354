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

import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mrphys.errors import MrphysError, check

log = logging.getLogger(__name__)

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


def _bart_spokes(data: Any) -> tuple[np.ndarray, np.ndarray]:
    """BART k-space ``[1, N, S, C, 1, .., T]`` and trajectory ``[3, N, S, 1, .., T]`` (1/FOV
    units of ``data.im_size``) of a :class:`~.radial.RadialData`."""
    k = data.kspace.detach().cpu().numpy()  # (T, C, S, N)
    tr = data.traj.detach().cpu().numpy().astype(np.float64)  # (T, S, N, 2)
    t, c, s, n = k.shape
    my, mx = data.im_size
    # (N, S, C, T) with singleton dims inserted: BART [1, N, S, C, 1, .., T]
    bart_k = k.transpose(3, 2, 1, 0).reshape(1, n, s, c, *([1] * (TIME_DIM - 4)), t)
    coords = np.zeros((3, n, s, t))
    coords[0] = (tr[..., 0] * my / (2 * math.pi)).transpose(2, 1, 0)
    coords[1] = (tr[..., 1] * mx / (2 * math.pi)).transpose(2, 1, 0)
    return bart_k, coords.reshape(3, n, s, *([1] * (TIME_DIM - 3)), t)


def radial_to_cfl(prefix: str | os.PathLike, data: Any) -> list[Path]:
    """Write ``data`` (:class:`~.radial.RadialData`) as ``PREFIXksp``, ``PREFIXtraj`` and
    ``PREFIXmaps`` BART arrays (dims in the module table); returns the ``.cfl`` paths."""
    bart_k, bart_t = _bart_spokes(data)
    maps = data.maps.detach().cpu().numpy().transpose(1, 2, 0)[:, :, None, :]  # (Y, X, 1, C)
    p = Path(prefix)
    out = []
    for name, arr in (("ksp", bart_k), ("traj", bart_t), ("maps", maps)):
        base = p.parent / f"{p.name}{name}"
        write_cfl(base, arr)
        out.append(base.with_suffix(".cfl"))
    return out


def radial_from_cfl(
    ksp: str | os.PathLike, traj: str | os.PathLike, im_size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Read a BART radial k-space ``[1, N, S, C, .., T]`` and trajectory ``[3, N, S, .., T]``
    (1/FOV units of the ``im_size = (Y, X)`` matrix) as mrphys ``kspace (T, C, S, N)`` and
    ``traj (T, S, N, 2)`` rad/pixel: the arrays of :func:`read_cfl_radial` (the one reader of
    BART radial files) without its calibration scaffolding."""
    data, _ = read_cfl_radial(ksp, traj, matrix=(int(im_size[0]), int(im_size[1])))
    return data.kspace, data.traj


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


# ------------------------------------------------------------------------------------------
# radial raw data as BART files (``dynamic recon --input kspace.cfl --traj traj.cfl``)
# ------------------------------------------------------------------------------------------

#: The names ``dynamic simulate --cfl`` writes and ``dynamic recon --input DIR`` looks for.
CFL_NAMES = {"kspace": "kspace", "traj": "traj", "noise": "noise"}
_BART_DIMS = "[1, N, S, C, 1, ..., 1, T at dim 10]"


def _dims16(x: np.ndarray) -> list[int]:
    return list(x.shape) + [1] * (_MAX_DIMS - x.ndim)


def write_cfl_radial(
    folder: str | os.PathLike, data: Any, noise: torch.Tensor | np.ndarray | None = None
) -> list[Path]:
    """Write the spokes of ``data`` (:class:`~.radial.RadialData`) as BART arrays ``kspace``
    ``[1, N, S, C, 1 .. 1, T]``, ``traj`` ``[3, N, S, 1 .. 1, T]`` (1/FOV units of the
    ``data.im_size`` matrix, ``k0 = Y ky / 2 pi``, ``k1 = X kx / 2 pi``, ``k2 = 0``) and, when
    ``noise`` ``(C, M)`` is given, ``noise`` ``[M, 1, 1, C]`` (samples in dim 0, as ``bart
    whiten`` needs them) into ``folder``; returns the ``.cfl`` paths. :func:`read_cfl_radial`
    reads them back."""
    bart_k, bart_t = _bart_spokes(data)
    c = data.n_coils
    arrays = [("kspace", bart_k), ("traj", bart_t)]
    if noise is not None:
        z = np.asarray(torch.as_tensor(noise).detach().cpu().numpy(), dtype=np.complex64)
        check(z.ndim == 2 and z.shape[0] == c, f"noise must have shape ({c}, M); got {z.shape}.")
        arrays.append(("noise", z.T.reshape(z.shape[1], 1, 1, c)))
    out = []
    for name, arr in arrays:
        base = Path(folder) / CFL_NAMES[name]
        write_cfl(base, arr)
        out.append(base.with_suffix(".cfl"))
    return out


def _radial_kspace(k: np.ndarray, path: Path) -> tuple[np.ndarray, str]:
    """BART radial k-space -> ``(T, C, S, N)``, with a sentence on the layout found."""
    d = _dims16(k)
    if d[0] != 1:
        raise MrphysError(
            f"{path} has dims {d[:4]}... with {d[0]} samples in dim 0 (a Cartesian readout): a "
            f"BART radial k-space has the readout in dim 1, {_BART_DIMS}, with a trajectory."
        )
    extra = [i for i, v in enumerate(d) if v > 1 and i not in (1, 2, 3, TIME_DIM)]
    if extra:
        raise MrphysError(
            f"{path} has size > 1 in dims {extra} (dims {d[:11]}); mrphys reads one 2-D slice of "
            f"BART radial k-space {_BART_DIMS}."
        )
    n, s, c, t = d[1], d[2], d[3], d[TIME_DIM]
    check(n >= 2, f"{path}: spokes of {n} samples cannot be read (dims {d[:11]}).")
    x = k.reshape(1, n, s, c, t, order="F")[0].transpose(3, 2, 1, 0)  # (T, C, S, N)
    return np.ascontiguousarray(x, dtype=np.complex64), (
        f"BART radial k-space: {n} samples x {s} spokes x {c} coils x {t} frames (dim 10)"
    )


def _radial_traj(tr: np.ndarray, path: Path, n: int, s: int, t: int) -> np.ndarray:
    """BART trajectory -> ``(T, S, N, 3)`` float64 in the file's units (repeated over frames
    when stored once)."""
    d = _dims16(tr)
    if d[0] != 3:
        raise MrphysError(
            f"{path} has {d[0]} coordinate rows in dim 0; a BART trajectory has 3 (x, y, z; z = 0 "
            "for 2-D), as `bart traj` writes it."
        )
    extra = [i for i, v in enumerate(d) if v > 1 and i not in (0, 1, 2, TIME_DIM)]
    tt = d[TIME_DIM]
    if extra or d[1] != n or d[2] != s or tt not in (1, t):
        raise MrphysError(
            f"{path} has dims {d[:11]}; to match the k-space it must be [3, {n}, {s}, 1, ..., 1, "
            f"{t} at dim 10]."
        )
    x = tr.reshape(3, n, s, tt, order="F").transpose(3, 2, 1, 0)  # (T', S, N, 3)
    check(bool(np.isfinite(x).all()), f"{path}: the trajectory holds NaN or infinity.")
    if float(np.abs(x.imag).max(initial=0.0)) > 1e-6 * max(float(np.abs(x.real).max()), 1.0):
        raise MrphysError(f"{path}: the trajectory has imaginary parts; coordinates are real.")
    x = x.real.astype(np.float64)
    if float(np.abs(x[..., 2]).max()) > 1e-6:
        raise MrphysError(f"{path}: the trajectory has kz != 0 (3-D); mrphys reads 2-D radial.")
    return np.broadcast_to(x, (t, s, n, 3)) if tt == 1 else x


def read_cfl_radial(
    kspace: str | os.PathLike,
    traj: str | os.PathLike,
    noise: str | os.PathLike | None = None,
    *,
    matrix: int | tuple[int, int] | None = None,
) -> tuple[Any, Any]:
    """Read radial k-space in BART's layout (what ``bart traj -r`` / ``bart pics -t`` use).

    Args:
        kspace: ``[1, N, S, C, 1, .., 1, T]`` (``N`` samples per spoke in dim 1, ``S`` spokes in
            dim 2, ``C`` coils in dim 3, ``T`` frames in dim 10, BART's ``TIME_DIM``).
        traj: ``[3, N, S, 1, .., 1, T or 1]``: ``(k0, k1, k2 = 0)`` in BART's 1/FOV units
            (``bart traj -r -x N`` puts sample ``i`` at ``i + 1/2 - N/2``, ``-c`` at ``i - N/2``,
            and ``-o OS`` makes ``OS * N`` samples spaced ``1/OS``: ``|k|`` reaches
            ``matrix/2`` either way). ``k0`` pairs with image dim 0 (mrphys ``Y``), ``k1`` with
            dim 1 (``X``); a trajectory with ``|k| <= 0.5`` is taken as cycles/pixel.
        noise: optional noise samples with the coils in dim 3 (``[M, 1, 1, C]`` as ``bart
            whiten`` reads them; every other dim is flattened into samples).
        matrix: the reconstruction matrix ``Y`` (= ``X``) or ``(Y, X)``; default ``2 *
            ceil(max |k|)`` in 1/FOV units (what the trajectory reaches; ``N // 2`` for
            cycles/pixel, i.e. 2x readout oversampling).

    Returns:
        ``(data, info)`` as :func:`mrphys.physics.mrd.read_mrd`: :class:`~.radial.RadialData`
        (``traj`` rad/pixel ``(ky, kx) = 2 pi (k0 / Y, k1 / X)``, ramp DCF, placeholder maps
        ``1/sqrt(C)``) and a :class:`~.mrd.RawInfo` (``noise`` ``(C, M)``).
    """
    from mrphys.physics.mrd import RawInfo
    from mrphys.physics.nufft import radial_dcf
    from mrphys.physics.radial import RadialData

    kpath, tpath = _base(kspace), _base(traj)
    k, layout = _radial_kspace(read_cfl(kpath), kpath.with_suffix(".cfl"))
    t, c, s, n = k.shape
    raw = _radial_traj(read_cfl(tpath), tpath.with_suffix(".cfl"), n, s, t)
    kmax = float(np.abs(raw[..., :2]).max())
    check(kmax > 0, f"{tpath}.cfl: the trajectory is all zeros.")
    if kmax <= 0.5 * (1 + 1e-3):
        units = "cycles/pixel"
        my, mx = _matrix(matrix, (n // 2, n // 2))
        scale_y = scale_x = 1.0
    else:
        units = "1/FOV"
        auto = 2 * math.ceil(kmax - 1e-3)
        my, mx = _matrix(matrix, (auto, auto))
        if kmax > 0.5 * max(my, mx) * 1.05 + 0.5:
            raise MrphysError(
                f"{tpath}.cfl reaches |k| = {kmax:g}, beyond the {my}x{mx} matrix (1/FOV units: "
                f"|k| <= {max(my, mx) / 2:g}); give a larger matrix."
            )
        scale_y, scale_x = 1.0 / my, 1.0 / mx
    ky = raw[..., 0] * (2 * math.pi * scale_y)
    kx = raw[..., 1] * (2 * math.pi * scale_x)
    coords = np.clip(np.stack([ky, kx], -1), -math.pi, math.pi).astype(np.float32)
    z = None
    if noise is not None:
        npath = _base(noise)
        zz = read_cfl(npath)
        dz = _dims16(zz)
        if dz[3] != c:
            raise MrphysError(
                f"{npath}.cfl has {dz[3]} coils in dim 3 (dims {dz[:11]}); the k-space has {c}."
            )
        z = torch.from_numpy(np.ascontiguousarray(np.moveaxis(zz.reshape(dz), 3, 0).reshape(c, -1)))
    layout += f"; trajectory in {units} (max |k| {kmax:.4g}), matrix {my}x{mx}"
    if z is not None:
        layout += f"; noise {c} coils x {z.shape[1]} samples"
    log.info("%s: %s", kpath, layout)
    info = RawInfo(
        path=str(kpath.with_suffix(".cfl")),
        matrix=(my, mx),
        fov_mm=None,
        n_coils=c,
        samples_per_spoke=n,
        traj_units=units,
        traj_max=kmax,
        angle_increment_deg=None,
        frames_from="bart time dim 10" if t > 1 else "single",
        noise=z,
        n_noise_acquisitions=0 if z is None else 1,
        header_trajectory="bart",
        system={"layout": layout, "traj_file": str(tpath.with_suffix(".cfl"))},
    )
    tr = torch.from_numpy(coords)
    meta = {
        "source": "bart",
        "spokes_per_frame": s,
        "samples_per_spoke": n,
        "n_coils": c,
        "maps": "placeholder 1/sqrt(C): estimate them",
        "raw": info.summary(),
    }
    maps = torch.full((c, my, mx), 1.0 / math.sqrt(c), dtype=torch.complex64)
    data = RadialData(
        kspace=torch.from_numpy(k),
        traj=tr,
        maps=maps,
        dcf=radial_dcf(tr, im_size=(my, mx)),
        truth=None,
        meta=meta,
    )
    return data, info


def _matrix(matrix: int | tuple[int, int] | None, auto: tuple[int, int]) -> tuple[int, int]:
    if matrix is None:
        return auto
    m = (int(matrix), int(matrix)) if np.ndim(matrix) == 0 else tuple(int(v) for v in matrix)
    check(
        len(m) == 2 and min(m) >= 2,
        f"matrix must be an integer >= 2 or a pair (Y, X); got {matrix}.",
    )
    return m[0], m[1]
