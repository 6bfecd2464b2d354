"""Protocol learning for phase-cycled bSSFP relaxometry, with and without a B1 map.

Per acquisition ``j``: flip angle ``a_j`` and RF phase increment ``phi_j``; shared: TR (at least
the gradient-limited minimum :func:`gradient_limited_min_tr`) and TE = TR / 2. Two settings:
with a B1 map (B1 is an input, as in paper 001) and without one (B1 is an unknown; networks then
output it). Two objectives, both evaluated for every protocol:

- ``crlb``: the Cramer-Rao bounds of T1 and T2 (:func:`mrphys.physics.ssfp.pc_bssfp_cramer_rao`;
  complex M0, off-resonance and, without a B1 map, B1 as nuisance parameters), relative to the
  truth, averaged over the in vivo-like tissue distribution
  (:func:`mrphys.relax.data.sample_parameters` ``"invivo"``), off-resonance ``theta`` in
  ``(-0.9 pi, 0.9 pi)`` and B1 in ``(0.7, 1.3)``, per unit scan time: the bound of a 1 s scan,
  ``std / T * sqrt(N TR / 1 s)`` (averaging ``1 s / (N TR)`` repetitions divides the variance).
  Minimised by Adam on the protocol from several random starts, exact gradients through the
  forward-mode Jacobians and the Cholesky inverse of the Fisher matrix; or by a global search
  (:func:`global_search_crlb`: Sobol candidates scored by one batched bound,
  :func:`crlb_terms` of ``(C, 1, K)`` protocols, the best refined together).
- ``network``: a complex relaxometry network (SVNN: map error; PINN: re-simulated signal error)
  trained together with the protocol, the signals re-simulated at the current protocol in every
  step (the SPIN idea, exact gradients); the protocol always follows the map error (relative
  squared error of T1, T2, theta and, without a B1 map, B1, in the network's unit box).

The networks of this module read the phase-corrected signals themselves (``Re S_j, Im S_j``
divided by their RMS, plus B1 when there is a map: :func:`protocol_features`), which any
per-acquisition flips and increments allow; they are :class:`mrphys.nets.mlp.RelaxNet` MLPs
(256 hidden) with outputs ``(T1 s, T2 s, theta rad[, B1])``. Their checkpoints are
:class:`mrphys.train.Trainer` checkpoints (``torch.load(weights_only=True)``) holding the
protocol record, read by :func:`load_protocol_network` (``mrphys relax fit --protocol``).

Units: s and rad inside; ``protocol.json`` holds ms and degrees (:meth:`Protocol.record`).
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mrphys.errors import MrphysError, check
from mrphys.metrics import relative_error
from mrphys.nets.mlp import RelaxNet
from mrphys.physics.noise import sigma_relax
from mrphys.physics.ssfp import pc_bssfp_cramer_rao, pc_bssfp_signal, remove_common_phase
from mrphys.relax.data import (
    B1_RANGE,
    Protocol,
    add_relax_noise,
    parameter_box,
    sample_parameters,
)
from mrphys.train import Trainer, load_checkpoint, plain_config, seed_everything
from mrphys.utils import check_seed, derived_seed, resolve_device

log = logging.getLogger(__name__)

__all__ = [
    "GAMMA_BAR",
    "FLIP_RANGE_DEG",
    "DesignConfig",
    "LearnableProtocol",
    "ProtocolNetwork",
    "DesignResult",
    "gradient_limited_min_tr",
    "paper_protocol",
    "crlb_samples",
    "with_b1_range",
    "relative_sar",
    "crlb_terms",
    "crlb_summary",
    "reference_bounds",
    "best_fixed_flip",
    "learn_protocol_crlb",
    "global_search_crlb",
    "protocol_features",
    "train_protocol_network",
    "network_errors",
    "load_protocol_network",
    "fit_with_protocol",
    "fit_protocol_to_folder",
    "NetTrainResult",
    "protocol_sequence",
    "design_protocol",
]

#: gyromagnetic ratio of 1H / 2 pi in Hz/T
GAMMA_BAR = 42.577478e6
#: the flip angles a learned protocol may take (degrees): below 1 deg there is no signal, above
#: 90 deg a bSSFP train deposits too much RF power for a head scan
FLIP_RANGE_DEG = (1.0, 90.0)
#: z-scored outputs: (T1, T2, theta[, B1])
_BIG = 1e3  # stands in for an infinite bound in the objective (no gradient through it)


def gradient_limited_min_tr(
    *,
    matrix: int = 128,
    fov: float = 0.22,
    dwell: float = 5e-6,
    rf_duration: float = 0.6e-3,
    gmax: float = 40e-3,
    slew: float = 200.0,
) -> float:
    """The shortest TR (s) of a balanced Cartesian readout under gradient limits.

    TR = RF + prephaser + ramp + readout + ramp + rewinder, with the readout gradient
    ``G = 1 / (gamma_bar FOV dwell)`` (at most ``gmax``), ramps ``G / slew`` and the prephaser
    and rewinder (each the area of half the readout plus its ramp) as the shortest triangle or
    trapezoid allowed by ``gmax`` and ``slew``. Defaults (128 matrix, 220 mm FOV, 5 us dwell,
    0.6 ms RF, 40 mT/m, 200 T/m/s) give 2.25 ms; the paper's 4.8 ms lies above it.
    """
    check(matrix >= 8 and fov > 0 and dwell > 0, "matrix, fov and dwell must be positive.")
    check(gmax > 0 and slew > 0 and rf_duration > 0, "gmax, slew and rf_duration must be > 0.")
    g = 1.0 / (GAMMA_BAR * fov * dwell)
    check(
        g <= gmax,
        f"the readout needs {g * 1e3:.1f} mT/m, above gmax {gmax * 1e3:g} mT/m; "
        "lengthen the dwell time or the FOV.",
    )
    ramp = g / slew
    t_ro = matrix * dwell
    area = g * (t_ro / 2 + ramp / 2)  # T s / m
    if area <= gmax * gmax / slew:  # triangle reaches its peak below gmax
        t_lobe = 2 * math.sqrt(area / slew)
    else:  # trapezoid
        t_lobe = area / gmax + gmax / slew
    return rf_duration + t_lobe + ramp + t_ro + ramp + t_lobe


def paper_protocol(n_acq: int, tr: float = 4.8e-3, flip_deg: float = 15.0) -> Protocol:
    """Paper 001's protocol: one flip angle, equally spaced increments ``pi (2j - 1) / N``."""
    return Protocol(int(n_acq), tr, tr / 2, math.radians(flip_deg))


