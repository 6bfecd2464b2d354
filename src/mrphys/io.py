"""Files in and out: NIfTI, NumPy, MATLAB, HDF5, JSON; atomic output directories.

Outputs are never overwritten without ``overwrite=True`` and never left half-written: a command
writes into a temporary sibling directory and renames it into place when everything succeeded.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mrphys.errors import MrphysError

log = logging.getLogger(__name__)


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def check_new_output(path: str | os.PathLike, overwrite: bool) -> Path:
    """Return ``path`` as a Path; raise if it exists and ``overwrite`` is False."""
    p = Path(path)
    if p.exists() and not overwrite:
        raise MrphysError(f"output {p} already exists; pass --overwrite to replace it.")
    return p


@contextlib.contextmanager
def output_dir(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Context manager yielding a temporary directory that becomes ``path`` on success.

    On any exception the temporary directory is removed and ``path`` is left as it was.
    """
    final = check_new_output(path, overwrite)
    parent = final.parent if str(final.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        if final.is_dir() and not final.is_symlink():
            shutil.rmtree(final)
        else:
            final.unlink()
    os.replace(tmp, final)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary file path in the same folder, renamed to ``path`` on success."""
    final = check_new_output(path, overwrite)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.tmp-", dir=final.parent, suffix=final.suffix)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    os.replace(tmp_path, final)


def to_jsonable(obj: Any) -> Any:
    """``obj`` with tensors and arrays as lists, NumPy scalars as numbers, paths as strings, and
    non-finite floats as strict JSON allows: NaN as ``null``, infinities as ``"inf"``/``"-inf"``."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if hasattr(obj, "to_dict") and hasattr(obj, "__dataclass_fields__"):  # typed results
        return to_jsonable(obj.to_dict())
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (torch.Tensor, np.ndarray)):
        return to_jsonable(_to_numpy(obj).tolist())
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        return to_jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, Path):
        return str(obj)
    return obj


def save_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented, strict JSON (see :func:`to_jsonable`)."""
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(to_jsonable(obj), indent=2, allow_nan=False) + "\n")


def load_json(path: str | os.PathLike) -> Any:
    p = Path(path)
    if not p.is_file():
        raise MrphysError(f"file {p} does not exist.")
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise MrphysError(f"{p} is not valid JSON ({e.msg} at line {e.lineno}).") from None


def save_npy(path: str | os.PathLike, x: Any) -> None:
    with atomic_file(path) as tmp:
        np.save(tmp, _to_numpy(x))


#: gzip level of ``.nii.gz`` files: 1 compresses MR data nearly as well as 6-9 (noise does not
#: compress) at several times the speed
NIFTI_GZIP_LEVEL = 1


def save_nifti(
    path: str | os.PathLike,
    x: Any,
    affine: np.ndarray | None = None,
    voxel_mm: Any = None,
    *,
    compresslevel: int = NIFTI_GZIP_LEVEL,
) -> None:
    """Write an array as NIfTI-1 (``.nii`` or ``.nii.gz``).

    ``x`` is indexed ``[..., Y, X]`` in mrphys order and is written with axes reversed to
    ``(X, Y, ...)`` where it is 2-D or 3-D image data given by ``array_order='mrphys'``; callers
    that already hold NIfTI order pass the array as it is via :func:`save_nifti_raw`.
    ``compresslevel`` is the gzip level of a ``.nii.gz`` (see :func:`save_nifti_raw`).
    """
    arr = _to_numpy(x)
    if arr.ndim >= 2:
        arr = np.swapaxes(arr, -1, -2)  # [.., Y, X] -> [.., X, Y]
        arr = np.moveaxis(arr, (-2, -1), (0, 1))  # -> [X, Y, ...]
    if affine is None:
        affine = np.eye(4)
        if voxel_mm is not None:
            vm = list(np.atleast_1d(voxel_mm).astype(float))
            for i, v in enumerate(vm[:3]):
                affine[i, i] = v
    save_nifti_raw(path, arr, affine, compresslevel=compresslevel)


def save_nifti_raw(
    path: str | os.PathLike,
    arr: np.ndarray,
    affine: np.ndarray,
    *,
    compresslevel: int = NIFTI_GZIP_LEVEL,
) -> None:
    """Write ``arr`` in NIfTI axis order with ``affine`` (atomic).

    Args:
        path: ``*.nii.gz`` (gzip-compressed) or any other name (uncompressed NIfTI-1, e.g.
            ``*.nii``: the fastest to write and to read back).
        arr: any shape; float64 is stored as float32 and any complex type as complex64 (the
            precision of every mrphys computation); other dtypes as they are, without a copy.
        affine: ``(4, 4)`` voxel-to-world matrix (mm).
        compresslevel: gzip level 0-9 of a ``.nii.gz`` (default :data:`NIFTI_GZIP_LEVEL`).
    """
    import gzip

    import nibabel as nib

    if not (isinstance(compresslevel, int) and 0 <= compresslevel <= 9):
        raise MrphysError(f"compresslevel must be a gzip level 0-9; got {compresslevel!r}.")
    arr = np.asarray(arr)
    if np.iscomplexobj(arr):
        arr = arr.astype(np.complex64, copy=False)
    elif arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    img = nib.Nifti1Image(arr, np.asarray(affine, dtype=float))
    gz = Path(path).name.endswith(".nii.gz")
    with atomic_file(path) as tmp, open(tmp, "wb") as raw:
        # nibabel's own writer picks the gzip level globally; this file's level is the caller's
        stream = gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=compresslevel, mtime=0)
        with stream if gz else contextlib.nullcontext(raw) as f:
            holder = nib.FileHolder(fileobj=f)
            img.to_file_map({"image": holder, "header": holder})


def load_nifti(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a NIfTI file: returns ``(array in NIfTI axis order, affine)``."""
    import nibabel as nib

    p = Path(path)
    if not p.is_file():
        raise MrphysError(f"NIfTI file {p} does not exist.")
    try:
        img = nib.load(str(p))
        data = np.asarray(img.dataobj)
    except Exception as e:  # nibabel raises many types for broken files
        raise MrphysError(f"{p} could not be read as NIfTI ({type(e).__name__}: {e}).") from None
    return data, np.asarray(img.affine)


