"""Files in and out: NIfTI, NumPy, MATLAB, HDF5, JSON; atomic output directories.

Outputs are never overwritten without ``overwrite=True`` and never left half-written: a command
claims its output (a lock beside it), writes into a temporary sibling directory and renames it
into place when everything succeeded. Only outputs mrphys wrote are replaced (a marker file in
each output folder, the format key of a checkpoint), never a folder holding the working
directory, the home directory or an input. Files and folders get the modes the umask gives.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shlex
import shutil
import socket
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mrphys.errors import MrphysError

try:
    import fcntl
except ImportError:  # Windows: the lock file is created exclusively instead
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)


def _is_tensor(x: Any) -> bool:
    """``isinstance(x, torch.Tensor)`` without importing torch (a tensor means it is loaded):
    claiming an output, the first thing a command does, stays cheap."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _to_numpy(x: Any) -> np.ndarray:
    if _is_tensor(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def check_new_output(path: str | os.PathLike, overwrite: bool) -> Path:
    """Return ``path`` as a Path; raise if it exists and ``overwrite`` is False.

    The plain existence rule of the file writers (:func:`atomic_file`); a command's output is
    checked with :func:`check_output`, which also decides what may be replaced.
    """
    p = Path(path)
    if os.path.lexists(p) and not overwrite:
        raise MrphysError(f"output {p} already exists; pass --overwrite to replace it.")
    return p


# --- where outputs go: claim, check, replace ------------------------------------------------

MARKER = ".mrphys-output"
"""Name of the file (JSON: writer, package version, command, time) in every output folder that
:func:`output_dir` writes; ``overwrite=True`` replaces only a folder that holds it."""

LOCK_SUFFIX = ".mrphys-lock"
"""``OUT.mrphys-lock`` beside an output claims it for one run (see :func:`claim_output`)."""


def _tmp_prefix(final: Path) -> str:
    """Prefix of the temporary siblings of ``final`` (work folders, replaced outputs, files)."""
    return f".{final.name}.tmp-"


@dataclass
class _Claim:
    fd: int  # the locked file
    thread: int
    inputs: tuple[str, ...]
    command: str
    depth: int = 1


_claims: dict[Path, _Claim] = {}
_claims_guard = threading.Lock()


def _umask() -> int:
    """The process umask, read without changing it where Linux allows."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _follow_umask(path: str | os.PathLike, directory: bool = False) -> None:
    """Give ``path`` the mode a plain ``mkdir``/``open`` would (``mkdtemp`` makes 0700 and
    ``mkstemp`` 0600, which would hide results from colleagues)."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def _absolute(path: str | os.PathLike) -> Path:
    """``path`` made absolute with ``..`` removed; a link as the last part is not followed."""
    return Path(os.path.abspath(path))


def _command_line(command: str | None) -> str:
    return command if command is not None else shlex.join(sys.argv)


def _writing_rank() -> bool:
    """Rank 0 of a ``torchrun`` job (or no job) claims outputs; the others write nothing."""
    return os.environ.get("RANK", "0").strip() in ("", "0")


def _protected(inputs: Iterable[str | os.PathLike]) -> list[tuple[Path, str]]:
    """What an output must never hold: the working directory, the home directory, the inputs."""
    out = [(Path.cwd().resolve(), "the working directory")]
    with contextlib.suppress(RuntimeError, KeyError):  # no home directory known
        out.append((Path.home().resolve(), "the home directory"))
    for i in inputs:
        a = _absolute(i)
        out += [(a.parent.resolve() / a.name, f"the input {i}"), (a.resolve(), f"the input {i}")]
    return out


def _check_target(path: str | os.PathLike, inputs: Iterable[str | os.PathLike]) -> None:
    """Refuse an output that is a filesystem root, a dangling link, or that holds the working
    directory, the home directory or an input (replacing it would delete them)."""
    final = _absolute(path)
    if final.is_symlink() and not final.exists():
        raise MrphysError(
            f"output {path} is a symbolic link to {os.readlink(final)}, which does not exist; "
            "remove the link or choose another output."
        )
    real = final.parent.resolve() / final.name if final.name else final
    if not final.name or os.path.ismount(real):
        raise MrphysError(f"output {path} is a filesystem root; choose a new folder for it.")
    if not os.path.lexists(final):
        return
    for keep, what in _protected(inputs):
        if keep == real or real in keep.parents:
            raise MrphysError(
                f"output {path} holds {what}, which mrphys never deletes; choose a new folder "
                "for the output."
            )


def _is_checkpoint(path: Path) -> bool:
    """Whether ``path`` is a checkpoint mrphys wrote (read as plain data: nothing executes)."""
    import torch

    from mrphys.train import CHECKPOINT_FORMAT

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. torch's note on a foreign pickle protocol
            ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # not a torch file, a pickled object, truncated: not ours
        return False
    return isinstance(ck, dict) and ck.get("format") == CHECKPOINT_FORMAT


def _check_writable(path: str | os.PathLike, final: Path) -> None:
    """Refuse when ``final`` (and, for a folder, everything in it) cannot be deleted."""
    if not os.access(final.parent, os.W_OK | os.X_OK):
        raise MrphysError(f"output {path} cannot be replaced: its folder is not writable.")
    if not final.is_dir():
        return

    def unreadable(e: OSError) -> None:
        raise MrphysError(f"output {path} cannot be replaced: {e.filename} cannot be read.")

    for folder, _, _ in os.walk(path, onerror=unreadable):
        if not os.access(folder, os.W_OK | os.X_OK):
            where = "it is" if Path(folder) == Path(path) else f"the folder {folder} in it is"
            raise MrphysError(f"output {path} cannot be replaced: {where} read-only.")


def check_output(
    path: str | os.PathLike, overwrite: bool, inputs: Iterable[str | os.PathLike] | None = None
) -> Path:
    """Check, before any work, that a command may write its output to ``path``.

    A new path is fine. An existing one needs ``overwrite`` and must be something mrphys wrote:
    a folder holding :data:`MARKER` or a checkpoint file with mrphys's format key, not a link,
    with nothing read-only in it. Never replaced: a filesystem root, or a path holding the
    working directory, the home directory or one of ``inputs`` (default: the inputs given to the
    active :func:`claim_output` of ``path``).

    Returns:
        ``path`` as a Path.

    Raises:
        MrphysError: one sentence saying why the output cannot be written there.
    """
    p, final = Path(path), _absolute(path)
    if inputs is None:
        claim = _claims.get(final)
        inputs = claim.inputs if claim else ()
    _check_target(p, inputs)
    if not os.path.lexists(final):
        return p
    check_new_output(p, overwrite)  # it exists: only with --overwrite
    if final.is_symlink():
        raise MrphysError(
            f"output {p} is a symbolic link; mrphys replaces only a folder or checkpoint it "
            "wrote, so remove the link yourself or choose another output."
        )
    if final.is_dir():
        if not (final / MARKER).is_file():
            raise MrphysError(
                f"output {p} has no {MARKER} marker, so it is no output of mrphys (or of a "
                "version before the markers); remove it yourself or choose another output."
            )
    elif not (final.is_file() and _is_checkpoint(final)):
        raise MrphysError(
            f"output {p} is not a file mrphys wrote (no mrphys checkpoint format key); remove it "
            "yourself or choose another output."
        )
    _check_writable(p, final)
    return p


def discard_output(
    path: str | os.PathLike, inputs: Iterable[str | os.PathLike] | None = None
) -> None:
    """Delete an existing output before a fresh start, after :func:`check_output` allowed it to
    be replaced (a checkpoint or folder mrphys wrote); a missing path is fine."""
    final = _absolute(check_output(path, True, inputs))
    if final.is_dir():
        shutil.rmtree(final)
    else:
        final.unlink(missing_ok=True)


def _make_parent(path: str | os.PathLike, final: Path) -> list[Path]:
    """Create the folders above ``final``; return those created (deepest last)."""
    missing, d = [], final.parent
    while not os.path.lexists(d):
        missing.append(d)
        d = d.parent
    if not d.is_dir():
        raise MrphysError(f"output {path} cannot be created: {d} is not a folder.")
    created: list[Path] = []
    for m in reversed(missing):
        try:
            m.mkdir()
        except FileExistsError:
            continue  # made by someone else meanwhile
        except OSError as e:
            _remove_empty(created)
            raise MrphysError(f"output {path} cannot be created: {m}: {e.strerror}.") from None
        created.append(m)
    if not os.access(final.parent, os.W_OK | os.X_OK):
        raise MrphysError(f"output {path} cannot be written: its folder is not writable.")
    return created


def _remove_empty(folders: list[Path]) -> None:
    for d in reversed(folders):
        with contextlib.suppress(OSError):
            d.rmdir()


def _describe_run(info: dict[str, Any]) -> str:
    if not info.get("pid"):
        return "a run that is starting"
    where = f" on {info['host']}" if info.get("host") else ""
    since = f", started {info['started']}" if info.get("started") else ""
    cmd = f": {info['command']}" if info.get("command") else ""
    return f"PID {info['pid']}{where}{since}{cmd}"


def _read_lock(fd: int) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        os.lseek(fd, 0, os.SEEK_SET)
        info = json.loads(os.read(fd, 65536).decode() or "{}")
        if isinstance(info, dict):
            return info
    return {}


def _lock(path: str | os.PathLike, final: Path, command: str) -> int:
    """Lock ``OUT.mrphys-lock`` beside ``final``; return its descriptor (held until released).

    The kernel lock (``flock``) ends with the process, so a run killed by SIGKILL leaves only a
    file with its PID, which the next run takes over (logging that it does).
    """
    lock = final.with_name(final.name + LOCK_SUFFIX)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
          "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}  # fmt: skip
    while True:
        flags = os.O_RDWR | os.O_CREAT | (0 if fcntl else os.O_EXCL)
        try:
            fd = os.open(lock, flags, 0o666)
        except FileExistsError:  # no flock (Windows): the file itself is the lock
            raise MrphysError(
                f"output {path} is claimed by another mrphys run ({lock} exists); wait for it to "
                "finish, or delete that file if the run is gone."
            ) from None
        except OSError as e:
            raise MrphysError(f"output {path} cannot be claimed: {lock}: {e.strerror}.") from None
        if fcntl is None:
            break
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            other = _read_lock(fd)
            os.close(fd)
            raise MrphysError(
                f"output {path} is being written by another mrphys run ({_describe_run(other)}); "
                "wait for it to finish or choose another output."
            ) from None
        with contextlib.suppress(OSError):  # the holder may have removed it before we locked
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                break
        os.close(fd)
    stale = _read_lock(fd)
    if stale.get("pid"):
        log.warning(
            "taking over %s from %s, which is no longer running", lock, _describe_run(stale)
        )
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, json.dumps(me).encode())
    return fd