@dataclass
class DesignConfig:
    """Settings of a protocol design run. Times in s, angles in rad (``*_deg``: degrees)."""

    #: acquisitions K (one flip angle and increment each)
    n_acq: int = 4
    #: ``crlb`` or ``network``
    objective: str = "crlb"
    #: network of the ``network`` objective: ``svnn-complex`` or ``pinn-complex``
    method: str = "svnn-complex"
    #: a B1 map is measured (B1 an input) or not (B1 estimated from the data)
    b1_map: bool = True
    #: relaxometry SNR (:func:`mrphys.physics.noise.sigma_relax`)
    snr: float = 50.0
    #: TR in s (the start value when ``learn_tr``)
    tr: float = 4.8e-3
    #: learn TR too (bounded below by ``tr_min``)
    learn_tr: bool = False
    #: lower bound of TR in s (default :func:`gradient_limited_min_tr`)
    tr_min: float = field(default_factory=gradient_limited_min_tr)
    #: tissue distribution of the objective (:data:`mrphys.relax.data.DISTRIBUTIONS`)
    distribution: str = "invivo"
    #: B1 range the CRLB objective averages over (uniform; ``(1, 1)``: B1 = 1 only, still an
    #: unknown without a B1 map). The primary definition is the networks' range, 0.7-1.3.
    b1_range: tuple[float, float] = B1_RANGE
    #: largest flip angle a learned protocol may take (deg; :data:`FLIP_RANGE_DEG` by default,
    #: above 90 deg see :func:`relative_sar`)
    flip_max_deg: float = FLIP_RANGE_DEG[1]
    #: random starts of the protocol (the best on the validation set is kept)
    starts: int = 3
    #: random protocols screened per start (the best on 128 fixed samples starts the descent)
    screen: int = 32
    #: global search (:func:`global_search_crlb`): Sobol candidate protocols screened by one
    #: batched bound (0: off, the ``starts`` x ``screen`` descent instead)
    candidates: int = 0
    #: global search: the best candidates refined together by gradient descent
    refine: int = 64
    #: optimiser steps per start (CRLB objective)
    crlb_steps: int = 300
    #: samples (tissue, B1, off-resonance) per CRLB step; the validation set has 4x as many
    crlb_batch: int = 256
    #: learning rate of the protocol (raw parameters: increments in rad, logits of flips)
    lr_protocol: float = 2e-2
    #: network training steps (``network`` objective; also the comparison networks)
    net_steps: int = 3000
    #: network batch size
    net_batch: int = 1024
    #: network learning rate (Adam)
    lr_net: float = 1e-3
    #: network hidden width
    hidden: int = 256
    #: network loss: ``unit`` (squared error in the output box) or ``relative`` (squared relative
    #: error of T1, T2 and, without a B1 map, B1; theta in the output box)
    net_loss: str = "relative"
    #: learning-rate schedule of the network and the protocol: ``constant`` or ``cosine``
    #: (decay to 1 % over ``net_steps``)
    lr_schedule: str = "cosine"
    #: with a constant rate, early stopping after this many units of 100 steps without a better
    #: validation loss (0: off; never with the cosine schedule; the best unit's weights are
    #: kept either way)
    net_patience: int = 10
    #: distribution the networks train on
    net_distribution: str = "uniform"
    #: samples of the CRLB test set (the validation set and the 1-D flip search use a quarter)
    eval_samples: int = 4096
    seed: int = 0
    #: compute device of the CRLB descent and the networks: ``cpu``, ``cuda`` or ``auto``
    #: (random draws stay on the CPU; on a GPU the noise has its own generator there)
    device: str = "cpu"

    def __post_init__(self) -> None:
        check(self.n_acq >= 3, f"acquisitions must be at least 3; got {self.n_acq}.")
        check(self.n_acq <= 64, f"acquisitions must be at most 64; got {self.n_acq}.")
        for name, allowed in (
            ("objective", ("crlb", "network")),
            ("method", ("svnn-complex", "pinn-complex")),
            ("net_loss", ("unit", "relative")),
            ("lr_schedule", ("constant", "cosine")),
        ):
            v = getattr(self, name)
            check(v in allowed, f"{name} must be {' or '.join(map(repr, allowed))}; got {v!r}.")
        check(
            math.isfinite(self.snr) and self.snr > 0,
            f"snr must be a positive finite number; got {self.snr}.",
        )
        check(
            math.isfinite(self.tr_min) and self.tr_min > 0,
            f"tr_min must be positive; got {self.tr_min}.",
        )
        check(
            math.isfinite(self.tr) and self.tr_min <= self.tr <= 0.1,
            f"tr must lie in [{self.tr_min * 1e3:.3g}, 100] ms (the gradient-limited minimum "
            f"and a bSSFP maximum); got {self.tr * 1e3:g} ms.",
        )
        check(int(self.candidates) >= 0, "candidates must be >= 0.")
        names = (
            "starts",
            "screen",
            "refine",
            "crlb_steps",
            "crlb_batch",
            "net_steps",
            "net_batch",
            "hidden",
        )
        for name in (*names, "eval_samples"):
            check(int(getattr(self, name)) >= 1, f"{name} must be at least 1.")
        check(self.lr_protocol > 0 and self.lr_net > 0, "learning rates must be positive.")
        check(int(self.net_patience) >= 0, "net_patience must be >= 0.")
        check(
            self.device in ("auto", "cpu") or str(self.device).startswith("cuda"),
            f"device must be one of auto, cpu, cuda; got {self.device!r}.",
        )
        lo, hi = (float(v) for v in self.b1_range)
        check(
            0 < lo <= hi < 2,
            f"b1_range must be (lo, hi) with 0 < lo <= hi < 2; got {tuple(self.b1_range)}.",
        )
        self.b1_range = (lo, hi)
        check(
            FLIP_RANGE_DEG[0] + 5 <= float(self.flip_max_deg) <= 179,
            f"flip_max_deg must lie in [6, 179]; got {self.flip_max_deg}.",
        )
        check_seed(self.seed)


# ------------------------------------------------------------------------------------------------
# the learnable protocol
# ------------------------------------------------------------------------------------------------


class LearnableProtocol(nn.Module):
    """Flip angles, RF phase increments and TR as trainable tensors.

    Flips ``lo + (hi - lo) sigmoid(u_j)`` in :data:`FLIP_RANGE_DEG` (upper end ``flip_max_deg``);
    increments free (rad, used
    modulo 2 pi); TR ``tr_min + softplus(v)`` when learned, else a buffer. TE = TR / 2.

    Args:
        flips: ``(K,)`` start flip angles in rad (inside the range).
        increments: ``(K,)`` start increments in rad.
        tr: start TR in s (>= ``tr_min``).
        tr_min: lower bound of TR in s.
        learn_tr: make TR a parameter.
        flip_max_deg: the largest flip angle (deg).
    """

    def __init__(
        self,
        flips: torch.Tensor,
        increments: torch.Tensor,
        tr: float,
        *,
        tr_min: float,
        learn_tr: bool = False,
        flip_max_deg: float = FLIP_RANGE_DEG[1],
    ) -> None:
        super().__init__()
        lo, hi = math.radians(FLIP_RANGE_DEG[0]), math.radians(flip_max_deg)
        self.flip_lo, self.flip_hi, self.tr_min = lo, hi, float(tr_min)
        f = flips.detach().double().clamp(lo + 1e-6, hi - 1e-6)
        self.flip_logit = nn.Parameter(torch.logit((f - lo) / (hi - lo)))
        self.increments = nn.Parameter(increments.detach().double().clone())
        check(tr >= tr_min, f"TR {tr * 1e3:g} ms is below the minimum {tr_min * 1e3:g} ms.")
        extra = max(float(tr) - self.tr_min, 1e-9)
        raw = torch.tensor(extra + math.log(-math.expm1(-extra)), dtype=torch.float64)
        if learn_tr:
            self.tr_raw = nn.Parameter(raw)
        else:
            self.register_buffer("tr_raw", raw)

    @property
    def n_acq(self) -> int:
        return int(self.increments.numel())

    def flips(self) -> torch.Tensor:
        """``(K,)`` flip angles in rad."""
        return self.flip_lo + (self.flip_hi - self.flip_lo) * torch.sigmoid(self.flip_logit)

    def tr(self) -> torch.Tensor:
        """TR in s (0-d)."""
        return self.tr_min + nn.functional.softplus(self.tr_raw)

    def signal_kwargs(self) -> dict[str, torch.Tensor]:
        """Keyword arguments of :func:`mrphys.physics.ssfp.pc_bssfp_signal` (differentiable)."""
        tr = self.tr()
        return {"tr": tr, "te": tr / 2, "flip": self.flips(), "increments": self.increments}

    @torch.no_grad()
    def protocol(self) -> Protocol:
        """The current values as a :class:`~mrphys.relax.data.Protocol` (increments in [0, 2pi))."""
        inc = torch.remainder(self.increments, 2 * math.pi)
        return Protocol.custom(inc.tolist(), self.flips().tolist(), tr=float(self.tr()))

    @classmethod
    def from_protocol(
        cls,
        p: Protocol,
        *,
        tr_min: float | None = None,
        learn_tr: bool = False,
        flip_max_deg: float | None = None,
    ) -> LearnableProtocol:
        """``p`` as a learnable protocol; the flip range reaches 90 deg or ``p``'s largest."""
        if flip_max_deg is None:
            top = math.degrees(float(p.flip_angles().max()))
            flip_max_deg = FLIP_RANGE_DEG[1] if top < FLIP_RANGE_DEG[1] else min(top + 1.0, 179.0)
        return cls(
            p.flip_angles(),
            p.phases(),
            p.tr,
            tr_min=min(p.tr, gradient_limited_min_tr()) if tr_min is None else tr_min,
            learn_tr=learn_tr,
            flip_max_deg=flip_max_deg,
        )


def _random_start(cfg: DesignConfig, g: torch.Generator) -> LearnableProtocol:
    """Flips U(2, max - 2) deg and increments U(0, 2 pi), one per acquisition."""
    k = cfg.n_acq
    span = cfg.flip_max_deg - 4.0
    flips = torch.deg2rad(2 + span * torch.rand(k, generator=g, dtype=torch.float64))
    inc = 2 * math.pi * torch.rand(k, generator=g, dtype=torch.float64)
    return LearnableProtocol(
        flips, inc, cfg.tr, tr_min=cfg.tr_min, learn_tr=cfg.learn_tr, flip_max_deg=cfg.flip_max_deg
    )


# ------------------------------------------------------------------------------------------------
# the Cramer-Rao objective
# ------------------------------------------------------------------------------------------------


def crlb_samples(
    n: int,
    seed: int,
    distribution: str = "invivo",
    dtype: torch.dtype = torch.float64,
    b1_range: tuple[float, float] = B1_RANGE,
) -> dict[str, torch.Tensor]:
    """``n`` tissue / field samples ``{"t1", "t2", "b1", "theta"}`` (each ``(n,)``; s, rad):
    T1, T2 from ``distribution``, B1 in ``b1_range`` (default 0.7-1.3), theta in
    (-0.9 pi, 0.9 pi)."""
    g = torch.Generator().manual_seed(int(seed))
    return with_b1_range(sample_parameters(int(n), distribution, True, g, dtype=dtype), b1_range)


