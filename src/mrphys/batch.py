"""Batch work over many inputs: one output folder per input, restartable, shardable.

``mrphys relax fit`` and ``mrphys dynamic recon`` take many inputs (``--inputs`` with paths or
glob patterns) and write one output folder per input into the batch folder ``--out``:

- the inputs are expanded and sorted (the same list on every machine), and ``--shard I/N``
  takes every N-th of them from the I-th (1-based), so N jobs, run anywhere and at any time,
  share the list without talking to each other (a batch needs no ``torchrun``: each input is one
  process's work);
- an input whose output folder is complete (it holds :data:`mrphys.io.MARKER`, which a folder
  gets only once all of it is in place) is skipped: an interrupted batch, run again, does only
  what is missing;
- an input that fails is recorded as failed and the batch goes on; the command exits non-zero
  at the end;
- a manifest (JSON: input, output, status, seconds, error) is merged into ``--manifest``
  (default ``OUT/manifest.json``) at the end, atomically and under a lock, so the shards of one
  batch, running concurrently, end with one manifest of all inputs.

The work on one input is a function ``work(input, output)`` that writes the folder ``output``
(atomically, with :func:`mrphys.io.output_dir`). Nothing here knows about a method: the CLI passes
its single-input handler.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mrphys.errors import MrphysError, check
from mrphys.train import Record

log = logging.getLogger(__name__)

__all__ = [
    "MANIFEST_FORMAT",
    "BatchResult",
    "Entry",
    "expand_inputs",
    "input_stem",
    "is_complete",
    "output_names",
    "parse_shard",
    "read_manifest",
    "run_batch",
    "select_shard",
]

#: the ``format`` key of a manifest file
MANIFEST_FORMAT = "mrphys-batch-manifest"
_NIFTI = (".nii.gz", ".nii")


@dataclass
class Entry(Record):
    """What happened to one input of a batch."""

    #: the input path, absolute
    input: str
    #: its output folder, absolute
    output: str
    #: ``done`` (written by this run), ``failed``, or ``complete`` (written by an earlier run,
    #: skipped; an earlier manifest entry is kept instead where there is one)
    status: str
    #: wall time of the work in s (0 for a skipped input)
    seconds: float = 0.0
    #: one line saying why it failed (``failed`` only)
    error: str | None = None
    #: ``I/N``: the shard that handled it
    shard: str = "1/1"


@dataclass
class BatchResult(Record):
    """A batch run: this shard's entries and the merged manifest it wrote."""

    #: this run's entries, one per input of its shard, in input order
    entries: list[Entry] = field(default_factory=list)
    #: the manifest file written (all shards' entries)
    manifest: str = ""

    @property
    def failed(self) -> list[Entry]:
        """The entries that failed in this run."""
        return [e for e in self.entries if e.status == "failed"]

    def counts(self) -> dict[str, int]:
        """Number of this run's entries per status."""
        out: dict[str, int] = {}
        for e in self.entries:
            out[e.status] = out.get(e.status, 0) + 1
        return out


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"I/N"`` (1 <= I <= N) as ``(I, N)``; ``None`` is ``(1, 1)`` (the whole batch).

    Raises:
        MrphysError: ``text`` is not of the form ``I/N`` with ``1 <= I <= N``.
    """
    if text is None:
        return 1, 1
    head, sep, tail = str(text).partition("/")
    try:
        i, n = int(head), int(tail)
    except ValueError:
        i, n = 0, 0
    if not sep or not 1 <= i <= n:
        raise MrphysError(f"shard must be I/N with 1 <= I <= N (e.g. 1/4); got {text!r}.")
    return i, n


def expand_inputs(patterns: Sequence[str | os.PathLike], kind: str = "any") -> list[Path]:
    """The inputs named by ``patterns``: existing paths as they are, others as glob patterns
    (``**`` recursive); absolute, without duplicates, sorted.

    Args:
        kind: ``file``, ``dir`` or ``any``: what each input must be.

    Raises:
        MrphysError: a pattern matches nothing, an input is not of ``kind``, or none are given.
    """
    check(kind in ("file", "dir", "any"), f"kind must be file, dir or any; got {kind!r}.")
    found: set[Path] = set()
    for pat in patterns:
        text = os.fspath(pat)
        if os.path.lexists(text):
            hits = [text]
        else:
            hits = glob.glob(os.path.expanduser(text), recursive=True)
        if not hits:
            raise MrphysError(f"input {text} does not exist and matches no file.")
        for h in hits:
            p = Path(os.path.abspath(h))
            if kind == "file" and not p.is_file():
                raise MrphysError(f"input {p} is not a file.")
            if kind == "dir" and not p.is_dir():
                raise MrphysError(f"input {p} is not a folder.")
            found.add(p)
    check(bool(found), "no inputs were given.")
    return sorted(found)


def select_shard(items: Sequence, shard: tuple[int, int]) -> list:
    """Every ``N``-th item from the ``I``-th (``shard = (I, N)``, 1-based): the ``N`` shards
    tile ``items`` and differ in size by at most one."""
    i, n = shard
    check(1 <= i <= n, f"shard must satisfy 1 <= I <= N; got {i}/{n}.")
    return list(items[i - 1 :: n])


def input_stem(p: Path) -> str:
    """The name of input ``p`` without its extension (``.nii.gz``, ``.nii``, any other)."""
    for ext in _NIFTI:
        if p.name.endswith(ext):
            return p.name[: -len(ext)]
    return p.stem if p.is_file() else p.name


def output_names(inputs: Sequence[Path]) -> list[str]:
    """One folder name per input, unique and stable: the input's name without its extension
    when those are unique; else, when all inputs have one name, the path of the folder holding
    each below the inputs' common folder (``s01/pc.nii.gz``, ``s02/pc.nii.gz`` -> ``s01``,
    ``s02``); else that path and the name (``a/x/pc.nii.gz`` -> ``a_x_pc``)."""
    stems = [input_stem(p) for p in inputs]
    if len(set(stems)) == len(stems):
        return stems
    common = Path(os.path.commonpath([str(p.parent) for p in inputs]))
    folders = ["_".join(p.parent.relative_to(common).parts) for p in inputs]
    if len(set(stems)) == 1 and all(folders) and len(set(folders)) == len(folders):
        return folders
    names = ["_".join(filter(None, [f, s])) for f, s in zip(folders, stems, strict=True)]
    check(len(set(names)) == len(names), "the inputs do not have unique names.")
    return names


def is_complete(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` is a finished output of mrphys (it holds :data:`mrphys.io.MARKER`;
    :func:`mrphys.io.output_dir` puts a folder in place only when all of it was written)."""
    from mrphys.io import MARKER

    p = Path(folder)
    return p.is_dir() and not p.is_symlink() and (p / MARKER).is_file()


