"""mrphys against its peers (sigpy, BART) and against itself before issue 17, in one run.

The table of issue 17, with "today's" mrphys (a source tree of the code before the change, e.g.
``git -C /work/main archive faee85d | tar -x -C /tmp/mrphys_faee85d``) and the current tree side by
side, all on the same data, trajectory and coil maps, scored by the same metric code:

- NUFFT forward + adjoint of the SENSE radial operator, PINCAT 5 spokes, 8 coils, 50 frames:
  wall time (median of ``--repeats`` after one warm-up call) and the relative error of both
  directions against a complex128 finufft reference (eps 1e-11).
- CG-SENSE and temporal TV (GRASP) with each version's frozen defaults (``registry.reconstruct``;
  the data carry the simulation's noise std in ``meta``, as a noise scan would give it, which
  CG-SENSE's discrepancy stop uses; ``--no-noise-level`` withholds it);
  BART ``pics -l2`` (20 iterations) and ``pics -R T`` (temporal TV) with the regularisation
  weights given by ``--bart-l2`` / ``--bart-tv`` (the issue's BART TV weight was picked on the
  truth; say so when quoting it).
- INR (``--inr``): the CPU defaults of each version and the INR / GRASP wall-time ratio.

Protocol: PINCAT (``/work/shared/data``) scaled to max |x| = 1, ``simulate_radial`` with 8
birdcage coils, 5 spokes per frame, SNR 20, seed 0 (``--quick``: 10 frames, central 96x96).
Metrics: mean over frames of magnitude PSNR and SSIM (``mrphys.metrics``).

Each cell runs in its own subprocess (``--cell``), so versions and peers never share a process,
one after the other (back to back) on the same machine; the 1-minute load average and the CPU
seconds (user + system, a better guide than the wall time on an oversubscribed machine) are
recorded with every cell (NUFFT: per forward + adjoint pair, the warm-up included in the mean).
Peers are optional and never a dependency: sigpy is looked up in this Python or
in ``--sigpy-python`` (default ``/tmp/venv_sigpy/bin/python`` when it exists), BART as ``bart``
on the PATH; a missing one is reported as skipped with the reason.

Prints ONE JSON object; ``--markdown FILE`` also writes the table. Usage::

    .venv/bin/python benchmarks/peers.py --baseline-src /tmp/mrphys_faee85d/src [--inr]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path("/work/shared/data/pincat_128x128x50.mat")
if (ROOT.parent / "shared" / "data").is_dir():
    DATA = ROOT.parent / "shared" / "data" / "pincat_128x128x50.mat"


# --------------------------------------------------------------------------------------------
# cells (each runs in a child process)
# --------------------------------------------------------------------------------------------


def _load(path: str):
    import torch

    from mrphys.physics.radial import RadialData

    z = np.load(path)
    t = {k: torch.from_numpy(z[k]) for k in ("kspace", "traj", "maps", "dcf", "truth")}
    # the noise level the simulation recorded (a noise scan's worth of knowledge), unless
    # --no-noise-level: then CG-SENSE estimates it from the outer k-space
    meta = {"noise_std": float(z["noise_std"])} if "noise_std" in z.files else {}
    return RadialData(t["kspace"], t["traj"], t["maps"], t["dcf"], truth=t["truth"], meta=meta)


def _cpu(who: int = resource.RUSAGE_SELF) -> float:
    """User + system CPU seconds (of this process, or of its finished children): on a shared,
    oversubscribed machine closer to the quiet wall time than the wall time is."""
    ru = resource.getrusage(who)
    return ru.ru_utime + ru.ru_stime


def _median_time(fn, repeats: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), first


def cell_mrphys(kind: str, data_path: str, out: str, repeats: int) -> None:
    import torch

    torch.set_num_threads(1)
    data = _load(data_path)
    res: dict = {"load_1min": os.getloadavg()[0]}
    if kind == "nufft":
        op = data.operator()
        x = data.truth.to(torch.complex64)
        y = data.kspace.to(torch.complex64)
        c0 = _cpu()
        res["seconds"], res["first_call_s"] = _median_time(
            lambda: (op.forward(x), op.adjoint(y)), repeats
        )
        res["cpu_seconds"] = (_cpu() - c0) / (repeats + 1)
        np.savez(out, fwd=op.forward(x).numpy(), adj=op.adjoint(y).numpy(), **_scalars(res))
        return
    if kind == "nufft_reference":
        op = data.operator()
        fwd = op.forward(data.truth.to(torch.complex128)).numpy()
        adj = op.adjoint(data.kspace.to(torch.complex128)).numpy()
        np.savez(out, fwd=fwd, adj=adj, **_scalars(res))
        return
    from mrphys.recon.registry import reconstruct

    options = {"seed": 0, "device": "cpu"} if kind == "inr" else {}
    if kind == "inr":
        from mrphys.recon.inr import InrConfig

        options["config"] = InrConfig()
    c0 = _cpu()
    r = reconstruct(kind, data, **options)
    res["seconds"], res["cpu_seconds"] = r.seconds, _cpu() - c0
    np.savez(out, image=r.image.numpy(), **_scalars(res))


def cell_sigpy(data_path: str, out: str, repeats: int) -> None:
    import sigpy as sp

    z = np.load(data_path)
    x = z["truth"].astype(np.complex64)
    y = z["kspace"].astype(np.complex64)
    maps = z["maps"].astype(np.complex64)
    traj = z["traj"]
    t_frames, n_coils = y.shape[:2]
    ny, nx = maps.shape[-2:]
    scale = np.array([ny, nx], dtype=np.float64) / (2 * math.pi)
    coords = [(traj[t] * scale).astype(np.float32) for t in range(t_frames)]

    def forward():
        return np.stack([sp.nufft(maps * x[t], coords[t]) for t in range(t_frames)])

    def adjoint():
        return np.stack(
            [
                (np.conj(maps) * sp.nufft_adjoint(y[t], coords[t], (n_coils, ny, nx))).sum(0)
                for t in range(t_frames)
            ]
        )

    res = {"load_1min": os.getloadavg()[0]}
    c0 = _cpu()
    res["seconds"], res["first_call_s"] = _median_time(lambda: (forward(), adjoint()), repeats)
    res["cpu_seconds"] = (_cpu() - c0) / (repeats + 1)
    np.savez(out, fwd=forward(), adj=adjoint(), **_scalars(res))


def _scalars(d: dict) -> dict:
    return {k: np.asarray(v) for k, v in d.items()}


# --------------------------------------------------------------------------------------------
# BART (files in its .cfl/.hdr format; dims: 0 X, 1 Y / readout, 2 spokes, 3 coils, 10 time)
# --------------------------------------------------------------------------------------------


def _write_cfl(name: Path, arr: np.ndarray) -> None:
    """``arr`` indexed in BART's dimension order (dim 0 fastest), written column-major."""
    dims = list(arr.shape) + [1] * (16 - arr.ndim)
    name.with_suffix(".hdr").write_text("# Dimensions\n" + " ".join(map(str, dims)) + "\n")
    np.asarray(arr, np.complex64).ravel(order="F").tofile(name.with_suffix(".cfl"))