def with_b1_range(
    samples: dict[str, torch.Tensor], b1_range: tuple[float, float]
) -> dict[str, torch.Tensor]:
    """``samples`` (B1 uniform in 0.7-1.3) with B1 mapped linearly onto ``b1_range`` (the same
    draws; the identity for the default range)."""
    lo, hi = (float(v) for v in b1_range)
    if (lo, hi) == B1_RANGE:
        return samples
    u = (samples["b1"] - B1_RANGE[0]) / (B1_RANGE[1] - B1_RANGE[0])
    return {**samples, "b1": lo + (hi - lo) * u}


def relative_sar(
    protocol: Protocol, *, ref_flip_deg: float = 15.0, ref_tr: float = 4.8e-3
) -> float:
    """RF power of ``protocol`` relative to a bSSFP train of ``ref_flip_deg`` at ``ref_tr``
    (the paper's protocol), for the same RF pulse shape and duration: SAR scales with the
    time average of B1^2, i.e. ``mean_j(flip_j^2) / TR``."""
    f = protocol.flip_angles().double()
    return float(f.pow(2).mean() / protocol.tr / (math.radians(ref_flip_deg) ** 2 / ref_tr))


def crlb_terms(
    samples: dict[str, torch.Tensor],
    *,
    snr: float,
    b1_map: bool,
    tr: float | torch.Tensor,
    flip: float | torch.Tensor,
    increments: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scan-time normalised relative bounds ``std / T * sqrt(N TR / 1 s)`` of T1 and T2.

    Args:
        samples: ``{"t1", "t2", "b1", "theta"}``, each ``(S,)`` (s, rad), float64.
        snr: relaxometry SNR (:func:`mrphys.physics.noise.sigma_relax`).
        b1_map: B1 known (a map) or a nuisance parameter.
        tr: TR in s (TE = TR / 2).
        flip: flip angles in rad, one number or ``(N,)``; increments: ``(N,)`` RF phase
            increments in rad. For ``C`` protocols at once (the global search) give both as
            ``(C, 1, N)``: one vectorised bound (:func:`mrphys.physics.ssfp.pc_bssfp_cramer_rao`
            broadcasts protocols against tissues).

    Returns two ``(S,)`` tensors, or ``(C, S)`` for ``C`` protocols (``inf`` where the parameter
    is not identified), differentiable with respect to ``tr``, ``flip`` and ``increments``.
    """
    sigma = sigma_relax(float(snr), per_channel=True)
    tr_t = tr if isinstance(tr, torch.Tensor) else torch.tensor(float(tr), dtype=torch.float64)
    cr = pc_bssfp_cramer_rao(
        samples["t1"],
        samples["t2"],
        samples["b1"],
        samples["theta"],
        sigma=sigma,
        tr=tr_t,
        te=tr_t / 2,
        flip=flip,
        increments=increments,
        b1_known=b1_map,
    )
    scan = torch.sqrt(increments.shape[-1] * tr_t)
    r1 = cr.variance[..., 0].sqrt() / samples["t1"] * scan
    r2 = cr.variance[..., 1].sqrt() / samples["t2"] * scan
    return r1, r2


#: temperature of the smooth maximum of the two normalised bounds (ratios near 1)
_SOFTMAX_T = 0.02


def _objective(
    r1: torch.Tensor, r2: torch.Tensor, ref: tuple[float, float] = (1.0, 1.0)
) -> torch.Tensor:
    """Smooth maximum of ``mean(r1) / ref[0]`` and ``mean(r2) / ref[1]``: the T1 and T2 bounds
    relative to a reference protocol's (the worse of the two maps counts, so the design improves
    both instead of trading one for the other). Infinite terms count as a large constant
    (no gradient). Bounds ``(S,)`` give a number; ``(C, S)`` (``C`` protocols) give ``(C,)``."""
    parts = []
    for r, q in ((r1, ref[0]), (r2, ref[1])):
        r = torch.where(torch.isfinite(r), r, torch.full_like(r, _BIG)).clamp_max(_BIG)
        parts.append(r.mean(-1) / q)
    return _SOFTMAX_T * torch.logsumexp(torch.stack(parts, -1) / _SOFTMAX_T, dim=-1)


def _criterion(summary: dict[str, float], ref: tuple[float, float]) -> float:
    """:func:`_objective` of a :func:`crlb_summary` (inf where a bound is infinite)."""
    a, b = summary["crlb_t1"] / ref[0], summary["crlb_t2"] / ref[1]
    if not (math.isfinite(a) and math.isfinite(b)):
        return math.inf
    m = max(a, b)  # stable log-sum-exp
    return m + _SOFTMAX_T * math.log(
        math.exp((a - m) / _SOFTMAX_T) + math.exp((b - m) / _SOFTMAX_T)
    )


def reference_bounds(
    n_acq: int, *, snr: float, samples: dict[str, torch.Tensor], tr: float = 4.8e-3
) -> tuple[float, float]:
    """Mean T1 and T2 bounds of the paper's ``n_acq``-cycle protocol with a B1 map: the scale
    of the design objective."""
    s = crlb_summary(paper_protocol(n_acq, tr), snr=snr, b1_map=True, samples=samples)
    return s["crlb_t1"], s["crlb_t2"]


@torch.no_grad()
def crlb_summary(
    protocol: Protocol,
    *,
    snr: float,
    b1_map: bool,
    samples: dict[str, torch.Tensor],
) -> dict[str, float]:
    """Mean and median scan-time normalised relative bounds of T1 and T2 over ``samples``
    (``crlb_t1``, ``crlb_t2``, ``crlb_t1_median``, ``crlb_t2_median``: relative std of a 1 s
    scan; ``identified``: fraction of samples with finite bounds of both)."""
    r1, r2 = crlb_terms(
        samples,
        snr=snr,
        b1_map=b1_map,
        tr=protocol.tr,
        flip=protocol.flip_angles(),
        increments=protocol.phases(),
    )
    ok = torch.isfinite(r1) & torch.isfinite(r2)
    return {
        "crlb_t1": float(r1.mean()),
        "crlb_t2": float(r2.mean()),
        "crlb_t1_median": float(r1.median()),
        "crlb_t2_median": float(r2.median()),
        "identified": float(ok.double().mean()),
    }


def best_fixed_flip(
    n_acq: int,
    *,
    snr: float,
    b1_map: bool,
    samples: dict[str, torch.Tensor],
    tr: float = 4.8e-3,
    max_deg: float = 60.0,
) -> tuple[Protocol, list[tuple[float, float]]]:
    """The best single flip angle with equally spaced increments: a 1-D search of the CRLB
    objective (the smooth maximum of the mean T1 and T2 bounds over ``samples``, each relative
    to the paper's protocol with a B1 map, as in :func:`learn_protocol_crlb`), on a 2 deg grid
    from 2 deg to ``max_deg`` and then on a 0.25 deg grid around the best. Returns the
    protocol and the evaluated curve ``[(flip_deg, objective), ...]`` sorted by flip angle."""
    seen: dict[float, float] = {}
    ref = reference_bounds(n_acq, snr=snr, samples=samples, tr=tr)

    def evaluate(flips_deg: list[float]) -> None:
        # one batched bound for all flip angles: with one flip per protocol the signal depends
        # on B1 * flip only, so flip f at B1 b is flip 1 rad at B1 b f (the T1 and T2 bounds do
        # not change when B1, known or a nuisance parameter, is rescaled)
        f = torch.deg2rad(torch.tensor(flips_deg, dtype=torch.float64))[:, None]
        smp = {k: v[None, :].expand(len(flips_deg), -1) for k, v in samples.items()}
        smp = {**smp, "b1": smp["b1"] * f}
        inc = paper_protocol(n_acq, tr).phases()
        with torch.no_grad():
            r1, r2 = crlb_terms(smp, snr=snr, b1_map=b1_map, tr=tr, flip=1.0, increments=inc)
        summ = [
            {"crlb_t1": a, "crlb_t2": b}
            for a, b in zip(r1.mean(-1).tolist(), r2.mean(-1).tolist(), strict=True)
        ]
        v = [_criterion(x, ref) for x in summ]
        seen.update(
            {fl: (x if math.isfinite(x) else math.inf) for fl, x in zip(flips_deg, v, strict=True)}
        )

    coarse = [2.0 + 2.0 * i for i in range(int((max_deg - 2.0) / 2.0) + 1)]
    evaluate(coarse)
    best = min(coarse, key=lambda f: seen[f])
    fine = [best + 0.25 * i for i in range(-7, 8) if FLIP_RANGE_DEG[0] <= best + 0.25 * i]
    evaluate([f for f in fine if f not in seen])
    best = min(fine, key=lambda f: seen[f])
    return paper_protocol(n_acq, tr, best), sorted(seen.items())


def learn_protocol_crlb(
    cfg: DesignConfig,
    *,
    progress: bool = False,
) -> tuple[Protocol, list[dict[str, Any]]]:
    """Minimise the CRLB objective from ``cfg.starts`` random starts (Adam, fresh samples every
    step, on the one trainer). Each start is the best of ``cfg.screen`` random protocols on 128
    fixed screening samples (the objective is multi-modal: a plain random start often ends in a
    poor local minimum). The start with the lowest objective on a fixed validation set (drawn
    apart from the training and screening samples and from any test set) wins.

    With ``cfg.candidates > 0`` the global search :func:`global_search_crlb` runs instead, and
    every refined protocol is one record (best first; ``start`` its rank before validation).

    Returns:
        the best protocol and one record per start (``start``, ``val_objective``, ``crlb_t1``,
        ``crlb_t2`` on the validation set, ``flip_deg``, ``phase_increment_deg``, ``tr_ms``,
        ``seconds``).
    """
    if cfg.candidates > 0:
        p, rec = global_search_crlb(cfg, progress=progress)
        per = rec["seconds"] / max(len(rec["refined"]), 1)
        starts = [
            {"start": i, **r, "tr_ms": cfg.tr * 1e3, "seconds": per}
            for i, r in enumerate(rec["refined"])
        ]
        log.info(
            "global search: %d candidates, %d refined, %d within 10 %% of the best (%.4g)",
            rec["candidates"], rec["refine"], rec["within_10pct"], starts[0]["val_objective"],
        )  # fmt: skip
        return p, starts
    val = crlb_samples(
        max(cfg.eval_samples // 4, 16),
        derived_seed(cfg.seed, 3, 1),
        cfg.distribution,
        b1_range=cfg.b1_range,
    )
    screen_set = crlb_samples(
        128, derived_seed(cfg.seed, 3, 3), cfg.distribution, b1_range=cfg.b1_range
    )
    ref = reference_bounds(cfg.n_acq, snr=cfg.snr, samples=val, tr=cfg.tr)
    dev = resolve_device(cfg.device)
    starts: list[dict[str, Any]] = []
    best: tuple[float, Protocol] | None = None
    for s in range(cfg.starts):
        t0 = time.perf_counter()
        g = torch.Generator().manual_seed(derived_seed(cfg.seed, 1009, s))
        lp = _screened_start(cfg, g, screen_set, ref).to(dev)
        opt = torch.optim.Adam(lp.parameters(), lr=cfg.lr_protocol)
        gen = torch.Generator().manual_seed(derived_seed(cfg.seed, 7, s))

        def step(_: int, lp=lp, opt=opt, gen=gen) -> dict[str, float]:
            smp = sample_parameters(cfg.crlb_batch, cfg.distribution, True, gen, torch.float64)
            smp = {k: v.to(dev) for k, v in with_b1_range(smp, cfg.b1_range).items()}
            kw = lp.signal_kwargs()
            r1, r2 = crlb_terms(smp, snr=cfg.snr, b1_map=cfg.b1_map, tr=kw["tr"],
                                flip=kw["flip"], increments=kw["increments"])  # fmt: skip
            loss = _objective(r1, r2, ref)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return {"loss": float(loss.detach())}

        trainer = Trainer(
            lp,
            opt,
            {"start": s, **plain_config(cfg)},
            units=cfg.crlb_steps,
            progress=progress,
            desc=f"crlb start {s + 1}/{cfg.starts}",
            unit="it",
            log_every=100,
        )
        trainer.run(step)
        p = lp.protocol()
        summ = crlb_summary(p, snr=cfg.snr, b1_map=cfg.b1_map, samples=val)
        obj = _criterion(summ, ref)
        rec = {"start": s, "val_objective": obj, **summ, **_angles(p)}
        rec["seconds"] = time.perf_counter() - t0
        starts.append(rec)
        log.info("start %d: objective %.4g (T1 %.4g, T2 %.4g)", s, obj, *_rec_pair(rec))
        if best is None or obj < best[0]:
            best = (obj, p)
    assert best is not None
    return best[1], starts


def _rec_pair(rec: dict[str, Any]) -> tuple[float, float]:
    return rec["crlb_t1"], rec["crlb_t2"]


def _angles(p: Protocol) -> dict[str, Any]:
    r = p.record()
    return {k: r[k] for k in ("flip_deg", "phase_increment_deg", "tr_ms")}


def _screened_start(
    cfg: DesignConfig,
    g: torch.Generator,
    samples: dict[str, torch.Tensor],
    ref: tuple[float, float] = (1.0, 1.0),
) -> LearnableProtocol:
    """The best of ``cfg.screen`` random protocols (:func:`_random_start`) on ``samples``."""
    best: tuple[float, LearnableProtocol] | None = None
    for _ in range(cfg.screen):
        lp = _random_start(cfg, g)
        s = crlb_summary(lp.protocol(), snr=cfg.snr, b1_map=cfg.b1_map, samples=samples)
        v = _criterion(s, ref)
        if best is None or v < best[0]:
            best = (v, lp)
    assert best is not None
    return best[1]


# ------------------------------------------------------------------------------------------------
# global search of the protocol space (many candidate protocols in one batched bound)
# ------------------------------------------------------------------------------------------------


def _flip_bounds(cfg: DesignConfig) -> tuple[float, float]:
    return math.radians(FLIP_RANGE_DEG[0]), math.radians(cfg.flip_max_deg)


def _score_many(
    flips: torch.Tensor,
    incs: torch.Tensor,
    cfg: DesignConfig,
    samples: dict[str, torch.Tensor],
    ref: tuple[float, float],
    chunk: int = 512,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Objective, mean T1 and mean T2 bound ``(C,)`` each of ``C`` protocols (no gradient),
    in chunks of ``chunk`` protocols (memory)."""
    out = []
    with torch.no_grad():
        for i in range(0, flips.shape[0], chunk):
            sl = slice(i, i + chunk)
            r1, r2 = crlb_terms(samples, snr=cfg.snr, b1_map=cfg.b1_map, tr=cfg.tr,
                                flip=flips[sl, None], increments=incs[sl, None])  # fmt: skip
            obj = _objective(r1, r2, ref)
            m1 = torch.where(torch.isfinite(r1).all(-1), r1.mean(-1), math.inf)
            m2 = torch.where(torch.isfinite(r2).all(-1), r2.mean(-1), math.inf)
            out.append(torch.stack([obj, m1, m2], -1))
    o = torch.cat(out)
    return o[:, 0], o[:, 1], o[:, 2]


def global_search_crlb(
    cfg: DesignConfig,
    *,
    progress: bool = False,
    ref: tuple[float, float] | None = None,
) -> tuple[Protocol, dict[str, Any]]:
    """Global search of the CRLB objective (TR fixed): ``cfg.candidates`` scrambled Sobol
    protocols (flips in [1, ``flip_max_deg``] deg, increments in [0, 360) deg) scored by one
    batched bound on 128 fixed screening samples, the best ``cfg.refine`` refined together by
    Adam (fresh samples every step, shared by all, ``cfg.crlb_steps`` steps, the rate decaying
    by a cosine to 1 %), then every refined protocol scored on the validation set; the best
    wins.

    Args:
        ref: the T1 and T2 scales of the objective (default: the paper's K-cycle protocol with
            a B1 map on the validation set). ``(ref_t1, inf)`` minimises the T1 bound alone.
    Returns:
        the best protocol and a record of the search: ``candidates``, ``refine``, the
        validation objective (and mean T1 / T2 bounds, flips, increments) of every refined
        protocol sorted best first (``refined``), ``screen_best`` (the best objective before
        refinement), ``within_10pct`` (refined protocols within 10 % of the best objective:
        the ruggedness of the landscape) and the seconds of each phase.
    """
    check(not cfg.learn_tr, "the global search keeps TR fixed; drop learn_tr.")
    t0 = time.perf_counter()
    val = crlb_samples(
        max(cfg.eval_samples // 4, 16), derived_seed(cfg.seed, 3, 1), cfg.distribution,
        b1_range=cfg.b1_range,
    )  # fmt: skip
    screen_set = crlb_samples(
        128, derived_seed(cfg.seed, 3, 3), cfg.distribution, b1_range=cfg.b1_range
    )
    if ref is None:
        ref = reference_bounds(cfg.n_acq, snr=cfg.snr, samples=val, tr=cfg.tr)
    lo, hi = _flip_bounds(cfg)
    k = cfg.n_acq
    sob = torch.quasirandom.SobolEngine(2 * k, scramble=True, seed=derived_seed(cfg.seed, 5, 1))
    u = sob.draw(cfg.candidates, dtype=torch.float64)
    flips = lo + (hi - lo) * u[:, :k]
    incs = 2 * math.pi * u[:, k:]
    obj, _, _ = _score_many(flips, incs, cfg, screen_set, ref)
    t_screen = time.perf_counter() - t0
    top = torch.argsort(obj)[: min(cfg.refine, cfg.candidates)]
    log.info("screened %d protocols in %.1f s; best %.4g", cfg.candidates, t_screen, obj[top[0]])
    # batched refinement: the same parameterisation as LearnableProtocol, one row per protocol
    f0 = flips[top].clamp(lo + 1e-6, hi - 1e-6)
    logit = torch.logit((f0 - lo) / (hi - lo)).requires_grad_(True)
    inc = incs[top].clone().requires_grad_(True)
    opt = torch.optim.Adam([logit, inc], lr=cfg.lr_protocol)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * s / cfg.crlb_steps))
    )
    gen = torch.Generator().manual_seed(derived_seed(cfg.seed, 7, 99))
    for step in range(cfg.crlb_steps):
        smp = sample_parameters(cfg.crlb_batch, cfg.distribution, True, gen, torch.float64)
        smp = with_b1_range(smp, cfg.b1_range)
        fl = lo + (hi - lo) * torch.sigmoid(logit)
        r1, r2 = crlb_terms(smp, snr=cfg.snr, b1_map=cfg.b1_map, tr=cfg.tr, flip=fl[:, None],
                            increments=inc[:, None])  # fmt: skip
        loss = _objective(r1, r2, ref)
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()
        sched.step()
        if progress and (step + 1) % 100 == 0:
            best_now = float(loss.detach().min())
            log.info("refine step %d/%d: best %.4g", step + 1, cfg.crlb_steps, best_now)
    t_refine = time.perf_counter() - t0 - t_screen
    with torch.no_grad():
        fl = lo + (hi - lo) * torch.sigmoid(logit)
        inc = torch.remainder(inc, 2 * math.pi)
    vobj, v1, v2 = _score_many(fl, inc, cfg, val, ref)
    order = torch.argsort(vobj)
    best = int(order[0])
    refined = [
        {
            "val_objective": float(vobj[i]),
            "crlb_t1": float(v1[i]),
            "crlb_t2": float(v2[i]),
            "flip_deg": torch.rad2deg(fl[i]).tolist(),
            "phase_increment_deg": torch.rad2deg(inc[i]).tolist(),
        }
        for i in order.tolist()
    ]
    b = float(vobj[best])
    record = {
        "candidates": cfg.candidates,
        "refine": int(top.numel()),
        "screen_best": float(obj[top[0]]),
        "ref_t1_t2": list(ref),
        "within_10pct": int((vobj <= 1.1 * b).sum()),
        "within_1pct": int((vobj <= 1.01 * b).sum()),
        "refined": refined,
        "seconds_screen": t_screen,
        "seconds_refine": t_refine,
        "seconds": time.perf_counter() - t0,
    }
    p = Protocol.custom(inc[best].tolist(), fl[best].tolist(), tr=cfg.tr)
    return p, record


