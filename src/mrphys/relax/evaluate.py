"""Monte Carlo evaluation of relaxometry methods (paper 001 Figures 2, 3 and 5; METHODS 3).

- Grid: ``G x G`` linearly spaced T1 in [360, 2080] ms and T2 in [20, 120] ms, B1 1, theta 0;
  ``n_mc`` noise realisations per point at each SNR; relative error of the MC mean
  ``(mean - truth) / truth * 100`` and the coefficient of determination over the grid
  ``1 - sum (y - mean_MC)^2 / sum (y - ybar)^2``.
- In vivo-like test set: points drawn from the ``invivo`` distribution (B1 1, theta 0), same
  metrics.
- Off-resonance sweep: T1 939 ms, T2 62 ms, B1 1, theta from -0.9 pi to 0.89 pi in 0.01 pi steps,
  noise-free; relative errors of T1 and T2.

Noise is added to the phase-corrected signals before the configurations (METHODS 3); the work is
chunked over grid points so that ``chunk`` signals (times N phase cycles) are in memory at once.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch

from mrphys import plot
from mrphys.errors import MrphysError
from mrphys.io import save_json
from mrphys.metrics import cod, relative_error
from mrphys.relax.data import (
    Protocol,
    add_relax_noise,
    evaluation_grid,
    is_complex_method,
    sample_parameters,
    simulate_signals,
)
from mrphys.relax.networks import RelaxNet
from mrphys.relax.volume import fit_signals
from mrphys.resources import check_memory

log = logging.getLogger(__name__)

__all__ = ["monte_carlo", "offresonance_sweep", "evaluate_method", "PAPER_SNRS"]

PAPER_SNRS = (math.inf, 50, 45, 40, 35, 30, 25, 20, 15, 10)


def parse_snrs(text: str) -> list[float]:
    """SNRs from comma-separated text (``"inf,50,25"``); each must be a positive number or
    ``inf`` (:class:`~mrphys.errors.MrphysError` naming ``snrs`` otherwise)."""
    try:
        snrs = [float(s) for s in text.split(",") if s.strip()]
    except ValueError:
        snrs = [0.0]
    if not snrs or any(not s > 0 for s in snrs):
        raise MrphysError(f"snrs must be comma-separated positive numbers or inf; got {text!r}.")
    return snrs


#: fitted signals per Monte Carlo batch (points x realisations)
MC_CHUNK = 1 << 19
#: bytes per signal sample of a batch (complex128 signals and noise, features, temporaries)
MC_BYTES_PER_SAMPLE = 64


def _cod(truth: torch.Tensor, estimate: torch.Tensor) -> float:
    """:func:`mrphys.metrics.cod` over all elements, in double precision."""
    return float(cod(truth.double(), estimate.double()))


def monte_carlo(
    params: dict[str, torch.Tensor],
    method: str,
    protocol: Protocol,
    model: RelaxNet | None,
    snr: float,
    n_mc: int,
    *,
    seed: int = 0,
    chunk: int = MC_CHUNK,
) -> dict[str, torch.Tensor]:
    """MC mean and standard deviation of the fitted parameters.

    Args:
        params: ``{"t1", "t2", "b1", "theta"}`` each ``(P,)`` (s, rad).
        snr: noise level (``inf``: one noise-free fit, ``n_mc`` ignored).
        chunk: fitted signals per batch (points x realisations).
    Returns:
        ``{"t1_mean", "t1_std", "t2_mean", "t2_std"}`` each ``(P,)`` in s.
    """
    n_pts = params["t1"].shape[0]
    reps = 1 if math.isinf(snr) else n_mc
    pts_per = max(1, chunk // reps)
    g = torch.Generator().manual_seed(seed)
    acc = {k: torch.zeros(n_pts, dtype=torch.float64) for k in ("t1s", "t1q", "t2s", "t2q")}
    for s in range(0, n_pts, pts_per):
        sub = {k: v[s : s + pts_per] for k, v in params.items()}
        sig = simulate_signals(sub, protocol)  # (p, N), phase corrected
        m = sig.shape[0]
        sig = sig.unsqueeze(0).expand(reps, m, sig.shape[-1]).reshape(reps * m, -1)
        if not math.isinf(snr):
            sig = add_relax_noise(sig, float(snr), g)
        b1 = sub["b1"].unsqueeze(0).expand(reps, m).reshape(-1)
        fit = fit_signals(sig, b1, method, protocol, model, correct_phase=False)
        for name, fitted in (("t1", fit.t1), ("t2", fit.t2)):
            v = fitted.double().reshape(reps, m)
            acc[name + "s"][s : s + m] = v.mean(0)
            acc[name + "q"][s : s + m] = (
                v.std(0) if reps > 1 else torch.zeros(m, dtype=torch.float64)
            )
    return {
        "t1_mean": acc["t1s"],
        "t1_std": acc["t1q"],
        "t2_mean": acc["t2s"],
        "t2_std": acc["t2q"],
    }


def offresonance_sweep(
    method: str,
    protocol: Protocol,
    model: RelaxNet | None,
    t1: float = 0.939,
    t2: float = 0.062,
    *,
    refine: int = 0,
) -> dict[str, list[float]]:
    """Noise-free fits over theta in [-0.9 pi, 0.89 pi] (0.01 pi steps), T1 939 ms, T2 62 ms.

    ``refine``: least-squares steps after the method (:func:`mrphys.relax.volume.fit_signals`).

    Returns ``{"theta_over_pi", "t1_rel_err_pct", "t2_rel_err_pct"}`` lists.
    """
    k = torch.arange(-90, 90, dtype=torch.float64)  # -0.90 .. 0.89
    theta = k * 0.01 * math.pi
    n = theta.numel()
    p = {
        "t1": torch.full((n,), t1, dtype=torch.float64),
        "t2": torch.full((n,), t2, dtype=torch.float64),
        "b1": torch.ones(n, dtype=torch.float64),
        "theta": theta,
    }
    sig = simulate_signals(p, protocol)
    fit = fit_signals(sig, p["b1"], method, protocol, model, correct_phase=False, refine=refine)
    return {
        "theta_over_pi": (k * 0.01).tolist(),
        "t1_rel_err_pct": relative_error(fit.t1.double(), t1).tolist(),
        "t2_rel_err_pct": relative_error(fit.t2.double(), t2).tolist(),
    }


def evaluate_method(
    method: str,
    protocol: Protocol,
    model: RelaxNet | None,
    out: str | Path,
    *,
    grid: int = 200,
    n_mc: int = 20,
    snrs: list[float] | tuple[float, ...] = PAPER_SNRS,
    n_invivo: int = 40000,
    seed: int = 0,
    progress: bool = False,
) -> dict:
    """Run the grid and in vivo-like MC evaluations and the off-resonance sweep; write
    ``metrics.json``, ``cod_vs_snr.png``, ``relerr_snr<S>.png`` per SNR and ``offres_sweep.png``
    into ``out``. Returns the metrics dict (with a short ``summary``).

    ``progress`` shows a tqdm bar over the SNR levels (each: the grid and the in vivo-like MC).
    """
    from tqdm import tqdm

    # a batch of MC_CHUNK signals of N cycles: complex128 signals, noise, features, fits
    check_memory(
        MC_CHUNK * protocol.n_cycles * MC_BYTES_PER_SAMPLE + grid * grid * 64,
        f"the evaluation with {protocol.n_cycles} phase cycles on a {grid}x{grid} grid",
        "--phase-cycles or --grid",
    )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t1g, t2g = evaluation_grid(grid)
    pg = {"t1": t1g.reshape(-1), "t2": t2g.reshape(-1)}
    pg["b1"] = torch.ones_like(pg["t1"])
    pg["theta"] = torch.zeros_like(pg["t1"])
    pv = None
    if n_invivo > 0:
        pv = sample_parameters(
            n_invivo, "invivo", False, torch.Generator().manual_seed(seed + 11), dtype=torch.float64
        )
        pv["b1"] = torch.ones_like(pv["t1"])
    rows = []
    tag = f"{method}, N={protocol.n_cycles}"
    bar = tqdm(snrs, desc=f"evaluate {method}", unit="SNR", disable=not progress)
    for i, snr in enumerate(bar):
        bar.set_postfix(snr=snr)
        mc = monte_carlo(pg, method, protocol, model, snr, n_mc, seed=seed + 100 + i)
        rel1 = relative_error(mc["t1_mean"], pg["t1"]).reshape(grid, grid)
        rel2 = relative_error(mc["t2_mean"], pg["t2"]).reshape(grid, grid)
        row = {
            "snr": snr,
            "grid_cod_t1": _cod(pg["t1"], mc["t1_mean"]),
            "grid_cod_t2": _cod(pg["t2"], mc["t2_mean"]),
            "grid_mean_abs_rel_err_t1_pct": float(rel1.abs().mean()),
            "grid_mean_abs_rel_err_t2_pct": float(rel2.abs().mean()),
            "grid_max_abs_rel_err_t1_pct": float(rel1.abs().max()),
            "grid_max_abs_rel_err_t2_pct": float(rel2.abs().max()),
            "grid_mean_rel_std_t1_pct": float((mc["t1_std"] / mc["t1_mean"]).mean() * 100),
            "grid_mean_rel_std_t2_pct": float((mc["t2_std"] / mc["t2_mean"]).mean() * 100),
        }
        if pv is not None:
            mv = monte_carlo(pv, method, protocol, model, snr, n_mc, seed=seed + 200 + i)
            row["invivo_cod_t1"] = _cod(pv["t1"], mv["t1_mean"])
            row["invivo_cod_t2"] = _cod(pv["t2"], mv["t2_mean"])
        rows.append(row)
        name = "inf" if math.isinf(snr) else f"{snr:g}"
        plot.relax_error_maps(
            out / f"relerr_snr{name}.png", t1g, t2g, rel1, rel2, f"{tag}, SNR {name}"
        )
        log.info(
            "%s SNR %s: CoD T1 %.4f T2 %.4f", tag, name, row["grid_cod_t1"], row["grid_cod_t2"]
        )
    plot.cod_vs_snr(out / "cod_vs_snr.png", rows, tag)
    sweep = offresonance_sweep(method, protocol, model)
    plot.offresonance_sweep(out / "offres_sweep.png", sweep, tag)
    sweep_max = {
        "t1_max_abs_rel_err_pct": max(abs(v) for v in sweep["t1_rel_err_pct"]),
        "t2_max_abs_rel_err_pct": max(abs(v) for v in sweep["t2_rel_err_pct"]),
    }
    summary = {}
    for r in rows:
        name = "inf" if math.isinf(r["snr"]) else f"{r['snr']:g}"
        summary[f"cod_t1_snr{name}"] = r["grid_cod_t1"]
        summary[f"cod_t2_snr{name}"] = r["grid_cod_t2"]
    summary.update({f"sweep_{k}": v for k, v in sweep_max.items()})
    res = {
        "method": method,
        "complex": is_complex_method(method),
        "protocol": {
            "n_cycles": protocol.n_cycles,
            "tr_ms": protocol.tr * 1e3,
            "te_ms": protocol.te * 1e3,
            "flip_deg": math.degrees(protocol.flip),
        },
        "grid": grid,
        "n_mc": n_mc,
        "n_invivo": n_invivo,
        "seed": seed,
        "snr_rows": [{**r, "snr": r["snr"] if math.isfinite(r["snr"]) else "inf"} for r in rows],
        "offresonance_sweep": {**sweep, **sweep_max},
        "summary": summary,
    }
    save_json(out / "metrics.json", res)
    return res
