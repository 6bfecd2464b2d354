"""Protocol learning for pc-bSSFP relaxometry (issue 19): the bar, checked independently.

Learns K = 4 protocols at TR 4.8 ms by the Cramer-Rao objective, with and without a B1 map, from
several random starts (:func:`mrphys.relax.protocol_design.learn_protocol_crlb`), then checks them
with an INDEPENDENT Cramer-Rao computation from their ``protocol.json`` record: the closed-form
pc-bSSFP signal written here in NumPy, a central finite-difference Jacobian and a plain matrix
inverse (no torch, no forward-mode autodiff, no Cholesky path of :mod:`mrphys.physics.crlb`),
averaged over in vivo-like tissues, an off-resonance grid and a B1 grid, per unit scan time.
Comparison protocols: the paper's (15 deg, equally spaced, K = 4, 6, 12) and the best single
flip with equal spacing (1-D search). Optionally (``--networks``) trains the complex network
jointly with the no-B1 protocol and the same network on the fixed protocols (with a B1 map) and
reports median errors on an in vivo-like test set drawn apart from training.

``--readings`` adds the no-B1 / with-map ratio under each reading of the bar (B1 = 1, 0.9-1.1,
0.7-1.3; mean, median, RMS) and where the mean is dominated; ``--design-readings`` also designs
no-B1 protocols under those readings and with flips up to 150 deg; ``--from-json`` takes the
protocols of an earlier output instead of designing them; ``--net-seeds`` / ``--net-rows`` pick
the network runs (one recipe for all rows, the library's defaults: relative-error loss, cosine
decay, batch 1024, 8,000 steps; ``--hidden`` the width for every row). ``--global-search N``
designs no-B1 protocols by the global search (N Sobol candidates, ``--refine`` refined, one per
cap in ``--global-flip-max``; ``--global-objective t1`` for T1 alone) and scores every refined
protocol by the independent bound (the landscape); ``--floor N`` computes the per-point floor
(:func:`per_sample_floor`) on N points. ``--bayes`` runs the best estimator the prior allows
(``protocol_bayes.py``: the posterior mean, median and least-relative-error estimates under the
in vivo-like or the uniform prior, complex M0 profiled) on the networks' test set
(``--bayes-test`` points, ``--bayes-priors``, ``--bayes-rows``; ``--no-design`` skips the rest).

Prints one JSON object (finished network rows also go to stderr as they end).
``python benchmarks/protocol.py [--starts 3] [--steps 300] [--readings] [--networks]``
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time

import numpy as np

#: parameters of the independent bound: T1, T2, Re M0, Im M0, theta[, B1]
FD_STEPS = np.array([1e-5, 1e-6, 1e-6, 1e-6, 1e-6, 1e-6])


def _signal(p: np.ndarray, flips: np.ndarray, incs: np.ndarray, tr: float, te: float, b1=None):
    """pc-bSSFP signals ``(n, K)`` from parameters ``(n, 5 or 6)`` (METHODS 3 closed form)."""
    t1, t2, m0 = p[:, :1], p[:, 1:2], p[:, 2:3] + 1j * p[:, 3:4]
    theta = p[:, 4:5]
    b = p[:, 5:6] if b1 is None else b1[:, None]
    a = b * flips[None, :]
    e1, e2 = np.exp(-tr / t1), np.exp(-tr / t2)
    v = theta - incs[None, :]
    c = e2 * (e1 - 1) * (1 + np.cos(a))
    d = (1 - e1 * np.cos(a)) - (e1 - np.cos(a)) * e2**2
    s = m0 * (1 - e1) * np.sin(a) * (1 - e2 * np.exp(-1j * v)) / (c * np.cos(v) + d)
    return s * np.exp(-te / t2) * np.exp(1j * theta * te / tr)


def independent_crlb(
    record: dict,
    t1: np.ndarray,
    t2: np.ndarray,
    b1: np.ndarray,
    theta: np.ndarray,
    *,
    snr: float,
    b1_map: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Scan-time normalised relative bounds ``std / T * sqrt(K TR)`` of T1 and T2, ``(n,)``
    each, from a ``protocol.json`` record (ms, degrees), by finite differences."""
    flips = np.radians(np.asarray(record["flip_deg"], dtype=float))
    incs = np.radians(np.asarray(record["phase_increment_deg"], dtype=float))
    tr, te = record["tr_ms"] * 1e-3, record["te_ms"] * 1e-3
    sigma = 0.074 / (math.sqrt(2.0) * snr)  # per channel (METHODS 3)
    n = t1.size
    cols = [t1, t2, np.ones(n), np.zeros(n), theta] + ([] if b1_map else [b1])
    p = np.stack(cols, axis=1).astype(float)
    fixed_b1 = b1 if b1_map else None
    jac = []
    for i in range(p.shape[1]):
        h = FD_STEPS[i]
        dp = np.zeros_like(p)
        dp[:, i] = h
        jac.append(
            (_signal(p + dp, flips, incs, tr, te, fixed_b1) - _signal(p - dp, flips, incs, tr, te,
                                                                    fixed_b1)) / (2 * h)
        )  # fmt: skip
    j = np.stack(jac, axis=-1)  # (n, K, P)
    fisher = np.real(np.conj(np.swapaxes(j, 1, 2)) @ j) / sigma**2
    scale = 1 / np.sqrt(np.diagonal(fisher, axis1=1, axis2=2))
    fn = fisher * scale[:, :, None] * scale[:, None, :]
    cond = np.linalg.cond(fn)
    inv = np.linalg.inv(np.where((cond < 1e10)[:, None, None], fn, np.eye(fn.shape[1])))
    var = np.diagonal(inv, axis1=1, axis2=2) * scale**2
    var = np.where((cond < 1e10)[:, None], var, np.inf)
    root = math.sqrt(len(flips) * tr)
    return np.sqrt(var[:, 0]) / t1 * root, np.sqrt(var[:, 1]) / t2 * root


