"""Many inputs for a single-input command (``mrphys relax fit``, ``mrphys dynamic recon``):
``--inputs``, ``--shard``, ``--manifest``. The work is :mod:`mrphys.batch`; each input runs the
command's own handler with ``--input`` set to it and ``--out`` set to ``OUT/NAME``."""

from __future__ import annotations

import argparse
import copy
from collections.abc import Callable, Sequence
from pathlib import Path

INPUTS_HELP = (
    "many inputs (paths or quoted glob patterns, '**' recursive) instead of --input: one output "
    "folder per input in --out, complete ones skipped, a manifest written (mrphys.batch)"
)
SHARD_HELP = "with --inputs: do every N-th input from the I-th (1-based), e.g. 2/4"
MANIFEST_HELP = "with --inputs: manifest JSON to merge into (default OUT/manifest.json)"
TEMPLATE_NOTE = (
    " With --inputs, {dir}, {stem} and {name} stand for each input's folder, file name "
    "without extension, and output name."
)


def add_batch_options(p: argparse.ArgumentParser, templated: Sequence[str] = ()) -> None:
    """Add ``--inputs``, ``--shard`` and ``--manifest`` to ``p``; ``--input`` becomes optional
    (one of the two is required, checked by :func:`run_batch_command`). The options named in
    ``templated`` (dests) say in their help that they take ``{dir}``/``{stem}``/``{name}``."""
    for a in p._actions:
        if "--input" in a.option_strings:
            a.required = False
        if a.dest in templated and a.help:
            a.help += TEMPLATE_NOTE
    p.add_argument("--inputs", nargs="+", metavar="PATH", help=INPUTS_HELP)
    p.add_argument("--shard", metavar="I/N", help=SHARD_HELP)
    p.add_argument("--manifest", help=MANIFEST_HELP)


def is_batch(args: argparse.Namespace) -> bool:
    """Whether the command runs as a batch (``--inputs``) or lacks ``--input``."""
    return getattr(args, "inputs", None) is not None or getattr(args, "input", None) is None


def run_batch_command(
    args: argparse.Namespace,
    handler: Callable[[argparse.Namespace], int],
    kind: str = "any",
    templated: Sequence[str] = (),
) -> int:
    """Run ``handler`` once per input of ``--inputs`` (this ``--shard``); returns 1 when an
    input failed (each failure is in the manifest), else 0."""
    from mrphys.batch import expand_inputs, input_stem, output_names, parse_shard, run_batch
    from mrphys.errors import MrphysError, check

    if args.inputs is None:
        raise MrphysError("--input (one input) or --inputs (many) is required.")
    check(args.input is None, "give --input (one input) or --inputs (many), not both.")
    shard = parse_shard(args.shard)
    inputs = expand_inputs(args.inputs, kind)
    names = output_names(inputs)
    name_of = dict(zip(inputs, names, strict=True))

    def work(inp: Path, dest: Path) -> None:
        one = copy.copy(args)
        one.input, one.out, one.inputs, one.shard, one.manifest = (
            str(inp),
            str(dest),
            None,
            None,
            None,
        )
        for k in templated:
            v = getattr(args, k, None)
            if isinstance(v, str):
                v = v.replace("{dir}", str(inp.parent)).replace("{stem}", input_stem(inp))
                setattr(one, k, v.replace("{name}", name_of[inp]))
        rc = handler(one)
        if rc:
            raise MrphysError(f"the command exited with status {rc}.")

    res = run_batch(inputs, args.out, work, shard=shard, manifest=args.manifest,
                    overwrite=args.overwrite, names=names)  # fmt: skip
    counts = ", ".join(f"{n} {s}" for s, n in sorted(res.counts().items()))
    print(f"batch {shard[0]}/{shard[1]}: {counts}; manifest {res.manifest}")
    for e in res.failed:
        print(f"failed: {e.input}: {e.error}")
    return 1 if res.failed else 0
