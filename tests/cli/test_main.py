"""The `mrphys` entry point: a cheap parser, library sentences that name the option."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from mrphys.cli import _as_option, positive


def test_building_the_parser_loads_no_torch() -> None:
    """`mrphys --help` stays fast: the method list of `dynamic recon` is read only when used."""
    code = (
        "import sys; from mrphys.cli import build_parser; p = build_parser(); "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_library_sentence_names_the_option() -> None:
    args = argparse.Namespace(tr_ms=5.0, input="x", command="relax", func=print)
    assert _as_option("tr_ms must lie in (0, 100] ms.", args) == "--tr-ms must lie in (0, 100] ms."
    assert _as_option("input is complex.", args) == "--input is complex."
    # other sentences, and the names that are no options, stay as they are
    assert _as_option("SNR must be positive.", args) == "SNR must be positive."
    assert _as_option("command x failed.", args) == "command x failed."


def test_output_sentences_name_the_out_option() -> None:
    """mrphys.io says "output X ..."; a command that has --out says "--out X ..."."""
    message = "output run already exists; pass --overwrite to replace it."
    with_out = argparse.Namespace(out="run", command="simulate", func=print)
    assert (
        _as_option(message, with_out) == "--out run already exists; pass --overwrite to replace it."
    )
    assert _as_option(message, argparse.Namespace(command="x", func=print)) == message


def test_positive_integer_option() -> None:
    assert positive("3") == 3
    for bad, message in (("0", "got 0"), ("-2", "got -2"), ("two", "got 'two'")):
        with pytest.raises(
            argparse.ArgumentTypeError, match=f"must be a positive integer; {message}"
        ):
            positive(bad)
