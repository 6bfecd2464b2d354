"""Relaxometry maps from phase-cycled bSSFP volumes, default models, and a simulated test volume.

Arrays here are in NIfTI axis order, ``(X, Y, Z)`` for maps and ``(X, Y, Z, N)`` for the phase
cycles (4th axis in METHODS order ``phi_j = pi (2j - 1) / N``). Maps are returned in SI units
(T1, T2 in s; off-resonance in Hz, ``theta = -2 pi dB0 TR`` as in
:mod:`mrphys.physics.bloch`); the CLI writes ms.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from mrphys.errors import MrphysError, check
from mrphys.physics.ssfp import pc_bssfp_signal, remove_common_phase
from mrphys.relax.data import (
    METHODS_LIST,
    Protocol,
    add_relax_noise,
    features,
    is_complex_method,
)
from mrphys.relax.miracle import miracle_fit
from mrphys.relax.networks import RelaxNet
from mrphys.relax.train import TrainConfig, _config_from, load_model, train
from mrphys.resources import check_memory

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
    """Fitted relaxometry parameters, one value per voxel.

    The shape ``S`` is ``(M,)`` for :func:`fit_signals` and the volume's shape (e.g.
    ``(X, Y, Z)``) for :func:`fit_volume`.

    Attributes:
        t1: longitudinal relaxation time in s, real ``S`` (float32; 0 outside a mask).
        t2: transverse relaxation time in s, real ``S``.
        db0: off-resonance in Hz, real ``S``, ``theta = -2 pi dB0 TR``; None for magnitude
            methods (miracle, svnn, pinn), which do not estimate it.
        no_signal: bool ``S``, True for voxels (inside the mask) whose phase cycles are all 0:
            they are not fitted and their maps are 0 (:func:`fit_volume`; None from
            :func:`fit_signals`).
    """

    t1: torch.Tensor
    t2: torch.Tensor
    db0: torch.Tensor | None = None
    no_signal: torch.Tensor | None = None

    def as_dict(self) -> dict[str, torch.Tensor]:
        """``{"t1", "t2"[, "db0"]}``: the maps that are present, by name."""
        out = {"t1": self.t1, "t2": self.t2}
        if self.db0 is not None:
            out["db0"] = self.db0
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
) -> RelaxMaps:
    """Fit T1, T2 (and off-resonance for complex methods) voxel by voxel, vectorised.

    Args:
        signals: complex ``(M, N)`` phase-cycle signals (any common phase; it is removed here).
        b1: ``(M,)`` relative transmit field.
        method: miracle, svnn, pinn, svnn-complex or pinn-complex.
        model: the trained network for network methods.
        chunk: voxels per batch; default 32,768 for networks on the CPU (the hidden activations
            stay in cache: 2x faster than 262,144 on a 2-core EPYC), 262,144 otherwise.
        correct_phase: remove each voxel's common phase first (off only for signals that are
            already corrected, as in the Monte Carlo evaluation).
    Returns:
        :class:`RelaxMaps` of shape ``(M,)``: ``t1``, ``t2`` in s, ``db0`` in Hz for complex
        methods (None otherwise).
    """
    check(method in METHODS_LIST, f"method must be one of {METHODS_LIST}; got {method!r}.")
    n = protocol.n_cycles
    check(signals.shape[-1] == n, f"signals have {signals.shape[-1]} phase cycles; expected {n}.")
    cplx = is_complex_method(method)
    if chunk is None:
        net_on_cpu = model is not None and method != "miracle" and model.lo.device.type == "cpu"
        chunk = 1 << 15 if net_on_cpu else 1 << 18
    out: dict[str, list[torch.Tensor]] = {"t1": [], "t2": []}
    if cplx:
        out["db0"] = []
    for s in range(0, signals.shape[0], chunk):
        sig = signals[s : s + chunk]
        if correct_phase and cplx:  # magnitudes do not depend on the common phase
            sig = remove_common_phase(sig)
        bb = b1[s : s + chunk]
        if method == "miracle":
            f = features(sig.to(torch.complex128), bb.double(), n, False)
            mf = miracle_fit(f[:, :3], f[:, 3], tr=protocol.tr, flip=protocol.flip)
            out["t1"].append(mf.t1.float())
            out["t2"].append(mf.t2.float())
            continue
        check(model is not None, f"method {method} needs a trained model.")
        dev = model.lo.device
        f = features(sig.to(dev, torch.complex64), bb.to(dev, torch.float32), n, cplx)
        p = model.predict(f)
        out["t1"].append(p[:, 0].to(signals.device))
        out["t2"].append(p[:, 1].to(signals.device))
        if cplx:
            # theta = -2 pi dB0 TR (the sign of mrphys.physics.bloch)
            out["db0"].append((-p[:, 2] / (2 * math.pi * protocol.tr)).to(signals.device))
    return RelaxMaps(**{k: torch.cat(v) if v else torch.zeros(0) for k, v in out.items()})


def fit_volume(
    signals: torch.Tensor,
    b1: torch.Tensor,
    method: str,
    protocol: Protocol,
    model: RelaxNet | None = None,
    mask: torch.Tensor | None = None,
    *,
    chunk: int | None = None,
) -> RelaxMaps:
    """Fit every voxel of a volume (inside ``mask``) that has signal.

    Voxels whose phase cycles are all exactly 0 (zero padding, an empty volume) carry no
    information: they are not fitted, their maps are 0, a warning is logged and
    ``RelaxMaps.no_signal`` marks them.

    Args:
        signals: complex ``(*S, N)``.
        b1: real ``(*S)``.
        mask: ``(*S)`` (non-zero = fit) or None (all voxels).
    Returns:
        :class:`RelaxMaps` of shape ``S``: ``t1``, ``t2`` (s), for complex methods ``db0`` (Hz);
        0 outside the mask and where there is no signal (``no_signal``).
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
    fit = fit_signals(flat, b1f, method, protocol, model, chunk=chunk)

    def full(v: torch.Tensor) -> torch.Tensor:
        if idx is None:
            return v.float().reshape(shape)
        out = torch.zeros(shape.numel(), dtype=torch.float32, device=signals.device)
        out[idx] = v.float()
        return out.reshape(shape)

    maps = {k: full(v) for k, v in fit.as_dict().items()}
    return RelaxMaps(**maps, no_signal=no_signal)


def cache_dir() -> Path:
    """Folder for default models: ``$MRPHYS_CACHE``, else ``$XDG_CACHE_HOME/mrphys``, else
    ``~/.cache/mrphys``."""
    if os.environ.get("MRPHYS_CACHE"):
        return Path(os.environ["MRPHYS_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mrphys"


def default_model(
    method: str,
    protocol: Protocol,
    *,
    device: torch.device | str = "cpu",
    seed: int = 0,
    progress: bool = True,
) -> tuple[RelaxNet, Path]:
    """The cached default network for a protocol, trained on first use (uniform distribution,
    noise-free, at most :data:`DEFAULT_MODEL_EPOCHS` epochs; minutes on a CPU, so ``progress``
    shows a tqdm bar over the epochs by default). Returns ``(model, checkpoint path)``.
    """
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
