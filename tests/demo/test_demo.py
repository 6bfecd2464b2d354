"""mrphys.demo.run: each part into its folder, one report whose figure links resolve, a config."""

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
            return f"![{name}]({out.name}/{name}.png)\n\n{name} text, seed {seed}.\n"

        module = types.ModuleType(f"mrphys.demo.{name}")
        module.run_demo = run_demo
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


def test_parts_are_checked_before_anything_is_written(tmp_path) -> None:
    assert demo.parse_parts(" physics ,relax") == ["physics", "relax"]
    assert demo.parse_parts(["spin"]) == ["spin"]
    for bad in ("physics,nope", ",", ""):
        with pytest.raises(MrphysError, match="parts must name some of physics, spin"):
            demo.run(tmp_path, bad)
    assert list(tmp_path.iterdir()) == []
