"""INR speed on a CPU (issue 17, item 3): the INR's old and new defaults against GRASP.

PINCAT 128x128x50 scaled to max |x| = 1, ``simulate_radial`` with 8 birdcage coils, 5 spokes per
frame, SNR 20, seed 0 (the issue's case). Cells, each in its own subprocess, one after the other:

- ``inr-old``: :class:`InrConfig` with the defaults before issue 17 (MLP 2 x 64, one learning
  rate 1e-3 halved half way, 3,000 steps of 5 frames), run by this tree's code; with
  ``--baseline-src DIR`` (a ``src/`` of the code before the change, e.g. ``git -C /work/main
  archive d89a085 src | tar -x -C /tmp/inr_old``) it runs that tree's ``InrConfig()`` instead;
- ``inr-prev``: the defaults of the first round of issue 17 (MLP 2 x 64, 1,500 steps, tables at
  lr 1e-2), run by this tree's code (its per-step speed-ups included);
- ``inr-new``: this tree's ``InrConfig()``;
- ``inr-fac``: the factorised INR, ``InrConfig()`` with ``FACTORISED`` (its settings frozen on
  the tuning case PINCAT seed 1 at 8 spokes, see ``docs/inr.md``);
- ``inr-par``: ``InrConfig()`` with ``workers=2`` (two windows per round, one per thread);
- ``inr-fast``: ``InrConfig.fast()`` (the factorised INR with ``workers=2``; ``mrphys dynamic
  recon --method inr --inr-preset fast``);
- ``grasp``: temporal TV with its frozen defaults (``registry.reconstruct("grasp")``).

Per cell: wall seconds of the reconstruction, CPU seconds (user + system of the process during
the reconstruction; the better guide on a shared machine), magnitude PSNR/SSIM (mean over
frames, ``mrphys.metrics``), peak RSS, torch threads and the 1-minute load average before and
after. The INR / GRASP wall and CPU ratios are computed from the rows. Prints ONE JSON object
(``--markdown FILE`` also writes the table). Usage::

    .venv/bin/python benchmarks/inr_speed.py                        # all cells, 2 threads
    .venv/bin/python benchmarks/inr_speed.py --only inr-new+grasp
    .venv/bin/python benchmarks/inr_speed.py --inr-iterations 100   # per-step timing probe
    .venv/bin/python benchmarks/inr_speed.py --only inr-fast --data-seed 1 --inr-seed 2 \
        --inr-set average_tail=0                                   # a tuning-case cell
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path("/work/shared/data/pincat_128x128x50.mat")
if (ROOT.parent / "shared" / "data").is_dir():
    DATA = ROOT.parent / "shared" / "data" / "pincat_128x128x50.mat"
CELLS = ("inr-old", "inr-prev", "inr-new", "inr-par", "inr-fac", "inr-fast", "grasp")
# InrConfig fields of the factorised INR (inr-fac)
FACTORISED = {"rank": 32, "lr": 3e-3}
# InrConfig fields that changed in issue 17, at their values before it
OLD_DEFAULTS = {
    "hidden_layers": 2,
    "hidden_width": 64,
    "iterations": 3000,
    "lr": 1e-3,
    "table_lr": None,
    "schedule": "halve",
}
# the defaults of the first round of issue 17 (before the 1 x 64 MLP)
PREV_DEFAULTS = {"hidden_layers": 2, "hidden_width": 64, "iterations": 1500, "table_lr": 1e-2}


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def run_cell(
    cell: str,
    iterations: int | None,
    baseline: bool,
    data_seed: int = 0,
    inr_seed: int = 0,
    inr_set: dict | None = None,
) -> dict:
    """One cell in this process: simulate, reconstruct, score."""
    import torch

    from mrphys.metrics import psnr, ssim
    from mrphys.physics.radial import simulate_radial
    from mrphys.recon.registry import reconstruct
    from mrphys.tissue.dynamic import load_series

    x = load_series(DATA).to(torch.complex64)
    x = x / x.abs().max()
    data = simulate_radial(x, 5, coils=8, snr=20.0, seed=data_seed)
    options: dict = {}
    extra: dict = {}
    if cell.startswith("inr"):
        from dataclasses import asdict, replace

        from mrphys.recon.inr import InrConfig

        cfg = InrConfig()
        if cell == "inr-old" and not baseline:
            cfg = replace(cfg, **OLD_DEFAULTS)
        if cell == "inr-prev":
            cfg = replace(cfg, **PREV_DEFAULTS)
        if cell == "inr-fac":
            cfg = replace(cfg, **FACTORISED)
        if cell == "inr-par":
            cfg = replace(cfg, workers=2)
        if cell == "inr-fast":
            cfg = InrConfig.fast()
        if iterations:
            cfg = replace(cfg, iterations=int(iterations))
        if inr_set:
            cfg = replace(cfg, **inr_set)
        options = {"config": cfg, "seed": inr_seed, "device": "cpu"}
        extra = {"config": asdict(cfg)}
    load0 = os.getloadavg()[0]
    c0, t0 = _cpu(), time.perf_counter()
    result = reconstruct(cell.split("-")[0], data, **options)
    wall, cpu = time.perf_counter() - t0, _cpu() - c0
    rec = result.image
    import mrphys

    return {
        "mrphys_from": str(Path(mrphys.__file__).parent),
        "cell": cell,
        "code": "baseline" if baseline else "this tree",
        "psnr_db": float(psnr(rec, data.truth).mean()),
        "ssim": float(ssim(rec, data.truth).mean()),
        "seconds": wall,
        "cpu_seconds": cpu,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
        "torch_threads": torch.get_num_threads(),
        "load_1min_before_after": [load0, os.getloadavg()[0]],
        **extra,
    }


def _inr_set(pairs: list[str]) -> dict:
    """``["average_tail=0", ...]`` -> ``{"average_tail": 0, ...}`` (values parsed as JSON)."""
    out = {}
    for kv in pairs:
        key, sep, value = kv.partition("=")
        if not sep:
            raise SystemExit(f"--inr-set takes KEY=VALUE; got {kv!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            raise SystemExit(f"--inr-set {key}: VALUE must be JSON; got {value!r}") from None
    return out


def markdown(rows: list[dict]) -> str:
    lines = [
        "| cell | code | PSNR (dB) | SSIM | wall s | CPU s | peak RSS GB | load before/after |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['cell']} | error: {r['error']} |||||||")
            continue
        la = r["load_1min_before_after"]
        lines.append(
            f"| {r['cell']} | {r['code']} | {r['psnr_db']:.2f} | {r['ssim']:.3f} | "
            f"{r['seconds']:.1f} | {r['cpu_seconds']:.1f} | {r['peak_rss_gb']:.2f} | "
            f"{la[0]:.1f} / {la[1]:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="cells joined by +, e.g. inr-new+grasp")
    ap.add_argument("--threads", type=int, default=2, help="torch threads per cell (default 2)")
    ap.add_argument("--inr-iterations", type=int, default=None, help="override INR steps")
    ap.add_argument("--data-seed", type=int, default=0, help="noise seed of the data (0: bar case)")
    ap.add_argument("--inr-seed", type=int, default=0, help="seed of the INR's start and windows")
    ap.add_argument(
        "--inr-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override an InrConfig field of every INR cell (VALUE as JSON), e.g. average_tail=0",
    )
    ap.add_argument("--baseline-src", help="src/ of mrphys before the change (inr-old runs it)")
    ap.add_argument("--markdown", type=Path, default=None, help="also write the table here")
    ap.add_argument("--cell", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.cell:  # child: one cell, one JSON line
        import torch

        torch.set_num_threads(args.threads)
        baseline = args.cell == "inr-old" and bool(args.baseline_src)
        row = run_cell(
            args.cell, args.inr_iterations, baseline, args.data_seed, args.inr_seed,
            _inr_set(args.inr_set),
        )  # fmt: skip
        print(json.dumps(row))
        return

    cells = [c for c in CELLS if not args.only or c in args.only.split("+")]
    if args.only and not cells:
        raise SystemExit(f"--only takes cells from {'+'.join(CELLS)} (got {args.only!r})")
    if args.baseline_src and not Path(args.baseline_src).is_dir():
        raise SystemExit(f"--baseline-src: no such folder {args.baseline_src}")
    load_start = list(os.getloadavg())
    rows: list[dict] = []
    for cell in cells:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--cell", cell]
        cmd += ["--threads", str(args.threads)]
        if args.inr_iterations:
            cmd += ["--inr-iterations", str(args.inr_iterations)]
        cmd += ["--data-seed", str(args.data_seed), "--inr-seed", str(args.inr_seed)]
        for kv in args.inr_set:
            cmd += ["--inr-set", kv]
        # this tree's src/ first (an editable install elsewhere must not win), or the baseline's
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONPATH=str(ROOT / "src"))
        if cell == "inr-old" and args.baseline_src:
            cmd += ["--baseline-src", args.baseline_src]
            env["PYTHONPATH"] = str(Path(args.baseline_src).resolve())
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
        if proc.returncode != 0:
            err = (proc.stderr.strip().splitlines() or ["unknown error"])[-1]
            rows.append({"cell": cell, "error": err})
        else:
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    ok = {r["cell"]: r for r in rows if "error" not in r}
    ratios = {}
    if "grasp" in ok:
        for c in CELLS[:-1]:
            if c in ok:
                ratios[c] = {
                    "wall_over_grasp": ok[c]["seconds"] / ok["grasp"]["seconds"],
                    "cpu_over_grasp": ok[c]["cpu_seconds"] / ok["grasp"]["cpu_seconds"],
                }
    table = markdown(rows)
    out = {
        "benchmark": "inr_speed",
        "case": f"PINCAT 128x128x50, 5 spokes, 8 coils, SNR 20, data seed {args.data_seed}",
        "inr_iterations_override": args.inr_iterations,
        "data_seed": args.data_seed,
        "inr_seed": args.inr_seed,
        "inr_set": _inr_set(args.inr_set),
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "load_average_at_start_1_5_15": load_start,
            "load_average_at_end_1_5_15": list(os.getloadavg()),
        },
        "results": rows,
        "ratios": ratios,
        "table_markdown": table,
    }
    if args.markdown:
        args.markdown.write_text(table + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
