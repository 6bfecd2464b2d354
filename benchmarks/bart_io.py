"""BART and mrphys on the same exported ``.cfl`` files (issue 14: BART k-space in and out).

``mrphys dynamic simulate --cfl`` writes a radial scan (no inverse crime: object on a 2x finer
grid, loop coils, coil-correlated noise with a noise scan) as ``raw.h5`` and as BART arrays
``kspace.cfl``, ``traj.cfl``, ``noise.cfl``. Both tools then start from the BART files alone:

- mrphys: ``mrphys dynamic recon --input kspace.cfl --traj traj.cfl --noise noise.cfl --method
  cg-sense`` (prewhitening, RING, ESPIRiT maps, CG-SENSE: its defaults);
- BART (its own radial recipe): ``bart whiten`` with the noise scan, the frames' spokes
  together (``transpose``/``reshape``), coil images by ``bart nufft -i``, ``bart fft -u``,
  ``bart ecalib -m1`` maps, then ``bart pics -S -i 20 -l2 -r 0.01 -t traj`` per frame (the
  settings of ``benchmarks/peers.py``).

Both images are scored against ``truth.npy`` with :mod:`mrphys.metrics` (magnitude, per-frame
range of the truth): as they come (each tool's own scaling), and after one least-squares
magnitude scale per series (``scaled``; BART's ``-S`` and mrphys's coil-space intensity are
different conventions). Prints one JSON object.

    .venv/bin/python benchmarks/bart_io.py [--series FILE.mat|synthetic] [--spokes 5] [--coils 8]
        [--snr 20] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SRC = str(Path(__file__).resolve().parents[1] / "src")
RAT = Path("/work/shared/data/rat_cine_192x192x8.mat")


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _run(cmd: list[str], cwd: Path, env: dict | None = None) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), _cpu()
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {p.stderr.strip()[-400:]}")
    return time.perf_counter() - t0, _cpu() - c0


def _score(x: np.ndarray, truth: np.ndarray) -> dict:
    import torch

    from mrphys.metrics import psnr, ssim

    ref = torch.from_numpy(truth)
    out = {}
    mag, tm = np.abs(x), np.abs(truth)
    scale = float((mag * tm).sum() / max(float((mag * mag).sum()), 1e-30))
    for name, img in (("as_is", x), ("scaled", x * scale)):
        rec = torch.from_numpy(np.asarray(img, np.complex64))
        out[name] = {"psnr_db": round(float(psnr(rec, ref).mean()), 2),
                     "ssim": round(float(ssim(rec, ref).mean()), 3)}  # fmt: skip
    out["scale"] = scale
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", default=str(RAT) if RAT.exists() else "synthetic")
    ap.add_argument("--spokes", type=int, default=5)
    ap.add_argument("--coils", type=int, default=8)
    ap.add_argument("--snr", type=float, default=20.0)
    ap.add_argument("--bart", default=shutil.which("bart"))
    ap.add_argument("--keep", help="folder to keep the files in")
    args = ap.parse_args()
    sys.path.insert(0, SRC)
    from mrphys.physics.cfl import read_cfl

    res: dict = {
        "benchmark": "bart_io",
        "series": args.series,
        "spokes": args.spokes,
        "coils": args.coils,
        "snr": args.snr,
        "load_average_1min": os.getloadavg()[0],
    }
    if not args.bart:
        res["skipped"] = "bart is not on the PATH (Debian/Ubuntu: apt-get install bart)"
        print(json.dumps(res))
        return
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="mrphys-bart-io-"))
    root.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=SRC, OMP_NUM_THREADS="1")
    mr = [sys.executable, "-m", "mrphys"]
    sim = root / "sim"
    if not (sim / "kspace.cfl").exists():
        _run([*mr, "dynamic", "simulate", "--series", args.series, "--spokes", str(args.spokes),
              "--coils", str(args.coils), "--snr", str(args.snr), "--cfl", "--seed", "0",
              "--out", str(sim)], root, env)  # fmt: skip
    truth = np.load(sim / "truth.npy")
    t, ny, nx = truth.shape

    # mrphys, from the BART files alone
    rec = root / "mrphys"
    files = ["--input", str(sim / "kspace.cfl"), "--traj", str(sim / "traj.cfl"), "--noise",
             str(sim / "noise.cfl")]  # fmt: skip
    wall, cpu = _run([*mr, "dynamic", "recon", *files, "--method", "cg-sense", "--overwrite",
                      "--out", str(rec)], root, env)  # fmt: skip
    x = np.load(rec / "recon.npy")
    res["mrphys"] = {
        "seconds": round(wall, 2),
        "cpu_seconds": round(cpu, 2),
        **_score(x, truth),
        "command": f"mrphys dynamic recon {' '.join(files)} --method cg-sense",
    }

    # BART, its own radial recipe on the same files
    work = root / "bart"
    work.mkdir(exist_ok=True)
    for name in ("kspace", "traj", "noise"):
        for ext in (".cfl", ".hdr"):
            shutil.copy(sim / f"{name}{ext}", work / f"{name}{ext}")
    n, s = read_cfl(work / "traj").shape[1:3]
    b = args.bart
    steps = [
        [b, "whiten", "kspace", "noise", "kw"],
        [b, "transpose", "3", "10", "kw", "k1"],  # [1, N, S, T, .., C]
        [b, "reshape", "12", str(s * t), "1", "k1", "k2"],  # spokes of every frame together
        [b, "transpose", "3", "10", "k2", "kall"],  # [1, N, S*T, C]
        [b, "transpose", "3", "10", "traj", "t1"],
        [b, "reshape", "12", str(s * t), "1", "t1", "tall"],
        [b, "nufft", "-i", "-d", f"{ny}:{nx}:1", "tall", "kall", "coilimg"],
        [b, "fft", "-u", "3", "coilimg", "grid"],
        [b, "ecalib", "-m1", "grid", "sens"],
        [b, "pics", "-S", "-i", "20", "-l2", "-r", "0.01", "-t", "traj", "kw", "sens", "out"],
    ]
    wall = cpu = 0.0
    for cmd in steps:
        w, c = _run(cmd, work)
        wall, cpu = wall + w, cpu + c
    img = read_cfl(work / "out")
    img = img.reshape(img.shape[:2] + (-1,), order="F").transpose(2, 0, 1)  # [Y, X, .., T]
    res["bart"] = {"seconds": round(wall, 2), "cpu_seconds": round(cpu, 2),
                   **_score(img[:t], truth),
                   "commands": [" ".join(c[1:]) for c in steps]}  # fmt: skip
    res["load_average_1min_end"] = os.getloadavg()[0]
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