def evaluation_points(seed: int = 12345, n_tissue: int = 96) -> tuple[np.ndarray, ...]:
    """In vivo-like tissues x 24 off-resonance values in (-0.9 pi, 0.9 pi) x 5 B1 values in
    [0.7, 1.3]: the independent test set (drawn apart from the design's samples)."""
    import torch

    from mrphys.relax.data import sample_parameters

    g = torch.Generator().manual_seed(seed)
    tis = sample_parameters(n_tissue, "invivo", False, g, torch.float64)
    t1, t2 = tis["t1"].numpy(), tis["t2"].numpy()
    theta = (np.arange(24) + 0.5) / 24 * 1.8 * math.pi - 0.9 * math.pi
    b1 = np.linspace(0.7, 1.3, 5)
    tt, th, bb = np.meshgrid(np.arange(n_tissue), theta, b1, indexing="ij")
    return t1[tt.ravel()], t2[tt.ravel()], bb.ravel(), th.ravel()


def bounds(record: dict, snr: float, b1_map: bool, pts) -> dict[str, float]:
    r1, r2 = independent_crlb(record, *pts, snr=snr, b1_map=b1_map)
    return {"t1": float(np.mean(r1)), "t2": float(np.mean(r2))}


#: the readings of "averaged over tissues and off-resonance" (B1 range of the average)
B1_READINGS = {"b1=1": (1.0, 1.0), "b1 0.9-1.1": (0.9, 1.1), "b1 0.7-1.3": (0.7, 1.3)}


def _aggregates(r: np.ndarray) -> dict[str, float]:
    """Mean, median and RMS of relative bounds (inf where not identified)."""
    if not np.all(np.isfinite(r)):
        return {"mean": math.inf, "median": float(np.median(r)), "rms": math.inf}
    return {
        "mean": float(np.mean(r)),
        "median": float(np.median(r)),
        "rms": float(np.sqrt(np.mean(r**2))),
    }


