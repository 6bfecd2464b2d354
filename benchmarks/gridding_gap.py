"""Where gridding loses with estimated coil maps: the diagnosis of issue 14's last gap.

Usage (prints ONE JSON object)::

    .venv/bin/python benchmarks/gridding_gap.py                    # rat cine, seed 0 (bar case)
    .venv/bin/python benchmarks/gridding_gap.py --data pincat --seed 0
    .venv/bin/python benchmarks/gridding_gap.py --data rat --seed 1   # another coil set

The case is the honest protocol of ``benchmarks/dynamic.py`` (5 spokes per frame, 8 coils,
correlated noise with a noise scan, delay 0.3 samples, object on a grid twice as fine), calibrated
twice by :func:`mrphys.recon.pipeline.calibrate` without its support step: with estimated maps
and with the true maps. The
object's support (for the per-region numbers only) is where the time-mean ``|truth|^2`` exceeds
1 % of its maximum; "dark" is the rest of the field of view. Reported, per set of maps:

- ``psnr_db`` / ``ssim`` as scored by the benchmark, ``psnr_object_db`` on the support only, and
  the squared magnitude error normalised by each frame's peak, summed over the support and over
  the dark (``nmse_object`` + ``nmse_dark`` = the mean squared error behind ``psnr_db``);
- the same with the other set's ``intensity`` (is the loss in the scaling?);
- the map norm ``sum_c |S_c|^2`` in the processed (whitened) coil space (calibrate normalises
  both sets to 1) and the intensity ratio estimated / true inside and outside the support;
- the coherence ``|S_est^H S_true|`` inside and outside;
- the streak energy through each set of maps: the coil covariance of the frames' deviations from
  their mean (mostly streaks), ``S^H R S``, beside its trace over ``C`` (a random unit vector)
  and its largest eigenvalue (the worst direction);
- an oracle: the estimated maps inside the support and the true maps in the dark;
- gridding with ``combine="interference"`` (:func:`mrphys.recon.calib.interference_combine`);
- gridding with both sets of maps weighted by calibrate's support step
  (:func:`mrphys.recon.calib.support_weights`, its defaults), and cut to the binary support
  (:func:`mrphys.recon.calib.estimate_support` at ``--support-threshold``, margin 0.05), its
  fraction of the field of view and the object pixels (time-max ``|truth|`` above 5 % / 1 % of
  the peak) it leaves out; and, as the ceiling of any support that keeps the object, the same
  with the truth's own support (time-max ``|truth|`` above 1 % or 5 % of the peak, dilated by
  2 pixels; evaluation only).
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
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--spokes", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--support-threshold", type=float, default=0.1, help="of the binary cut")
    args = ap.parse_args(argv)

    import torch

    import dynamic
    from mrphys.metrics import psnr, ssim
    from mrphys.physics.nufft import RadialNUFFT
    from mrphys.physics.radial import RadialData
    from mrphys.recon.baselines import gridding
    from mrphys.recon.calib import _box

    torch.set_num_threads(args.threads)
    t0, cpu0 = time.perf_counter(), time.process_time()
    load = list(os.getloadavg())
    cases = {}
    for key, true_maps in (("estimated", False), ("true", True)):
        data, intensity, _, truth = dynamic._honest(
            args.data, args.spokes, False, args.seed, true_maps, 0.0
        )
        data.truth = truth
        cases[key] = (data, intensity)
    truth = cases["estimated"][0].truth
    energy = (truth.abs() ** 2).mean(0)
    support = energy > 0.01 * energy.max()
    dark = ~support
    peak = truth.abs().flatten(-2).amax(-1)[:, None, None]
    n_px = truth.numel()

    def scores(x: torch.Tensor) -> dict:
        err = (x.abs() - truth.abs()) ** 2 / peak**2
        obj_err = ((x.abs() - truth.abs()) ** 2 * support).flatten(-2).sum(-1) / support.sum()
        return {
            "psnr_db": round(float(psnr(x, truth).mean()), 3),
            "ssim": round(float(ssim(x, truth).mean()), 4),
            "psnr_object_db": round(
                float((10 * torch.log10(peak[:, 0, 0] ** 2 / obj_err)).mean()), 3
            ),
            "nmse_object": float((err * support).sum() / n_px),
            "nmse_dark": float((err * dark).sum() / n_px),
        }

    est, true = cases["estimated"], cases["true"]
    s_est, s_true = est[0].maps, true[0].maps
    out: dict = {
        "benchmark": "gridding_gap",
        "case": {"data": args.data, "seed": args.seed, "spokes": args.spokes},
        "dark_fraction": float(dark.float().mean()),
    }
    grid = {k: gridding(v[0]) for k, v in cases.items()}
    out["gridding"] = {
        "estimated": scores(grid["estimated"] * est[1]),
        "true": scores(grid["true"] * true[1]),
        "estimated_maps_true_intensity": scores(grid["estimated"] * true[1]),
        "true_maps_estimated_intensity": scores(grid["true"] * est[1]),
    }
    ratio = est[1] / true[1]
    coh = (s_est.conj() * s_true).sum(0).abs()
    out["maps"] = {
        "norm_processed_estimated": [float(v) for v in s_est.abs().pow(2).sum(0).aminmax()],
        "norm_processed_true": [float(v) for v in s_true.abs().pow(2).sum(0).aminmax()],
        "intensity_ratio_object": float(ratio[support].mean()),
        "intensity_ratio_dark": float(ratio[dark].mean()),
        "intensity_ratio_dark_std": float(ratio[dark].std()),
        "coherence_object": float(coh[support].mean()),
        "coherence_dark": float(coh[dark].mean()),
    }
    d = est[0]
    coil = RadialNUFFT(d.traj, d.im_size).on_coils(d.n_coils).adjoint(d.kspace * d.dcf[:, None])
    dev = coil - coil.mean(0, keepdim=True)
    cov = _box(torch.einsum("tcyx,tdyx->cdyx", dev, dev.conj()) / (dev.shape[0] - 1), 3)
    trace = torch.einsum("ccyx->yx", cov).real / d.n_coils
    top = torch.linalg.eigvalsh(cov.permute(2, 3, 0, 1))[..., -1]

    def through(s: torch.Tensor) -> torch.Tensor:
        return torch.einsum("cyx,cdyx,dyx->yx", s.conj(), cov, s).real

    out["streak_energy"] = {
        region: {
            "through_estimated": float(through(s_est)[mask].mean()),
            "through_true": float(through(s_true)[mask].mean()),
            "random_direction": float(trace[mask].mean()),
            "worst_direction": float(top[mask].mean()),
        }
        for region, mask in (("object", support), ("dark", dark))
    }
    oracle = RadialData(d.kspace, d.traj, torch.where(support, s_est, s_true), d.dcf, truth, d.meta)
    out["oracle_true_maps_in_dark"] = scores(gridding(oracle) * est[1])
    out["interference"] = {
        k: scores(gridding(v[0], combine="interference") * v[1]) for k, v in cases.items()
    }
    out["interference"]["oracle_true_maps_in_dark"] = scores(
        gridding(oracle, combine="interference") * est[1]
    )
    from mrphys.recon.calib import estimate_support, support_weights

    frames = RadialNUFFT(d.traj, d.im_size).on_coils(d.n_coils).adjoint(d.kspace * d.dcf[:, None])
    sup = estimate_support(frames, threshold=args.support_threshold, margin=0.05)
    tmax = truth.abs().amax(0) / truth.abs().max()
    out["data_support"] = {
        "fraction": float(sup.float().mean()),
        "object_pixels_left_out_5pct": int(((tmax > 0.05) & ~sup).sum()),
        "object_pixels_left_out_1pct": int(((tmax > 0.01) & ~sup).sum()),
    }
    weights = support_weights(frames)  # calibrate's default step, for comparison
    out["support_weights"] = {"mean": float(weights.mean())}
    for key, (v, inten) in cases.items():
        soft = RadialData(v.kspace, v.traj, v.maps * weights, v.dcf, truth, v.meta)
        out["support_weights"][key] = scores(gridding(soft) * inten * weights)
        cut = RadialData(v.kspace, v.traj, v.maps * sup, v.dcf, truth, v.meta)
        out["data_support"][key] = scores(gridding(cut) * inten * sup)
        out["data_support"][f"{key}_interference"] = scores(
            gridding(cut, combine="interference") * inten * sup
        )
    # the ceiling of any support that never cuts the object: the truth's own (time-max |truth|
    # above 1 % / 5 % of the peak, dilated by 2 pixels), both sets of maps cut to it
    disc = torch.ones(1, 1, 5, 5)
    for level in (0.01, 0.05):
        grown = torch.nn.functional.conv2d((tmax > level).float()[None, None], disc, padding=2)
        orc = grown[0, 0] > 0.5
        row: dict = {"fraction": float(orc.float().mean())}
        for key, (v, inten) in cases.items():
            cut = RadialData(v.kspace, v.traj, v.maps * orc, v.dcf, truth, v.meta)
            row[key] = scores(gridding(cut) * inten * orc)
        row["gap_db"] = row["true"]["psnr_db"] - row["estimated"]["psnr_db"]
        out[f"oracle_support_{round(level * 100)}pct"] = row
    out["gap_db"] = {
        "maps": out["gridding"]["true"]["psnr_db"] - out["gridding"]["estimated"]["psnr_db"],
        "interference": out["interference"]["true"]["psnr_db"]
        - out["interference"]["estimated"]["psnr_db"],
        "maps_with_data_support": out["data_support"]["true"]["psnr_db"]
        - out["data_support"]["estimated"]["psnr_db"],
        "maps_with_support_weights": out["support_weights"]["true"]["psnr_db"]
        - out["support_weights"]["estimated"]["psnr_db"],
    }
    out["seconds"] = time.perf_counter() - t0
    out["cpu_seconds"] = time.process_time() - cpu0
    out["load_average_1_5_15"] = [load, list(os.getloadavg())]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
