"""The data-derived support of the coil maps (``calib.estimate_support``) on the classical methods.

Usage (prints ONE JSON object)::

    .venv/bin/python benchmarks/support.py --data rat --seed 1          # a tuning case
    .venv/bin/python benchmarks/support.py --data pincat --seed 0 --grid 0:0,0.1:0.05

The case is the honest protocol of ``benchmarks/dynamic.py`` (5 spokes per frame by default),
calibrated once without the support, with estimated and with true maps. For each
``threshold:margin`` of ``--grid`` the support weights are estimated from the data (the frames'
coil images, as :func:`mrphys.recon.pipeline.calibrate` does), both sets of maps and their
``intensity`` are weighted by them (``--cut``: cut to where they are 1), the same as the
support step of ``calibrate``, and every method of
``--methods`` runs with its frozen defaults. Reported per grid point: the fraction of the field of
view where the weight is 1, the mean weight, for the object (time-max ``|truth|`` above 5 % or
1 % of the peak; the truth is used for scoring only) the pixels outside that support and the
least and mean weight, and PSNR (dB) with estimated and true maps. Identical masks are
reconstructed once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", choices=("rat", "pincat"), default="rat")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--spokes", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--methods", default="gridding+cg-sense+grasp+ls")
    ap.add_argument("--cut", action="store_true", help="cut to the support (default: taper)")
    ap.add_argument(
        "--grid",
        default="0:0,0.3:0,0.5:0,0.7:0,0.3:0.03",
        help="threshold:margin pairs (0:0 = no support)",
    )
    ap.add_argument("--power", type=float, default=1.0, help="exponent of the taper")
    args = ap.parse_args(argv)

    import torch

    import dynamic
    from mrphys.metrics import psnr
    from mrphys.physics.nufft import RadialNUFFT
    from mrphys.physics.radial import RadialData
    from mrphys.recon.calib import support_weights
    from mrphys.recon.registry import reconstruct

    torch.set_num_threads(args.threads)
    t0, cpu0, load = time.perf_counter(), time.process_time(), list(os.getloadavg())
    cases = {
        key: dynamic._honest(args.data, args.spokes, False, args.seed, key == "true", 0.0)
        for key in ("estimated", "true")
    }
    d0, truth = cases["estimated"][0], cases["estimated"][3]
    frames = (
        RadialNUFFT(d0.traj, d0.im_size).on_coils(d0.n_coils).adjoint(d0.kspace * d0.dcf[:, None])
    )
    tmax = truth.abs().amax(0) / truth.abs().max()
    done: dict[bytes, dict] = {}
    rows = []
    for point in args.grid.split(","):
        thr, margin = (float(v) for v in point.split(":"))
        sup = support_weights(frames, threshold=thr, margin=margin, power=args.power)
        inside = sup >= 1.0
        if args.cut:
            sup = inside.float()
        row: dict = {"threshold": thr, "margin": margin, "fraction": float(inside.float().mean())}
        row["mean_weight"] = float(sup.mean())
        for pct in (5, 1):  # the object at that level: outside the support, and its weights
            obj = tmax > pct / 100
            row[f"object_pixels_outside_{pct}pct"] = int((obj & ~inside).sum())
            row[f"object_weight_min_{pct}pct"] = float(sup[obj].min())
            row[f"object_weight_mean_{pct}pct"] = float(sup[obj].mean())
        key = sup.numpy().tobytes()
        if key not in done:
            res: dict = {}
            for method in args.methods.split("+"):
                for which, (d, intensity, _, tr) in cases.items():
                    cut = RadialData(d.kspace, d.traj, d.maps * sup, d.dcf, tr, d.meta)
                    rec = reconstruct(method, cut).image * intensity * sup
                    res[f"{method}_{which}_db"] = round(float(psnr(rec, tr).mean()), 3)
            done[key] = res
        row.update(done[key])
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    out = {
        "benchmark": "support",
        "case": {"data": args.data, "seed": args.seed, "spokes": args.spokes},
        "rows": rows,
        "seconds": time.perf_counter() - t0,
        "cpu_seconds": time.process_time() - cpu0,
        "load_average_1_5_15": [load, list(os.getloadavg())],
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
