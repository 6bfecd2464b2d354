"""Relaxometry maps from phase-cycled bSSFP volumes, default models, and a simulated test volume.

Arrays here are in NIfTI axis order, ``(X, Y, Z)`` for maps and ``(X, Y, Z, N)`` for the phase
cycles (4th axis in METHODS order ``phi_j = pi (2j - 1) / N``). Maps are returned in SI units
(T1, T2 in s; off-resonance in Hz, ``theta = -2 pi dB0 TR`` as in
:mod:`mrphys.physics.bloch`); the CLI writes ms.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, fields
from pathlib import Path

import torch

from mrphys.errors import MrphysError, check
from mrphys.physics.ssfp import pc_bssfp_signal, remove_common_phase
from mrphys.relax.data import (
    METHODS_LIST,
    NETWORK_METHODS,
    Protocol,
    add_relax_noise,
    features,
    is_complex_method,
)
from mrphys.relax.miracle import miracle_fit
from mrphys.relax.networks import RelaxNet
from mrphys.relax.planet import planet_fit
from mrphys.relax.train import TrainConfig, _config_from, load_model, train
from mrphys.relax.uncertainty import (
    MAX_RESIDUAL,
    crb_configurations,
    crb_full,
    noise_from_fit,
    refine_fit,
    resimulate,
)
from mrphys.resources import check_memory
from mrphys.utils import cache_dir  # the one rule for cache folders (issue 18)

log = logging.getLogger(__name__)

__all__ = [
    "RelaxMaps",
    "fit_signals",
    "fit_volume",
    "default_model",
    "cache_dir",
    "simulate_volume",
    "DEFAULT_MODEL_EPOCHS",
]

#: epochs for a default model trained on first use (early stopping may end it sooner)
DEFAULT_MODEL_EPOCHS = 60
#: peak bytes of :func:`simulate_volume` per voxel and phase cycle (measured: 82-93 on the CPU,
#: complex128 signals, noise and their temporaries) and per voxel (the float64 maps and fields)
SIMULATE_BYTES_PER_SAMPLE = 96
SIMULATE_BYTES_PER_VOXEL = 128
#: simulated samples for a default model (the paper's 400,000, split 60/20/20)
DEFAULT_MODEL_SAMPLES = 400_000


@dataclass
class RelaxMaps:
    """Fitted relaxometry parameters and how far to trust them, one value per voxel.

    A flat record of tensors (or None), every one of shape ``S``: ``(M,)`` for
    :func:`fit_signals` and the volume's shape (e.g. ``(X, Y, Z)``) for :func:`fit_volume`.
    Outside a mask and where there is no signal every map is 0 (``quality`` False).

    Attributes:
        t1: longitudinal relaxation time in s, real ``S`` (float32).
        t2: transverse relaxation time in s, real ``S``.
        db0: off-resonance in Hz, real ``S``, ``theta = -2 pi dB0 TR``; None for magnitude
            methods (miracle, svnn, pinn), which do not estimate it.
        no_signal: bool ``S``, True for voxels (inside the mask) whose phase cycles are all 0:
            they are not fitted and their maps are 0 (:func:`fit_volume`; None from
            :func:`fit_signals`).
        residual: relative misfit of the re-simulated signal ``||S - S_fit|| / ||S||``
            (dimensionless, :func:`mrphys.relax.uncertainty.resimulate`); None when the trust
            maps were not asked for (``trust=False``).
        quality: bool ``S``: the fit converged, lies inside the method's parameter box (not on
            its edge) and its residual is at most ``max_residual`` (default
            :data:`mrphys.relax.uncertainty.MAX_RESIDUAL`, 0.1).
        t1_sd, t2_sd: standard deviation (uncertainty) of T1 and T2 in s: Cramer-Rao bounds at
            the estimated noise level, or a heteroscedastic network's own prediction
            (:mod:`mrphys.relax.uncertainty`); ``inf`` where the data do not determine them.
    """

    t1: torch.Tensor
    t2: torch.Tensor
    db0: torch.Tensor | None = None
    no_signal: torch.Tensor | None = None
    residual: torch.Tensor | None = None
    quality: torch.Tensor | None = None
    t1_sd: torch.Tensor | None = None
    t2_sd: torch.Tensor | None = None

    def as_dict(self) -> dict[str, torch.Tensor]:
        """``{"t1", "t2"[, "db0"]}``: the parameter maps that are present, by name."""
        out = {"t1": self.t1, "t2": self.t2}
        if self.db0 is not None:
            out["db0"] = self.db0
        return out

    def maps(self) -> dict[str, torch.Tensor]:
        """Every field that is present (not None), by name: the parameter maps and the trust
        maps."""
        return {
            f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None
        }


#: the parameter box of the quality mask for methods without a trained box (MIRACLE, PLANET):
#: T1 in [50 ms, 5 s], T2 in [5 ms, 2.5 s] (s)
FIT_BOX = ((0.05, 5.0), (0.005, 2.5))
#: a network estimate within this fraction of its box width from an edge counts as on the edge
BOX_MARGIN = 1e-3


def _fit_chunk(
    sig: torch.Tensor,
    bb: torch.Tensor,
    method: str,
    protocol: Protocol,
    model: RelaxNet | None,
) -> dict[str, torch.Tensor]:
    """One chunk of :func:`fit_signals`: ``t1``, ``t2`` (s), ``theta`` (rad, or absent),
    ``ok`` (bool), optional network ``t1_sd``, ``t2_sd``; all ``(m,)``."""
    n = protocol.n_cycles
    phases = n if protocol.equally_spaced else protocol.phases()
    if method == "miracle":
        f = features(sig.to(torch.complex128), bb.double(), phases, False)
        mf = miracle_fit(f[:, :3], f[:, 3], tr=protocol.tr, flip=protocol.flip)
        return {"t1": mf.t1, "t2": mf.t2, "ok": torch.isfinite(mf.t1) & torch.isfinite(mf.t2)}
    if method == "planet":
        pf = planet_fit(sig, bb, tr=protocol.tr, flip=protocol.flip, phases=protocol.phases())
        return {"t1": pf.t1, "t2": pf.t2, "theta": pf.theta, "ok": pf.ok}
    check(model is not None, f"method {method} needs a trained model.")
    cplx = is_complex_method(method)
    dev = model.lo.device
    f = features(sig.to(dev, torch.complex64), bb.to(dev, torch.float32), phases, cplx)
    p = model.predict(f).to(sig.device)
    k = 3 if cplx else 2
    out = {"t1": p[:, 0], "t2": p[:, 1], "ok": torch.isfinite(p[:, :k]).all(-1)}
    if cplx:
        out["theta"] = p[:, 2]
    lo, hi = model.lo.to(sig.device), model.hi.to(sig.device)
    margin = BOX_MARGIN * (hi[:2] - lo[:2])
    out["in_box"] = ((p[:, :2] > lo[:2] + margin) & (p[:, :2] < hi[:2] - margin)).all(-1)
    if p.shape[1] > k:  # heteroscedastic outputs: log standard deviation in box widths
        out["t1_sd"] = p[:, k].exp() * (hi[0] - lo[0])
        out["t2_sd"] = p[:, k + 1].exp() * (hi[1] - lo[1])
    return out


def fit_signals(
    signals: torch.Tensor,
    b1: torch.Tensor,
    method: str,
    protocol: Protocol,
    model: RelaxNet | None = None,
    *,
    chunk: int | None = None,
    correct_phase: bool = True,
    trust: bool = False,
    noise_sd: float | None = None,
    max_residual: float = MAX_RESIDUAL,
    refine: int = 0,
) -> RelaxMaps:
    """Fit T1, T2 (and off-resonance for complex methods and PLANET) voxel by voxel, vectorised.

    Args:
        signals: complex ``(M, N)`` phase-cycle signals (any common phase; it is removed here).
        b1: ``(M,)`` relative transmit field.
        method: one of :data:`mrphys.relax.data.METHODS_LIST` (miracle, planet, svnn, pinn,
            svnn-complex, pinn-complex).
        model: the trained network for network methods.
        chunk: voxels per batch; default 32,768 for magnitude and 8,192 for complex networks on
            the CPU (the hidden activations stay in cache: 2x faster than 262,144 on a 2-core
            EPYC), 262,144 otherwise.
        correct_phase: remove each voxel's common phase first (off only for signals that are
            already corrected, as in the Monte Carlo evaluation).
        trust: also compute ``residual``, ``quality``, ``t1_sd`` and ``t2_sd``
            (:mod:`mrphys.relax.uncertainty`).
        noise_sd: noise standard deviation per real channel on the scale of ``signals`` for the
            uncertainty; default: estimated from the residuals of the fitted voxels.
        max_residual: the largest residual the quality mask accepts.
        refine: Levenberg-Marquardt steps of the full-signal least squares in T1, T2, theta and
            the complex M0 from the method's estimate (:func:`mrphys.relax.uncertainty.refine_fit`;
            0: none). A network followed by a few steps is a network-initialised model fit: on
            noise-free data it removes the network's approximation error.
    Returns:
        :class:`RelaxMaps` of shape ``(M,)``: ``t1``, ``t2`` in s, ``db0`` in Hz for complex
        methods and PLANET (None otherwise), the trust maps when ``trust``.
    """
    check(method in METHODS_LIST, f"method must be one of {METHODS_LIST}; got {method!r}.")
    n = protocol.n_cycles
    check(signals.shape[-1] == n, f"signals have {signals.shape[-1]} phase cycles; expected {n}.")
    if method == "planet":
        check(
            protocol.uniform_flip,
            "PLANET needs one flip angle for every phase cycle; this protocol varies it.",
        )
    cplx = is_complex_method(method)
    if chunk is None:
        net_on_cpu = (
            model is not None and method in NETWORK_METHODS and model.lo.device.type == "cpu"
        )
        # CPU networks: the hidden activations should stay in cache (256-wide complex networks:
        # 8,192 voxels, 1.4x faster than 32,768; the 64-wide magnitude networks: 32,768)
        chunk = (1 << 13 if cplx else 1 << 15) if net_on_cpu else 1 << 18
    parts: dict[str, list[torch.Tensor]] = {}
    for s in range(0, signals.shape[0], chunk):
        sig = signals[s : s + chunk]
        if correct_phase and cplx:  # magnitudes do not depend on the common phase
            sig = remove_common_phase(sig)
        for k, v in _fit_chunk(sig, b1[s : s + chunk], method, protocol, model).items():
            parts.setdefault(k, []).append(v)
    res = {k: torch.cat(v) for k, v in parts.items()}
    if refine > 0 and signals.shape[0]:
        _refine(res, signals, b1, protocol, refine)
    t1 = res.get("t1", torch.zeros(0)).float()
    t2 = res.get("t2", torch.zeros(0)).float()
    db0 = None
    if "theta" in res:  # theta = -2 pi dB0 TR (the sign of mrphys.physics.bloch)
        db0 = (-res["theta"] / (2 * math.pi * protocol.tr)).float()
    maps = RelaxMaps(t1=t1, t2=t2, db0=db0)
    if trust and signals.shape[0]:
        _add_trust(maps, res, signals, b1, method, protocol, noise_sd, max_residual)
    return maps


def _refine(
    res: dict[str, torch.Tensor],
    signals: torch.Tensor,
    b1: torch.Tensor,
    protocol: Protocol,
    iterations: int,
    chunk: int = 1 << 13,
) -> None:
    """Replace ``res``'s T1, T2 (and theta) by their least-squares refinement, in place."""
    out: dict[str, list[torch.Tensor]] = {"t1": [], "t2": [], "theta": []}
    for s in range(0, signals.shape[0], chunk):
        sl = slice(s, s + chunk)
        th = res["theta"][sl] if "theta" in res else None
        t1, t2 = res["t1"][sl].double(), res["t2"][sl].double()
        sim = resimulate(signals[sl], b1[sl], t1, t2, th, protocol)
        r = refine_fit(
            signals[sl], b1[sl], t1, t2, sim["theta"], sim["m0"], protocol, iterations=iterations
        )
        for k in out:
            out[k].append(r[k])
    for k, v in out.items():
        if k in res:
            res[k] = torch.cat(v).to(res[k].dtype)


