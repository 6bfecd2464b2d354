"""`mrphys demo`: report, figures it links, config, and bad input (exit 2, nothing written)."""

from __future__ import annotations

import json
import re

import pytest


def _check_report(out, parts: list[str]) -> str:
    report = (out / "report.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert links, "the report shows no figure"
    for link in links:  # every figure the report shows exists, relative to the report
        assert (out / link).is_file(), link
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["parts"] == parts and set(cfg["seconds"]) == set(parts)
    return report


def test_physics_part_writes_report_and_figures(tmp_path, cli) -> None:
    out = tmp_path / "demo"
    r = cli.ok("demo", "--parts", "physics", "--out", out)
    assert "report.md" in r.out
    report = _check_report(out, ["physics"])
    assert "PSNR" in report
    # the CLI prints one line before the part (plan, expected time) and one after (the finding)
    lines = r.out.splitlines()
    assert lines[0].startswith("mrphys demo: 1 part(s), about ")
    assert re.fullmatch(r"\[1/1\] physics: Bloch-simulate .+ \(about \d+ s\)", lines[1])
    done = re.fullmatch(
        r"\[1/1\] physics done in (\d+\.\d) s: spin echo vs SPIN Eq. 13: PSNR .+", lines[2]
    )
    assert (
        done
        and float(done[1]) == json.loads((out / "config.json").read_text())["seconds"]["physics"]
    )
    assert lines[2].split(": ", 1)[1] in report  # the report states the same finding


def test_bad_input_exits_2_and_writes_nothing(tmp_path, cli) -> None:
    out = tmp_path / "demo"
    cli.fails("demo", "--parts", "physics,nope", "--out", out, out=out, says="--parts")
    cli.fails("demo", "--parts", ",", "--out", out, out=out, says="--parts")
    out.mkdir()
    cli.fails("demo", "--parts", "physics", "--out", out, out=out, says="--overwrite")
    assert list(out.iterdir()) == []


@pytest.mark.slow
def test_spin_and_relax_parts_link_their_figures(tmp_path, cli) -> None:
    out = tmp_path / "demo"
    cli.ok("demo", "--parts", "spin,relax", "--out", out)
    _check_report(out, ["spin", "relax"])


@pytest.mark.slow
def test_dynamic_part_compares_every_method_on_the_same_data(tmp_path, cli) -> None:
    """About a minute: the INR (demo-sized) against gridding and L+S, numbers as measured."""
    out = tmp_path / "demo"
    r = cli.ok("demo", "--parts", "dynamic", "--out", out)
    _check_report(out, ["dynamic"])
    res = json.loads((out / "dynamic" / "dynamic.json").read_text())
    assert list(res["metrics"]) == ["gridding", "L+S", "INR"]
    assert res["inr_config"] == {"iterations": 250, "lr": 0.003}
    psnr = {k: v["psnr_db"] for k, v in res["metrics"].items()}
    assert psnr["INR"] > psnr["gridding"] + 10  # the INR learned the series, not the aliasing
    assert f"INR {psnr['INR']:.2f} dB" in r.out  # the status line states the measured number
