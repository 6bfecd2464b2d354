"""mrphys against MRzero on the same pypulseq-written files: agreement and time side by side.

Prints ONE JSON object. Usage::

    .venv/bin/python benchmarks/pulseq_peer.py [--matrix 32] [--mrzero-python PY]

Three Cartesian sequences are written here with pypulseq directly (as another program would):

* ``gre``: gradient echo, block pulse after the RF dead time, ramped trapezoids, a spoiler lobe,
  LIN labels, TR 10 ms; no RF spoiling: with one spin per voxel the transverse coherences are
  then deterministic in both tools (MRzero's isochromat mode puts its spin at a random place in
  the voxel, its PDG prunes states: an RF-spoiled comparison would measure those choices);
* ``bssfp``: balanced SSFP with a sinc slice-selective pulse (apodised, TBW 4) and its slice
  rephasers, every axis balanced, alternating RF phase, dummy repetitions;
* ``spin_echo``: 90 / 180 block pulses, phase encode before the 180, TR 10 s (SPIN).

Both simulators read the same ``.seq`` file and the same SPIN Shepp-Logan phantom (one spin per
voxel at z = 0: MRzero ``voxel_shape="point"``). mrphys is timed in this process (median of
repeats after a warm-up, file reading reported apart); MRzero runs in its own environment (a
virtual environment with ``mrzerocore``, never a dependency of mrphys, default
``/tmp/venv_mrzero/bin/python``) as a subprocess of this script, timed inside that process,
PDG mode (``compute_graph`` + ``execute_graph``) for all three and its isochromat mode for the
bSSFP, back to back on the same machine. Agreement: NRMSE of the magnitude images (inverse FFT of
the k-space sorted by the LIN labels), and of the complex k-space after the least-squares global
complex factor (the two tools' RF and receiver phase conventions differ by a constant). mrphys
simulates the finite RF pulses (the sinc as a product of rotations through the slice); MRzero's
pulseq import turns each pulse into an instantaneous rotation, so the bSSFP differences include
finite-pulse effects. mrphys with isochromats through the slice (slice profile) is timed too.
For the GRE, mrphys is also run with 16 isochromats per voxel (the spoiler's intra-voxel
dephasing, which MRzero's PDG models through its dephasing states). When MRzero is missing, the
peer part says why and mrphys numbers are still reported.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def add(s, *events) -> float:
    """Add a block to the pypulseq sequence ``s``; returns its duration in s."""
    import pypulseq as pp

    s.add_block(*events)
    return float(pp.calc_duration(*events))


def write_files(folder: Path, n: int, fov: float) -> dict[str, dict]:
    """The three pypulseq-written files; returns per file its path and settings."""
    import pypulseq as pp

    sys_ = pp.Opts(max_grad=32, grad_unit="mT/m", max_slew=130, slew_unit="T/m/s",
                   rf_ringdown_time=30e-6, rf_dead_time=100e-6, adc_dead_time=10e-6)  # fmt: skip
    dk = 1 / fov
    out = {}

    def readout():
        gx = pp.make_trapezoid("x", flat_area=n * dk, flat_time=n * 4e-5, system=sys_)
        adc = pp.make_adc(n, duration=gx.flat_time, delay=gx.rise_time, system=sys_)
        return gx, adc

    # --- GRE
    s = pp.Sequence(system=sys_)
    rf = pp.make_block_pulse(math.radians(20), duration=2e-4, delay=1e-4, system=sys_,
                             use="excitation")  # fmt: skip
    gx, adc = readout()
    gx_pre = pp.make_trapezoid("x", area=-gx.area / 2, duration=8e-4, system=sys_)
    gx_sp = pp.make_trapezoid("x", area=4 * n * dk, system=sys_)
    tr = 10e-3
    for i, line in enumerate([0] * 20 + list(range(n))):
        gy = pp.make_trapezoid("y", area=(line - n / 2) * dk, duration=8e-4, system=sys_)
        el = add(s, rf) + add(s, gx_pre, gy)
        if i < 20:
            el += add(s, gx)
        else:
            el += add(s, gx, adc, pp.make_label(type="SET", label="LIN", value=line))
        gy.amplitude = -gy.amplitude
        rest = tr - el
        s.add_block(gx_sp, gy, pp.make_delay(round(rest / 1e-5) * 1e-5))
    s.set_definition("FOV", [fov, fov, 5e-3])
    out["gre"] = {"tr_s": tr, "flip_deg": 20.0, "dummies": 20}
    s.write(str(folder / "gre.seq"))

    # --- bSSFP with a sinc slice-selective pulse
    s = pp.Sequence(system=sys_)
    rf, gz, gzr = pp.make_sinc_pulse(
        math.radians(30), duration=1e-3, slice_thickness=5e-3, apodization=0.5,
        time_bw_product=4, system=sys_, return_gz=True, use="excitation",
    )  # fmt: skip
    gx, adc = readout()
    gx_pre = pp.make_trapezoid("x", area=-gx.area / 2, duration=1e-3, system=sys_)
    n_dummy = 40
    for i, line in enumerate([n // 2] * n_dummy + list(range(n))):
        ph = math.pi * (i % 2)
        rf.phase_offset = adc.phase_offset = ph
        s.add_block(rf, gz)
        gy = pp.make_trapezoid("y", area=(line - n / 2) * dk, duration=1e-3, system=sys_)
        s.add_block(gx_pre, gy, gzr)
        if i < n_dummy:
            s.add_block(gx)
        else:
            s.add_block(gx, adc, pp.make_label(type="SET", label="LIN", value=line))
        gy.amplitude = -gy.amplitude
        s.add_block(gx_pre, gy, gzr)
    s.set_definition("FOV", [fov, fov, 5e-3])
    s.set_definition("SliceThickness", 5e-3)
    ok, _ = s.check_timing()
    out["bssfp"] = {"tr_s": float(s.duration()[0]) / (n_dummy + n), "flip_deg": 30.0,
                    "dummies": n_dummy, "check_timing": bool(ok)}  # fmt: skip
    s.write(str(folder / "bssfp.seq"))

    # --- spin echo
    s = pp.Sequence(system=sys_)
    rf90 = pp.make_block_pulse(math.pi / 2, duration=5e-4, delay=1e-4, system=sys_,
                               use="excitation", phase_offset=math.pi / 2)  # fmt: skip
    rf180 = pp.make_block_pulse(math.pi, duration=1e-3, delay=1e-4, system=sys_,
                                use="refocusing")  # fmt: skip
    gx, adc = readout()
    gx_pre = pp.make_trapezoid("x", area=gx.area / 2, duration=1e-3, system=sys_)
    te, tr = 20e-3, 10.0
    t90 = rf90.delay + 2.5e-4
    for i, line in enumerate([0] * 2 + list(range(n))):
        gy = pp.make_trapezoid("y", area=-(line - n / 2) * dk, duration=1e-3, system=sys_)
        el = add(s, rf90) + add(s, gx_pre, gy)
        d1 = t90 + te / 2 - el - (rf180.delay + 5e-4)  # the 180's centre at TE/2
        el += add(s, pp.make_delay(round(d1 / 1e-5) * 1e-5))
        el += add(s, rf180)
        t180 = el - (pp.calc_duration(rf180) - rf180.delay - 5e-4)
        d2 = t90 + te - el - gx.rise_time - n / 2 * adc.dwell  # k = 0 at TE
        el += add(s, pp.make_delay(round(d2 / 1e-5) * 1e-5))
        del t180
        if i < 2:
            el += add(s, gx)
        else:
            el += add(s, gx, adc, pp.make_label(type="SET", label="LIN", value=line))
        rest = tr - el
        s.add_block(pp.make_delay(round(rest / 1e-5) * 1e-5))
    s.set_definition("FOV", [fov, fov, 5e-3])
    out["spin_echo"] = {"tr_s": tr, "te_s": te, "dummies": 2}
    s.write(str(folder / "spin_echo.seq"))
    for name in out:
        out[name]["path"] = str(folder / f"{name}.seq")
    return out


def peer_worker(folder: Path, names: list[str], iso: list[str]) -> None:
    """Runs in MRzero's environment: simulate each file, save signals and times."""
    import MRzeroCore as mr0
    import torch

    torch.set_num_threads(2)
    ph = np.load(folder / "phantom.npz")
    n = ph["rho"].shape[0]
    fov = float(ph["fov"])
    # mrphys maps are (Y, X); MRzero's grid is (x, y, z)
    pd, t1, t2 = (torch.tensor(ph[k].T[:, :, None].copy(), dtype=torch.float32)
                  for k in ("rho", "t1", "t2"))  # fmt: skip
    t2 = torch.where(t2 > 0, t2, torch.full_like(t2, 1e-3))
    t1 = torch.where(t1 > 0, t1, torch.full_like(t1, 1e-3))
    vox = fov * 1e3 / n
    phantom = mr0.VoxelGridPhantom(
        pd, t1, t2, torch.full_like(pd, 1e6), torch.zeros_like(pd), torch.zeros_like(pd),
        torch.ones(1, n, n, 1), torch.ones(1, n, n, 1),
        torch.diag(torch.tensor([vox, vox, 5.0, 1.0])),
    )  # fmt: skip
    data = phantom.build(voxel_shape="point")
    res = {}
    for name in names:
        seq = mr0.Sequence.import_file(str(folder / f"{name}.seq"))
        t0 = time.perf_counter()
        graph = mr0.compute_graph(seq, data, 200, 1e-4)
        sig = mr0.execute_graph(graph, seq, data, print_progress=False)
        t_pdg = time.perf_counter() - t0
        np.save(folder / f"mr0_{name}_pdg.npy", sig[:, 0].numpy())
        res[name] = {"pdg_s": t_pdg}
        if name in iso:
            t0 = time.perf_counter()
            sig = mr0.isochromat_sim(seq, data, 1, print_progress=False)
            res[name]["isochromat_s"] = time.perf_counter() - t0
            np.save(folder / f"mr0_{name}_iso.npy", sig[:, 0].numpy())
    res["version"] = mr0.__version__
    res["torch"] = torch.__version__
    (folder / "mr0_times.json").write_text(json.dumps(res))