def _add_trust(
    maps: RelaxMaps,
    res: dict[str, torch.Tensor],
    signals: torch.Tensor,
    b1: torch.Tensor,
    method: str,
    protocol: Protocol,
    noise_sd: float | None,
    max_residual: float,
    chunk: int = 1 << 13,
) -> None:
    """Residual, quality mask and uncertainty (module :mod:`mrphys.relax.uncertainty`)."""
    m = signals.shape[0]
    sims: dict[str, list[torch.Tensor]] = {}
    for s in range(0, m, chunk):
        sl = slice(s, s + chunk)
        th = res["theta"][sl] if "theta" in res else None
        r = resimulate(signals[sl], b1[sl], res["t1"][sl], res["t2"][sl], th, protocol)
        for k, v in r.items():
            sims.setdefault(k, []).append(v)
    sim = {k: torch.cat(v) for k, v in sims.items()}
    t1, t2 = res["t1"].double(), res["t2"].double()
    if "in_box" in res:
        in_box = res["in_box"]
    else:
        (a, b), (c, d) = FIT_BOX
        in_box = (t1 >= a) & (t1 <= b) & (t2 >= c) & (t2 <= d)
    ok = res["ok"] & in_box
    fitted = ok & torch.isfinite(sim["sq"])
    maps.residual = sim["residual"].float()
    maps.quality = ok & (sim["residual"] <= max_residual)
    if "t1_sd" in res:  # a heteroscedastic network
        maps.t1_sd, maps.t2_sd = res["t1_sd"].float(), res["t2_sd"].float()
        return
    sigma = noise_sd
    if sigma is None:
        sel = fitted & torch.isfinite(sim["m0"].abs())
        sigma = noise_from_fit(
            signals[sel], b1[sel], t1[sel], t2[sel], sim["theta"][sel], sim["m0"][sel], protocol
        )
        log.info("noise std per real channel estimated from the residuals: %.4g", sigma)
    sd1 = torch.full((m,), math.inf, dtype=torch.float64, device=signals.device)
    sd2 = torch.full_like(sd1, math.inf)
    sel = (fitted & torch.isfinite(sim["m0"].abs()) & (sim["m0"].abs() > 0)).nonzero().squeeze(1)
    if sigma == 0:  # noise-free data: exact
        sd1.zero_()
        sd2.zero_()
    # no noise estimate (no voxel fitted): the uncertainty stays unknown (inf)
    for s in range(0, sel.numel() if sigma > 0 else 0, chunk):
        ix = sel[s : s + chunk]
        args = (t1[ix], t2[ix], b1[ix], sim["theta"][ix], sim["m0"][ix], sigma, protocol)
        if method == "planet":
            sd1[ix], sd2[ix] = crb_full(*args)
        else:
            sd1[ix], sd2[ix] = crb_configurations(*args, complex_=is_complex_method(method))
    maps.t1_sd = sd1.float()
    maps.t2_sd = sd2.float()


