"""``mrphys demo``: the main job on built-in defaults; writes figures and a report.

Runs one small example of each capability (physics core, SPIN, relaxometry, dynamic MRI) into
``--out`` (default ``demo_output``) and writes ``report.md`` and ``config.json`` there.
"""

from __future__ import annotations

import argparse

PARTS = ["physics", "spin", "relax", "dynamic"]  # as mrphys.demo.PARTS (not imported: no torch)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the built-in demonstration and write a report")
    p.add_argument("--out", default="demo_output", help="output directory (default demo_output)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument(
        "--parts",
        default=",".join(PARTS),
        help=f"comma-separated parts to run (default all: {','.join(PARTS)})",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mrphys import demo
    from mrphys.io import output_dir
    from mrphys.utils import resolve_device

    parts = demo.parse_parts(args.parts)  # before the output folder is made
    with output_dir(args.out, overwrite=args.overwrite) as tmp:
        demo.run(
            tmp,
            parts,
            seed=args.seed,
            device=resolve_device(args.device),
            status=lambda line: print(line, flush=True),
        )
    print(f"demo written to {args.out}/report.md")
    return 0