def load_mat_array(path: str | os.PathLike, variable: str | None = None) -> np.ndarray:
    """Load one numeric array from a MATLAB ``.mat`` file (v5 via scipy, v7.3 via h5py).

    With ``variable=None`` the file must hold exactly one numeric array with two or more
    non-singleton dimensions (scalars and vectors beside it are ignored).
    """
    p = Path(path)
    if not p.is_file():
        raise MrphysError(f"MATLAB file {p} does not exist.")
    arrays: dict[str, np.ndarray] = {}
    try:
        import scipy.io

        raw = scipy.io.loadmat(str(p))
        for k, v in raw.items():
            if not k.startswith("__") and isinstance(v, np.ndarray) and v.dtype.kind in "biufc":
                arrays[k] = v
    except NotImplementedError:  # v7.3 = HDF5
        import h5py

        with h5py.File(p, "r") as f:
            for k, v in f.items():
                if isinstance(v, h5py.Dataset) and v.dtype.kind in "biufcV":
                    a = v[()]
                    if a.dtype.names and {"real", "imag"} <= set(a.dtype.names):
                        a = a["real"] + 1j * a["imag"]
                    arrays[k] = np.asarray(a).T  # MATLAB column-major
    except Exception as e:
        raise MrphysError(f"{p} could not be read as a MATLAB file ({e}).") from None
    if variable is not None:
        if variable not in arrays:
            raise MrphysError(
                f"{p} has no numeric variable {variable!r}; it has {sorted(arrays) or 'none'}."
            )
        return arrays[variable]
    # images and series: at least two non-singleton dimensions (MATLAB stores scalars as 1x1)
    multi = {k: v for k, v in arrays.items() if sum(d > 1 for d in v.shape) >= 2}
    if len(multi) != 1:
        raise MrphysError(
            f"{p} holds {len(multi)} numeric arrays ({sorted(multi)}); name one with --variable."
        )
    return next(iter(multi.values()))
