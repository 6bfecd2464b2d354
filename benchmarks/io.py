"""``relax fit`` end to end against the fit alone (issue 17, item 5: I/O must not dominate).

Writes a simulated 128 x 128 x 64 x 12 complex pc-bSSFP volume with ``mrphys relax simulate``
(or reuses one, ``--volume DIR``), then runs ``mrphys relax fit --method M`` as a user would (a
fresh process, the method's defaults: shipped model, trust maps on, no mask) for every method,
with this tree's ``src`` and, given ``--baseline-src``, another one back to back, and prints one
JSON object. Per method, source and format (``.nii.gz`` in and out; uncompressed ``.nii`` in and
out with ``--nii``):

- ``wall``: the whole command (interpreter start, imports, reading, fitting, writing), s;
- ``cpu``: its user + system CPU seconds;
- ``fit``: the fit alone (``fit_seconds`` of ``config.json``), s;
- ``io``: ``wall - fit`` (start, imports, reading, checks, writing), s;
- ``ratio``: ``wall / fit`` (the bar is 2).

Also ``import_seconds`` (a fresh interpreter importing torch and mrphys, part of every command),
``stages_wall_cpu_seconds`` (``--stages``: wall and CPU seconds of each stage besides the fit,
in a fresh process: imports, reading, checks, reordering, writing six maps) and the load average
before and after.

    .venv/bin/python benchmarks/io.py [--matrix 128] [--slices 64] [--methods svnn,miracle]
        [--formats .nii.gz,.nii] [--baseline-src /path/to/old/src] [--volume DIR] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")
METHODS = ["miracle", "planet", "svnn", "pinn", "svnn-complex", "pinn-complex"]


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _mrphys(src: str, *args: str) -> tuple[float, float]:
    """Run ``python -m mrphys ARGS`` with ``src`` first on the path in a fresh process; returns
    its wall and CPU seconds."""
    env = dict(os.environ, PYTHONPATH=src)
    t0, c0 = time.perf_counter(), _cpu()
    subprocess.run([sys.executable, "-m", "mrphys", *args], check=True, env=env,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    return time.perf_counter() - t0, _cpu() - c0


def stages(vol: Path, out: Path) -> dict[str, list[float]]:
    """``[wall, CPU]`` seconds of each stage of ``relax fit`` besides the fit, in this (fresh)
    process: imports, reading, checks, reordering, writing six float32 maps."""
    import numpy as np

    res: dict[str, list[float]] = {}

    def timed(name: str, f):
        w0, c0 = time.perf_counter(), time.process_time()
        r = f()
        res[name] = [round(time.perf_counter() - w0, 3), round(time.process_time() - c0, 3)]
        return r

    timed("import nibabel", lambda: __import__("nibabel"))
    timed("import torch", lambda: __import__("torch"))
    timed("import mrphys.relax.pipeline", lambda: __import__("mrphys.relax.pipeline"))
    from mrphys.io import load_nifti, save_nifti_raw
    from mrphys.relax.inputs import load_pc_bssfp

    timed("read pc_bssfp.nii.gz", lambda: load_nifti(vol / "pc_bssfp.nii.gz"))
    v = timed("load_pc_bssfp (read + checks)",
              lambda: load_pc_bssfp(vol / "pc_bssfp.nii.gz", vol / "b1.nii.gz"))  # fmt: skip
    timed("tensors (Fortran to C order)", v.tensors)
    rng = np.random.default_rng(0)
    noisy = (1e3 * (1 + 0.1 * rng.standard_normal(v.b1.shape))).astype(np.float32)
    for ext in (".nii.gz", ".nii"):
        timed(f"write 6 noisy float32 maps {ext}", lambda e=ext: [
            save_nifti_raw(out / f"m{i}{e}", noisy, v.affine) for i in range(6)])  # fmt: skip
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--matrix", type=int, default=128)
    ap.add_argument("--slices", type=int, default=64)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--formats", default=".nii.gz,.nii")
    ap.add_argument("--baseline-src", help="src/ of mrphys before the change, run back to back")
    ap.add_argument("--baseline-first", action="store_true", help="run the baseline first")
    ap.add_argument("--volume", help="a `relax simulate` folder to reuse (default: simulate)")
    ap.add_argument("--keep", help="folder to keep the files in (default: a temporary one)")
    ap.add_argument("--stages", action="store_true", help="time the stages besides the fit")
    args = ap.parse_args()
    if args.stages:  # in this fresh process (torch not imported yet): one JSON line
        sys.path.insert(0, SRC)
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(stages(Path(args.volume), Path(tmp))))
        return
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="mrphys-io-"))
    root.mkdir(parents=True, exist_ok=True)
    res: dict = {
        "benchmark": "io",
        "volume": [args.matrix, args.matrix, args.slices, 12],
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0],
        "command": "mrphys relax fit --method M --input pc_bssfp{ext} --b1 b1{ext} [--nii]",
    }
    vol = Path(args.volume) if args.volume else root / "vol"
    if not args.volume:
        sim = ["relax", "simulate", "--matrix", str(args.matrix), "--slices", str(args.slices)]
        res["simulate_wall_seconds"] = round(_mrphys(SRC, *sim, "--out", str(vol))[0], 2)
    formats = args.formats.split(",")
    if ".nii" in formats and not (vol / "pc_bssfp.nii").exists():
        sys.path.insert(0, SRC)
        from mrphys.io import load_nifti, save_nifti_raw

        for name in ("pc_bssfp", "b1"):  # the same volume, rewritten uncompressed
            save_nifti_raw(vol / f"{name}.nii", *load_nifti(vol / f"{name}.nii.gz"))
    srcs = {"now": SRC} | ({"before": args.baseline_src} if args.baseline_src else {})
    if args.baseline_first:
        srcs = dict(reversed(srcs.items()))
    rows: dict = {}
    for method in args.methods.split(","):
        for ext in formats:
            for label, src in srcs.items():
                out = root / f"fit_{label}_{method}{ext.replace('.', '_')}"
                files = ["--input", str(vol / f"pc_bssfp{ext}"), "--b1", str(vol / f"b1{ext}")]
                extra = ["--nii"] if ext == ".nii" else []
                fit = ["relax", "fit", "--method", method, *files, *extra, "--out", str(out)]
                wall, cpu = _mrphys(src, *fit, "--overwrite")
                secs = json.loads((out / "config.json").read_text())["fit_seconds"]
                rows.setdefault(method, {}).setdefault(ext, {})[label] = {
                    "wall": round(wall, 2),
                    "cpu": round(cpu, 2),
                    "fit": round(secs, 2),
                    "io": round(wall - secs, 2),
                    "ratio": round(wall / secs, 2),
                    "load": round(os.getloadavg()[0], 1),
                }
                shutil.rmtree(out, ignore_errors=True)
                print(method, ext, label, rows[method][ext][label], file=sys.stderr)
    res["rows"] = rows
    for label, src in srcs.items():
        t0 = time.perf_counter()
        env = dict(os.environ, PYTHONPATH=src)
        subprocess.run([sys.executable, "-c", "import torch, mrphys.relax.pipeline"], check=True,
                       env=env)  # fmt: skip
        res.setdefault("import_seconds", {})[label] = round(time.perf_counter() - t0, 2)
    p = subprocess.run([sys.executable, __file__, "--stages", "--volume", str(vol)],
                       capture_output=True, text=True, check=True)  # fmt: skip
    res["stages_wall_cpu_seconds"] = json.loads(p.stdout.splitlines()[-1])
    res["load_average_1min_end"] = os.getloadavg()[0]
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