def _image(k: np.ndarray, lin: list[int], n: int) -> np.ndarray:
    grid = np.zeros((n, n), complex)
    grid[lin] = k.reshape(-1, n)
    return np.abs(np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(grid))))


def _agreement(a: np.ndarray, b: np.ndarray, lin: list[int], n: int) -> dict:
    """NRMSE of magnitude images, and of complex k-space after the best global factor."""
    ia, ib = _image(a, lin, n), _image(b, lin, n)
    c = np.vdot(b, a) / np.vdot(b, b)  # a ~ c b
    return {
        "image_nrmse": float(np.linalg.norm(ia - ib) / np.linalg.norm(ia)),
        "kspace_nrmse_after_global_factor": float(np.linalg.norm(a - c * b) / np.linalg.norm(a)),
        "global_factor_abs": float(abs(c)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--matrix", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--mrzero-python", default="/tmp/venv_mrzero/bin/python")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--iso", default="bssfp", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        peer_worker(Path(args.worker), ["gre", "bssfp", "spin_echo"], args.iso.split(","))
        return
    sys.path.insert(0, str(ROOT / "src"))
    from mrphys.runtime import openmp_wait_defaults

    openmp_wait_defaults()
    import torch

    from mrphys.physics import bloch, pulseq_io
    from mrphys.tissue import spin_shepp_logan

    torch.set_num_threads(2)
    n, fov = args.matrix, args.matrix * 1e-3
    res: dict = {
        "benchmark": "pulseq_peer",
        "matrix": n,
        "host": {"cpu_count": os.cpu_count(), "torch": torch.__version__,
                 "load_average_1_5_15_start": [round(v, 2) for v in os.getloadavg()]},
    }  # fmt: skip
    folder = Path(tempfile.mkdtemp(prefix="mrphys_peer_"))
    files = write_files(folder, n, fov)
    ph = spin_shepp_logan(1, matrix=n, fov=fov, generator=torch.Generator().manual_seed(0))[0]
    np.savez(folder / "phantom.npz", rho=ph.rho.numpy(), t1=ph.t1.numpy(), t2=ph.t2.numpy(),
             fov=fov)  # fmt: skip
    ours = {}
    for name, info in files.items():
        t0 = time.perf_counter()
        seq = pulseq_io.read_seq(info["path"])
        t_read = time.perf_counter() - t0
        with torch.no_grad():
            bloch.simulate(seq, ph)  # warm-up
            walls = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                sig = bloch.simulate(seq, ph)
                walls.append(time.perf_counter() - t0)
        ours[name] = sig.numpy().astype(complex)
        entry = {"file": info | {"path": Path(info["path"]).name},
                 "mrphys_read_s": t_read, "mrphys_sim_s_median": statistics.median(walls),
                 "blocks": seq.n_blocks, "adc_samples": seq.adc_count}  # fmt: skip
        if name == "gre":  # intra-voxel dephasing by the spoiler: 16 isochromats along x
            t0 = time.perf_counter()
            with torch.no_grad():
                ours["gre_iso16"] = bloch.simulate(seq, ph, isochromats=16).numpy().astype(complex)
            entry["mrphys_16_isochromats_s"] = time.perf_counter() - t0
        if name == "bssfp":
            zs = torch.linspace(-5e-3, 5e-3, 16)
            t0 = time.perf_counter()
            with torch.no_grad():
                bloch.simulate(seq, ph, slice_positions=zs)
            entry["mrphys_slice_16_isochromats_s"] = time.perf_counter() - t0
        entry["lin"] = seq.params["labels"]["LIN"]
        res[name] = entry
    # the peer, in its own environment, back to back
    py = Path(args.mrzero_python)
    if not py.is_file():
        res["mrzero"] = {"skipped": f"no MRzero environment at {py} (pip install mrzerocore "
                         "in a venv with torch==2.13.0 first)"}  # fmt: skip
    else:
        cmd = [str(py), str(Path(__file__).resolve()), "--worker", str(folder), "--iso", "bssfp"]
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3000)
        if p.returncode != 0:
            res["mrzero"] = {"skipped": "MRzero failed: " + p.stderr.strip().splitlines()[-1]}
        else:
            times = json.loads((folder / "mr0_times.json").read_text())
            res["mrzero"] = {"version": times.pop("version"), "torch": times.pop("torch")}
            for name in files:
                e = res[name]
                lin = e["lin"]
                pdg = np.load(folder / f"mr0_{name}_pdg.npy").astype(complex)
                e["mrzero_pdg_s"] = times[name]["pdg_s"]
                e["speedup_vs_mrzero_pdg"] = times[name]["pdg_s"] / e["mrphys_sim_s_median"]
                e["agreement_vs_mrzero_pdg"] = _agreement(ours[name], pdg, lin, n)
                if name == "gre":
                    e["agreement_16_isochromats_vs_mrzero_pdg"] = _agreement(
                        ours["gre_iso16"], pdg, lin, n
                    )
                if "isochromat_s" in times[name]:
                    iso = np.load(folder / f"mr0_{name}_iso.npy").astype(complex)
                    e["mrzero_isochromat_s"] = times[name]["isochromat_s"]
                    e["speedup_vs_mrzero_isochromat"] = (
                        times[name]["isochromat_s"] / e["mrphys_sim_s_median"]
                    )
                    e["agreement_vs_mrzero_isochromat"] = _agreement(ours[name], iso, lin, n)
    for name in files:
        res[name].pop("lin")
    res["host"]["load_average_1_5_15_end"] = [round(v, 2) for v in os.getloadavg()]
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