def _clean_leftovers(final: Path) -> None:
    """Remove what dead runs left beside ``final`` (called while holding its lock, so no live
    run owns them): work folders holding :data:`MARKER` and temporary files; report the rest."""
    # the output's own temporaries, and those of the running checkpoint kept beside it
    # (``OUT.checkpoint.pt``, written atomically: a kill during a write leaves its temporary file)
    prefixes = (_tmp_prefix(final), _tmp_prefix(final.with_name(final.name + ".checkpoint.pt")))
    try:
        with os.scandir(final.parent) as it:
            entries = [e for e in it if e.name.startswith(prefixes)]
    except OSError:
        return
    for e in entries:
        p = Path(e.path)
        if e.is_dir(follow_symlinks=False) and (p / MARKER).is_file():
            shutil.rmtree(p, ignore_errors=True)
        elif e.is_file(follow_symlinks=False):
            p.unlink(missing_ok=True)
        else:
            log.warning("%s is not a temporary folder of mrphys; left in place", p)
            continue
        log.warning("removed %s, left by an earlier run that did not finish", p)


@contextlib.contextmanager
def claim_output(
    path: str | os.PathLike,
    inputs: Iterable[str | os.PathLike] = (),
    command: str | None = None,
) -> Iterator[Path]:
    """Claim ``path`` for this run, before any work: no other run may write it meanwhile.

    Refuses (one sentence) a filesystem root, a dangling link, a path holding the working
    directory, the home directory or one of ``inputs``, a folder that cannot be written, and a
    path another live run has claimed (named by PID, host, start time and command). Creates the
    missing folders above ``path`` (removed again if the run fails), locks ``OUT.mrphys-lock``
    beside it and removes what dead runs left there (``.OUT.tmp-*``). Nested claims of the same
    path by the same thread are one claim (the command claims, :func:`output_dir` claims again).

    Args:
        path: the output (folder or file) as the user gave it.
        inputs: paths the command reads (never deleted by a replacement).
        command: the command line, recorded in the lock and the output's marker (default
            ``sys.argv``).

    Yields:
        ``path`` made absolute.
    """
    final = _absolute(path)
    with _claims_guard:
        claim = _claims.get(final)
        if claim is not None and claim.thread == threading.get_ident():
            claim.depth += 1
        else:
            claim = None
    if claim is not None:
        try:
            yield final
        finally:
            claim.depth -= 1
        return
    inputs = tuple(str(i) for i in inputs)
    _check_target(path, inputs)
    if not _writing_rank():  # rank 0 of the torchrun job holds the claim
        yield final
        return
    command = _command_line(command)
    created = _make_parent(path, final)
    try:
        fd = _lock(path, final, command)
    except BaseException:
        _remove_empty(created)
        raise
    with _claims_guard:
        _claims[final] = _Claim(fd, threading.get_ident(), inputs, command)
    ok = False
    try:
        _clean_leftovers(final)
        yield final
        ok = True
    finally:
        with _claims_guard:
            del _claims[final]
        final.with_name(final.name + LOCK_SUFFIX).unlink(missing_ok=True)
        os.close(fd)
        if not ok:
            _remove_empty(created)