def read_manifest(path: str | os.PathLike) -> list[Entry]:
    """The entries of a manifest file (none when it does not exist).

    Raises:
        MrphysError: the file is no manifest of mrphys.
    """
    from mrphys.io import load_json

    p = Path(path)
    if not p.exists():
        return []
    d = load_json(p)
    if not (isinstance(d, dict) and d.get("format") == MANIFEST_FORMAT):
        raise MrphysError(f"{p} is not an mrphys batch manifest (no format key {MANIFEST_FORMAT}).")
    try:
        return [Entry(**e) for e in d.get("entries", [])]
    except TypeError:
        raise MrphysError(f"{p} holds manifest entries of an unknown form.") from None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (created) for the block; concurrent shards take turns."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
        except ImportError:  # Windows: no flock; shards should then write their own manifests
            pass
        yield
    finally:
        os.close(fd)


def _merge_manifest(path: Path, entries: list[Entry]) -> None:
    """Merge ``entries`` into the manifest ``path`` (by input; a ``complete`` entry does not
    replace an earlier record of that input), atomically, under a lock."""
    from mrphys import __version__
    from mrphys.io import save_json

    with _locked(path.with_name(f".{path.name}.lock")):
        merged = {e.input: e for e in read_manifest(path)}
        for e in entries:
            if e.status == "complete" and e.input in merged:
                continue
            merged[e.input] = e
        rows = [merged[k].to_dict() for k in sorted(merged)]
        doc = {"format": MANIFEST_FORMAT, "version": __version__, "entries": rows}
        save_json(path, doc)  # atomic


def run_batch(
    inputs: Sequence[Path],
    out: str | os.PathLike,
    work: Callable[[Path, Path], object],
    *,
    shard: tuple[int, int] = (1, 1),
    manifest: str | os.PathLike | None = None,
    overwrite: bool = False,
    names: Sequence[str] | None = None,
) -> BatchResult:
    """Run ``work(input, output_folder)`` for this shard's inputs whose output is not complete.

    Args:
        inputs: all inputs of the batch (see :func:`expand_inputs`), in a fixed order.
        out: the batch folder; input ``k`` writes ``out / names[k]``.
        work: writes one output folder (atomically); a :class:`MrphysError` or any other
            exception marks the input failed and the batch goes on (Ctrl-C stops it).
        shard: ``(I, N)``: this job does :func:`select_shard` of the inputs.
        manifest: the manifest file (default ``out / "manifest.json"``).
        overwrite: redo inputs whose outputs are complete (``work`` must then replace them).
        names: output folder names (default :func:`output_names`).

    Returns:
        this run's entries and the manifest path. The manifest is written at the end, also
        when ``work`` raised ``KeyboardInterrupt`` (with the entries finished by then).
    """
    inputs = [Path(os.path.abspath(p)) for p in inputs]
    check(len(inputs) > 0, "no inputs were given.")
    names = list(names) if names is not None else output_names(inputs)
    check(len(names) == len(inputs), "one output name per input is needed.")
    folder = Path(os.path.abspath(out))
    if os.path.lexists(folder) and not folder.is_dir():
        raise MrphysError(f"output {out} is not a folder; a batch writes a folder per input.")
    folder.mkdir(parents=True, exist_ok=True)
    mpath = Path(manifest) if manifest is not None else folder / "manifest.json"
    read_manifest(mpath)  # a file that is no manifest is refused before any work
    tag = f"{shard[0]}/{shard[1]}"
    mine = select_shard(list(zip(inputs, names, strict=True)), shard)
    entries: list[Entry] = []
    try:
        for inp, name in mine:
            dest = folder / name
            if is_complete(dest) and not overwrite:
                entries.append(Entry(str(inp), str(dest), "complete", shard=tag))
                log.info("%s: complete, skipped", dest)
                continue
            t0 = time.perf_counter()
            try:
                work(inp, dest)
            except (Exception, SystemExit) as e:  # one failing input does not stop the batch
                msg = str(e) if isinstance(e, MrphysError) else f"{type(e).__name__}: {e}"
                if not isinstance(e, MrphysError):
                    log.debug("%s failed:\n%s", inp, traceback.format_exc())
                log.warning("%s failed: %s", inp, msg)
                secs = round(time.perf_counter() - t0, 3)
                entries.append(Entry(str(inp), str(dest), "failed", secs, msg, tag))
                continue
            secs = round(time.perf_counter() - t0, 3)
            entries.append(Entry(str(inp), str(dest), "done", secs, shard=tag))
    finally:
        _merge_manifest(mpath, entries)
    return BatchResult(entries, str(mpath))
