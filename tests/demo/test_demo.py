"""mrphys.demo.run: each part into its folder, one report whose figure links resolve, a config,
and one status line before and one after each part."""

from __future__ import annotations

import json
import re
import sys
import types

import pytest

from mrphys import demo
from mrphys.errors import MrphysError


@pytest.fixture
def fake_parts(monkeypatch):
    """Two cheap parts in place of the real ones: each writes a figure and links it."""
    calls = []
    for name in ("one", "two"):

        def run_demo(out, seed, device, name=name):
            calls.append((name, out.name, seed, str(device)))
            (out / f"{name}.png").write_bytes(b"png")
            text = f"![{name}]({out.name}/{name}.png)\n\n{name} text, seed {seed}.\n"
            return demo.PartResult(text, f"{name} found {len(name)} letters")

        module = types.ModuleType(f"mrphys.demo.{name}")
        module.run_demo = run_demo
        module.PLAN = f"count the letters of {name}"
        module.EXPECTED_SECONDS = 10.0 if name == "one" else 4.0
        monkeypatch.setitem(sys.modules, module.__name__, module)
        monkeypatch.setitem(demo.PARTS, name, f"Part {name}")
    return calls


def test_run_writes_each_part_into_its_folder_and_one_report(tmp_path, fake_parts) -> None:
    res = demo.run(tmp_path, "two, one", seed=7, device="cpu")
    assert fake_parts == [("two", "two", 7, "cpu"), ("one", "one", 7, "cpu")]
    assert res.report == tmp_path / "report.md" and res.parts == ["two", "one"]
    report = res.report.read_text()
    assert report.index("## Part two") < report.index("## Part one") and "seed 7" in report
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert links == ["two/two.png", "one/one.png"]
    assert all((tmp_path / link).is_file() for link in links)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert (
        cfg["seed"] == 7
        and cfg["parts"] == ["two", "one"]
        and set(cfg["seconds"]) == {"one", "two"}
    )
    assert (
        cfg["summaries"]
        == res.summaries
        == {
            "two": "two found 3 letters",
            "one": "one found 3 letters",
        }
    )
    assert "**Found:** two found 3 letters." in report


def test_status_lines_say_what_each_part_will_do_and_what_it_found(tmp_path, fake_parts) -> None:
    lines: list[str] = []
    parts_run: list[int] = []  # how many parts had run when each line came

    def status(line: str) -> None:
        lines.append(line)
        parts_run.append(len(fake_parts))

    res = demo.run(tmp_path, "two,one", status=status)
    assert parts_run == [0, 0, 1, 1, 2]  # "before" lines come before the part, "done" after
    assert len(lines) == 5  # the total, then one before and one after each part, in order
    assert lines[0] == "mrphys demo: 2 part(s), about 14 s on 2 quiet CPU cores"
    assert lines[1] == "[1/2] two: count the letters of two (about 4 s)"
    assert lines[3] == "[2/2] one: count the letters of one (about 10 s)"
    for line, name in ((lines[2], "two"), (lines[4], "one")):
        done = re.fullmatch(rf"\[\d/2\] {name} done in (\d+\.\d) s: {name} found 3 letters", line)
        assert done and float(done[1]) == res.seconds[name]


def test_every_real_part_states_its_plan_and_expected_time() -> None:
    import importlib

    total = 0.0
    for name in demo.PARTS:
        module = importlib.import_module(f"mrphys.demo.{name}")
        assert module.PLAN and "\n" not in module.PLAN and not module.PLAN.endswith(".")
        assert 0 < module.EXPECTED_SECONDS <= 90, name
        total += module.EXPECTED_SECONDS
    assert total <= 180  # `mrphys demo` within 3 minutes on 2 quiet cores


def test_parts_are_checked_before_anything_is_written(tmp_path) -> None:
    assert demo.parse_parts(" physics ,relax") == ["physics", "relax"]
    assert demo.parse_parts(["spin"]) == ["spin"]
    for bad in ("physics,nope", ",", ""):
        with pytest.raises(MrphysError, match="parts must name some of physics, spin"):
            demo.run(tmp_path, bad)
    assert list(tmp_path.iterdir()) == []
