"""Where a command writes: nothing outside its output is ever deleted, one run per output, odd
targets refused before the work, results readable by colleagues (issue 13, defects 2, 3, 6, 8)."""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from mrphys import io
from mrphys.errors import MrphysError

SIM = ["simulate", "--sequence", "gre", "--matrix", "32"]  # the quickest real command


def _mark(folder: Path) -> Path:
    """Make ``folder`` look like an output mrphys wrote (the marker is all that says so)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / io.MARKER).write_text("{}")
    return folder


def _tree(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with the bytes of the files: a snapshot to compare."""
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


# --- defect 2: --out . --overwrite and friends ----------------------------------------------


@pytest.mark.parametrize("out", [".", "..", "sub/.."])
def test_out_holding_the_working_directory_is_never_replaced(tmp_path, monkeypatch, cli, out):
    work = _mark(tmp_path / "work")  # even an mrphys output is kept while it is the cwd
    (work / "sentinel.txt").write_text("precious")
    (work / "sub").mkdir()
    monkeypatch.chdir(work)
    before = _tree(tmp_path)
    err = cli.fails(*SIM, "--out", out, "--overwrite", out=Path(out))
    assert err.endswith(f"--out {out} holds the working directory, which mrphys never deletes; "
                        "choose a new folder for the output.")  # fmt: skip
    assert _tree(tmp_path) == before  # nothing deleted, no lock or temporary folder left


def test_out_holding_an_input_or_the_home_directory_is_never_replaced(tmp_path, monkeypatch, cli):
    data = _mark(tmp_path / "data")
    for name in ("pc.nii.gz", "b1.nii.gz"):
        (data / name).write_bytes(b"scan")
    fit = ["relax", "fit", "--input", data / "pc.nii.gz", "--b1", data / "b1.nii.gz"]
    before = _tree(tmp_path)
    cli.fails(*fit, "--method", "miracle", "--out", data, "--overwrite", out=data,
              says=f"holds the input {data / 'pc.nii.gz'}, which mrphys never deletes")  # fmt: skip
    home = _mark(tmp_path / "home")
    monkeypatch.setenv("HOME", str(home))
    cli.fails(*SIM, "--out", home, "--overwrite", out=home, says="holds the home directory")
    assert _tree(tmp_path) == before | {"home": None, f"home/{io.MARKER}": b"{}"}


def test_filesystem_root_is_never_an_output():
    for overwrite in (False, True):
        with pytest.raises(MrphysError, match="^output / is a filesystem root; choose a new"):
            io.check_output("/", overwrite)


def test_overwrite_replaces_only_folders_mrphys_wrote(tmp_path, cli):
    mine = tmp_path / "mine"
    (mine / "results").mkdir(parents=True)
    (mine / "results" / "table.csv").write_text("1,2")
    err = cli.fails(*SIM, "--out", mine, "--overwrite", out=mine)
    assert err.endswith(f"--out {mine} has no .mrphys-output marker, so it is no output of mrphys "
                        "(or of a version before the markers); remove it yourself or choose "
                        "another output.")  # fmt: skip
    assert (mine / "results" / "table.csv").read_text() == "1,2"
    # what mrphys wrote carries the marker (the command and version) and is replaced whole
    out = tmp_path / "run"
    with io.output_dir(out) as tmp:
        (tmp / "stale.txt").write_text("from before")
    cli.ok(*SIM, "--seed", "1", "--out", out, "--overwrite")
    assert not (out / "stale.txt").exists() and (out / "kspace.npy").is_file()
    assert json.loads((out / "config.json").read_text())["seed"] == 1
    marker = json.loads((out / io.MARKER).read_text())
    assert marker["written_by"] == "mrphys" and marker["command"] == (
        f"mrphys simulate --sequence gre --matrix 32 --seed 1 --out {out} --overwrite"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "run"]


class _Payload:
    def __reduce__(self):
        return (Path.touch, (Path(os.environ["PAYLOAD_FILE"]),))


def test_overwrite_replaces_only_checkpoints_mrphys_wrote(tmp_path, monkeypatch, cli):
    from mrphys.train import save_checkpoint

    notes = tmp_path / "notes.pt"
    notes.write_text("my notes")
    evil = tmp_path / "evil.pt"
    monkeypatch.setenv("PAYLOAD_FILE", str(tmp_path / "pwned"))
    evil.write_bytes(pickle.dumps(_Payload()))
    train = ["relax", "train", "--method", "svnn", "--samples", "1000", "--max-epochs", "1"]
    for f in (notes, evil):
        r = cli(*train, "--out", f, "--overwrite")
        assert r.rc == 2 and r.err == (
            f"mrphys relax: error: --out {f} is not a file mrphys wrote (no mrphys checkpoint "
            "format key); remove it yourself or choose another output.\n"
        )
    assert notes.read_text() == "my notes" and evil.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.pt", "notes.pt"]
    assert not (tmp_path / "pwned").exists()  # the check read the payload without running it
    ours = tmp_path / "model.pt"
    save_checkpoint(ours, {"model": {"w": torch.zeros(2)}, "config": {}})
    io.discard_output(ours)
    assert not ours.exists()
    io.discard_output(ours)  # nothing to discard is fine


