"""The ``mrphys`` command. One module per subcommand; each has ``register(subparsers)``
that adds its parser and sets ``func``.

A subcommand module keeps heavy imports inside its handler so that ``mrphys --help`` stays fast,
parses, calls one library function and writes files. The library checks the values (once, where
they are defined); a user mistake (:class:`mrphys.MrphysError`, a bad option) prints one sentence
and exits with status 2, and a sentence that starts with the name of an option's value (``tr_ms
must ...``) names the option (``--tr-ms must ...``). Before a command runs, :func:`main` claims its
``--out`` (:func:`mrphys.io.claim_run_output`: one run per output, odd targets refused).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import shlex
import sys
from typing import Any

from mrphys import __version__
from mrphys.errors import MrphysError

# subcommand modules, in the order --help lists them
SUBCOMMANDS = ["simulate", "spin", "relax", "design", "dynamic", "demo"]


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
        mod.register(sub)
    return parser


def arg(p: argparse.ArgumentParser, flag: str, default: Any = None, help: str | None = None, **kw):
    """``p.add_argument(flag, default=..., help=...)`` whose type follows a non-None default."""
    if default is not None and not {"type", "action"} & set(kw):
        kw["type"] = type(default)
    return p.add_argument(flag, default=default, help=help, **kw)


def positive(text: str) -> int:
    """argparse type: a positive integer (a bad value is a one-sentence usage error, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {value}")
    return value


def seed_type(text: str) -> int:
    """argparse type: a seed in 0 .. 2^63 - 1 (a bad value is a one-sentence usage error), by
    the library's rule (:func:`mrphys.utils.check_seed`)."""
    from mrphys.utils import check_seed

    try:
        value: object = int(text)
    except ValueError:
        value = text
    try:
        return check_seed(value)
    except MrphysError as e:  # "seed must ...; got X." -> argparse's "argument --seed: must ..."
        raise argparse.ArgumentTypeError(str(e).removeprefix("seed ").rstrip(".")) from None


def add_common(
    p: argparse.ArgumentParser,
    out: bool = True,
    seed: bool = True,
    out_help: str = "output directory",
    overwrite_help: str = "replace an existing output directory",
    device_help: str | None = "compute device",
) -> None:
    """Options every command shares: --seed, --device, --out, --overwrite."""
    if seed:
        arg(p, "--seed", 0, "random seed, 0 .. 2^63 - 1 (default 0)", type=seed_type)
    arg(p, "--device", "auto", device_help, choices=["auto", "cpu", "cuda"])
    if out:
        p.add_argument("--out", required=True, help=out_help)
        p.add_argument("--overwrite", action="store_true", help=overwrite_help)


def main(argv: list[str] | None = None) -> int:
    # the OpenMP wait policy is read once, when torch loads: set it before any subcommand imports
    # torch (mrphys.runtime; `import mrphys` itself changes no environment variable)
    from mrphys.runtime import openmp_wait_defaults

    openmp_wait_defaults()
    if "WORLD_SIZE" in os.environ:  # under torchrun: join the job; rank 0 alone prints
        from mrphys.train import init_distributed, is_writer

        init_distributed()
        if not is_writer():
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (for the life of the process)
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from mrphys.io import claim_run_output

    # options that take a word from a fixed list (--sequence bssfp) name no input file, even
    # where a file of that name exists (e.g. an earlier output called bssfp)
    paths = {k: v for k, v in vars(args).items() if k not in _choice_options(parser)}
    if getattr(args, "inputs", None) is not None:  # a batch claims each input's output itself
        paths.pop("out", None)  # (its shards share --out: mrphys.batch)
    try:
        with claim_run_output(paths, shlex.join(["mrphys", *map(str, argv)])):
            rc = args.func(args)
    except MrphysError as e:
        sys.stderr.write(f"mrphys {args.command}: error: {_as_option(str(e), args)}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("mrphys: interrupted\n")
        return 130
    return int(rc or 0)


def _choice_options(parser: argparse.ArgumentParser) -> set[str]:
    """The options of ``parser`` and its subcommands whose values come from a fixed list."""
    dests: set[str] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                dests |= _choice_options(sub)
        elif action.choices is not None:
            dests.add(action.dest)
    return dests


def _as_option(message: str, args: argparse.Namespace) -> str:
    """``tr_ms must ...`` -> ``--tr-ms must ...`` when ``tr_ms`` is an option of this command
    (and ``output ...`` -> ``--out ...``)."""
    head, sep, rest = message.partition(" ")
    if head == "output" and isinstance(getattr(args, "out", None), str):
        return f"--out{sep}{rest}"  # the library's sentences about the output (mrphys.io)
    if head in vars(args) and head not in ("command", "func", "verbose"):
        return f"--{head.replace('_', '-')}{sep}{rest}"
    return message


def new_output(args: argparse.Namespace) -> None:
    """Fail before any work unless ``--out`` may be written: new, or (with ``--overwrite``) an
    output mrphys wrote that holds no input (:func:`mrphys.io.check_output`)."""
    from mrphys.io import check_output

    check_output(args.out, args.overwrite)


def options(args: argparse.Namespace, *drop: str) -> dict[str, Any]:
    """The parsed options as a dict for ``config.json`` (without the handler and ``drop``)."""
    return {k: v for k, v in vars(args).items() if k not in drop and not callable(v)}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