def readings(records: dict[str, dict], snr: float, n_tissue: int = 96) -> dict:
    """The no-B1 / with-B1 ratio under each reading of the bar: B1 range x aggregate.

    ``records``: name -> ``protocol.json``-like record (``b1_map`` says the setting). For each
    B1 reading the independent bound is computed on the same tissues and theta grid (B1 on 5
    values across the range) and each record's aggregate divided by paper-4's with a B1 map.
    Also where the mean is dominated: share of the sum from the worst 1 % and 5 % of points and
    the mean bound per B1 value and per |theta| band (primary reading, no-B1 records).
    """
    import torch

    from mrphys.relax.data import sample_parameters

    g = torch.Generator().manual_seed(12345)
    tis = sample_parameters(n_tissue, "invivo", False, g, torch.float64)
    t1, t2 = tis["t1"].numpy(), tis["t2"].numpy()
    theta = (np.arange(24) + 0.5) / 24 * 1.8 * math.pi - 0.9 * math.pi
    ref_rec = {"tr_ms": 4.8, "te_ms": 2.4, "flip_deg": [15.0] * 4,
               "phase_increment_deg": [45.0, 135.0, 225.0, 315.0]}  # fmt: skip
    out: dict = {}
    for rname, (lo, hi) in B1_READINGS.items():
        b1v = np.linspace(lo, hi, 5) if hi > lo else np.ones(1)
        tt, th, bb = np.meshgrid(np.arange(n_tissue), theta, b1v, indexing="ij")
        pts = (t1[tt.ravel()], t2[tt.ravel()], bb.ravel(), th.ravel())
        ref = [_aggregates(r) for r in independent_crlb(ref_rec, *pts, snr=snr, b1_map=True)]
        rows = {}
        for name, rec in records.items():
            r1, r2 = independent_crlb(rec, *pts, snr=snr, b1_map=bool(rec["b1_map"]))
            a1, a2 = _aggregates(r1), _aggregates(r2)
            row = {
                f"{t}_{k}_ratio": a[k] / q[k]
                for t, a, q in (("t1", a1, ref[0]), ("t2", a2, ref[1]))
                for k in ("mean", "median", "rms")
            }
            if rname == "b1 0.7-1.3" and not rec["b1_map"] and np.all(np.isfinite(r1)):
                srt = np.sort(r1)[::-1]
                row["t1_share_worst_1pct"] = float(srt[: srt.size // 100].sum() / srt.sum())
                row["t1_share_worst_5pct"] = float(srt[: srt.size // 20].sum() / srt.sum())
                row["t1_mean_by_b1"] = {
                    f"{b:.2f}": float(r1[np.isclose(pts[2], b)].mean()) / ref[0]["mean"]
                    for b in b1v
                }
                band = np.abs(pts[3]) / math.pi
                row["t1_mean_by_abs_theta_over_pi"] = {
                    f"{a:.1f}-{a + 0.3:.1f}": float(r1[(band >= a) & (band < a + 0.3)].mean())
                    / ref[0]["mean"]
                    for a in (0.0, 0.3, 0.6)
                }
                worst = np.argsort(r1)[::-1][: srt.size // 100]
                row["t1_worst_1pct_points"] = {
                    "b1_mean": float(pts[2][worst].mean()),
                    "abs_theta_over_pi_mean": float(np.abs(pts[3][worst]).mean() / math.pi),
                    "t1_ms_mean": float(1e3 * pts[0][worst].mean()),
                    "t2_ms_mean": float(1e3 * pts[1][worst].mean()),
                }
            rows[name] = row
        out[rname] = {"paper4_b1map": {"t1": ref[0], "t2": ref[1]}, "protocols": rows}
    return out


def per_sample_floor(
    pd,
    n_points: int,
    fmax: float,
    snr: float,
    *,
    candidates: int = 2048,
    refine: int = 8,
    steps: int = 150,
    seed: int = 2024,
) -> dict:
    """A floor under the mean T1 (and T2) bound that any no-B1 protocol can reach.

    For every point ``s`` (tissue, B1, theta) of a random subset of the primary distribution, the
    protocol best for that point alone is searched (``candidates`` Sobol protocols, the best
    ``refine`` refined by Adam on that point): ``min_p r(p, s)``. Since ``mean_s min_p r(p, s) <=
    min_p mean_s r(p, s)``, the mean of these per-point minima, divided by the paper-4 bound with a
    B1 map on the same points, is a floor under the ratio of any single protocol (up to the
    per-point searches finding their global minima, and the sampling error of the subset,
    reported as a standard error). T1 and T2 are searched separately (each its own floor).
    """
    import torch

    smp = pd.crlb_samples(n_points, seed)
    lo, hi = math.radians(1.0), math.radians(fmax)
    sob = torch.quasirandom.SobolEngine(8, scramble=True, seed=seed)
    u = sob.draw(candidates, dtype=torch.float64)
    flips0, incs0 = lo + (hi - lo) * u[:, :4], 2 * math.pi * u[:, 4:]
    paper = pd.paper_protocol(4)
    q1, q2 = pd.crlb_terms(smp, snr=snr, b1_map=True, tr=paper.tr, flip=paper.flip_angles(),
                           increments=paper.phases())  # fmt: skip
    best = {"t1": [], "t2": []}
    for i in range(n_points):
        one = {k: v[i : i + 1] for k, v in smp.items()}
        with torch.no_grad():
            r1, r2 = pd.crlb_terms(one, snr=snr, b1_map=False, tr=4.8e-3, flip=flips0[:, None],
                                   increments=incs0[:, None])  # fmt: skip
        for t, r in (("t1", r1[:, 0]), ("t2", r2[:, 0])):
            top = torch.argsort(torch.nan_to_num(r, nan=math.inf))[:refine]
            f0 = flips0[top].clamp(lo + 1e-6, hi - 1e-6)
            logit = torch.logit((f0 - lo) / (hi - lo)).requires_grad_(True)
            inc = incs0[top].clone().requires_grad_(True)
            opt = torch.optim.Adam([logit, inc], lr=2e-2)
            low = float(r[top[0]])
            for _ in range(steps):
                a1, a2 = pd.crlb_terms(one, snr=snr, b1_map=False, tr=4.8e-3,
                                       flip=(lo + (hi - lo) * torch.sigmoid(logit))[:, None],
                                       increments=inc[:, None])  # fmt: skip
                v = (a1 if t == "t1" else a2)[:, 0]
                v = torch.where(torch.isfinite(v), v, torch.full_like(v, 1e3))
                low = min(low, float(v.detach().min()))
                opt.zero_grad(set_to_none=True)
                v.sum().backward()
                opt.step()
            best[t].append(low)
    out = {"points": n_points, "flip_max_deg": fmax, "candidates": candidates,
           "refine": refine, "steps": steps}  # fmt: skip
    for t, q in (("t1", q1), ("t2", q2)):
        b = np.array(best[t])
        qq = q.numpy()
        ratio = b.mean() / qq.mean()
        # standard error of a ratio of means over the same points (delta method)
        d = b / qq.mean() - ratio * qq / qq.mean()
        out[f"{t}_floor_ratio"] = float(ratio)
        out[f"{t}_floor_ratio_se"] = float(d.std(ddof=1) / math.sqrt(n_points))
        out[f"{t}_pointwise_ratio_median"] = float(np.median(b / qq))
    return out


def _record(p, b1_map: bool) -> dict:
    return p.record() | {"b1_map": b1_map}


#: no-B1 designs under the other readings of the bar: name -> (B1 range, largest flip in deg)
DESIGN_READINGS = {
    "b1=1": ((1.0, 1.0), 90.0),
    "b1 0.9-1.1": ((0.9, 1.1), 90.0),
    "b1 0.7-1.3, flips<=150": ((0.7, 1.3), 150.0),
    "b1=1, flips<=150": ((1.0, 1.0), 150.0),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--starts", type=int, default=3)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--snr", type=float, default=50.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--from-json", help="take the protocols from an earlier output (no design)")
    ap.add_argument("--readings", action="store_true", help="the bar under each reading")
    ap.add_argument("--design-readings", default="",
                    help="also design no-B1 protocols under these readings (comma-separated "
                    f"indices into {list(DESIGN_READINGS)}, or 'all')")  # fmt: skip
    ap.add_argument(
        "--global-search",
        type=int,
        default=0,
        metavar="N",
        help="also design no-B1 protocols by the global search: N Sobol candidates",
    )
    ap.add_argument("--refine", type=int, default=64, help="global search: protocols refined")
    ap.add_argument(
        "--global-flip-max",
        default="90",
        help="global search: comma-separated flip caps in deg (one design each)",
    )
    ap.add_argument(
        "--global-objective",
        default="joint",
        choices=("joint", "t1"),
        help="global search: the smooth max of the T1 and T2 ratios, or T1 alone",
    )
    ap.add_argument(
        "--floor",
        type=int,
        default=0,
        metavar="N",
        help="the per-point floor (per_sample_floor) on N random points, at each "
        "of the --global-flip-max caps",
    )
    ap.add_argument("--networks", action="store_true")
    ap.add_argument("--net-steps", type=int, default=8000)
    ap.add_argument("--net-batch", type=int, default=1024)
    ap.add_argument("--net-loss", default="relative", choices=("unit", "relative"))
    ap.add_argument("--lr-schedule", default="cosine", choices=("constant", "cosine"))
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--net-seeds", default="0", help="comma-separated network seeds")
    ap.add_argument("--net-rows", default="", help="comma-separated subset of the rows")
    ap.add_argument(
        "--bayes",
        action="store_true",
        help="the posterior estimates on the networks' test set (protocol_bayes.py)",
    )
    ap.add_argument("--bayes-test", type=int, default=4000, help="--bayes: test points used")
    ap.add_argument(
        "--bayes-priors",
        default="invivo,uniform",
        help="--bayes: comma-separated (T1, T2) priors (invivo, uniform)",
    )
    ap.add_argument("--bayes-rows", default="", help="--bayes: comma-separated subset of rows")
    ap.add_argument(
        "--bayes-scale",
        type=float,
        default=1.0,
        help="--bayes: dictionary and draws times this (convergence check)",
    )
    ap.add_argument("--no-design", action="store_true",
                    help="skip the CRLB designs and table (with --bayes alone)")  # fmt: skip
    a = ap.parse_args()
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
    import torch

    from mrphys.relax import protocol_design as pd

    torch.set_num_threads(min(2, torch.get_num_threads()))
    t_all, c_all = time.perf_counter(), time.process_time()
    if a.no_design:
        out = {"benchmark": "protocol", "argv": sys.argv[1:], "threads": torch.get_num_threads(),
               "load_average_start": os.getloadavg()}  # fmt: skip
        if a.bayes:
            out["bayes"] = _bayes(pd, a)
        out["seconds"] = time.perf_counter() - t_all
        out["cpu_seconds"] = time.process_time() - c_all
        out["load_average_end"] = os.getloadavg()
        print(json.dumps(out, indent=1))
        return
    pts = evaluation_points()
    snr = a.snr
    out: dict = {
        "benchmark": "protocol",
        "argv": sys.argv[1:],
        "host": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "load_average_start": os.getloadavg(),
        "snr": snr,
        "tr_ms": 4.8,
        "tr_min_ms": pd.gradient_limited_min_tr() * 1e3,
        "independent_test_points": int(pts[0].size),
    }
    protocols = {f"paper-{k}": pd.paper_protocol(k) for k in (4, 6, 12)}
    learned: dict = {}
    starts: dict = {}
    designs: list = []
    if a.from_json:
        with open(a.from_json) as f:
            prev = json.load(f)["crlb_independent"]
        for name, row in prev.items():
            if name.startswith(("learned", "best-flip")):
                learned[name] = pd.Protocol.custom(
                    np.radians(row["phase_increment_deg"]).tolist(),
                    np.radians(row["flip_deg"]).tolist(),
                )
    else:
        val = pd.crlb_samples(1024, 777, "invivo")
        learned["best-flip-4"], _ = pd.best_fixed_flip(4, snr=snr, b1_map=True, samples=val)
        designs = [("learned-b1map", True, pd.B1_RANGE, 90.0),
                   ("learned-nob1map", False, pd.B1_RANGE, 90.0)]  # fmt: skip
    if a.design_readings:
        names = list(DESIGN_READINGS)
        pick = (
            names
            if a.design_readings == "all"
            else [names[int(i)] for i in a.design_readings.split(",")]
        )
        designs += [(f"learned-nob1map[{k}]", False, *DESIGN_READINGS[k]) for k in pick]
    searches: dict = {}
    for fmax in (float(v) for v in a.global_flip_max.split(",")) if a.global_search else ():
        t1_only = ", T1 only" if a.global_objective == "t1" else ""
        name = f"learned-nob1map[global, flips<={fmax:g}{t1_only}]"
        cfg = pd.DesignConfig(n_acq=4, b1_map=False, snr=snr, crlb_steps=a.steps, seed=a.seed,
                              flip_max_deg=fmax, candidates=a.global_search,
                              refine=a.refine)  # fmt: skip
        ref = None
        if a.global_objective == "t1":
            val = pd.crlb_samples(cfg.eval_samples // 4, pd.derived_seed(cfg.seed, 3, 1))
            ref = (pd.reference_bounds(4, snr=snr, samples=val)[0], math.inf)
        c0 = time.process_time()
        p, rec = pd.global_search_crlb(cfg, ref=ref)
        rec["cpu_seconds"] = time.process_time() - c0
        learned[name] = p
        # every refined protocol under the independent bound (primary reading): the landscape
        ref_ind = bounds(pd.paper_protocol(4).record(), snr, True, pts)
        for r in rec["refined"]:
            q = pd.Protocol.custom(np.radians(r["phase_increment_deg"]).tolist(),
                                   np.radians(r["flip_deg"]).tolist())  # fmt: skip
            b = bounds(q.record(), snr, False, pts)
            r["independent_t1_ratio"] = b["t1"] / ref_ind["t1"]
            r["independent_t2_ratio"] = b["t2"] / ref_ind["t2"]
        searches[name] = rec
        print(json.dumps({name: _record(p, False)}), file=sys.stderr, flush=True)
    out["global_search"] = searches
    if a.floor:
        out["floor"] = [per_sample_floor(pd, a.floor, float(fm), snr)
                        for fm in a.global_flip_max.split(",")]  # fmt: skip
    for name, b1_map, b1_range, fmax in designs:
        cfg = pd.DesignConfig(n_acq=4, b1_map=b1_map, snr=snr, starts=a.starts,
                              crlb_steps=a.steps, seed=a.seed, b1_range=b1_range,
                              flip_max_deg=fmax)  # fmt: skip
        t0 = time.perf_counter()
        p, st = pd.learn_protocol_crlb(cfg)
        learned[name] = p
        starts[name] = {
            "seconds": time.perf_counter() - t0,
            "val_objective": [s["val_objective"] for s in st],
            "independent_t1_t2": [
                bounds(pd.Protocol.custom(np.radians(s["phase_increment_deg"]).tolist(),
                       np.radians(s["flip_deg"]).tolist()).record(), snr, b1_map, pts)
                for s in st
            ],
        }  # fmt: skip
        print(json.dumps({name: _record(p, b1_map)}), file=sys.stderr, flush=True)
    protocols.update(learned)
    table = {}
    for name, p in protocols.items():
        rec = p.record()
        table[name] = {
            "flip_deg": [round(v, 2) for v in rec["flip_deg"]],
            "phase_increment_deg": [round(v, 2) for v in rec["phase_increment_deg"]],
            "relative_sar": pd.relative_sar(p),
            "with_b1_map": bounds(rec, snr, True, pts),
            "without_b1_map": bounds(rec, snr, False, pts),
        }
    ref = table["paper-4"]["with_b1_map"]
    out["crlb_independent"] = table
    out["starts"] = starts
    if "learned-nob1map" in table and "learned-b1map" in table:
        nob1 = table["learned-nob1map"]["without_b1_map"]
        wb1 = table["learned-b1map"]["with_b1_map"]
        out["bar"] = {
            "nob1_over_paper4_b1_t1": nob1["t1"] / ref["t1"],
            "nob1_over_paper4_b1_t2": nob1["t2"] / ref["t2"],
            "nob1_pass_1.3x": nob1["t1"] <= 1.3 * ref["t1"] and nob1["t2"] <= 1.3 * ref["t2"],
            "b1_gain_t1_pct": 100 * (1 - wb1["t1"] / ref["t1"]),
            "b1_gain_t2_pct": 100 * (1 - wb1["t2"] / ref["t2"]),
            "b1_pass_5pct": wb1["t1"] <= 0.95 * ref["t1"] and wb1["t2"] <= 0.95 * ref["t2"],
        }
    for name in learned:
        if name.startswith("learned-nob1map"):
            b = table[name]["without_b1_map"]
            out.setdefault("nob1_ratios", {})[name] = {"t1": b["t1"] / ref["t1"],
                                                      "t2": b["t2"] / ref["t2"]}  # fmt: skip
    if a.readings:
        recs = {n: _record(p, not n.startswith("learned-nob1map")) for n, p in learned.items()}
        out["readings"] = readings(recs, snr)
    if a.networks:
        out["networks"] = networks(pd, learned, snr, a)
    if a.bayes:
        out["bayes"] = _bayes(pd, a)
    out["seconds"] = time.perf_counter() - t_all
    out["cpu_seconds"] = time.process_time() - c_all
    out["load_average_end"] = os.getloadavg()
    print(json.dumps(out, indent=1))


def _bayes(pd, a: argparse.Namespace) -> dict:
    """``--bayes``: :func:`protocol_bayes.bar_rows` with the command's settings."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import protocol_bayes

    rows = [int(v) for v in a.bayes_rows.split(",") if v] or None
    priors = [v for v in a.bayes_priors.split(",") if v]
    return protocol_bayes.bar_rows(pd, snr=a.snr, n_test=a.bayes_test, priors=priors, rows=rows,
                                   scale=a.bayes_scale)  # fmt: skip


def networks(pd, learned: dict, snr: float, a: argparse.Namespace) -> dict:
    """Median |relative error| (%) of every protocol and setting, one recipe for all: on an
    in vivo-like test set (20,000, drawn apart from training) and on the off-resonance sweep of
    paper 001 Fig. 5 (T1 939 ms, T2 62 ms, B1 1, theta -0.9 pi .. 0.89 pi; 20 noise draws per
    theta at the same SNR, and noise-free)."""
    import torch

    g = torch.Generator().manual_seed(987654)
    test = pd.sample_parameters(20_000, "invivo", True, g, torch.float64)
    sweep = {k: v.repeat(20) for k, v in pd._sweep_params().items()}
    runs = [
        ("paper-4, B1 given", pd.paper_protocol(4), True, False),
        ("best-flip-4, B1 given", learned["best-flip-4"], True, False),
        ("learned with B1 map (joint), B1 given", learned["learned-b1map"], True, True),
        ("learned without B1 map (joint), no B1", learned["learned-nob1map"], False, True),
        ("paper-12, B1 given", pd.paper_protocol(12), True, False),
        ("paper-4, no B1", pd.paper_protocol(4), False, False),
    ]
    keep = [r for r in a.net_rows.split(",") if r]
    if keep:
        runs = [r for i, r in enumerate(runs) if str(i) in keep]
    rows: dict = {}
    for seed in (int(v) for v in a.net_seeds.split(",")):
        for name, p, b1_map, learn in runs:
            cfg = pd.DesignConfig(n_acq=p.n_cycles, objective="network", b1_map=b1_map, snr=snr,
                                  net_steps=a.net_steps, net_batch=a.net_batch,
                                  net_loss=a.net_loss, lr_schedule=a.lr_schedule,
                                  hidden=a.hidden, seed=seed)  # fmt: skip
            t0, c0 = time.perf_counter(), time.process_time()
            res = pd.train_protocol_network(cfg, p, learn=learn)
            e = pd.network_errors(res.model, test, snr, 4242)
            sw = pd.network_errors(res.model, sweep, snr, 4243)
            sw0 = pd.network_errors(res.model, pd._sweep_params(), math.inf, 0)
            rec = res.model.protocol.protocol().record()
            row = {
                "seed": seed,
                "t1_median_abs_err_pct": float(e["t1"].abs().median()),
                "t2_median_abs_err_pct": float(e["t2"].abs().median()),
                "sweep_t1_median_abs_err_pct": float(sw["t1"].abs().median()),
                "sweep_t2_median_abs_err_pct": float(sw["t2"].abs().median()),
                "sweep_noise_free_t1_max_abs_err_pct": float(sw0["t1"].abs().max()),
                "sweep_noise_free_t2_max_abs_err_pct": float(sw0["t2"].abs().max()),
                "seconds": time.perf_counter() - t0,
                "cpu_seconds": time.process_time() - c0,
                "steps": 100 * len(res.history),
                "best_unit": int(min(range(len(res.history)),
                                     key=lambda i: res.history[i]["val_loss"])) + 1,
                "flip_deg": [round(v, 2) for v in rec["flip_deg"]],
                "phase_increment_deg": [round(v, 2) for v in rec["phase_increment_deg"]],
            }  # fmt: skip
            if "b1" in e:
                row["b1_median_abs_err_pct"] = float(e["b1"].abs().median())
            print(json.dumps({name: row}), file=sys.stderr, flush=True)
            rows.setdefault(name, []).append(row)
    return rows


if __name__ == "__main__":
    main()