def test_symbolic_link_as_output(tmp_path, cli):
    dangling = tmp_path / "results"
    dangling.symlink_to(tmp_path / "gone")
    err = cli.fails(*SIM, "--out", dangling, out=dangling)
    assert err.endswith(f"--out {dangling} is a symbolic link to {tmp_path / 'gone'}, which does "
                        "not exist; remove the link or choose another output.")  # fmt: skip
    assert dangling.is_symlink() and sorted(p.name for p in tmp_path.iterdir()) == ["results"]
    # a link to an output is not followed into it: the link is not something mrphys wrote
    target = _mark(tmp_path / "target")
    link = tmp_path / "link"
    link.symlink_to(target)
    cli.fails(*SIM, "--out", link, "--overwrite", out=link, says="is a symbolic link; mrphys")
    assert (target / io.MARKER).is_file()


# --- defect 3: one run per output -----------------------------------------------------------


def test_racing_threads_one_claim_wins(tmp_path):
    out, n = tmp_path / "run", 6
    barrier, results = threading.Barrier(n), []
    release = threading.Event()

    def race() -> None:
        barrier.wait()
        try:
            with io.claim_output(out, command=f"thread {threading.get_ident()}"):
                results.append("claimed")
                release.wait(60)  # hold the claim until every other thread was refused
        except MrphysError as e:
            results.append(str(e))
            if sum(r != "claimed" for r in results) == n - 1:
                release.set()

    threads = [threading.Thread(target=race) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results.count("claimed") == 1, results
    refused = [r for r in results if r != "claimed"]
    # a thread refused before the winner wrote its PID into the lock names "a run that is starting"
    assert all(f"output {out} is being written by another mrphys run (" in r for r in refused)
    assert all(f"PID {os.getpid()}" in r or "a run that is starting" in r for r in refused)
    assert list(tmp_path.iterdir()) == []  # the lock went with the claim


def test_second_process_refused_and_dead_run_taken_over(tmp_path, cli, caplog):
    """A real second process holds the output: the run is refused with a sentence naming it;
    after that process is killed (SIGKILL: its lock file stays) the next run takes over."""
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from mrphys.io import claim_output\n"
         f"with claim_output({str(out)!r}, command='mrphys holder'):\n"
         "    print('claimed', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "claimed"
        err = cli.fails(*SIM, "--out", out, out=out)
        assert f"--out {out} is being written by another mrphys run (PID {holder.pid} on " in err
        assert err.endswith(": mrphys holder); wait for it to finish or choose another output.")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    lock = tmp_path / f"run{io.LOCK_SUFFIX}"
    assert json.loads(lock.read_text())["pid"] == holder.pid  # left by the killed run
    with caplog.at_level(logging.WARNING, logger="mrphys.io"):
        with io.output_dir(out) as tmp:
            (tmp / "a.txt").write_text("x")
    assert f"taking over {lock} from PID {holder.pid} on " in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


@pytest.mark.slow
def test_two_commands_racing_on_one_output(tmp_path):
    """Two real `mrphys simulate` started together on one --out: one writes it, the other is
    refused with a sentence (the claim, or the finished output), nothing else is left."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "mrphys", *SIM, "--out", str(out)]
    runs = [subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = sorted((r.wait(120), r.stderr.read().strip(), r.pid) for r in runs)
    assert [rc for rc, _, _ in results] == [0, 2], results
    err, winner = results[1][1], results[0][2]
    assert err in (
        f"mrphys simulate: error: --out {out} already exists; pass --overwrite to replace it.",
    ) or err.startswith(
        f"mrphys simulate: error: --out {out} is being written by another mrphys run "
        f"(PID {winner} on "
    ), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert (out / "kspace.npy").is_file() and (out / io.MARKER).is_file()


def test_non_writing_ranks_claim_nothing(tmp_path, monkeypatch):
    """Under torchrun every rank runs the command; rank 0 claims, the others must not be
    refused by rank 0's lock."""
    out = tmp_path / "run"
    done = []

    def rank_1() -> None:
        with io.claim_output(out) as final:
            done.append(final)

    with io.claim_output(out):
        monkeypatch.setenv("RANK", "1")
        t = threading.Thread(target=rank_1)
        t.start()
        t.join(5)
    assert done == [out]


# --- defect 6: leftovers and odd targets, before the work -----------------------------------


def test_leftovers_of_dead_runs_are_removed_or_reported(tmp_path, caplog):
    out = tmp_path / "run"
    dead = _mark(tmp_path / ".run.tmp-k2j4h1x9")  # the work folder of a killed run
    (dead / "kspace.npy").write_bytes(b"half")
    (tmp_path / ".run.tmp-a8d0.pt").write_bytes(b"half")  # a killed atomic write
    # a SPIN run killed while writing its running checkpoint OUT.checkpoint.pt
    (tmp_path / ".run.checkpoint.pt.tmp-x1y2.pt").write_bytes(b"half")
    foreign = tmp_path / ".run.tmp-notes"
    foreign.mkdir()  # no marker: not ours to delete
    with caplog.at_level(logging.WARNING, logger="mrphys.io"):
        with io.output_dir(out) as tmp:
            (tmp / "a.txt").write_text("x")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".run.tmp-notes", "run"]
    assert f"removed {dead}, left by an earlier run that did not finish" in caplog.text
    assert f"{foreign} is not a temporary folder of mrphys; left in place" in caplog.text


