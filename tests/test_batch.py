"""mrphys.batch: many inputs, one output folder each, shards that tile the list, complete outputs
skipped, failures recorded without stopping the batch, one merged manifest."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from mrphys.batch import (
    expand_inputs,
    is_complete,
    output_names,
    parse_shard,
    read_manifest,
    run_batch,
    select_shard,
)
from mrphys.errors import MrphysError
from mrphys.io import output_dir


def _inputs(tmp_path: Path, n: int = 5) -> list[Path]:
    files = []
    for i in range(n):
        f = tmp_path / "in" / f"s{i:02d}" / "scan.txt"
        f.parent.mkdir(parents=True)
        f.write_text(str(i))
        files.append(f)
    return files


def _copy(calls: list[str], fail: str | None = None, stop: str | None = None):
    """A work function that writes one folder atomically (as the commands do)."""

    def work(inp: Path, dest: Path) -> None:
        calls.append(inp.parent.name)
        if inp.parent.name == stop:
            raise KeyboardInterrupt
        with output_dir(dest) as tmp:
            if inp.parent.name == fail:
                raise MrphysError(f"input {inp} is broken.")
            (tmp / "out.txt").write_text(inp.read_text())

    return work


def test_shards_tile_the_sorted_inputs_and_names_are_unique(tmp_path) -> None:
    files = _inputs(tmp_path)
    found = expand_inputs([str(tmp_path / "in" / "*" / "scan.txt")], kind="file")
    assert found == sorted(files)  # the same order on every machine
    assert output_names(found) == [f"s{i:02d}" for i in range(5)]
    parts = [select_shard(found, (i, 3)) for i in (1, 2, 3)]
    assert sorted(p for part in parts for p in part) == found
    assert [len(p) for p in parts] == [2, 2, 1]
    assert parse_shard("2/3") == (2, 3) and parse_shard(None) == (1, 1)
    for bad in ("0/2", "3/2", "1", "a/b"):
        with pytest.raises(MrphysError, match="shard must be I/N"):
            parse_shard(bad)
    with pytest.raises(MrphysError, match="matches no file"):
        expand_inputs([str(tmp_path / "nothing*.nii")])
    with pytest.raises(MrphysError, match="is not a folder"):
        expand_inputs([str(files[0])], kind="dir")
    assert output_names([Path("/a/x/pc.nii.gz"), Path("/a/y/pc.nii")]) == ["x", "y"]
    assert output_names([Path("/d/one.nii.gz"), Path("/d/two.nii.gz")]) == ["one", "two"]


def test_a_failure_is_recorded_and_the_batch_goes_on(tmp_path) -> None:
    files = _inputs(tmp_path, 3)
    calls: list[str] = []
    res = run_batch(files, tmp_path / "out", _copy(calls, fail="s01"))
    assert calls == ["s00", "s01", "s02"]
    assert [e.status for e in res.entries] == ["done", "failed", "done"]
    assert "s01" in res.failed[0].error and "broken" in res.failed[0].error
    assert not (tmp_path / "out" / "s01").exists()  # no half-written output
    assert (tmp_path / "out" / "s02" / "out.txt").read_text() == "2"
    doc = json.loads((tmp_path / "out" / "manifest.json").read_text())
    rows = {Path(r["input"]).parent.name: r for r in doc["entries"]}
    assert rows["s01"]["status"] == "failed" and rows["s00"]["seconds"] >= 0
    assert set(rows["s00"]) >= {"input", "output", "status", "seconds"}
    # the rerun does only the failed input; the manifest keeps the earlier records
    calls.clear()
    res = run_batch(files, tmp_path / "out", _copy(calls))
    assert calls == ["s01"] and res.counts() == {"complete": 2, "done": 1}
    assert [e.status for e in read_manifest(tmp_path / "out" / "manifest.json")] == ["done"] * 3


def test_an_interrupted_batch_resumes_with_what_is_missing(tmp_path) -> None:
    files = _inputs(tmp_path, 4)
    calls: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        run_batch(files, tmp_path / "out", _copy(calls, stop="s02"))
    assert [e.status for e in read_manifest(tmp_path / "out" / "manifest.json")] == ["done"] * 2
    assert is_complete(tmp_path / "out" / "s01") and not is_complete(tmp_path / "out" / "s02")
    calls.clear()
    run_batch(files, tmp_path / "out", _copy(calls))
    assert calls == ["s02", "s03"]


def test_concurrent_shards_write_one_manifest(tmp_path) -> None:
    files = _inputs(tmp_path, 6)
    calls: list[str] = []
    jobs = [
        threading.Thread(
            target=run_batch, args=(files, tmp_path / "out", _copy(calls)), kwargs={"shard": (i, 3)}
        )  # fmt: skip
        for i in (1, 2, 3)
    ]
    for j in jobs:
        j.start()
    for j in jobs:
        j.join()
    assert sorted(calls) == [f"s{i:02d}" for i in range(6)]  # each input once
    entries = read_manifest(tmp_path / "out" / "manifest.json")
    assert [Path(e.input) for e in entries] == files
    assert {e.shard for e in entries} == {"1/3", "2/3", "3/3"}


def test_a_file_that_is_no_manifest_is_refused_before_any_work(tmp_path) -> None:
    files = _inputs(tmp_path, 2)
    bad = tmp_path / "m.json"
    bad.write_text("{}")
    calls: list[str] = []
    with pytest.raises(MrphysError, match="not an mrphys batch manifest"):
        run_batch(files, tmp_path / "out", _copy(calls), manifest=bad)
    assert calls == []


def test_relax_fit_cli_batch_with_shards(tmp_path, cli) -> None:
    for i in range(3):
        cli.ok("relax", "simulate", "--matrix", "16", "--slices", "1", "--seed", str(i),
               "--out", tmp_path / f"sub{i}")  # fmt: skip
    (tmp_path / "sub1" / "b1.nii.gz").unlink()  # one input lacks its B1 map: it fails
    out = tmp_path / "fits"
    common = ["relax", "fit", "--inputs", str(tmp_path / "sub*" / "pc_bssfp.nii.gz"),
              "--b1", "{dir}/b1.nii.gz", "--method", "miracle", "--out", out]  # fmt: skip
    cli.ok(*common, "--shard", "1/2")
    assert sorted(p.name for p in out.glob("[!.]*")) == ["manifest.json", "sub0", "sub2"]
    r = cli(*common, "--shard", "2/2")
    assert r.rc == 1 and "failed" in r.out and "sub1" in r.out  # exit non-zero at the end
    rows = {Path(e.input).parent.name: e for e in read_manifest(out / "manifest.json")}
    assert [rows[k].status for k in ("sub0", "sub1", "sub2")] == ["done", "failed", "done"]
    assert "b1" in rows["sub1"].error
    assert (out / "sub0" / "t1.nii.gz").is_file() and not (out / "sub1").exists()
    r = cli(*common)  # a rerun: sub0 and sub2 are complete, sub1 is tried again
    assert r.rc == 1 and "2 complete, 1 failed" in r.out
    o = tmp_path / "o"
    cli.fails("relax", "fit", "--b1", "x", "--method", "miracle", "--out", o, out=o,
              says="--input (one input) or --inputs (many) is required")  # fmt: skip


def test_dynamic_recon_cli_batch(tmp_path, cli) -> None:
    for i in (1, 2):
        sim = ["--series", "synthetic", "--frames", "2", "--matrix", "16", "--spokes", "8"]
        cli.ok("dynamic", "simulate", *sim, "--coils", "2", "--seed", str(i),
               "--out", tmp_path / f"dyn{i}")  # fmt: skip
    out = tmp_path / "recons"
    r = cli.ok("dynamic", "recon", "--inputs", str(tmp_path / "dyn*"), "--method", "gridding",
               "--out", out)  # fmt: skip
    assert "2 done" in r.out
    assert {p.name for p in out.glob("[!.]*")} == {"dyn1", "dyn2", "manifest.json"}
    assert json.loads((out / "dyn2" / "metrics.json").read_text())["shape"][0] == 2
    assert "2 complete" in cli.ok("dynamic", "recon", "--inputs", str(tmp_path / "dyn*"),
                                  "--method", "gridding", "--out", out).out  # fmt: skip