def claim_run_output(
    options: dict[str, Any], command: str | None = None
) -> contextlib.AbstractContextManager:
    """Claim a command's output before it starts (:func:`claim_output`): ``options["out"]``
    when it is a path given as text, with the command's inputs the other options whose values
    (or the items of their lists: ``--input a.nii b.nii``) name existing paths (an output
    holding one is never replaced). Without an output, a context that does nothing."""
    out = options.get("out")
    if not isinstance(out, str):
        return contextlib.nullcontext()
    values = [x for k, v in options.items() if k != "out"
              for x in (v if isinstance(v, list) else [v])]  # fmt: skip
    inputs = [v for v in values if isinstance(v, str) and v and os.path.lexists(v)]
    return claim_output(out, inputs=inputs, command=command)


def _put_in_place(tmp: Path, final: Path) -> None:
    """Rename the finished ``tmp`` to ``final``; an old ``final`` is moved aside first and
    deleted only once the new one is in place."""
    old = None
    if os.path.lexists(final):
        old = Path(tempfile.mkdtemp(prefix=f"{_tmp_prefix(final)}old-", dir=final.parent))
        old.rmdir()  # a unique name to rename to
        os.rename(final, old)
    try:
        os.rename(tmp, final)
    except OSError as e:
        if old is not None:
            os.rename(old, final)
        raise MrphysError(
            f"the results could not be moved to {final} ({e.strerror}); they are in {tmp}."
        ) from None
    if old is not None:
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
        if os.path.lexists(old):
            log.warning("the replaced output could not be deleted completely: %s remains", old)