# ------------------------------------------------------------------------------------------------
# networks on a general protocol
# ------------------------------------------------------------------------------------------------


def protocol_features(signals: torch.Tensor, b1: torch.Tensor | None = None) -> torch.Tensor:
    """Network input from phase-corrected signals of any protocol.

    Args:
        signals: complex ``(..., K)`` with the common phase removed
            (:func:`mrphys.physics.ssfp.remove_common_phase`).
        b1: ``(...)`` relative B1 (a B1 map), or None.
    Returns:
        real ``(..., 2K)`` (``Re S_j, Im S_j`` divided by the RMS magnitude over ``j``; M0 and
        receive gain cancel) or ``(..., 2K + 1)`` with B1 last.
    """
    rms = signals.abs().pow(2).mean(-1, keepdim=True).sqrt()
    s = signals / rms.clamp_min(torch.finfo(rms.dtype).tiny)
    f = torch.cat([s.real, s.imag], dim=-1)
    if b1 is not None:
        f = torch.cat([f, b1.to(f.dtype).unsqueeze(-1)], dim=-1)
    return f


def _output_box(b1_map: bool) -> tuple[torch.Tensor, torch.Tensor]:
    lo, hi = parameter_box("uniform", True)
    if not b1_map:
        lo = torch.cat([lo, torch.tensor([B1_RANGE[0]])])
        hi = torch.cat([hi, torch.tensor([B1_RANGE[1]])])
    return lo, hi