def fit_volume(
    signals: torch.Tensor,
    b1: torch.Tensor,
    method: str,
    protocol: Protocol,
    model: RelaxNet | None = None,
    mask: torch.Tensor | None = None,
    *,
    chunk: int | None = None,
    trust: bool = True,
    noise_sd: float | None = None,
    max_residual: float = MAX_RESIDUAL,
) -> RelaxMaps:
    """Fit every voxel of a volume (inside ``mask``) that has signal.

    Voxels whose phase cycles are all exactly 0 (zero padding, an empty volume) carry no
    information: they are not fitted, their maps are 0, a warning is logged and
    ``RelaxMaps.no_signal`` marks them.

    Args:
        signals: complex ``(*S, N)``.
        b1: real ``(*S)``.
        mask: ``(*S)`` (non-zero = fit) or None (all voxels).
        trust, noise_sd, max_residual: the trust maps, as for :func:`fit_signals` (on by
            default here).
    Returns:
        :class:`RelaxMaps` of shape ``S``: ``t1``, ``t2`` (s), for complex methods and PLANET
        ``db0`` (Hz), the trust maps; 0 (``quality`` False) outside the mask and where there is
        no signal (``no_signal``).
    """
    shape = signals.shape[:-1]
    check(b1.shape == shape, f"B1 has shape {tuple(b1.shape)}; expected {tuple(shape)}.")
    check(
        mask is None or mask.shape == shape,
        f"mask has shape {tuple(mask.shape) if mask is not None else None} but the signals have "
        f"{tuple(shape)} voxels; expected the same shape.",
    )
    has_signal = (signals != 0).any(-1)
    inside = torch.ones_like(has_signal) if mask is None else (mask != 0)
    no_signal = inside & ~has_signal
    keep = inside & has_signal
    n_empty = int(no_signal.sum())
    if n_empty:
        log.warning(
            "%d of %d voxels to fit have no signal (every phase cycle is 0); their maps are 0 "
            "and they are marked as no_signal.",
            n_empty,
            int(inside.sum()),
        )
    flat = signals.reshape(-1, signals.shape[-1])
    b1f = b1.reshape(-1)
    idx = None if bool(keep.all()) else keep.reshape(-1).nonzero().squeeze(1)
    if idx is not None:
        flat, b1f = flat[idx], b1f[idx]
    fit = fit_signals(
        flat,
        b1f,
        method,
        protocol,
        model,
        chunk=chunk,
        trust=trust,
        noise_sd=noise_sd,
        max_residual=max_residual,
    )

    def full(v: torch.Tensor) -> torch.Tensor:
        dtype = torch.bool if v.dtype == torch.bool else torch.float32
        if idx is None:
            return v.to(dtype).reshape(shape)
        out = torch.zeros(shape.numel(), dtype=dtype, device=signals.device)
        out[idx] = v.to(dtype)
        return out.reshape(shape)

    maps = {k: full(v) for k, v in fit.maps().items()}
    return RelaxMaps(**maps, no_signal=no_signal)