def _read_cfl(name: Path) -> np.ndarray:
    dims = [int(v) for v in name.with_suffix(".hdr").read_text().split("\n")[1].split()]
    return np.fromfile(name.with_suffix(".cfl"), np.complex64).reshape(dims, order="F")


def run_bart(bart: str, data_path: str, work: Path, reg: list[str], iters: int) -> dict:
    """``bart pics`` on the saved data; returns the image ``(T, Y, X)`` and seconds."""
    z = np.load(data_path)
    y, traj, maps = z["kspace"], z["traj"], z["maps"]  # (T,C,S,N), (T,S,N,2), (C,Y,X)
    t_frames, n_coils, s, n = y.shape
    ny, nx = maps.shape[-2:]
    # BART k-space: (1, N, S, C, 1 x 6, T); trajectory (3, N, S, 1 x 7, T) in pixel units (x, y, z)
    ksp = np.zeros((1, n, s, n_coils) + (1,) * 6 + (t_frames,), np.complex64)
    ksp[0, :, :, :, 0, 0, 0, 0, 0, 0, :] = y.transpose(3, 2, 1, 0)
    tr = np.zeros((3, n, s) + (1,) * 7 + (t_frames,), np.complex64)
    tr[0, :, :, 0, 0, 0, 0, 0, 0, 0, :] = (traj[..., 1] * nx / (2 * math.pi)).transpose(2, 1, 0)
    tr[1, :, :, 0, 0, 0, 0, 0, 0, 0, :] = (traj[..., 0] * ny / (2 * math.pi)).transpose(2, 1, 0)
    sens = maps.transpose(2, 1, 0)[:, :, None, :]  # (X, Y, 1, C)
    _write_cfl(work / "ksp", ksp)
    _write_cfl(work / "traj", tr)
    _write_cfl(work / "sens", sens)
    cmd = [bart, "pics", "-S", "-i", str(iters), *reg, "-t", "traj", "ksp", "sens", "out"]
    t0, c0 = time.perf_counter(), _cpu(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, cwd=work, check=True, capture_output=True)
    seconds = time.perf_counter() - t0
    cpu = _cpu(resource.RUSAGE_CHILDREN) - c0
    img = _read_cfl(work / "out").reshape(nx, ny, -1)  # (X, Y, T)
    return {"image": img.transpose(2, 1, 0), "seconds": seconds, "cpu_seconds": cpu,
            "command": " ".join(cmd)}  # fmt: skip