def test_failed_run_removes_the_folders_it_made(tmp_path, cli):
    out = tmp_path / "a" / "b" / "run"
    cli.fails(*SIM, "--noise-pct", "-1", "--out", out, out=out, says="--noise-pct")
    assert list(tmp_path.iterdir()) == []


UNPRIVILEGED = """
import os, sys
from mrphys.cli import main
ro = sys.argv[1]
if os.access(ro, os.W_OK):
    print("SKIP: this process may write read-only folders")
    sys.exit(0)
for out in sys.argv[2:]:
    print(main(["simulate", "--sequence", "gre", "--matrix", "32", "--out", out, "--overwrite"]))
"""


def _run_unprivileged(*args: Path) -> subprocess.CompletedProcess:
    """Run :data:`UNPRIVILEGED` where folder modes apply (as root: without the capabilities
    that override them)."""
    cmd = [sys.executable, "-c", UNPRIVILEGED, *map(str, args)]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: root writes read-only folders")
        caps = "-dac_override,-dac_read_search"
        cmd = [setpriv, f"--bounding-set={caps}", f"--inh-caps={caps}", *cmd]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if r.stdout.startswith("SKIP"):
        pytest.skip(r.stdout.strip())
    return r


def test_read_only_targets_refused_before_the_work(tmp_path):
    ro_out = _mark(tmp_path / "ro_out")  # an output mrphys wrote, since made read-only
    (ro_out / "t1.nii.gz").write_bytes(b"maps")
    locked_in = _mark(tmp_path / "locked_in")  # writable, but with a read-only folder inside
    (locked_in / "figs").mkdir()
    (locked_in / "figs" / "f.png").write_bytes(b"png")
    ro_parent = tmp_path / "shared"
    ro_parent.mkdir()
    for d in (ro_out, locked_in / "figs", ro_parent):
        d.chmod(0o555)
    before = _tree(tmp_path)
    try:
        r = _run_unprivileged(ro_out, ro_out, locked_in, ro_parent / "run", ro_parent / "x" / "y")
    finally:
        for d in (ro_out, locked_in / "figs", ro_parent):
            d.chmod(0o755)
    assert r.stdout.split() == ["2", "2", "2", "2"], r.stderr
    assert r.stderr.splitlines() == [
        f"mrphys simulate: error: --out {ro_out} cannot be replaced: it is read-only.",
        f"mrphys simulate: error: --out {locked_in} cannot be replaced: the folder "
        f"{locked_in / 'figs'} in it is read-only.",
        f"mrphys simulate: error: --out {ro_parent / 'run'} cannot be written: its folder is not "
        "writable.",
        f"mrphys simulate: error: --out {ro_parent / 'x' / 'y'} cannot be created: "
        f"{ro_parent / 'x'}: Permission denied.",
    ]
    assert _tree(tmp_path) == before


# --- defect 8: modes follow the umask -------------------------------------------------------


def _modes(root: Path) -> set[tuple[str, int]]:
    return {("dir" if p.is_dir() else "file", stat.S_IMODE(p.stat().st_mode))
            for p in [root, *root.rglob("*")]}  # fmt: skip


def test_simulate_output_follows_umask_022(tmp_path, cli):
    old = os.umask(0o022)
    try:
        cli.ok(*SIM, "--out", tmp_path / "run")
    finally:
        os.umask(old)
    assert _modes(tmp_path / "run") == {("dir", 0o755), ("file", 0o644)}


def test_writers_follow_a_stricter_umask(tmp_path):
    from mrphys.train import save_checkpoint

    old = os.umask(0o027)
    try:
        with io.output_dir(tmp_path / "run") as tmp:
            io.save_json(tmp / "m.json", {"a": 1})
            io.save_nifti(tmp / "x.nii.gz", torch.zeros(4, 4))
            io.save_npy(tmp / "k.npy", torch.zeros(3))
        save_checkpoint(tmp_path / "run" / "model.pt", {"model": {}, "config": {}})
    finally:
        os.umask(old)
    assert _modes(tmp_path / "run") == {("dir", 0o750), ("file", 0o640)}