#: the protocol the shipped default models were trained for (the paper's; N in 4, 6, 12)
SHIPPED_PROTOCOL = {"tr": 4.8e-3, "te": 2.4e-3, "flip": math.radians(15.0)}
SHIPPED_CYCLES = (4, 6, 12)


def shipped_model_path(method: str, n_cycles: int) -> Path:
    """Where the package keeps its default model for ``method`` and ``n_cycles`` (paper
    protocol): ``mrphys/data/relax-<method>-N<n>.pt``."""
    return Path(__file__).resolve().parent.parent / "data" / f"relax-{method}-N{n_cycles}.pt"


def save_shipped_model(path: Path, model: RelaxNet, cfg: TrainConfig, info: dict) -> None:
    """Write a slim default-model file: best weights, config, package version and the training
    record ``info`` (plain values only, readable with ``torch.load(weights_only=True)``)."""
    import mrphys
    from mrphys.io import atomic_file
    from mrphys.train import plain_config

    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    ck = {
        "model": state,
        "best_model": state,
        "config": plain_config(cfg),
        "version": mrphys.__version__,
        "stop_reason": "shipped",
        "info": info,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        torch.save(ck, tmp)


def _shipped_model(
    method: str, protocol: Protocol, device: torch.device | str
) -> tuple[RelaxNet, Path] | None:
    """The shipped model for ``method`` and ``protocol``, or None when the package has none."""
    same = all(abs(getattr(protocol, k) - v) <= 1e-6 * abs(v) for k, v in SHIPPED_PROTOCOL.items())
    path = shipped_model_path(method, protocol.n_cycles)
    if not (same and path.is_file()):
        return None
    try:
        model, cfg = load_model(path, device)
    except MrphysError as e:
        log.warning("shipped model %s is not usable (%s)", path, e)
        return None
    if cfg.method != method or cfg.n_cycles != protocol.n_cycles:
        return None
    return model, path


def default_model(
    method: str,
    protocol: Protocol,
    *,
    device: torch.device | str = "cpu",
    seed: int = 0,
    progress: bool = True,
) -> tuple[RelaxNet, Path]:
    """The default network for a protocol: the one shipped in the package for the paper protocol
    (TR 4.8 ms, TE 2.4 ms, 15 deg; 4, 6 or 12 cycles; :func:`shipped_model_path`), else the
    cached one, trained on first use (uniform distribution, noise-free, at most
    :data:`DEFAULT_MODEL_EPOCHS` epochs; minutes on a CPU, so ``progress`` shows a tqdm bar over
    the epochs by default). Returns ``(model, checkpoint path)``.
    """
    shipped = _shipped_model(method, protocol, device)
    if shipped is not None:
        return shipped
    path = cache_dir() / "relax" / f"{method}-{protocol.key()}-uniform-s{seed}.pt"
    cfg = TrainConfig(
        method=method,
        n_cycles=protocol.n_cycles,
        tr=protocol.tr,
        te=protocol.te,
        flip=protocol.flip,
        distribution="uniform",
        max_epochs=DEFAULT_MODEL_EPOCHS,
        n_samples=DEFAULT_MODEL_SAMPLES,
        seed=seed,
    )
    resume = False
    if path.is_file():
        resume, done = _cached_state(path, cfg)
        if done:
            try:
                model, _ = load_model(path, device)
                return model, path
            except MrphysError as e:
                log.warning("%s Training the default model anew.", e)
                resume = False
    log.warning(
        "training the default %s model for %s (first use; cached in %s)",
        method,
        protocol.key(),
        path,
    )
    # a cache file that cannot be continued is replaced when the first epoch is written
    res = train(cfg, path, device=device, resume=resume, progress=progress)
    return res.model, path


def _cached_state(path: Path, cfg: TrainConfig) -> tuple[bool, bool]:
    """``(resumable, finished)`` for a default-model cache file: it can be continued when it is
    a readable checkpoint of ``cfg``'s data settings, and is finished when it also ended its
    training under this package version. A file that is broken, holds anything but tensors and
    plain values (never run) or other settings gets a warning and neither."""
    import mrphys
    import mrphys.train

    try:
        ck = mrphys.train.load_checkpoint(path)
        same = _config_from(ck["config"]).data_key() == cfg.data_key()
    except MrphysError as e:
        log.warning("%s Training the default model anew.", e)
        return False, False
    except Exception as e:  # a config of other fields or types: not a default model
        log.warning("default model %s is not usable (%s); training anew", path, type(e).__name__)
        return False, False
    if not same:
        log.warning("default model %s holds other settings; training anew", path)
        return False, False
    return True, bool(ck.get("stop_reason")) and ck.get("version") == mrphys.__version__


def _smooth_fields(
    nx: int, ny: int, nz: int, dtype=torch.float32
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x = torch.linspace(-1, 1, nx, dtype=dtype)[:, None, None]
    y = torch.linspace(-1, 1, ny, dtype=dtype)[None, :, None]
    z = torch.linspace(-1, 1, nz, dtype=dtype)[None, None, :] if nz > 1 else torch.zeros(1, 1, 1)
    # transmit field: centre-bright bowl, 0.77 .. 1.15 (typical 3 T head)
    b1 = 1.15 - 0.15 * (x**2 + y**2) - 0.04 * (z + 1)
    # off-resonance: linear + quadratic shim residual, within +-75 Hz (|theta| < 0.73 pi)
    db0 = 35.0 * x - 20.0 * y + 20.0 * (x**2 - y**2) + 10.0 * z
    # receive phase: smooth, removed by the common-phase correction
    rx = 0.8 * x + 0.5 * y * y
    return b1.expand(nx, ny, nz), db0.expand(nx, ny, nz), rx.expand(nx, ny, nz)


def simulate_volume(
    protocol: Protocol,
    *,
    matrix: int = 128,
    n_slices: int = 4,
    snr: float = 50.0,
    seed: int = 0,
    field_t: float = 3.0,
    device: torch.device | str = "cpu",
) -> dict[str, torch.Tensor]:
    """A brain-like pc-bSSFP test volume from the Gach MR Shepp-Logan phantom.

    The central slice is repeated ``n_slices`` times; the B1, B0 and receive-phase fields vary
    smoothly in all three directions. Noise: ``sigma = 0.074 / (sqrt(2) SNR)`` per channel on the
    M0 = 1 scale (METHODS 3), also in the background.

    The volume is computed on ``device`` (the noise is drawn there, so numbers depend on it) and
    returned on the CPU. A volume whose estimated peak memory
    (:data:`SIMULATE_BYTES_PER_SAMPLE` per voxel and phase cycle) exceeds the available memory
    is refused before any work (:func:`mrphys.resources.check_memory`).

    Returns (NIfTI order):
        ``signals`` complex64 ``(X, Y, Z, N)``; ``b1`` ``(X, Y, Z)``; true ``t1``, ``t2`` (s),
        ``db0`` (Hz), ``rho`` and the tissue ``mask`` (bool), all ``(X, Y, Z)``.
    """
    from mrphys.tissue import gach_shepp_logan

    check(snr > 0, f"SNR must be positive; got {snr}.")
    n_vox = int(matrix) * int(matrix) * int(n_slices)
    check_memory(
        n_vox * (SIMULATE_BYTES_PER_SAMPLE * protocol.n_cycles + SIMULATE_BYTES_PER_VOXEL),
        f"a simulated {matrix}x{matrix}x{n_slices} volume with {protocol.n_cycles} phase cycles",
        "--matrix, --slices or --phase-cycles",
    )
    ph = gach_shepp_logan(matrix, field_t=field_t, dtype=torch.float64).to(device=device)
    # phantom maps are (Y, X); NIfTI order is (X, Y)
    rho2, t12, t22 = (m.transpose(0, 1) for m in (ph.rho, ph.t1, ph.t2))
    nx, ny, nz = matrix, matrix, n_slices
    rho = rho2[:, :, None].expand(nx, ny, nz)
    t1 = t12[:, :, None].expand(nx, ny, nz)
    t2 = t22[:, :, None].expand(nx, ny, nz)
    b1, db0, rx = (f.to(device) for f in _smooth_fields(nx, ny, nz, torch.float64))
    mask = (rho > 0) & (t1 > 0) & (t2 > 0)
    theta = -2 * math.pi * db0 * protocol.tr  # sign convention of mrphys.physics.bloch
    s = pc_bssfp_signal(
        torch.where(mask, t1, torch.ones_like(t1)),
        torch.where(mask, t2, torch.full_like(t2, 0.1)),
        b1,
        theta,
        **protocol.signal_kwargs(),
        m0=torch.where(mask, rho, torch.zeros_like(rho)),
    )
    s = s * torch.polar(torch.ones_like(rx), rx).unsqueeze(-1)
    g = torch.Generator(device=s.device).manual_seed(seed)
    s = add_relax_noise(s, snr, g)
    out = {
        "signals": s.to(torch.complex64),
        "b1": b1.float().contiguous(),
        "t1": torch.where(mask, t1, 0).float(),
        "t2": torch.where(mask, t2, 0).float(),
        "db0": torch.where(mask, db0, 0).float(),
        "rho": rho.float().contiguous(),
        "mask": mask,
    }
    return {k: v.cpu() for k, v in out.items()}


def check_model_protocol(cfg: TrainConfig, method: str, protocol: Protocol, where: str) -> None:
    """Raise if a checkpoint does not fit the method and protocol of the data."""
    if cfg.method != method:
        raise MrphysError(f"model {where} is a {cfg.method} network, not {method}.")
    if cfg.n_cycles != protocol.n_cycles:
        raise MrphysError(
            f"model {where} was trained for {cfg.n_cycles} phase cycles but the input has "
            f"{protocol.n_cycles}."
        )
    for name, a, b, unit in (
        ("TR", cfg.tr * 1e3, protocol.tr * 1e3, "ms"),
        ("TE", cfg.te * 1e3, protocol.te * 1e3, "ms"),
        ("flip angle", math.degrees(cfg.flip), math.degrees(protocol.flip), "deg"),
    ):
        if abs(a - b) > 1e-3 * max(abs(b), 1e-9):
            raise MrphysError(
                f"model {where} was trained for {name} {a:g} {unit} but the protocol has "
                f"{b:g} {unit}."
            )
