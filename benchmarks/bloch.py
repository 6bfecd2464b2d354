"""Bloch simulator benchmark: the SPIN acquisition, 1,000 phantoms, speed-up over time stepping.

Prints ONE JSON object. Usage::

    .venv/bin/python benchmarks/bloch.py            # full (a few minutes on 2 cores)
    .venv/bin/python benchmarks/bloch.py --quick    # under 2 minutes (extrapolates, says so)

Measured:

* ``spin_single``: one 64x64 SPIN phantom, 64 phase encodes x 64 samples, TR 10 s, TE 40 ms,
  10 dummy repetitions for the carry-over (event simulator, wall and CPU time; median of repeats).
* ``spin_batch``: 1,000 phantoms (``--quick``: fewer, extrapolated), phantom generation timed
  separately.
* ``reference``: a time-stepping simulator written here (vectorised over voxels, one step per
  0.1 ms as in the SPIN paper, so ~7.4e6 steps per image); it is checked against the event
  simulator on a short-TR acquisition, then timed on a subset of steps and extrapolated.
* ``gpu``: the same on CUDA when available.

Timings depend on the load of the machine: the JSON records the load average and thread count.
How OpenMP threads wait is set by ``import mrphys`` before torch starts (a short spin, or
sleeping threads on a machine whose load exceeds 1.5x its cores; see ``mrphys/__init__.py``);
the JSON records it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from mrphys.runtime import openmp_wait_defaults  # noqa: E402

openmp_wait_defaults()  # the OpenMP wait policy of the `mrphys` command, before torch starts

# isort: split
import torch  # noqa: E402

from mrphys.metrics import psnr  # noqa: E402
from mrphys.physics import bloch  # noqa: E402
from mrphys.physics.sequence import GAMMA, Loop, Sequence, spin_echo  # noqa: E402
from mrphys.physics.signal import spin_echo_image  # noqa: E402
from mrphys.tissue import Phantom, spin_shepp_logan  # noqa: E402


def _timed(fn, sync=None):
    if sync:
        sync()
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    if sync:
        sync()
    return out, time.perf_counter() - t0, time.process_time() - c0


def _events(seq: Sequence) -> int:
    """Events of an acquisition: blocks (RF, gradient lobe, delay) plus ADC samples."""
    return seq.n_blocks + seq.adc_count


class TimeStepper:
    """Reference simulator: one step per ``dt`` (0.1 ms) through every block, vectorised over
    voxels; the ADC samples of a block are steps of one dwell after ``delay + dwell/2``."""

    def __init__(self, seq: Sequence, ph: Phantom, dt: float = 1e-4) -> None:
        self.seq, self.dt = seq, dt
        ph = ph.as_batch()
        y, x = ph.positions()
        self.x, self.y = x.reshape(-1), y.reshape(-1)
        t1, t2 = ph.t1.reshape(-1), ph.t2.reshape(-1)
        tissue = (t1 > 0) & (t2 > 0)
        self.rho = torch.where(tissue, ph.rho.reshape(-1), torch.zeros_like(t1))
        self.r1 = torch.where(tissue, 1 / torch.where(tissue, t1, 1.0), 0.0)
        self.r2 = torch.where(tissue, 1 / torch.where(tissue, t2, 1.0), 0.0)
        self.blocks = [
            b for it in seq.items for b in (it.expand() if isinstance(it, Loop) else [it])
        ]

    def steps_of(self, b) -> list[tuple[float, bool]]:
        """(step length, sample after this step) for a block."""
        d = float(b.duration)
        if b.adc is None:
            n = max(1, round(d / self.dt))
            return [(d / n, False)] * n
        first = float(b.adc.delay) + 0.5 * float(b.adc.dwell)
        dw = float(b.adc.dwell)
        out = [(first, True)] + [(dw, True)] * (b.adc.num - 1)
        rest = d - first - dw * (b.adc.num - 1)
        n = max(1, round(rest / self.dt))
        return out + [(rest / n, False)] * n

    def n_steps(self) -> int:
        return sum(len(self.steps_of(b)) for b in self.blocks)

    def run(self, max_steps: int | None = None) -> tuple[torch.Tensor, int]:
        mxy = torch.zeros(
            self.rho.shape,
            dtype=torch.complex64 if self.rho.dtype == torch.float32 else torch.complex128,
        )
        mz = self.rho.clone()
        samples: list[torch.Tensor] = []
        steps = 0
        for b in self.blocks:
            if b.rf is not None:
                a, p = float(b.rf.flip), float(b.rf.phase)
                ca, sa, cp, sp = math.cos(a), math.sin(a), math.cos(p), math.sin(p)
                c2, s2 = math.cos(a / 2) ** 2, math.sin(a / 2) ** 2
                e2p = complex(math.cos(2 * p), math.sin(2 * p))
                new = c2 * mxy + s2 * e2p * mxy.conj() + complex(sp, -cp) * sa * mz
                mz = ca * mz + sa * (cp * mxy.imag - sp * mxy.real)
                mxy = new
            g = torch.zeros_like(self.x)
            if b.gx is not None:
                g = g + float(b.gx) * self.x
            if b.gy is not None:
                g = g + float(b.gy) * self.y
            cache: dict[float, tuple] = {}
            for h, sample in self.steps_of(b):
                if h not in cache:
                    rot = torch.exp(torch.complex(-self.r2 * h, -GAMMA * g * h))
                    e1 = torch.exp(-self.r1 * h)
                    cache[h] = (rot, e1, self.rho * (1 - e1))
                rot, e1, rec = cache[h]
                mxy = mxy * rot
                mz = mz * e1 + rec
                if sample:
                    ph = float(b.adc.phase)
                    samples.append(mxy.sum() * complex(math.cos(ph), -math.sin(ph)))
                steps += 1
                if max_steps is not None and steps >= max_steps:
                    return torch.stack(samples) if samples else torch.zeros(0), steps
            if b.spoil:
                mxy = torch.zeros_like(mxy)
        return torch.stack(samples), steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer phantoms and steps (< 2 min)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--phantoms", type=int, default=1000, help="phantoms in the batch run")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    res: dict = {
        "benchmark": "bloch",
        "quick": args.quick,
        "host": {
            "cpu_threads_used": args.threads,
            "cpu_count": os.cpu_count(),
            "load_average_1_5_15_start": [round(v, 2) for v in os.getloadavg()],
            "torch": torch.__version__,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "gomp_spincount": os.environ.get("GOMP_SPINCOUNT"),
            "python": platform.python_version(),
        },
    }
    gen = torch.Generator().manual_seed(args.seed)
    seq = spin_echo(matrix=64, fov=0.064, tr=10.0, te=0.04, n_dummy=10)
    ph1 = spin_shepp_logan(1, matrix=64, fov=0.064, generator=gen)

    # --- one SPIN acquisition
    bloch.simulate_kspace(seq, ph1)  # warm-up
    reps = 5 if args.quick else 15
    walls, cpus = [], []
    for _ in range(reps):
        k, w, c = _timed(lambda: bloch.simulate_kspace(seq, ph1))
        walls.append(w)
        cpus.append(c)
    img = torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(k, dim=(-2, -1))), dim=(-2, -1))
    truth = spin_echo_image(ph1, 10.0, 0.04)
    wall = statistics.median(walls)
    n_vox = 64 * 64
    ev = _events(seq)
    res["spin_single"] = {
        "what": "64x64 SPIN phantom, 64 PE x 64 samples, TR 10 s, TE 40 ms, 10 dummy TRs",
        "wall_s_median": wall,
        "wall_s_min": min(walls),
        "cpu_s_median": statistics.median(cpus),
        "repeats": reps,
        "bar_s": 0.05,
        "meets_bar": wall <= 0.05,
        "events": ev,
        "spin_events_per_s": n_vox * ev / wall,
        "psnr_vs_eq13_db": float(psnr(img.abs(), truth)),
    }

    # --- many phantoms
    n_ph = min(args.phantoms, 200) if args.quick else args.phantoms
    phs, t_gen, _ = _timed(
        lambda: spin_shepp_logan(
            n_ph, matrix=64, fov=0.064, generator=torch.Generator().manual_seed(1)
        )
    )
    _, t_sim, c_sim = _timed(lambda: bloch.simulate_kspace(seq, phs))
    scale = args.phantoms / n_ph
    res["spin_batch"] = {
        "phantoms_simulated": n_ph,
        "phantoms_target": args.phantoms,
        "extrapolated": n_ph != args.phantoms,
        "phantom_generation_s": t_gen * scale,
        "simulation_wall_s": t_sim * scale,
        "simulation_cpu_s": c_sim * scale,
        "per_phantom_ms": 1e3 * t_sim / n_ph,
        "bar_s": 30.0,
        "meets_bar": t_sim * scale <= 30.0,
        "spin_events_per_s": n_ph * n_vox * ev / t_sim,
    }
    del phs

    # --- time-stepping reference: correctness on a short TR, then speed on the SPIN sequence
    short = spin_echo(matrix=64, fov=0.064, tr=0.1, te=0.04, n_dummy=0)
    ph64 = ph1.to(dtype=torch.float64)
    ref_k, _ = TimeStepper(short, ph64).run()
    ev_k = bloch.simulate(short, ph64)[0]
    ref_err = float((ref_k - ev_k).abs().max() / ev_k.abs().max())
    ts = TimeStepper(seq, ph1)
    total = ts.n_steps()
    sub = 3000 if args.quick else 30000
    _, t_ref, _ = _timed(lambda: ts.run(max_steps=sub))
    t_ref_full = t_ref * total / sub
    res["reference"] = {
        "what": "time stepping, dt = 0.1 ms, vectorised over 4096 voxels",
        "check_short_tr_max_rel_err_vs_event_sim": ref_err,
        "steps_per_image": total,
        "spin_steps_per_image": total * n_vox,
        "steps_timed": sub,
        "extrapolated": True,
        "timed_s": t_ref,
        "full_image_s_extrapolated": t_ref_full,
        "speedup_event_vs_stepping": t_ref_full / wall,
        "bar_speedup": 100.0,
        "meets_bar": t_ref_full / wall >= 100.0,
    }

    # --- GPU
    if torch.cuda.is_available():
        dev = torch.device("cuda")
        sync = torch.cuda.synchronize
        phg = ph1.to(device=dev)
        bloch.simulate_kspace(seq, phg)
        gw = [_timed(lambda: bloch.simulate_kspace(seq, phg), sync)[1] for _ in range(reps)]
        torch.cuda.reset_peak_memory_stats()
        phs = spin_shepp_logan(
            n_ph, matrix=64, fov=0.064, generator=torch.Generator().manual_seed(1)
        )
        phs = phs.to(device=dev)
        _, tg, _ = _timed(lambda: bloch.simulate_kspace(seq, phs), sync)
        res["gpu"] = {
            "device": torch.cuda.get_device_name(0),
            "single_wall_s_median": statistics.median(gw),
            "batch_phantoms": n_ph,
            "batch_wall_s": tg,
            "per_phantom_ms": 1e3 * tg / n_ph,
            "peak_gpu_memory_mb": torch.cuda.max_memory_allocated() / 2**20,
        }
    else:
        res["gpu"] = {"skipped": "CUDA not available"}

    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res["host"]["load_average_1_5_15_end"] = [round(v, 2) for v in os.getloadavg()]
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
