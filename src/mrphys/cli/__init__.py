"""The ``mrphys`` command. One module per subcommand; each has ``register(subparsers)``
(``add_parser(subparsers)`` is accepted as an alias) that adds its parser and sets ``func``.

A subcommand module keeps heavy imports inside its handler so that ``mrphys --help`` stays fast.
User mistakes (:class:`mrphys.MrphysError`, bad options) print one sentence and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from mrphys import __version__
from mrphys.errors import MrphysError

# subcommand modules, in the order --help lists them
SUBCOMMANDS = ["simulate", "spin", "relax", "dynamic", "demo"]


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad option as one sentence and exits 2 (no usage dump)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message}. See '{self.prog} --help'.\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mrphys", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"mrphys {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in SUBCOMMANDS:
        try:
            mod = importlib.import_module(f"mrphys.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"mrphys.cli.{name}":
                continue  # subcommand not installed in this build
            raise
        hook = getattr(mod, "register", None) or mod.add_parser
        hook(sub)
    return parser


def add_common(p: argparse.ArgumentParser, out: bool = True, seed: bool = True) -> None:
    """Options every command shares: --seed, --device, --out, --overwrite."""
    if seed:
        p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--device", default="auto", choices=["auto", "cpu", "cuda"], help="compute device"
    )
    if out:
        p.add_argument("--out", required=True, help="output directory")
        p.add_argument(
            "--overwrite", action="store_true", help="replace an existing output directory"
        )


def main(argv: list[str] | None = None) -> int:
    # the OpenMP wait policy is read once, when torch loads: set it before any subcommand imports
    # torch (mrphys.runtime; `import mrphys` itself changes no environment variable)
    from mrphys.runtime import openmp_wait_defaults

    openmp_wait_defaults()
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = args.func(args)
    except MrphysError as e:
        sys.stderr.write(f"mrphys {args.command}: error: {e}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("mrphys: interrupted\n")
        return 130
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
