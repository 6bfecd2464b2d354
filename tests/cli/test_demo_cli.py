"""`mrphys demo`: report, figures it links, config, and bad input (exit 2, nothing written)."""

from __future__ import annotations

import json
import re

import pytest

from mrphys.cli import main


def _run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as e:  # argparse errors
        return int(e.code)


def _check_report(out, parts: list[str]) -> str:
    report = (out / "report.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert links, "the report shows no figure"
    for link in links:  # every figure the report shows exists, relative to the report
        assert (out / link).is_file(), link
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["parts"] == parts and set(cfg["seconds"]) == set(parts)
    return report


def test_physics_part_writes_report_and_figures(tmp_path) -> None:
    out = tmp_path / "demo"
    assert _run(["demo", "--parts", "physics", "--out", str(out)]) == 0
    report = _check_report(out, ["physics"])
    assert "PSNR" in report


def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys) -> None:
    out = tmp_path / "demo"
    assert _run(["demo", "--parts", "physics,nope", "--out", str(out)]) == 2
    assert not out.exists()
    assert "--parts" in capsys.readouterr().err
    out.mkdir()
    assert _run(["demo", "--parts", "physics", "--out", str(out)]) == 2
    assert list(out.iterdir()) == []


@pytest.mark.slow
def test_spin_and_relax_parts_link_their_figures(tmp_path) -> None:
    out = tmp_path / "demo"
    assert _run(["demo", "--parts", "spin,relax", "--out", str(out)]) == 0
    _check_report(out, ["spin", "relax"])
