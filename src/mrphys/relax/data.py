"""Training and test data for pc-bSSFP relaxometry: protocol, parameter distributions, features.

Everything is simulated on the fly from the analytic signal model (:mod:`mrphys.physics.ssfp`);
nothing is read from disk. Units: s and rad inside (ms only in names that say so).

Distributions (METHODS section 3):

- ``uniform``: T1 ~ U(360, 2080) ms, T2 ~ U(20, 120) ms.
- ``extended``: T1 ~ U(360, 5000) ms, T2 ~ U(20, 2500) ms, pairs with T1 < T2 dropped.
- ``invivo``: a brain-like (T1, T2) density over the uniform box. The paper's density map is not
  published, so it is built here as a mixture, truncated to the uniform box (3 T literature values,
  bSSFP-era relaxometry, approximate):

  ===============  ======  =================  =================
  component        weight  T1 mean / sd (ms)  T2 mean / sd (ms)
  ===============  ======  =================  =================
  white matter     0.35    850 / 80           62 / 6
  cortical GM      0.25    1350 / 130         85 / 9
  deep GM          0.10    1150 / 100         68 / 7
  WM-GM ridge      0.25    on the segment WM mean -> GM mean, uniform position, sd 50 / 5
  floor            0.05    uniform over the box
  ===============  ======  =================  =================

  The ridge stands for partial-volume voxels between WM and GM, which give the in vivo histogram
  its elongated shape; the floor keeps every point of the box reachable. Draws outside the box
  are redrawn.

B1 ~ U(0.7, 1.3) for every distribution; theta ~ U(-0.9 pi, 0.9 pi) for complex models and 0 for
magnitude models.

Noise (METHODS 3): complex Gaussian with ``0.074 / (sqrt 2 SNR)`` per real/imaginary channel
(:func:`mrphys.physics.noise.sigma_relax`), added to the phase-corrected signals by
:func:`add_relax_noise`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from mrphys.errors import MrphysError, check
from mrphys.physics.noise import sigma_relax, standard_complex_normal
from mrphys.physics.ssfp import configurations, pc_bssfp_signal, phase_increments

__all__ = [
    "Protocol",
    "DISTRIBUTIONS",
    "METHODS_LIST",
    "NETWORK_METHODS",
    "THETA_MAX",
    "parameter_box",
    "sample_parameters",
    "t1_t2_log_density",
    "simulate_signals",
    "add_relax_noise",
    "features",
    "n_features",
    "is_complex_method",
    "evaluation_grid",
]

DISTRIBUTIONS = ("uniform", "extended", "invivo")
#: the relaxometry networks (magnitude and complex variants of the SVNN and the PINN)
NETWORK_METHODS = ("svnn", "pinn", "svnn-complex", "pinn-complex")
#: every relaxometry method: the one list the command line, training and fitting read
METHODS_LIST = ("miracle", "planet", *NETWORK_METHODS)
THETA_MAX = 0.9 * math.pi

_UNIFORM = ((0.360, 2.080), (0.020, 0.120))
_EXTENDED = ((0.360, 5.000), (0.020, 2.500))
B1_RANGE = (0.7, 1.3)

# (weight, T1 mean, T1 sd, T2 mean, T2 sd) in s; see module docstring
_INVIVO_BLOBS = (
    (0.35, 0.850, 0.080, 0.062, 0.006),
    (0.25, 1.350, 0.130, 0.085, 0.009),
    (0.10, 1.150, 0.100, 0.068, 0.007),
)
_RIDGE_W, _RIDGE_SD = 0.25, (0.050, 0.005)
_FLOOR_W = 0.05


@dataclass(frozen=True)
class Protocol:
    """pc-bSSFP protocol; times in s, angles in rad. Defaults: the paper (TR 4.8, TE 2.4, 15 deg).

    By default the ``n_cycles`` acquisitions share the flip angle ``flip`` and use the equally
    spaced RF phase increments ``pi (2j - 1) / N`` (:func:`mrphys.physics.ssfp.phase_increments`).
    A general protocol gives one increment (``increments``, rad) and/or one flip angle (``flips``,
    rad) per acquisition; build it with :meth:`custom`. ``flip`` then holds the mean flip angle
    (a summary only; :meth:`flip_angles` gives the per-acquisition values).
    """

    n_cycles: int = 12
    tr: float = 4.8e-3
    te: float = 2.4e-3
    flip: float = math.radians(15.0)
    increments: tuple[float, ...] | None = None
    flips: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        check(
            int(self.n_cycles) >= 3,
            f"the number of phase cycles must be >= 3; got {self.n_cycles}.",
        )
        check(0 < self.te < self.tr, f"TE must lie in (0, TR); got TE {self.te} s, TR {self.tr} s.")
        check(0 < self.flip < math.pi, f"flip angle must lie in (0, pi) rad; got {self.flip}.")
        for name, values in (("increments", self.increments), ("flips", self.flips)):
            if values is None:
                continue
            check(
                len(values) == int(self.n_cycles),
                f"{name} must give one value per acquisition ({self.n_cycles}); got {len(values)}.",
            )
            check(
                all(math.isfinite(float(v)) for v in values),
                f"{name} must be finite; got {list(values)}.",
            )
            object.__setattr__(self, name, tuple(float(v) for v in values))
        if self.flips is not None:
            check(
                all(0 < v < math.pi for v in self.flips),
                f"every flip angle must lie in (0, pi) rad; got {list(self.flips)}.",
            )

    @classmethod
    def custom(
        cls,
        increments: Sequence[float],
        flips: Sequence[float] | float,
        tr: float = 4.8e-3,
        te: float | None = None,
    ) -> Protocol:
        """A protocol with one RF phase increment (rad) and flip angle (rad) per acquisition.

        ``flips`` may be one number for all; ``te`` defaults to ``tr / 2``.
        """
        inc = tuple(float(v) for v in increments)
        fl = (float(flips),) * len(inc) if isinstance(flips, (int, float)) else tuple(flips)
        check(len(inc) >= 1, "a protocol needs at least one acquisition.")
        check(
            len(fl) == len(inc),
            f"give one flip angle per acquisition ({len(inc)}); got {len(fl)}.",
        )
        uniform = all(f == fl[0] for f in fl)
        return cls(
            n_cycles=len(inc),
            tr=float(tr),
            te=float(tr) / 2 if te is None else float(te),
            flip=fl[0] if uniform else float(sum(fl) / len(fl)),
            increments=inc,
            flips=None if uniform else fl,
        )

    @property
    def equally_spaced(self) -> bool:
        """True when the increments are the default ``pi (2j - 1) / N``."""
        if self.increments is None:
            return True
        ref = phase_increments(self.n_cycles).tolist()
        return all(abs(a - b) < 1e-9 for a, b in zip(self.increments, ref, strict=True))

    @property
    def uniform_flip(self) -> bool:
        """True when every acquisition has the flip angle ``flip``."""
        return self.flips is None or all(abs(f - self.flip) < 1e-12 for f in self.flips)

    @property
    def is_standard(self) -> bool:
        """Equally spaced increments and one flip angle: the protocol of the paper's methods."""
        return self.equally_spaced and self.uniform_flip

    def phases(
        self, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """The RF phase increments ``(N,)`` in rad."""
        if self.increments is None:
            return phase_increments(self.n_cycles, dtype=dtype, device=device)
        return torch.tensor(self.increments, dtype=dtype, device=device)

    def flip_angles(
        self, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """The nominal flip angle of each acquisition ``(N,)`` in rad."""
        if self.flips is None:
            return torch.full((self.n_cycles,), self.flip, dtype=dtype, device=device)
        return torch.tensor(self.flips, dtype=dtype, device=device)

    def signal_kwargs(self) -> dict:
        """Keyword arguments of :func:`mrphys.physics.ssfp.pc_bssfp_signal` for this protocol.

        The default protocol passes ``n_cycles`` and the scalar ``flip`` (bitwise the historical
        computation); a general one passes its ``increments`` and per-acquisition ``flip``.
        """
        kw: dict = {"tr": self.tr, "te": self.te}
        if self.increments is None:
            kw["n_cycles"] = self.n_cycles
        else:
            kw["increments"] = self.phases()
        kw["flip"] = self.flip if self.flips is None else self.flip_angles()
        return kw

    def scan_time(self) -> float:
        """Steady-state acquisition time per voxel line: ``N * TR`` in s (a relative measure)."""
        return self.n_cycles * self.tr

    def as_dict(self) -> dict:
        d = asdict(self)
        for k in ("increments", "flips"):
            if d[k] is not None:
                d[k] = list(d[k])
        return d

    def record(self) -> dict:
        """The protocol in the units of ``protocol.json``: ``tr_ms``, ``te_ms``, ``flip_deg`` and
        ``phase_increment_deg`` (lists, one per acquisition), ``n_cycles``, ``scan_time_s``."""
        return {
            "n_cycles": int(self.n_cycles),
            "tr_ms": self.tr * 1e3,
            "te_ms": self.te * 1e3,
            "flip_deg": [math.degrees(v) for v in self.flip_angles().tolist()],
            "phase_increment_deg": [math.degrees(v) for v in self.phases().tolist()],
            "scan_time_s": self.scan_time(),
        }

    @classmethod
    def from_record(cls, d: dict) -> Protocol:
        """Inverse of :meth:`record` (also accepts a scalar ``flip_deg`` and no increments).

        Raises :class:`~mrphys.errors.MrphysError` naming a missing or malformed key.
        """
        check(isinstance(d, dict), "a protocol record must be a JSON object.")
        for key in ("tr_ms", "flip_deg"):
            check(key in d, f"the protocol record has no {key!r}.")
        try:
            tr = float(d["tr_ms"]) * 1e-3
            te = float(d.get("te_ms", d["tr_ms"] / 2)) * 1e-3
            flips = d["flip_deg"]
            inc = d.get("phase_increment_deg")
            if inc is None:
                n = int(d.get("n_cycles", len(flips) if isinstance(flips, list) else 12))
                inc_rad = phase_increments(n).tolist()
            else:
                inc_rad = [math.radians(float(v)) for v in inc]
            if isinstance(flips, list):
                fl = [math.radians(float(v)) for v in flips]
            else:
                fl = math.radians(float(flips))
        except (TypeError, ValueError) as e:
            raise MrphysError(f"the protocol record holds a malformed value: {e}.") from None
        p = cls.custom(inc_rad, fl, tr=tr, te=te)
        if p.equally_spaced and p.uniform_flip:
            return cls(p.n_cycles, p.tr, p.te, p.flip)
        return p

    def key(self) -> str:
        """Short text key (used for cache file names)."""
        base = (
            f"N{self.n_cycles}-tr{self.tr * 1e3:.3f}-te{self.te * 1e3:.3f}"
            f"-fa{math.degrees(self.flip):.2f}"
        )
        if self.is_standard:
            return base
        digest = hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()
        return f"{base}-{digest[:10]}"


def is_complex_method(method: str) -> bool:
    return method.endswith("-complex")


def n_features(complex_: bool) -> int:
    """4 for magnitude models (|F-1|, |F0|, |F1|, B1), 6 for complex ones."""
    return 6 if complex_ else 4


def parameter_box(
    distribution: str, complex_: bool, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lower and upper bounds of the network outputs ``(T1 s, T2 s[, theta rad])``."""
    check(
        distribution in DISTRIBUTIONS,
        f"distribution must be one of {DISTRIBUTIONS}; got {distribution!r}.",
    )
    (t1lo, t1hi), (t2lo, t2hi) = _EXTENDED if distribution == "extended" else _UNIFORM
    lo, hi = [t1lo, t2lo], [t1hi, t2hi]
    if complex_:
        lo.append(-THETA_MAX)
        hi.append(THETA_MAX)
    return torch.tensor(lo, dtype=dtype), torch.tensor(hi, dtype=dtype)


def _uniform(n: int, lo: float, hi: float, g: torch.Generator, dtype, device) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g, dtype=dtype, device=device)


def _invivo_draw(n: int, g: torch.Generator, dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    weights = torch.tensor(
        [b[0] for b in _INVIVO_BLOBS] + [_RIDGE_W, _FLOOR_W], dtype=torch.float64
    )
    comp = torch.multinomial(
        weights, n, replacement=True, generator=g if g.device.type == "cpu" else None
    )
    comp = comp.to(device)
    z1 = torch.randn(n, generator=g, dtype=dtype, device=device)
    z2 = torch.randn(n, generator=g, dtype=dtype, device=device)
    u = torch.rand(n, generator=g, dtype=dtype, device=device)
    t1 = torch.empty(n, dtype=dtype, device=device)
    t2 = torch.empty(n, dtype=dtype, device=device)
    for k, (_, m1, s1, m2, s2) in enumerate(_INVIVO_BLOBS):
        sel = comp == k
        t1[sel] = m1 + s1 * z1[sel]
        t2[sel] = m2 + s2 * z2[sel]
    wm, gm = _INVIVO_BLOBS[0], _INVIVO_BLOBS[1]
    sel = comp == len(_INVIVO_BLOBS)
    t1[sel] = wm[1] + (gm[1] - wm[1]) * u[sel] + _RIDGE_SD[0] * z1[sel]
    t2[sel] = wm[3] + (gm[3] - wm[3]) * u[sel] + _RIDGE_SD[1] * z2[sel]
    sel = comp == len(_INVIVO_BLOBS) + 1
    (a, b), (c, d) = _UNIFORM
    t1[sel] = a + (b - a) * u[sel]
    t2[sel] = c + (d - c) * torch.rand(int(sel.sum()), generator=g, dtype=dtype, device=device)
    return t1, t2


def _gauss_legendre(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Gauss-Legendre nodes and weights on [-1, 1] (float64)."""
    import numpy as np

    nodes, weights = np.polynomial.legendre.leggauss(int(n))
    return torch.from_numpy(nodes), torch.from_numpy(weights)


def t1_t2_log_density(t1: torch.Tensor, t2: torch.Tensor, distribution: str) -> torch.Tensor:
    """Unnormalised log density of :func:`sample_parameters`' (T1, T2) in s (a prior for
    Bayesian estimators; the benchmark ``benchmarks/protocol_bayes.py`` uses it).

    ``"invivo"``: the sampler's mixture (Gaussian blobs, the ridge from the white- to the
    grey-matter mean with Gaussian spread, integrated over its position by 64-point
    Gauss-Legendre, and the uniform floor); ``"uniform"``: flat. Both truncated like the sampler
    (the box and T1 > T2): ``-inf`` outside. Shapes broadcast; returns their broadcast shape.
    """
    (a, b), (c, d) = _UNIFORM
    inside = (t1 >= a) & (t1 <= b) & (t2 >= c) & (t2 <= d) & (t1 > t2)
    if distribution == "uniform":
        dens = torch.ones_like(t1 + t2)
    elif distribution == "invivo":

        def gauss(x: torch.Tensor, m: float, s: float) -> torch.Tensor:
            return torch.exp(-0.5 * ((x - m) / s) ** 2) / (s * math.sqrt(2 * math.pi))

        dens = torch.zeros_like(t1 + t2)
        for w, m1, s1, m2, s2 in _INVIVO_BLOBS:
            dens = dens + w * gauss(t1, m1, s1) * gauss(t2, m2, s2)
        wm, gm = _INVIVO_BLOBS[0], _INVIVO_BLOBS[1]
        nodes, weights = _gauss_legendre(64)
        ridge = torch.zeros_like(dens)
        for u, w in zip(((nodes + 1) / 2).tolist(), (weights / 2).tolist(), strict=True):
            ridge = ridge + w * gauss(t1, wm[1] + (gm[1] - wm[1]) * u, _RIDGE_SD[0]) * gauss(
                t2, wm[3] + (gm[3] - wm[3]) * u, _RIDGE_SD[1]
            )
        dens = dens + _RIDGE_W * ridge + _FLOOR_W / ((b - a) * (d - c))
    else:
        raise MrphysError(f"distribution must be invivo or uniform; got {distribution!r}.")
    return torch.where(inside, dens.clamp_min(1e-300).log(), torch.full_like(dens, -math.inf))


def _draw_t1_t2(n: int, distribution: str, g: torch.Generator, dtype, device):
    (t1lo, t1hi), (t2lo, t2hi) = _EXTENDED if distribution == "extended" else _UNIFORM
    t1_parts, t2_parts, have = [], [], 0
    while have < n:  # rejection: a few passes at most
        m = max(2 * (n - have), 1024)
        if distribution == "invivo":
            t1, t2 = _invivo_draw(m, g, dtype, device)
        else:
            t1 = _uniform(m, t1lo, t1hi, g, dtype, device)
            t2 = _uniform(m, t2lo, t2hi, g, dtype, device)
        ok = (t1 >= t1lo) & (t1 <= t1hi) & (t2 >= t2lo) & (t2 <= t2hi) & (t1 > t2)
        t1_parts.append(t1[ok])
        t2_parts.append(t2[ok])
        have += int(ok.sum())
    return torch.cat(t1_parts)[:n], torch.cat(t2_parts)[:n]


def sample_parameters(
    n: int,
    distribution: str,
    complex_: bool,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float32,
) -> dict[str, torch.Tensor]:
    """Draw ``n`` tissue/field samples.

    Returns:
        ``{"t1": (n,) s, "t2": (n,) s, "b1": (n,), "theta": (n,) rad}`` on ``generator.device``.
    """
    check(
        distribution in DISTRIBUTIONS,
        f"distribution must be one of {DISTRIBUTIONS}; got {distribution!r}.",
    )
    device = generator.device
    t1, t2 = _draw_t1_t2(n, distribution, generator, dtype, device)
    b1 = _uniform(n, *B1_RANGE, generator, dtype, device)
    if complex_:
        theta = _uniform(n, -THETA_MAX, THETA_MAX, generator, dtype, device)
    else:
        theta = torch.zeros(n, dtype=dtype, device=device)
    return {"t1": t1, "t2": t2, "b1": b1, "theta": theta}


def simulate_signals(params: dict[str, torch.Tensor], protocol: Protocol) -> torch.Tensor:
    """Phase-corrected pc-bSSFP signals ``(n, N)`` (complex) for parameter dict of ``(n,)``."""
    return pc_bssfp_signal(
        params["t1"],
        params["t2"],
        params["b1"],
        params["theta"],
        **protocol.signal_kwargs(),
        remove_common_phase=True,
    )


def add_relax_noise(
    signals: torch.Tensor, snr: float | torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Signals plus complex Gaussian noise of ``0.074 / (sqrt 2 SNR)`` per channel (METHODS 3).

    The noise level is :func:`mrphys.physics.noise.sigma_relax` (complex std ``0.074 / SNR``);
    all real parts are drawn first, then all imaginary parts
    (:func:`~mrphys.physics.noise.standard_complex_normal` with ``draw="split"``).

    Args:
        signals: complex ``(..., N)`` phase-corrected signals (M0 = 1 scale).
        snr: scalar, or a real tensor broadcastable to ``signals.shape[:-1]`` (``inf`` = no noise).
        generator: seeded generator on ``signals.device``.
    Returns:
        complex ``(..., N)`` (``signals`` itself for a scalar ``inf``).
    """
    rdtype = signals.real.dtype
    if isinstance(snr, torch.Tensor):
        sig = sigma_relax(snr.to(rdtype), per_channel=True).unsqueeze(-1)
    else:
        sig = sigma_relax(float(snr), per_channel=True)
        if sig == 0.0:
            return signals
    z = standard_complex_normal(
        signals.shape, generator=generator, dtype=rdtype, device=signals.device, draw="split"
    )
    return signals + z * sig


def features(
    signals: torch.Tensor,
    b1: torch.Tensor,
    n_cycles: int | torch.Tensor,
    complex_: bool,
    *,
    snr: float | torch.Tensor = math.inf,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Network input features from phase-corrected signals.

    Args:
        signals: complex ``(..., N)`` (common phase removed).
        b1: ``(...)`` relative transmit field.
        n_cycles: N (equally spaced increments) or the increments ``(N,)`` in rad
            (``Protocol.phases()``).
        complex_: complex features ``Re F-1, Re F0, Re F1, -Im F-1, Im F1, B1`` instead of
            magnitudes ``|F-1|, |F0|, |F1|, B1``.
        snr: noise added to the signals first (``inf``: none).
    Returns:
        real ``(..., 4)`` or ``(..., 6)``.
    """
    if not (isinstance(snr, float) and math.isinf(snr)):
        signals = add_relax_noise(signals, snr, generator)
    f = configurations(signals, n_cycles)
    b1 = b1.to(f.real.dtype).unsqueeze(-1)
    if complex_:
        return torch.cat([f.real, -f.imag[..., :1], f.imag[..., 2:], b1], dim=-1)
    return torch.cat([f.abs(), b1], dim=-1)


def evaluation_grid(
    size: int = 200, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The evaluation grid: ``size x size`` T1 in [0.36, 2.08] s (rows) and T2 in [0.02, 0.12] s
    (columns); returns ``(t1, t2)`` each ``(size, size)``."""
    t1 = torch.linspace(*_UNIFORM[0], size, dtype=dtype, device=device)
    t2 = torch.linspace(*_UNIFORM[1], size, dtype=dtype, device=device)
    return torch.meshgrid(t1, t2, indexing="ij")