# --------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------


def _child(python: str, src: str | None, args: list[str], timeout: float) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    if src is not None:
        env["PYTHONPATH"] = src
    out = Path(args[args.index("--out") + 1])
    cmd = [python, str(Path(__file__).resolve()), *args]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0 or not out.exists():
        raise RuntimeError(f"{' '.join(cmd)} failed: {p.stderr.strip().splitlines()[-3:]}")
    z = np.load(out)
    return {k: z[k] for k in z.files}


def _rel(a: np.ndarray, ref: np.ndarray) -> float:
    return float(np.linalg.norm(a - ref) / np.linalg.norm(ref))


def _score(image: np.ndarray, truth: np.ndarray) -> dict:
    import torch

    from mrphys.metrics import psnr, ssim

    rec = torch.from_numpy(np.asarray(image, np.complex64))
    ref = torch.from_numpy(truth)
    return {"psnr_db": float(psnr(rec, ref).mean()), "ssim": float(ssim(rec, ref).mean())}


def _sigpy_python(arg: str | None) -> tuple[str | None, str]:
    candidates = [arg] if arg else [sys.executable, "/tmp/venv_sigpy/bin/python"]
    for py in candidates:
        if py and Path(py).exists():
            ok = subprocess.run([py, "-c", "import sigpy"], capture_output=True).returncode == 0
            if ok:
                return py, ""
    return None, f"sigpy is not importable from {', '.join(c for c in candidates if c)}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline-src", help="src/ of mrphys before the change ('today')")
    ap.add_argument("--sigpy-python", help="a Python with sigpy (default: this or /tmp/venv_sigpy)")
    ap.add_argument("--bart", default=shutil.which("bart"), help="the bart binary")
    ap.add_argument("--bart-l2", type=float, default=0.01, help="BART pics -l2 -r weight")
    ap.add_argument("--bart-tv", type=float, default=0.01, help="BART pics -R T weight")
    ap.add_argument("--inr", action="store_true", help="also the INR (minutes per version)")
    ap.add_argument("--only", default="nufft,cg-sense,grasp", help="rows to run")
    ap.add_argument("--quick", action="store_true", help="10 frames, 96x96 crop")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--no-noise-level",
        action="store_true",
        help="do not hand the simulated noise std to mrphys (CG-SENSE then estimates it from the "
        "outer k-space, biased upwards)",
    )
    ap.add_argument("--markdown", help="also write the table here")
    # child-process mode
    ap.add_argument("--cell", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.cell == "sigpy":
        cell_sigpy(args.data, args.out, args.repeats)
        return
    if args.cell:
        cell_mrphys(args.cell, args.data, args.out, args.repeats)
        return

    import torch

    from mrphys.physics.radial import simulate_radial
    from mrphys.tissue.dynamic import load_series

    rows = [r.strip() for r in args.only.split(",") if r.strip()]
    if args.inr and "inr" not in rows:
        rows.append("inr")
    if not DATA.exists():
        print(json.dumps({"skipped": f"PINCAT not found at {DATA}"}))
        return
    x = load_series(DATA)
    if args.quick:
        c0 = (x.shape[1] - 96) // 2
        x = x[:10, c0 : c0 + 96, c0 : c0 + 96]
        x = x / x.abs().max()
    x = x.to(torch.complex64)
    data = simulate_radial(x, 5, coils=8, snr=20.0, seed=0)
    truth = data.truth.numpy().astype(np.complex64)
    versions = {"new": str(ROOT / "src")}
    skipped: dict[str, str] = {}
    if args.baseline_src and Path(args.baseline_src).is_dir():
        versions = {"today": str(Path(args.baseline_src).resolve()), **versions}
    else:
        skipped["today"] = f"no --baseline-src tree ({args.baseline_src})"
    sigpy_py, why = _sigpy_python(args.sigpy_python)
    if sigpy_py is None:
        skipped["sigpy"] = why
    if not args.bart or not Path(args.bart).exists():
        skipped["bart"] = "bart is not on the PATH (Debian/Ubuntu: apt-get install bart)"
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="mrphys_peers_") as tmp:
        work = Path(tmp)
        dpath = str(work / "data.npz")
        noise = {} if args.no_noise_level else {"noise_std": np.float64(data.meta["noise_std"])}
        np.savez(
            dpath, kspace=data.kspace.numpy(), traj=data.traj.numpy(), maps=data.maps.numpy(),
            dcf=data.dcf.numpy(), truth=truth, **noise,
        )  # fmt: skip

        def child(py: str, src: str | None, cell: str, timeout: float = 3600) -> dict:
            out = str(work / f"{cell}_{len(results)}_{time.monotonic_ns()}.npz")
            a = ["--cell", cell, "--data", dpath, "--out", out, "--repeats", str(args.repeats)]
            return _child(py, src, a, timeout)

        if "nufft" in rows:
            ref = child(sys.executable, versions["new"], "nufft_reference")
            row = {}
            impls = [(v, sys.executable, s, "nufft") for v, s in versions.items()]
            if sigpy_py:
                impls.append(("sigpy", sigpy_py, None, "sigpy"))
            for name, py, src, cell in impls:
                r = child(py, src, cell)
                row[name] = {
                    "seconds": float(r["seconds"]),
                    "cpu_seconds": float(r.get("cpu_seconds", float("nan"))),
                    "first_call_s": float(r["first_call_s"]),
                    "rel_error": max(_rel(r["fwd"], ref["fwd"]), _rel(r["adj"], ref["adj"])),
                    "load_1min": float(r["load_1min"]),
                }
            results["nufft"] = row
        for method in ("cg-sense", "grasp", "inr"):
            if method not in rows:
                continue
            row = {}
            for name, src in versions.items():
                r = child(sys.executable, src, method)
                row[name] = {
                    "seconds": float(r["seconds"]),
                    "cpu_seconds": float(r.get("cpu_seconds", float("nan"))),
                    "load_1min": float(r["load_1min"]),
                }
                row[name].update(_score(r["image"], truth))
            if method in ("cg-sense", "grasp") and "bart" not in skipped:
                reg = (
                    ["-l2", "-r", str(args.bart_l2)]
                    if method == "cg-sense"
                    else ["-R", f"T:1024:0:{args.bart_tv}"]
                )
                bdir = work / f"bart_{method}"
                bdir.mkdir()
                load = os.getloadavg()[0]
                try:
                    b = run_bart(args.bart, dpath, bdir, reg, 20 if method == "cg-sense" else 50)
                    row["bart"] = {"seconds": b["seconds"], "cpu_seconds": b["cpu_seconds"],
                                   "command": b["command"], "load_1min": load,
                                   **_score(b["image"], truth)}  # fmt: skip
                except (subprocess.CalledProcessError, OSError) as e:
                    row["bart"] = {"skipped": f"bart pics failed: {e}"}
            results[method] = row
    if "inr" in results and "grasp" in results:
        for v in versions:
            if v in results["inr"] and v in results["grasp"]:
                inr, tv = results["inr"][v], results["grasp"][v]
                inr["inr_over_grasp_time"] = inr["seconds"] / tv["seconds"]
                inr["inr_over_grasp_cpu"] = inr["cpu_seconds"] / tv["cpu_seconds"]
    report = {
        "benchmark": "mrphys vs peers (issue 17)",
        "problem": {
            "data": "PINCAT" + (" (quick: 10 frames, 96x96)" if args.quick else " 50x128x128"),
            "spokes_per_frame": 5,
            "coils": 8,
            "snr": 20.0,
            "seed": 0,
            "noise_level_given": not args.no_noise_level,
        },  # fmt: skip
        "versions": versions,
        "skipped": skipped,
        "host": {
            "cpu_count": os.cpu_count(),
            "load_average_1min_end": os.getloadavg()[0],
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "results": results,
    }
    print(json.dumps(report, indent=2))
    if args.markdown:
        Path(args.markdown).write_text(_markdown(results))


def _markdown(results: dict) -> str:
    lines = ["| what | version | seconds (CPU s) | quality |", "|---|---|---|---|"]
    for row, cells in results.items():
        for name, c in cells.items():
            if "skipped" in c:
                lines.append(f"| {row} | {name} | - | skipped: {c['skipped']} |")
                continue
            if row == "nufft":
                q = f"rel. error {c['rel_error']:.1e}"
            else:
                q = f"{c['psnr_db']:.2f} dB / {c['ssim']:.3f}"
            cpu = c.get("cpu_seconds", float("nan"))
            lines.append(f"| {row} | {name} | {c['seconds']:.2f} ({cpu:.2f}) | {q} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
