"""Coil maps from the data: ESPIRiT (mrphys, sigpy) and Walsh/Inati; seconds, peak memory, error.

Part 1, ``speed`` (issue 14's bar): 12 coils, 256 x 256, fully sampled Cartesian k-space of an
ellipse phantom with smooth Gaussian-loop coil maps and 0.5 % complex noise. Each method runs in
its own subprocess (fresh interpreter, same thread count), so that ``peak_mb`` (the growth of the
resident set, ``resource.getrusage`` ``ru_maxrss``, above the level after loading the data and a
warm-up run on a 32 x 32 centre that loads the libraries) counts all allocations, torch's and
numpy's alike: mrphys ``espirit_maps`` (calib 24, kernel 6,
thresh 0.02, crop 0.95), mrphys ``walsh_maps`` and ``inati_maps`` (on the coil images low-passed to
the same 24 x 24 k-space centre, window 7), and sigpy's ``EspiritCalib`` with the same settings
when sigpy imports in ``--sigpy-python`` (default ``/tmp/venv_sigpy/bin/python``; skipped with the
reason otherwise; sigpy is never a dependency). ``map_error`` is the mean over the object of
``|S_est - S_true e^{i phi}|`` (coil 2-norm, best phase ``phi`` per pixel).

Part 2, ``choose`` (the defaults of ``estimate_maps``): radial data of the same kind of object
at 96 x 96 (8 frames x 5 golden-angle spokes, 192 samples, 8 coils, 1 % noise), simulated on a
2x finer grid (the object and maps sampled there, not on the reconstruction grid), Gaussian-loop
and birdcage maps. For each method and ``fill`` window (0 = off; ``smooth=False``) and with the
smooth refit (``smooth``, the default of ``estimate_maps``): seconds of ``estimate_maps``,
map error inside the object, and the mean PSNR of per-frame CG-SENSE (recon defaults) with the
estimated maps, beside the same with the true maps: over the whole field of view
(``cg_sense_psnr_db``), over the object alone (``cg_sense_psnr_object_db``; 70 % of the field of
view is empty background, where the maps are not determined by the data) and the background's
share of the squared error (``background_mse_share``).

Prints ONE JSON object. Usage:
``nice -n 5 .venv/bin/python benchmarks/espirit.py [--quick] [--threads 1] [--part speed|choose]``
(``--quick``: part 1 at 128 x 128.)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CALIB, KERNEL, THRESH, CROP, WINDOW = 24, 6, 0.02, 0.95, 7


# -------------------------------------------------------------------------------------------
# the test object (numpy only, so that the sigpy worker needs no mrphys)
# -------------------------------------------------------------------------------------------


def _grid(n: int, fine: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres of an ``n`` grid (``fine`` times finer), in half-FOV units ``[-1, 1)``."""
    m = n * fine
    r = (np.arange(m) - m // 2) / (m / 2)
    return np.meshgrid(r, r, indexing="ij")


def phantom(n: int, fine: int = 1) -> np.ndarray:
    """Ellipses with a smooth background phase, complex128 ``(n*fine, n*fine)``."""
    y, x = _grid(n, fine)
    img = (((y / 0.7) ** 2 + (x / 0.55) ** 2) < 1).astype(float)
    img -= 0.5 * ((((y - 0.2) / 0.2) ** 2 + ((x + 0.1) / 0.3) ** 2) < 1)
    img += 0.6 * ((((y + 0.3) / 0.15) ** 2 + ((x - 0.15) / 0.1) ** 2) < 1)
    img += 0.3 * ((((y - 0.35) / 0.08) ** 2 + ((x - 0.2) / 0.12) ** 2) < 1)
    return img * np.exp(1j * (0.5 * x + 0.3 * y))


def gaussian_maps(c: int, n: int, fine: int = 1) -> np.ndarray:
    """Gaussian-loop coil maps with a linear phase each, unit sum of squares, ``(C, Y, X)``."""
    y, x = _grid(n, fine)
    maps = []
    for i in range(c):
        a = 2 * math.pi * i / c + 0.3
        mag = np.exp(-((y - 0.9 * math.sin(a)) ** 2 + (x - 0.9 * math.cos(a)) ** 2) / 0.72)
        maps.append(mag * np.exp(1j * (1.3 * (y * math.cos(2 * a) - x * math.sin(a)) + i)))
    m = np.stack(maps)
    return m / np.sqrt((np.abs(m) ** 2).sum(0))


def map_error(est: np.ndarray, true: np.ndarray, mask: np.ndarray) -> float:
    inner = (true.conj() * est).sum(0)
    ph = np.exp(1j * np.angle(inner))
    return float(np.sqrt((np.abs(est - true * ph) ** 2).sum(0))[mask].mean())


def _fft2c(x: np.ndarray) -> np.ndarray:
    x = np.fft.ifftshift(x, axes=(-2, -1))
    return np.fft.fftshift(np.fft.fft2(x, norm="ortho"), axes=(-2, -1))


def _ifft2c(x: np.ndarray) -> np.ndarray:
    x = np.fft.ifftshift(x, axes=(-2, -1))
    return np.fft.fftshift(np.fft.ifft2(x, norm="ortho"), axes=(-2, -1))


def _rss_mb() -> float:
    """Peak resident set of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


# -------------------------------------------------------------------------------------------
# part 1 workers: one method per fresh process
# -------------------------------------------------------------------------------------------


def worker(method: str, data: Path, out: Path) -> None:
    """Run ``method`` once on a 32 x 32 centre (loads its libraries) and then, measured, on all."""
    ksp = np.load(data)
    if method == "sigpy_espirit":
        import sigpy.mri

        def run(k):  # the constructor does the calibration: time and measure it too
            return sigpy.mri.app.EspiritCalib(
                k, calib_width=CALIB, thresh=THRESH, kernel_width=KERNEL, crop=CROP,
                show_pbar=False,
            ).run()  # fmt: skip
    else:
        import torch

        from mrphys.physics.fourier import ifft2c
        from mrphys.recon import calib

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        fn = {"mrphys_walsh": calib.walsh_maps, "mrphys_inati": calib.inati_maps}.get(method)

        def run(k):
            k = torch.from_numpy(k)
            if method == "mrphys_espirit":
                return calib.espirit_maps(
                    k, k.shape[-2:], kernel=KERNEL, calib=CALIB, thresh=THRESH, crop=CROP
                ).numpy()
            return fn(calib._lowpass(ifft2c(k), CALIB), WINDOW).numpy()

    c, ny, nx = ksp.shape
    run(np.ascontiguousarray(ksp[:, ny // 2 - 16 : ny // 2 + 16, nx // 2 - 16 : nx // 2 + 16]))
    base = _current_mb()
    t0 = time.perf_counter()
    maps = run(ksp)
    seconds = time.perf_counter() - t0
    peak = _rss_mb()
    np.save(out.with_suffix(".npy"), np.asarray(maps, dtype=np.complex64))
    out.write_text(json.dumps({"seconds": seconds, "peak_mb": peak - base, "rss_mb": peak}))


def speed(n: int, coils: int, python_sigpy: str, threads: int) -> dict:
    rng = np.random.default_rng(0)
    true = gaussian_maps(coils, n)
    img = phantom(n)
    ksp = _fft2c(true * img)
    ksp += 0.005 * np.abs(ksp).max() * (rng.standard_normal(ksp.shape) + 1j * rng.standard_normal(
        ksp.shape)) / math.sqrt(2)  # fmt: skip
    mask = np.abs(img) > 0
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               OPENBLAS_NUM_THREADS=str(threads))  # fmt: skip
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "ksp.npy"
        np.save(data, ksp.astype(np.complex64))
        methods = [("mrphys_espirit", sys.executable), ("mrphys_walsh", sys.executable),
                   ("mrphys_inati", sys.executable)]  # fmt: skip
        probe = subprocess.run(
            [python_sigpy, "-c", "import sigpy.mri; print(sigpy.__version__)"],
            capture_output=True, text=True, env=env,
        ) if Path(python_sigpy).exists() else None  # fmt: skip
        if probe is not None and probe.returncode == 0:
            methods.append(("sigpy_espirit", python_sigpy))
            out["sigpy_version"] = probe.stdout.strip()
        else:
            why = "not found" if probe is None else probe.stderr.strip().splitlines()[-1:]
            out["sigpy_espirit"] = {"skipped": f"sigpy does not import in {python_sigpy}: {why}"}
        maps = {}
        for name, py in methods:
            res = Path(tmp) / f"{name}.json"
            cmd = [py, str(Path(__file__).resolve()), "--worker", name, "--data", str(data),
                   "--out", str(res)]  # fmt: skip
            p = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if p.returncode != 0:
                out[name] = {"failed": p.stderr.strip().splitlines()[-1:]}
                continue
            out[name] = json.loads(res.read_text())
            maps[name] = np.load(res.with_suffix(".npy"))
            out[name]["map_error"] = map_error(maps[name], true, mask)
            sos = (np.abs(maps[name]) ** 2).sum(0)
            out[name]["fraction_of_object_covered"] = float((sos[mask] > 0.5).mean())
            out[name]["fraction_of_background_zero"] = float((sos[~mask] == 0).mean())
        if "sigpy_espirit" in maps and "mrphys_espirit" in maps:
            both = mask & ((np.abs(maps["sigpy_espirit"]) ** 2).sum(0) > 0.5)
            out["mrphys_vs_sigpy_espirit_map_difference"] = map_error(
                maps["mrphys_espirit"], maps["sigpy_espirit"], both
            )
    return out


# -------------------------------------------------------------------------------------------
# part 2: which method estimate_maps uses by default
# -------------------------------------------------------------------------------------------


def choose(quick: bool) -> dict:
    import torch

    from mrphys.metrics import psnr
    from mrphys.physics.coils import SenseOp, birdcage_maps
    from mrphys.physics.nufft import RadialNUFFT, golden_angle_radial, radial_dcf
    from mrphys.recon import calib
    from mrphys.recon.baselines import cg_sense_operator

    n, coils, frames, spokes, fine = 96, 8, 8, 5, 2
    traj = golden_angle_radial(frames, spokes, 2 * n)
    truth = torch.from_numpy(phantom(n)).to(torch.complex64)
    obj = truth.abs() > 0
    fine_img = torch.from_numpy(phantom(n, fine)).to(torch.complex64)
    # the same k-space positions on the 2x finer grid are half as many rad/pixel; the factor
    # 1/fine keeps the object's k-space scale (pixel area) that of the coarse grid
    fine_op = RadialNUFFT(traj / fine, (n * fine, n * fine))
    dcf = radial_dcf(traj, (n, n))
    enc = RadialNUFFT(traj, (n, n))
    out = {}
    models = {
        "gaussian": lambda f: torch.from_numpy(gaussian_maps(coils, n, f)).to(torch.complex64),
        "birdcage": lambda f: birdcage_maps(coils, (n * f, n * f), radius=1.4),
    }
    fills = (0, 17, 33) if not quick else (0, 33)
    for model, make in models.items():
        true = make(1)
        k = fine_op.on_coils(coils)((make(fine) * fine_img).expand(frames, -1, -1, -1)) / fine
        g = torch.Generator().manual_seed(0)
        k = k + 0.01 * float(k.abs().max()) * torch.randn(k.shape, generator=g,
                                                          dtype=torch.complex64)  # fmt: skip

        def recon(maps, k=k) -> dict:  # per-frame CG-SENSE (recon defaults), mean over frames
            x = cg_sense_operator(SenseOp(maps, enc), k, dcf[:, None]).x
            ref = truth.abs().expand_as(x)
            err = (x.abs() - ref) ** 2
            obj_mse = (err * obj).flatten(-2).sum(-1) / obj.sum()
            peak = ref.flatten(-2).amax(-1)
            return {
                "cg_sense_psnr_db": float(psnr(x.abs(), ref).mean()),
                # the object alone: 70 % of this field of view is empty background
                "cg_sense_psnr_object_db": float((10 * torch.log10(peak**2 / obj_mse)).mean()),
                "background_mse_share": float((err * ~obj).sum() / err.sum()),
            }

        ref_true = recon(true)
        row: dict = {
            "true_maps_cg_sense_psnr_db": ref_true["cg_sense_psnr_db"],
            "true_maps_cg_sense_psnr_object_db": ref_true["cg_sense_psnr_object_db"],
            "true_maps_background_mse_share": ref_true["background_mse_share"],
        }
        for method in ("espirit", "walsh", "inati"):
            for fill in (*fills, "smooth"):  # per-pixel maps with a fill, or the smooth refit
                t0 = time.perf_counter()
                if fill == "smooth":
                    est = calib.estimate_maps(k, traj, (n, n), method=method)
                else:
                    est = calib.estimate_maps(k, traj, (n, n), method=method, fill=fill,
                                              smooth=False)  # fmt: skip
                sec = time.perf_counter() - t0
                row[f"{method}_fill{fill}" if fill != "smooth" else f"{method}_smooth"] = {
                    "seconds": sec,
                    "map_error": map_error(est.numpy(), true.numpy(), obj.numpy()),
                    **recon(est),
                }
        out[model] = row
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="part 1 at 128 x 128")
    ap.add_argument("--part", choices=["all", "speed", "choose"], default="all")
    ap.add_argument("--threads", type=int, default=1, help="threads of every method (default 1)")
    ap.add_argument("--sigpy-python", default="/tmp/venv_sigpy/bin/python")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.data, args.out)
        return
    import torch

    torch.set_num_threads(args.threads)
    n = 128 if args.quick else 256
    load0 = os.getloadavg()[0]
    report = {
        "benchmark": "coil maps from the data: ESPIRiT (mrphys, sigpy), Walsh, Inati",
        "speed_problem": {
            "image": [n, n],
            "coils": 12,
            "calib": CALIB,
            "kernel": KERNEL,
            "thresh": THRESH,
            "crop": CROP,
            "walsh_window": WINDOW,
        },  # fmt: skip
        "speed": speed(n, 12, args.sigpy_python, args.threads) if args.part != "choose" else None,
        "choose_problem": "96x96, 8 frames x 5 golden-angle spokes, 192 samples, 8 coils, 1% "
        "noise, object and maps sampled on a 2x finer grid; per-frame CG-SENSE, mean PSNR",
        "choose": choose(args.quick) if args.part != "speed" else None,
        "host": {
            "cpu_count": os.cpu_count(),
            "threads": args.threads,
            "load_average_1min_start": load0,
            "load_average_1min_end": os.getloadavg()[0],
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": np.__version__,
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
