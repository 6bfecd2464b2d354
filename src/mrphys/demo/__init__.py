"""``mrphys demo``: one small example of each capability and a report of what it measured.

Each part is a module of this package with ``run_demo(out: Path, seed, device) -> markdown``; it
writes its figures and JSON into ``out`` (a folder named after the part) and returns a report
section whose figure links are relative to the report (``<part>/<file>.png``). :func:`run` runs
the chosen parts into a folder and writes ``report.md`` and ``config.json`` beside them.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from mrphys.errors import MrphysError

log = logging.getLogger(__name__)

__all__ = ["PARTS", "DemoReport", "parse_parts", "run"]

#: part name -> report title; the part's code is ``mrphys.demo.<name>``
PARTS = {
    "physics": "Physics core: Bloch simulation of spin-echo and bSSFP",
    "spin": "SPIN: sequence and reconstruction learned together",
    "relax": "Relaxometry from phase-cycled bSSFP",
    "dynamic": "Dynamic MRI: spatiotemporal INR against L+S",
}


@dataclass
class DemoReport:
    """What :func:`run` wrote.

    Attributes:
        report: path of ``report.md``.
        parts: the parts run, in order.
        seconds: wall time per part in s (rounded to 0.1 s).
    """

    report: Path
    parts: list[str]
    seconds: dict[str, float]


def parse_parts(parts: str | Sequence[str]) -> list[str]:
    """The part names of a comma-separated string (or list); unknown or no names are an error."""
    text = parts if isinstance(parts, str) else ",".join(parts)
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names or any(s not in PARTS for s in names):
        raise MrphysError(f"parts must name some of {', '.join(PARTS)}; got {text!r}.")
    return names


def run(
    out: str | Path,
    parts: str | Sequence[str] = tuple(PARTS),
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> DemoReport:
    """Run the demo parts into the existing folder ``out`` and write ``report.md`` and
    ``config.json`` (seed, device, parts, seconds per part) there.

    Args:
        out: existing folder; each part writes into ``out/<part>/`` (created here).
        parts: names from :data:`PARTS`, a list or a comma-separated string.
        seed: seed of every random draw of every part.
        device: a resolved device (``cpu`` or ``cuda``).
    """
    from mrphys import __version__
    from mrphys.io import save_json

    out, names = Path(out), parse_parts(parts)
    sections = [
        "# mrphys demo report\n",
        f"mrphys {__version__}, seed {seed}, device {device}. Every number below was "
        "computed by this run.\n",
    ]
    timings: dict[str, float] = {}
    for name in names:
        sub = out / name
        sub.mkdir()
        t0 = time.perf_counter()
        text = importlib.import_module(f"mrphys.demo.{name}").run_demo(
            sub, seed=seed, device=device
        )
        timings[name] = round(time.perf_counter() - t0, 1)
        log.info("demo part %s: %.1f s", name, timings[name])
        sections.append(f"## {PARTS[name]}\n\n_Wall time {timings[name]} s; files in `{name}/`._\n")
        sections.append(text.strip() + "\n")
    (out / "report.md").write_text("\n".join(sections))
    save_json(
        out / "config.json",
        {"seed": seed, "device": str(device), "parts": names, "seconds": timings},
    )
    return DemoReport(out / "report.md", names, timings)