class ProtocolNetwork(nn.Module):
    """A relaxometry network and its (learnable) protocol, trained and stored together.

    ``net``: :class:`~mrphys.nets.mlp.RelaxNet` from :func:`protocol_features` to
    ``(T1 s, T2 s, theta rad[, B1])`` (B1 only without a B1 map); ``protocol``:
    :class:`LearnableProtocol`.
    """

    def __init__(self, protocol: LearnableProtocol, b1_map: bool, hidden: int = 256) -> None:
        super().__init__()
        self.b1_map = bool(b1_map)
        self.protocol = protocol
        lo, hi = _output_box(self.b1_map)
        k = protocol.n_acq
        self.net = RelaxNet(2 * k + (1 if self.b1_map else 0), int(hidden), lo, hi)

    def simulate(
        self, params: dict[str, torch.Tensor], snr: float, generator: torch.Generator | None
    ) -> torch.Tensor:
        """Noisy phase-corrected signals ``(n, K)`` (complex128) at the current protocol."""
        s = pc_bssfp_signal(
            params["t1"].double(),
            params["t2"].double(),
            params["b1"].double(),
            params["theta"].double(),
            **self.protocol.signal_kwargs(),
            remove_common_phase=True,
        )
        return add_relax_noise(s, snr, generator)

    def features(self, signals: torch.Tensor, b1: torch.Tensor | None) -> torch.Tensor:
        """float32 network input (B1 ignored without a B1 map)."""
        return protocol_features(signals, b1 if self.b1_map else None).float()

    def target(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        names = ["t1", "t2", "theta"] + ([] if self.b1_map else ["b1"])
        return torch.stack([params[k].float() for k in names], dim=-1)

    @torch.no_grad()
    def predict(self, signals: torch.Tensor, b1: torch.Tensor | None = None) -> torch.Tensor:
        """``(M, 3 or 4)`` (T1 s, T2 s, theta rad[, B1]) from signals ``(M, K)`` of any common
        phase (removed here); ``b1`` ``(M,)`` required with a B1 map."""
        check(
            not self.b1_map or b1 is not None,
            "this network was trained with a B1 map; give b1.",
        )
        f = self.features(remove_common_phase(signals), b1)
        return self.net(f.to(self.net.lo.device))


@dataclass
class NetTrainResult:
    """A trained protocol network."""

    model: ProtocolNetwork
    history: list[dict[str, Any]]
    stop_reason: str
    seconds: float


def _unit_loss(model: ProtocolNetwork, feats: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    net = model.net
    unit_t = (target - net.lo) / (net.hi - net.lo)
    return torch.mean((net.unit_output(feats) - unit_t) ** 2)


def _relative_loss(
    model: ProtocolNetwork, feats: torch.Tensor, target: torch.Tensor
) -> torch.Tensor:
    """Mean squared relative error of T1, T2 (and B1 without a map); theta (column 2) in the
    output box, as it has no scale of its own."""
    net = model.net
    unit = net.unit_output(feats)
    pred = net.scale(unit)
    rel = (pred - target) / target.abs().clamp_min(1e-6)
    unit_t = (target - net.lo) / (net.hi - net.lo)
    rel = torch.cat([rel[:, :2], (unit - unit_t)[:, 2:3], rel[:, 3:]], dim=1)
    return torch.mean(rel**2)


def _map_loss(
    cfg: DesignConfig, model: ProtocolNetwork, feats: torch.Tensor, target: torch.Tensor
) -> torch.Tensor:
    """The map loss of ``cfg.net_loss``."""
    if cfg.net_loss == "relative":
        return _relative_loss(model, feats, target)
    return _unit_loss(model, feats, target)


def _pinn_loss(
    model: ProtocolNetwork, feats: torch.Tensor, b1: torch.Tensor, kw: dict[str, torch.Tensor]
) -> torch.Tensor:
    """Re-simulated features from the predicted parameters against the input (z-scored)."""
    pred = model.net(feats).double()
    b1p = b1.double() if model.b1_map else pred[:, 3]
    s = pc_bssfp_signal(pred[:, 0], pred[:, 1], b1p, pred[:, 2], **kw, remove_common_phase=True)
    sim = protocol_features(s).float()
    k = sim.shape[-1]
    m, sd = model.net.feat_mean[:k], model.net.feat_std[:k]
    return torch.mean(((sim - m) / sd - (feats[:, :k] - m) / sd) ** 2)


def train_protocol_network(
    cfg: DesignConfig,
    start: Protocol,
    *,
    learn: bool,
    checkpoint: str | os.PathLike | None = None,
    progress: bool = False,
    seed_offset: int = 0,
) -> NetTrainResult:
    """Train a complex network on ``start`` (fixed) or together with the protocol (``learn``).

    Every step draws fresh parameters (``cfg.net_distribution``) and noise at ``cfg.snr`` and
    simulates the signals at the current protocol; the network follows its method's loss
    (SVNN: unit-box map error; PINN: re-simulated features), the protocol the map error. Units
    of 100 steps, each validated on a fixed set (fixed noise); the best unit's weights and
    protocol are kept (early stopping after 10 units without improvement). On the one trainer;
    ``checkpoint`` gets a :class:`mrphys.train.Trainer` checkpoint whose ``config`` holds
    ``design`` (the settings), ``protocol`` (the start record) and ``b1_map``.
    """
    seed = derived_seed(cfg.seed, 31, seed_offset)
    seed_everything(seed)
    lp = LearnableProtocol.from_protocol(
        start, tr_min=min(cfg.tr_min, start.tr), learn_tr=cfg.learn_tr and learn
    )
    model = ProtocolNetwork(lp, cfg.b1_map, cfg.hidden)
    if not learn:
        for p in model.protocol.parameters():
            p.requires_grad_(False)
    g0 = torch.Generator().manual_seed(derived_seed(seed, 5, 0))
    with torch.no_grad():
        p0 = sample_parameters(20_000, cfg.net_distribution, True, g0, torch.float64)
        f0 = model.features(model.simulate(p0, cfg.snr, g0), p0["b1"])
    model.net.set_normalisation(f0.mean(0), f0.std(0))
    dev = resolve_device(cfg.device)
    model.to(dev)
    gv = torch.Generator().manual_seed(derived_seed(seed, 5, 1))
    val_p = _to(sample_parameters(4096, cfg.net_distribution, True, gv, torch.float64), dev)
    val_noise = torch.Generator(device=dev).manual_seed(derived_seed(seed, 5, 2))
    val_state = val_noise.get_state()
    opts: dict[str, torch.optim.Optimizer] = {
        "net": torch.optim.Adam(model.net.parameters(), lr=cfg.lr_net)
    }
    proto_params = [p for p in model.protocol.parameters() if p.requires_grad]
    if proto_params:
        opts["protocol"] = torch.optim.Adam(proto_params, lr=cfg.lr_protocol * 0.25)
    n_units = max(1, cfg.net_steps // 100)
    schedule = None
    if cfg.lr_schedule == "cosine":
        for o in opts.values():  # the schedule multiplies each group's own rate
            for grp in o.param_groups:
                grp["lr_scale"] = grp["lr"]

        def schedule(u: int) -> float:
            return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * u / n_units))

    gen = torch.Generator().manual_seed(derived_seed(seed, 5, 3))
    # on the CPU one generator draws tissues and noise; on a GPU the noise has its own
    noise_gen = gen if dev.type == "cpu" else torch.Generator(device=dev).manual_seed(seed)
    gens = {"batches": gen} if dev.type == "cpu" else {"batches": gen, "noise": noise_gen}
    pinn = cfg.method.startswith("pinn")
    per_unit = 100
    config = {
        "kind": "mrphys-protocol-network",
        "design": plain_config(cfg),
        "protocol": start.record(),
        "b1_map": cfg.b1_map,
        "learn": learn,
        "hidden": cfg.hidden,
        "tr_min": lp.tr_min,
    }
    trainer = Trainer(
        model,
        opts,
        config,
        units=n_units,
        checkpoint=checkpoint,
        monitor="val_loss",
        patience=(int(cfg.net_patience) or None) if schedule is None else None,
        schedule=schedule,
        generators=gens,
        progress=progress,
        desc=f"{'joint' if learn else 'fixed'} {cfg.method}",
        unit="x100 it",
    )
    t0 = time.perf_counter()

    def unit(_: int) -> dict[str, float]:
        tot = 0.0
        for _ in range(per_unit):
            prm = sample_parameters(cfg.net_batch, cfg.net_distribution, True, gen, torch.float64)
            prm = _to(prm, dev)
            kw = model.protocol.signal_kwargs()
            sig = model.simulate(prm, cfg.snr, noise_gen)
            feats = model.features(sig, prm["b1"])
            map_loss = _map_loss(cfg, model, feats, model.target(prm))
            for o in opts.values():
                o.zero_grad(set_to_none=True)
            if pinn:
                net_loss = _pinn_loss(model, feats, prm["b1"], kw)
                net_grads = torch.autograd.grad(
                    net_loss, list(model.net.parameters()), retain_graph=bool(proto_params)
                )
                if proto_params:
                    pg = torch.autograd.grad(map_loss, proto_params)
                    for p, gr in zip(proto_params, pg, strict=True):
                        p.grad = gr
                for p, gr in zip(model.net.parameters(), net_grads, strict=True):
                    p.grad = gr
                tot += float(net_loss.detach())
            else:
                map_loss.backward()
                tot += float(map_loss.detach())
            for o in opts.values():
                o.step()
            trainer.step += 1
        with torch.no_grad():
            val_noise.set_state(val_state)
            fv = model.features(model.simulate(val_p, cfg.snr, val_noise), val_p["b1"])
            val = float(_map_loss(cfg, model, fv, model.target(val_p)))
        return {"train_loss": tot / per_unit, "val_loss": val}

    stop = trainer.run(unit)
    trainer.load_best()
    trainer.save()
    model.eval()
    return NetTrainResult(model, trainer.history, stop, time.perf_counter() - t0)


def _to(params: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in params.items()}


def load_protocol_network(
    path: str | os.PathLike, device: torch.device | str = "cpu"
) -> ProtocolNetwork:
    """Read a protocol network checkpoint (best weights and protocol), nothing executed.

    Raises :class:`MrphysError` for a missing file or one that is not such a checkpoint.
    """
    p = Path(path)
    if not p.is_file():
        raise MrphysError(f"model checkpoint {p} does not exist.")
    ck = load_checkpoint(p, map_location=device)
    try:
        cfg = ck["config"]
        check(cfg.get("kind") == "mrphys-protocol-network", "")
        start = Protocol.from_record(cfg["protocol"])
        lp = LearnableProtocol.from_protocol(start, tr_min=float(cfg["tr_min"]))
        model = ProtocolNetwork(lp, bool(cfg["b1_map"]), int(cfg["hidden"]))
        model.load_state_dict(ck["best_model"])  # the trained network and protocol
    except Exception:
        raise MrphysError(
            f"{p} is not an mrphys protocol network checkpoint (mrphys design protocol "
            "--objective network writes one)."
        ) from None
    model.to(device).eval()
    return model


def _net_protocol(model: ProtocolNetwork) -> Protocol:
    return model.protocol.protocol()


# ------------------------------------------------------------------------------------------------
# evaluation
# ------------------------------------------------------------------------------------------------


@torch.no_grad()
def network_errors(
    model: ProtocolNetwork, params: dict[str, torch.Tensor], snr: float, seed: int
) -> dict[str, torch.Tensor]:
    """Relative errors (%) of T1, T2 (and B1 when estimated) of ``model`` on ``params``
    (``(n,)`` each) at ``snr`` (``inf``: noise-free), with noise drawn from ``seed``."""
    dev = model.net.lo.device
    params = _to(params, dev)
    g = torch.Generator(device=dev).manual_seed(int(seed))
    s = model.simulate(params, snr, g)
    pred = model.net(model.features(s, params["b1"])).double()
    out = {
        "t1": relative_error(pred[:, 0], params["t1"].double()),
        "t2": relative_error(pred[:, 1], params["t2"].double()),
    }
    if not model.b1_map:
        out["b1"] = relative_error(pred[:, 3], params["b1"].double())
    return {k: v.cpu() for k, v in out.items()}


def _sweep_params(t1: float = 0.939, t2: float = 0.062) -> dict[str, torch.Tensor]:
    """The off-resonance sweep of paper 001 Fig. 5: theta -0.9 pi .. 0.89 pi, B1 1."""
    k = torch.arange(-90, 90, dtype=torch.float64)
    n = k.numel()
    return {
        "t1": torch.full((n,), t1, dtype=torch.float64),
        "t2": torch.full((n,), t2, dtype=torch.float64),
        "b1": torch.ones(n, dtype=torch.float64),
        "theta": k * 0.01 * math.pi,
    }


def _grid_params(size: int) -> dict[str, torch.Tensor]:
    from mrphys.relax.data import evaluation_grid

    t1, t2 = evaluation_grid(size)
    n = t1.numel()
    return {
        "t1": t1.reshape(-1),
        "t2": t2.reshape(-1),
        "b1": torch.ones(n, dtype=torch.float64),
        "theta": torch.zeros(n, dtype=torch.float64),
    }


# ------------------------------------------------------------------------------------------------
# Pulseq
# ------------------------------------------------------------------------------------------------


def protocol_sequence(protocol: Protocol, n_dummy: int = 200):
    """The protocol as one voxel-mode bSSFP :class:`~mrphys.physics.sequence.Sequence`: the
    acquisitions one after another, each :func:`mrphys.physics.sequence.bssfp` with its own flip
    angle and RF phase increment (``n_dummy`` dummy repetitions, one ADC)."""
    from mrphys.physics.sequence import Sequence, bssfp

    items: list = []
    flips = protocol.flip_angles().tolist()
    incs = protocol.phases().tolist()
    for f, inc in zip(flips, incs, strict=True):
        one = bssfp(tr=protocol.tr, te=protocol.te, flip=f, phase_increment=inc, n_dummy=n_dummy)
        items += one.items
    params = {
        "tr": protocol.tr,
        "te": protocol.te,
        "flips": flips,
        "phase_increments": incs,
        "n_dummy": n_dummy,
    }
    return Sequence(items, (protocol.n_cycles,), "bssfp-protocol", params)


# ------------------------------------------------------------------------------------------------
# fitting data acquired with a protocol
# ------------------------------------------------------------------------------------------------


def fit_with_protocol(
    model: ProtocolNetwork,
    protocol: Protocol,
    signals: torch.Tensor,
    b1: torch.Tensor | None,
    *,
    chunk: int = 1 << 15,
) -> dict[str, torch.Tensor]:
    """Maps from signals ``(M, K)`` acquired with ``protocol`` (checked against the network's).

    Returns ``{"t1", "t2" (s), "db0" (Hz, theta = -2 pi dB0 TR)[, "b1"]}`` each ``(M,)``
    float32 (``b1`` estimated by networks trained without a B1 map).
    """
    mine = model.protocol.protocol()
    check(
        mine.n_cycles == protocol.n_cycles,
        f"the network was trained for {mine.n_cycles} acquisitions but the protocol has "
        f"{protocol.n_cycles}.",
    )
    for name, a, b in (
        ("flip angles", mine.flip_angles(), protocol.flip_angles()),
        ("phase increments", torch.remainder(mine.phases(), 2 * math.pi),
         torch.remainder(protocol.phases(), 2 * math.pi)),
        ("TR", torch.tensor([mine.tr]), torch.tensor([protocol.tr])),
    ):  # fmt: skip
        d = torch.remainder(a - b + math.pi, 2 * math.pi) - math.pi if name[0] == "p" else a - b
        check(
            bool((d.abs() <= 1e-4 * b.abs().clamp_min(1e-3) + 1e-6).all()),
            f"the protocol's {name} differ from those the network was trained with.",
        )
    check(signals.shape[-1] == protocol.n_cycles, "signals must have K acquisitions last.")
    outs: dict[str, list[torch.Tensor]] = {"t1": [], "t2": [], "db0": []}
    if not model.b1_map:
        outs["b1"] = []
    for s in range(0, signals.shape[0], chunk):
        bb = None if b1 is None else b1[s : s + chunk]
        p = model.predict(signals[s : s + chunk].to(torch.complex128), bb).float().cpu()
        outs["t1"].append(p[:, 0])
        outs["t2"].append(p[:, 1])
        outs["db0"].append(-p[:, 2] / (2 * math.pi * protocol.tr))
        if not model.b1_map:
            outs["b1"].append(p[:, 3])
    return {k: torch.cat(v) if v else torch.zeros(0) for k, v in outs.items()}


def fit_protocol_to_folder(
    out: str | os.PathLike,
    input: str | os.PathLike | list[str],
    protocol_json: str | os.PathLike,
    model_path: str | os.PathLike,
    *,
    b1: str | os.PathLike | None = None,
    mask: str | os.PathLike | None = None,
    overwrite: bool = False,
    nii: bool = False,
) -> int:
    """``mrphys relax fit --protocol protocol.json --model network.pt``: maps into ``out``
    (``t1``, ``t2`` in ms, ``db0`` in Hz, ``b1`` when estimated, ``config.json``). ``input``: a
    complex 4-D NIfTI or one complex NIfTI per acquisition. Returns the number of voxels
    fitted."""
    import numpy as np

    from mrphys.io import load_json, output_dir, save_json, save_nifti_raw
    from mrphys.relax.inputs import _companion, _complex_input

    protocol = Protocol.from_record(load_json(protocol_json))
    model = load_protocol_network(model_path)
    check(
        not model.b1_map or b1 is not None,
        "b1 is required: the network was trained with a B1 map.",
    )
    data, aff = _complex_input(input, None, None)
    check(
        data.shape[3] == protocol.n_cycles,
        f"input has {data.shape[3]} acquisitions on its 4th axis but the protocol has "
        f"{protocol.n_cycles}.",
    )
    spatial = data.shape[:3]
    sel = np.ones(spatial, dtype=bool)
    if mask is not None:
        sel = _companion("mask", mask, spatial, aff) != 0
        check(bool(sel.any()), "mask selects no voxel.")
    b1_arr = None if (b1 is None or not model.b1_map) else _companion("b1", b1, spatial, aff)
    sig = torch.from_numpy(np.asarray(data)[sel].astype(np.complex64))
    check(bool(torch.isfinite(torch.view_as_real(sig)).all()), "input contains NaN values.")
    b1_t = None if b1_arr is None else torch.from_numpy(np.asarray(b1_arr)[sel].astype(np.float32))
    has = (sig != 0).any(-1)
    maps = fit_with_protocol(model, protocol, sig, b1_t)
    ext = ".nii" if nii else ".nii.gz"
    with output_dir(out, overwrite=overwrite) as tmp:
        for name, v in maps.items():
            arr = np.zeros(spatial, dtype=np.float32)
            scale = 1e3 if name in ("t1", "t2") else 1.0
            arr[sel] = torch.where(has, v, torch.zeros_like(v)).numpy() * scale
            save_nifti_raw(tmp / f"{name}{ext}", arr, aff)
        save_json(
            tmp / "config.json",
            {
                "command": "relax fit",
                "input": [str(i) for i in input] if isinstance(input, list) else str(input),
                "protocol": protocol.record(),
                "model": str(model_path),
                "b1": None if b1 is None else str(b1),
                "b1_map": model.b1_map,
                "voxels_fitted": int(has.sum()),
                "units": {"t1": "ms", "t2": "ms", "db0": "Hz", "b1": "relative"},
            },
        )
    return int(has.sum())


# ------------------------------------------------------------------------------------------------
# the end-to-end run (mrphys design protocol)
# ------------------------------------------------------------------------------------------------


@dataclass
class DesignResult:
    """What :func:`design_protocol` wrote."""

    protocol: Protocol
    metrics: dict[str, Any]
    files: list[str]
    seconds: float


def _comparisons(cfg: DesignConfig, best_flip: Protocol) -> dict[str, Protocol]:
    out = {f"paper-{k}": paper_protocol(k, cfg.tr) for k in (4, 6, 12)}
    if cfg.n_acq not in (4, 6, 12):
        out[f"paper-{cfg.n_acq}"] = paper_protocol(cfg.n_acq, cfg.tr)
    out[f"best-flip-{cfg.n_acq}"] = best_flip
    return out


def design_protocol(cfg: DesignConfig, out_dir: Path, *, progress: bool = False) -> DesignResult:
    """Learn a protocol (``cfg.objective``) and write ``protocol.json``, ``sequence.seq``,
    ``network.pt`` (network objective), ``metrics.json`` and figures into the folder
    ``out_dir`` (which must exist: the CLI passes its temporary output folder).

    ``metrics.json``: ``config``; ``tr_min_ms`` (the gradient-limited minimum); ``starts`` (one
    record per random start, for the spread); ``crlb`` (protocol name -> with / without B1 map
    mean and median bounds on a test set drawn apart from the training and validation samples);
    ``best_flip_curve``; for the network objective ``networks`` (protocol -> median absolute
    relative errors of T1 and T2 in % on an in vivo-like test set at ``snr``, and the largest
    error over the off-resonance sweep of paper 001 Fig. 5).
    """
    from mrphys import plot
    from mrphys.io import save_json
    from mrphys.physics.pulseq_io import write_seq

    t0 = time.perf_counter()
    test = crlb_samples(
        cfg.eval_samples, derived_seed(cfg.seed, 3, 2), cfg.distribution, b1_range=cfg.b1_range
    )
    val = crlb_samples(
        max(cfg.eval_samples // 4, 16),
        derived_seed(cfg.seed, 3, 1),
        cfg.distribution,
        b1_range=cfg.b1_range,
    )
    best_flip, curve = best_fixed_flip(cfg.n_acq, snr=cfg.snr, b1_map=True, samples=val, tr=cfg.tr)
    metrics: dict[str, Any] = {
        "config": plain_config(cfg),
        "tr_min_ms": cfg.tr_min * 1e3,
        "best_flip_deg": math.degrees(best_flip.flip),
        "best_flip_curve": [{"flip_deg": f, "objective": v} for f, v in curve],
    }
    model: ProtocolNetwork | None = None
    files = ["protocol.json", "sequence.seq", "metrics.json"]
    if cfg.objective == "crlb":
        learned, starts = learn_protocol_crlb(cfg, progress=progress)
        metrics["starts"] = starts
    else:
        starts = []
        best = None
        screen_set = crlb_samples(
            128, derived_seed(cfg.seed, 3, 3), cfg.distribution, b1_range=cfg.b1_range
        )
        ref = reference_bounds(cfg.n_acq, snr=cfg.snr, samples=screen_set, tr=cfg.tr)
        for s in range(cfg.starts):
            g = torch.Generator().manual_seed(derived_seed(cfg.seed, 1009, s))
            init = _screened_start(cfg, g, screen_set, ref).protocol()
            ck = out_dir / f".network-start{s}.pt"
            res = train_protocol_network(
                cfg, init, learn=True, checkpoint=ck, progress=progress, seed_offset=s
            )
            v = min(h["val_loss"] for h in res.history)
            p = res.model.protocol.protocol()
            starts.append({"start": s, "val_loss": v, **_angles(p), "seconds": res.seconds})
            if best is None or v < best[0]:
                if best is not None:
                    best[2].unlink(missing_ok=True)
                best = (v, res.model, ck)
            else:
                ck.unlink(missing_ok=True)
        assert best is not None
        model = best[1]
        best[2].rename(out_dir / "network.pt")
        files.append("network.pt")
        learned = model.protocol.protocol()
        metrics["starts"] = starts
    comps = _comparisons(cfg, best_flip)
    all_p = {"learned": learned, **comps}
    crlb: dict[str, Any] = {}
    for name, p in all_p.items():
        crlb[name] = {
            "with_b1_map": crlb_summary(p, snr=cfg.snr, b1_map=True, samples=test),
            "without_b1_map": crlb_summary(p, snr=cfg.snr, b1_map=False, samples=test),
            "relative_sar": relative_sar(p),
        }
    metrics["crlb"] = crlb
    metrics["crlb_note"] = (
        "relative Cramer-Rao std of a 1 s scan (std / T * sqrt(N TR)), mean and median over an "
        f"{cfg.distribution} test set ({cfg.eval_samples} tissues, B1 {cfg.b1_range[0]:g}-"
        f"{cfg.b1_range[1]:g}, theta "
        f"-0.9pi..0.9pi) at SNR "
        f"{cfg.snr:g}; inf = not identified"
    )
    ref = f"paper-{cfg.n_acq}"
    key = "with_b1_map" if cfg.b1_map else "without_b1_map"
    metrics["ratio_to_paper_with_b1_map"] = {
        t: crlb["learned"][key][f"crlb_{t}"] / crlb[ref]["with_b1_map"][f"crlb_{t}"]
        for t in ("t1", "t2")
    }
    # figures: the protocol, CRLB over (T1, T2) and over off-resonance
    fig_p = {"learned": learned, ref: comps[ref], "paper-12": comps["paper-12"]}
    plot.line_plot(
        out_dir / "protocol.png",
        list(range(1, cfg.n_acq + 1)),
        {
            "flip (deg)": learned.record()["flip_deg"],
            "increment / 10 (deg)": [v / 10 for v in learned.record()["phase_increment_deg"]],
        },
        "acquisition",
        "value",
        f"learned protocol ({'with' if cfg.b1_map else 'without'} B1 map)",
    )
    grid = _grid_params(40)
    sweep = _sweep_params()
    sweep_curves: dict[str, list[float]] = {}
    for name, p in fig_p.items():
        bm = cfg.b1_map if name == "learned" else True
        r1, r2 = crlb_terms(grid, snr=cfg.snr, b1_map=bm, tr=p.tr, flip=p.flip_angles(),
                            increments=p.phases())  # fmt: skip
        t1g, t2g = (v.reshape(40, 40) for v in (grid["t1"], grid["t2"]))
        plot.relax_error_maps(
            out_dir / f"crlb_grid_{name}.png", t1g, t2g,
            100 * r1.reshape(40, 40).detach(), 100 * r2.reshape(40, 40).detach(),
            f"{name}: relative CRLB std of a 1 s scan (%), SNR {cfg.snr:g}, B1 1, theta 0"
            + ("" if bm else ", no B1 map"),
        )  # fmt: skip
        files.append(f"crlb_grid_{name}.png")
        s1, s2 = crlb_terms(sweep, snr=cfg.snr, b1_map=bm, tr=p.tr, flip=p.flip_angles(),
                            increments=p.phases())  # fmt: skip
        sweep_curves[f"T1 {name}"] = (100 * s1).tolist()
        sweep_curves[f"T2 {name}"] = (100 * s2).tolist()
    theta_pi = (sweep["theta"] / math.pi).tolist()
    plot.line_plot(out_dir / "crlb_offresonance.png", theta_pi, sweep_curves, "theta / pi",
                   "relative CRLB std, 1 s scan (%)",
                   "T1 939 ms, T2 62 ms (paper 001 Fig. 5 sweep)")  # fmt: skip
    files += ["protocol.png", "crlb_offresonance.png"]
    if model is not None:
        metrics["networks"] = _network_table(cfg, model, comps, out_dir, files, progress)
    rec = learned.record() | {"b1_map": cfg.b1_map, "objective": cfg.objective}
    if model is not None:
        rec["method"] = cfg.method
    save_json(out_dir / "protocol.json", rec)
    write_seq(protocol_sequence(learned), out_dir / "sequence.seq")
    metrics["seconds"] = time.perf_counter() - t0
    save_json(out_dir / "metrics.json", metrics)
    return DesignResult(learned, metrics, sorted(set(files)), metrics["seconds"])


def _network_table(
    cfg: DesignConfig,
    model: ProtocolNetwork,
    comps: dict[str, Protocol],
    out_dir: Path,
    files: list[str],
    progress: bool,
) -> dict[str, Any]:
    """Median errors of the learned network and of networks trained (same budget, with a B1 map)
    on the fixed protocols with the same K and with 12 cycles; error maps and sweeps."""
    from mrphys import plot

    g = torch.Generator().manual_seed(derived_seed(cfg.seed, 3, 9))
    test = sample_parameters(20_000, "invivo", True, g, torch.float64)
    ref = f"paper-{cfg.n_acq}"
    nets: dict[str, ProtocolNetwork] = {"learned": model}
    fixed_cfg = DesignConfig(**{**asdict(cfg), "b1_map": True})
    for name in (ref, "paper-12"):
        nets[name] = train_protocol_network(
            fixed_cfg, comps[name], learn=False, progress=progress, seed_offset=100
        ).model
    table: dict[str, Any] = {}
    grid = _grid_params(40)
    sweep = _sweep_params()
    curves: dict[str, list[float]] = {}
    for name, net in nets.items():
        e = network_errors(net, test, cfg.snr, derived_seed(cfg.seed, 3, 10))
        sw = network_errors(net, sweep, math.inf, 0)
        row = {
            "b1_map": net.b1_map,
            "t1_median_abs_err_pct": float(e["t1"].abs().median()),
            "t2_median_abs_err_pct": float(e["t2"].abs().median()),
            "sweep_t1_max_abs_err_pct": float(sw["t1"].abs().max()),
            "sweep_t2_max_abs_err_pct": float(sw["t2"].abs().max()),
        }
        if "b1" in e:
            row["b1_median_abs_err_pct"] = float(e["b1"].abs().median())
        table[name] = row
        curves[f"T1 {name}"] = sw["t1"].tolist()
        curves[f"T2 {name}"] = sw["t2"].tolist()
        # RMS relative error over 8 noise draws per grid point
        reps = [network_errors(net, grid, cfg.snr, derived_seed(cfg.seed, 11, i)) for i in range(8)]
        rms1 = torch.stack([r["t1"] for r in reps]).pow(2).mean(0).sqrt().reshape(40, 40)
        rms2 = torch.stack([r["t2"] for r in reps]).pow(2).mean(0).sqrt().reshape(40, 40)
        t1g, t2g = (v.reshape(40, 40) for v in (grid["t1"], grid["t2"]))
        plot.relax_error_maps(
            out_dir / f"error_grid_{name}.png", t1g, t2g, rms1, rms2,
            f"{name} network: RMS relative error (%), SNR {cfg.snr:g}, B1 1, theta 0",
        )  # fmt: skip
        files.append(f"error_grid_{name}.png")
    theta_pi = (sweep["theta"] / math.pi).tolist()
    plot.line_plot(out_dir / "error_offresonance.png", theta_pi, curves, "theta / pi",
                   "relative error (%)", "networks, noise-free, T1 939 ms, T2 62 ms")  # fmt: skip
    files.append("error_offresonance.png")
    return table
