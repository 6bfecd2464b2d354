"""``mrphys relax bids`` on the held-out BIDS dataset of ``tests/relax/test_bids.py``, larger.

Builds the test's two-subject dataset (numpy closed-form bSSFP, nibabel, json; no mrphys writer:
subject 1 with its own sidecar and a TB1map in percent, subject 2 in ``ses-1`` with another
protocol from an inherited sidecar and a TB1map as a ratio on a coarser grid), runs the BIDS-App
with MIRACLE in this process and prints one JSON object: the median |relative error| and the
median signed error of T1 and T2 over WM, GM and deep GM per subject, and the wall time of the
participant level with and without the HTML report.

    .venv/bin/python benchmarks/relax_bids.py [--matrix 128] [--slices 32] [--snr 100]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "relax"))


def main() -> None:
    import test_bids  # the dataset maker of the test (independent of mrphys's writers)

    from mrphys.relax.bids import BidsOptions, run_participant

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--matrix", type=int, default=128)
    ap.add_argument("--slices", type=int, default=32)
    ap.add_argument("--cycles", type=int, default=12)
    ap.add_argument("--snr", type=float, default=100.0)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="relax_bids_"))
    try:
        raw, out = work / "raw", work / "deriv"
        truth = test_bids._dataset(raw, n=args.matrix, nz=args.slices, cycles=args.cycles,
                                   snr=args.snr)  # fmt: skip
        seconds = {}
        for report in (False, True):
            shutil.rmtree(out, ignore_errors=True)
            t0 = time.perf_counter()
            run_participant(raw, out, BidsOptions(method="miracle", report=report))
            seconds[f"participant_seconds_report_{str(report).lower()}"] = round(
                time.perf_counter() - t0, 2
            )
        errors = {}
        for sub, t in truth.items():
            anat = out / f"sub-{sub}" / ("ses-1/anat" if sub == "02" else "anat")
            stem = f"sub-{sub}{'_ses-1' if sub == '02' else ''}_acq-pcbssfp"
            tissue = (t["label"] > 0) & (t["label"] < 4)
            for key, suffix in (("t1", "T1map"), ("t2", "T2map")):
                est = np.asarray(nib.load(str(anat / f"{stem}_{suffix}.nii.gz")).dataobj)
                rel = est[tissue] / t[key][tissue] - 1
                errors[f"sub-{sub}_{suffix}"] = {
                    "median_abs_pct": round(100 * float(np.median(np.abs(rel))), 3),
                    "median_signed_pct": round(100 * float(np.median(rel)), 3),
                }
        print(json.dumps({
            "dataset": f"2 subjects, {args.matrix}x{args.matrix}x{args.slices}x{args.cycles}",
            "snr": args.snr, "method": "miracle", **seconds, "errors": errors,
            "load_average": os.getloadavg()[0], "cpus": os.cpu_count(),
        }, indent=1))  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
