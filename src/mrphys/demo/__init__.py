"""``mrphys demo``: one small example of each capability and a report of what it measured.

Each part is a module of this package with ``PLAN`` (one line: what it will do),
``EXPECTED_SECONDS`` (its wall time on 2 quiet CPU cores) and
``run_demo(out: Path, seed, device) -> PartResult``; it writes its figures and JSON into ``out`` (a
folder named after the part) and returns a report section whose figure links are relative to the
report (``<part>/<file>.png``) and a one-line summary of what it found. :func:`run` runs the
chosen parts into a folder, reports one status line before and one after each part, and writes
``report.md`` and ``config.json`` beside them.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from mrphys.errors import MrphysError

log = logging.getLogger(__name__)

__all__ = ["PARTS", "DemoReport", "PartResult", "parse_parts", "run"]

#: part name -> report title; the part's code is ``mrphys.demo.<name>``
PARTS = {
    "physics": "Physics core: Bloch simulation of spin-echo and bSSFP",
    "spin": "SPIN: sequence and reconstruction learned together",
    "relax": "Relaxometry from phase-cycled bSSFP",
    "dynamic": "Dynamic MRI: spatiotemporal INR against L+S",
}


@dataclass
class PartResult:
    """What one part's ``run_demo`` returns.

    Attributes:
        markdown: the part's report section (figure links relative to the report).
        summary: one line of what it found, with the measured numbers (no trailing period).
    """

    markdown: str
    summary: str


@dataclass
class DemoReport:
    """What :func:`run` wrote.

    Attributes:
        report: path of ``report.md``.
        parts: the parts run, in order.
        seconds: wall time per part in s (rounded to 0.1 s).
        summaries: the one-line finding of each part.
    """

    report: Path
    parts: list[str]
    seconds: dict[str, float]
    summaries: dict[str, str]


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
    status: Callable[[str], None] | None = None,
) -> DemoReport:
    """Run the demo parts into the existing folder ``out`` and write ``report.md`` and
    ``config.json`` (seed, device, parts, seconds and summary per part) there.

    Args:
        out: existing folder; each part writes into ``out/<part>/`` (created here).
        parts: names from :data:`PARTS`, a list or a comma-separated string.
        seed: seed of every random draw of every part.
        device: a resolved device (``cpu`` or ``cuda``).
        status: called with one line before each part (what it will do, the expected seconds)
            and one after (what it found, the seconds it took); the lines are also logged.
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
    summaries: dict[str, str] = {}
    modules = {name: importlib.import_module(f"mrphys.demo.{name}") for name in names}

    def say(line: str) -> None:
        log.info("%s", line)
        if status is not None:
            status(line)

    expected = sum(m.EXPECTED_SECONDS for m in modules.values())
    say(f"mrphys demo: {len(names)} part(s), about {expected:.0f} s on 2 quiet CPU cores")
    for i, (name, module) in enumerate(modules.items(), 1):
        tag = f"[{i}/{len(names)}] {name}"
        say(f"{tag}: {module.PLAN} (about {module.EXPECTED_SECONDS:.0f} s)")
        sub = out / name
        sub.mkdir()
        t0 = time.perf_counter()
        res = module.run_demo(sub, seed=seed, device=device)
        timings[name] = round(time.perf_counter() - t0, 1)
        summaries[name] = res.summary
        say(f"{tag} done in {timings[name]:.1f} s: {res.summary}")
        sections.append(f"## {PARTS[name]}\n\n_Wall time {timings[name]} s; files in `{name}/`._\n")
        sections.append(f"**Found:** {res.summary}.\n")
        sections.append(res.markdown.strip() + "\n")
    (out / "report.md").write_text("\n".join(sections))
    save_json(
        out / "config.json",
        {
            "seed": seed,
            "device": str(device),
            "parts": names,
            "seconds": timings,
            "summaries": summaries,
        },
    )
    return DemoReport(out / "report.md", names, timings, summaries)
