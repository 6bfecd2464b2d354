"""``relax fit`` end to end against the fit alone (issue 17, item 5: I/O must not dominate).

Writes a simulated 128 x 128 x 64 x 12 complex pc-bSSFP volume with ``mrphys relax simulate``,
trains a tiny SVNN checkpoint (``relax train``, a few epochs: the fit time does not depend on the
weights), then runs ``mrphys relax fit --method svnn`` as a user would (a fresh process) and
prints one JSON object:

- ``fit_wall_seconds``: the whole command (interpreter start, imports, reading, fitting,
  writing), per file format (``.nii.gz`` in and out; uncompressed ``.nii`` in and out, ``--nii``);
- ``fit_seconds``: the fit alone, as the command records it in ``config.json``;
- ``ratio``: wall / fit (the bar is 2);
- ``import_seconds``: a fresh interpreter importing torch and mrphys (part of every command);
- ``stages``: the same work in this process, stage by stage (read, to tensors, fit, write).

    .venv/bin/python benchmarks/io.py [--matrix 128] [--slices 64] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _mrphys(*args: str) -> float:
    """Run ``python -m mrphys ARGS`` in a fresh process; returns its wall time in s."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mrphys", *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def stages(folder: Path, model: Path, out: Path) -> dict[str, float]:
    """Seconds per stage of ``relax fit`` in this process (imports already done once)."""
    from mrphys.io import save_nifti_raw
    from mrphys.relax.inputs import load_network, load_pc_bssfp
    from mrphys.relax.volume import fit_volume

    res: dict[str, float] = {}
    t0 = time.perf_counter()
    vol = load_pc_bssfp(folder / "pc_bssfp.nii.gz", folder / "b1.nii.gz")
    res["read"] = time.perf_counter() - t0
    from mrphys.relax.data import Protocol

    protocol = Protocol(vol.n_cycles)
    net, _ = load_network("svnn", protocol, model)
    t0 = time.perf_counter()
    signals, b1, mask = vol.tensors()
    res["to_tensors"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    maps = fit_volume(signals, b1, "svnn", protocol, net, mask)
    res["fit"] = time.perf_counter() - t0
    for ext in (".nii.gz", ".nii"):
        t0 = time.perf_counter()
        for name, m in maps.as_dict().items():
            save_nifti_raw(out / f"{name}{ext}", m.numpy() * 1e3, vol.affine)
        res[f"write{ext}"] = time.perf_counter() - t0
    return {k: round(v, 3) for k, v in res.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--matrix", type=int, default=128)
    ap.add_argument("--slices", type=int, default=64)
    ap.add_argument("--keep", help="folder to keep the files in (default: a temporary one)")
    args = ap.parse_args()
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="mrphys-io-"))
    root.mkdir(parents=True, exist_ok=True)
    vol, model = root / "vol", root / "svnn.pt"
    res: dict = {
        "benchmark": "io",
        "volume": [args.matrix, args.matrix, args.slices, 12],
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0],
    }
    common = ["--overwrite"]
    res["simulate_wall_seconds"] = round(
        _mrphys(
            "relax",
            "simulate",
            "--matrix",
            str(args.matrix),
            "--slices",
            str(args.slices),
            "--out",
            str(vol),
            *common,
        ),  # fmt: skip
        2,
    )
    res["pc_bssfp_bytes"] = (vol / "pc_bssfp.nii.gz").stat().st_size
    _mrphys("relax", "train", "--method", "svnn", "--samples", "5000", "--max-epochs", "2",
            "--out", str(model), *common)  # fmt: skip
    res["fit_wall_seconds"], res["fit_seconds"], res["ratio"] = {}, {}, {}
    fit = ["relax", "fit", "--method", "svnn", "--model", str(model), *common]
    inputs = {".nii.gz": []}
    if (
        "--nii"
        in subprocess.run(
            [sys.executable, "-m", "mrphys", "relax", "fit", "--help"],
            capture_output=True,
            text=True,
        ).stdout
    ):  # uncompressed in and out (the same volume, rewritten as .nii)
        from mrphys.io import load_nifti, save_nifti_raw

        for name in ("pc_bssfp", "b1"):
            save_nifti_raw(vol / f"{name}.nii", *load_nifti(vol / f"{name}.nii.gz"))
        inputs[".nii"] = ["--nii"]
    for ext, extra in inputs.items():
        out = root / f"maps{ext.replace('.', '_')}"
        files = ["--input", str(vol / f"pc_bssfp{ext}"), "--b1", str(vol / f"b1{ext}")]
        wall = _mrphys(*fit, *files, "--out", str(out), *extra)
        secs = json.loads((out / "config.json").read_text())["fit_seconds"]
        res["fit_wall_seconds"][ext], res["fit_seconds"][ext] = round(wall, 2), round(secs, 2)
        res["ratio"][ext] = round(wall / secs, 2)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch, mrphys.relax.volume"], check=True)
    res["import_seconds"] = round(time.perf_counter() - t0, 2)  # interpreter, torch, mrphys
    scratch = root / "stages"
    scratch.mkdir(exist_ok=True)
    res["stages"] = stages(vol, model, scratch)
    res["load_average_1min_end"] = os.getloadavg()[0]
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