@contextlib.contextmanager
def output_dir(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Context manager yielding a temporary folder that becomes the output ``path`` on success.

    The output is claimed and checked first (:func:`claim_output`, :func:`check_output`: an
    existing output is replaced only with ``overwrite`` and only if mrphys wrote it). The
    temporary folder ``.NAME.tmp-*`` beside ``path`` gets :data:`MARKER` (package version,
    command, time) and the modes the umask gives a new folder. On any exception it is removed
    and ``path`` is left as it was. Under ``torchrun`` only rank 0 writes ``path``; the other
    ranks get a scratch folder, deleted at the end.
    """
    if not _writing_rank():
        with tempfile.TemporaryDirectory(prefix="mrphys-rank-") as scratch:
            yield Path(scratch)
        return
    with claim_output(path) as final:
        check_output(path, overwrite)
        tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(final), dir=final.parent))
        try:
            _follow_umask(tmp, directory=True)
            claim = _claims.get(final)
            _write_marker(tmp / MARKER, claim.command if claim else _command_line(None))
            yield tmp
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _put_in_place(tmp, final)


def _write_marker(path: Path, command: str) -> None:
    from mrphys import __version__

    info = {"written_by": "mrphys", "version": __version__, "command": command,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}  # fmt: skip
    path.write_text(json.dumps(info, indent=2) + "\n")


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary file path in the same folder, renamed to ``path`` on success (with the
    mode the umask gives a new file)."""
    final = check_new_output(path, overwrite)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.tmp-", dir=final.parent, suffix=final.suffix)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        _follow_umask(tmp_path)
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
    if _is_tensor(obj) or isinstance(obj, np.ndarray):
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


def input_file(path: str | os.PathLike, kind: str) -> Path:
    """``path`` as a Path once it is known to be a readable file; else one sentence naming it.

    Args:
        path: the input file.
        kind: what it should be, for the sentence (``"NIfTI file"``).
    Raises:
        MrphysError: the path does not exist, is a directory, or cannot be opened for reading
            (permissions).
    """
    p = Path(path)
    if p.is_dir():
        raise MrphysError(f"{kind} {p} is a directory; expected a file.")
    if not p.is_file():
        raise MrphysError(f"{kind} {p} does not exist.")
    try:
        with open(p, "rb"):
            pass
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise MrphysError(f"{kind} {p} cannot be read ({reason}).") from None
    return p


def _read_nifti(path: str | os.PathLike, contiguous: bool = False) -> tuple[np.ndarray, np.ndarray]:
    import nibabel as nib

    p = input_file(path, "NIfTI file")
    try:
        img = nib.load(str(p))
        data = np.asarray(img.dataobj)
    except Exception as e:  # nibabel raises many types for broken files
        raise MrphysError(f"{p} could not be read as NIfTI ({type(e).__name__}: {e}).") from None
    if contiguous:
        data = np.ascontiguousarray(data)
    return data, np.asarray(img.affine)


#: reads started by :func:`prefetch_nifti`, by (resolved path, mtime, size): taken once
_PREFETCHED: dict[tuple[str, int, int], Any] = {}
_PREFETCH_LOCK = threading.Lock()


def _file_key(path: str | os.PathLike) -> tuple[str, int, int] | None:
    try:
        p = Path(path).resolve()
        st = p.stat()
    except (OSError, RuntimeError):
        return None
    return (str(p), st.st_mtime_ns, st.st_size) if p.is_file() else None


def prefetch_nifti(paths: Iterable[str | os.PathLike], *, contiguous: bool = False) -> None:
    """Start reading NIfTI files in one background thread; :func:`load_nifti` of the same
    (unchanged) file then returns that read (once) instead of reading again.

    A command calls this before it imports torch: gzip inflation and copies release the GIL,
    so on two cores the reading overlaps the import (``relax fit``: about a second of a
    128 x 128 x 64 x 12 complex volume). Errors are raised by the :func:`load_nifti` that
    takes the read, as they would be without prefetching. A new call forgets the reads of the
    previous one that were never taken.

    Args:
        paths: the files, read in this order (missing ones are left to :func:`load_nifti`).
        contiguous: return the arrays in C order (one copy, made in the background) instead
            of NIfTI's Fortran order: what a caller that reorders them anyway wants.
    """
    from concurrent.futures import ThreadPoolExecutor

    keys = [(k, p) for p in paths if (k := _file_key(p)) is not None]
    with _PREFETCH_LOCK:
        _PREFETCHED.clear()  # reads an earlier call left untaken (a failed batch input)
    if not keys:
        return
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mrphys-prefetch")
    with _PREFETCH_LOCK:
        for k, p in keys:
            if k not in _PREFETCHED:
                _PREFETCHED[k] = pool.submit(_read_nifti, p, contiguous)
    pool.shutdown(wait=False)


def load_nifti(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a NIfTI file: returns ``(array in NIfTI axis order, affine)``.

    A missing, unreadable or truncated file raises :class:`MrphysError` naming it. A read
    started by :func:`prefetch_nifti` for this file is taken (and forgotten) instead.
    """
    if _PREFETCHED:
        with _PREFETCH_LOCK:
            fut = _PREFETCHED.pop(_file_key(path), None)  # type: ignore[arg-type]
        if fut is not None:
            return fut.result()
    return _read_nifti(path)


def load_mat_array(path: str | os.PathLike, variable: str | None = None) -> np.ndarray:
    """Load one numeric array from a MATLAB ``.mat`` file (v5 via scipy, v7.3 via h5py).

    With ``variable=None`` the file must hold exactly one numeric array with two or more
    non-singleton dimensions (scalars and vectors beside it are ignored).
    """
    p = input_file(path, "MATLAB file")
    try:
        arrays = _mat_arrays(p)
    except Exception as e:  # scipy and h5py raise many types for broken or truncated files
        raise MrphysError(
            f"{p} could not be read as a MATLAB file ({type(e).__name__}: {e})."
        ) from None
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


def _mat_arrays(p: Path) -> dict[str, np.ndarray]:
    """The numeric arrays of a MATLAB file by name (v5 via scipy, v7.3 = HDF5 via h5py)."""
    import scipy.io

    arrays: dict[str, np.ndarray] = {}
    try:
        raw = scipy.io.loadmat(str(p))
    except NotImplementedError:  # v7.3 = HDF5
        import h5py

        with h5py.File(p, "r") as f:
            for k, v in f.items():
                if isinstance(v, h5py.Dataset) and v.dtype.kind in "biufcV":
                    a = v[()]
                    if a.dtype.names and {"real", "imag"} <= set(a.dtype.names):
                        a = a["real"] + 1j * a["imag"]
                    arrays[k] = np.asarray(a).T  # MATLAB column-major
        return arrays
    for k, v in raw.items():
        if not k.startswith("__") and isinstance(v, np.ndarray) and v.dtype.kind in "biufc":
            arrays[k] = v
    return arrays
