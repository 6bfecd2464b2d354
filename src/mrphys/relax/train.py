"""Training of SVNN / PINN relaxometry networks on simulated data (METHODS section 3).

Data are drawn on the fly (seeded) from one of the distributions in :mod:`mrphys.relax.data`:
``n_samples`` parameter sets, split 60/20/20 into training, validation and test. Noise at the
training SNR is drawn anew for every batch (paper: "within each training batch"). Adam, batch 128,
lr 2e-4, early stopping on the validation loss with patience 25, at most 300 epochs.

Losses:
- SVNN: MSE between the sigmoid outputs and the min-max scaled true parameters.
- PINN (no labels): the predicted parameters and the input B1 are run through the signal model and
  the configuration features; MSE against the input features (B1 excluded), both z-scored with
  the stored training statistics.

Checkpoints (``torch.save`` dict, written atomically after every epoch) hold the current and best
model, the optimiser, the config, the normalisation, epoch/step counters, history and the package
version; :func:`train` resumes from an existing checkpoint with the same config.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from mrphys import __version__
from mrphys.errors import MrphysError, check
from mrphys.relax.data import (
    DISTRIBUTIONS,
    Protocol,
    features,
    is_complex_method,
    sample_parameters,
    simulate_signals,
)
from mrphys.relax.networks import RelaxNet, build_network, model_features

log = logging.getLogger(__name__)

__all__ = ["TrainConfig", "TrainResult", "train", "load_model", "NETWORK_METHODS"]

NETWORK_METHODS = ("svnn", "pinn", "svnn-complex", "pinn-complex")


@dataclass
class TrainConfig:
    """Training settings. Times in s, flip in rad; ``snr = inf`` trains without noise."""

    method: str = "pinn"
    n_cycles: int = 12
    distribution: str = "uniform"
    snr: float = math.inf
    tr: float = 4.8e-3
    te: float = 2.4e-3
    flip: float = math.radians(15.0)
    n_samples: int = 400_000
    batch_size: int = 128
    lr: float = 2e-4
    max_epochs: int = 300
    patience: int = 25
    # learning-rate decay on a plateau: lr *= lr_decay after every lr_patience epochs without a
    # better validation loss (0 = off, the paper's constant lr)
    lr_patience: int = 0
    lr_decay: float = 0.5
    seed: int = 0
    max_seconds: float | None = None  # wall-time budget per call; training can be resumed

    def __post_init__(self) -> None:
        check(
            self.method in NETWORK_METHODS,
            f"method must be one of {NETWORK_METHODS}; got {self.method!r}.",
        )
        check(
            self.distribution in DISTRIBUTIONS,
            f"distribution must be one of {DISTRIBUTIONS}; got {self.distribution!r}.",
        )
        check(self.snr > 0, f"training SNR must be positive (inf for no noise); got {self.snr}.")
        check(self.n_samples >= 100, f"n_samples must be >= 100; got {self.n_samples}.")
        check(
            self.batch_size >= 1 and self.max_epochs >= 1 and self.patience >= 1,
            "batch_size, max_epochs and patience must be positive.",
        )
        check(self.lr_patience >= 0, f"lr_patience must be >= 0; got {self.lr_patience}.")
        check(0 < self.lr_decay < 1, f"lr_decay must lie in (0, 1); got {self.lr_decay}.")

    @property
    def protocol(self) -> Protocol:
        return Protocol(self.n_cycles, self.tr, self.te, self.flip)

    @property
    def complex(self) -> bool:
        return is_complex_method(self.method)

    def data_key(self) -> dict:
        """The fields that define the data and the model (must match to resume)."""
        d = asdict(self)
        for k in ("max_epochs", "patience", "max_seconds", "lr_patience", "lr_decay"):
            d.pop(k)
        return d


@dataclass
class TrainResult:
    model: RelaxNet
    config: TrainConfig
    history: list[dict] = field(default_factory=list)
    stop_reason: str = ""
    seconds: float = 0.0
    test_loss: float = math.nan


class _Data:
    """Simulated split: parameters, signals, features (float32)."""

    def __init__(self, cfg: TrainConfig, device: torch.device) -> None:
        g = torch.Generator().manual_seed(cfg.seed)  # CPU draws: same data on every device
        p = sample_parameters(cfg.n_samples, cfg.distribution, cfg.complex, g)
        sig = simulate_signals(p, cfg.protocol)
        n_tr = int(0.6 * cfg.n_samples)
        n_va = int(0.2 * cfg.n_samples)
        names = ["t1", "t2", "theta"] if cfg.complex else ["t1", "t2"]
        target = torch.stack([p[k] for k in names], dim=-1)
        parts = {
            "train": slice(0, n_tr),
            "val": slice(n_tr, n_tr + n_va),
            "test": slice(n_tr + n_va, None),
        }
        self.signals = {k: sig[s].to(device) for k, s in parts.items()}
        self.b1 = {k: p["b1"][s].to(device) for k, s in parts.items()}
        self.target = {k: target[s].to(device) for k, s in parts.items()}
        self.clean = {
            k: features(self.signals[k], self.b1[k], cfg.n_cycles, cfg.complex) for k in parts
        }
        # validation / test features at the training SNR, with fixed noise
        gn = torch.Generator().manual_seed(cfg.seed + 1)
        self.fixed = {}
        for k in ("val", "test"):
            if math.isinf(cfg.snr):
                self.fixed[k] = self.clean[k]
            else:
                noisy = features(
                    self.signals[k].cpu(),
                    self.b1[k].cpu(),
                    cfg.n_cycles,
                    cfg.complex,
                    snr=cfg.snr,
                    generator=gn,
                )
                self.fixed[k] = noisy.to(device)


def _loss(
    model: RelaxNet, cfg: TrainConfig, feats: torch.Tensor, target: torch.Tensor
) -> torch.Tensor:
    if cfg.method.startswith("svnn"):
        unit_t = (target - model.lo) / (model.hi - model.lo)
        return torch.mean((model.unit_output(feats) - unit_t) ** 2)
    pred = model(feats)
    sim = model_features(pred, feats[:, -1], cfg.protocol, cfg.complex)
    m, s = model.feat_mean[:-1], model.feat_std[:-1]
    return torch.mean(((sim - m) / s - (feats[:, :-1] - m) / s) ** 2)


@torch.no_grad()
def _eval_loss(model: RelaxNet, cfg: TrainConfig, feats, target, chunk: int = 65536) -> float:
    tot, n = 0.0, feats.shape[0]
    for s in range(0, n, chunk):
        tot += float(_loss(model, cfg, feats[s : s + chunk], target[s : s + chunk])) * min(
            chunk, n - s
        )
    return tot / n


def _adam(model: RelaxNet, lr: float) -> torch.optim.Optimizer:
    try:  # the fused kernel saves most of the per-step overhead of these tiny networks
        return torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(model.parameters(), lr=lr)


def _save(path: Path, ckpt: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(ckpt, tmp)
    os.replace(tmp, path)


def _config_from(d: dict) -> TrainConfig:
    return TrainConfig(**{k: v for k, v in d.items() if k in TrainConfig.__dataclass_fields__})


def train(
    cfg: TrainConfig,
    checkpoint: str | os.PathLike | None = None,
    *,
    device: torch.device | str = "cpu",
    resume: bool = True,
    progress: bool = False,
) -> TrainResult:
    """Train (or resume training of) a network.

    Args:
        cfg: settings.
        checkpoint: file written after every epoch; if it exists and ``resume``, training continues
            from it (its data settings must match ``cfg``).
        device: compute device.
        progress: show a tqdm bar over epochs.
    Returns:
        :class:`TrainResult` whose model holds the best (lowest validation loss) weights.
    """
    device = torch.device(device)
    t_start = time.perf_counter()
    torch.manual_seed(cfg.seed)  # default PyTorch layer initialisation, seeded
    model = build_network(cfg.method, cfg.distribution).to(device)
    opt = _adam(model, cfg.lr)
    data = _Data(cfg, device)
    state = {"epoch": 0, "step": 0, "best_val": math.inf, "bad_epochs": 0, "history": []}
    best_state = None
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and path.exists() and resume:
        ck = torch.load(path, map_location=device, weights_only=False)
        if _config_from(ck["config"]).data_key() != cfg.data_key():
            raise MrphysError(
                f"checkpoint {path} holds other training settings; "
                "use another --out or --overwrite."
            )
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        best_state = ck["best_model"]
        for k in state:
            state[k] = ck[k]
        log.info("resuming %s from epoch %d", path, state["epoch"])
    else:
        mean = data.clean["train"].mean(0)
        std = data.clean["train"].std(0)
        model.set_normalisation(mean, std)

    def checkpoint_dict() -> dict:
        return {
            "model": model.state_dict(),
            "best_model": best_state if best_state is not None else model.state_dict(),
            "optimizer": opt.state_dict(),
            "config": asdict(cfg),
            "normalisation": {"mean": model.feat_mean.cpu(), "std": model.feat_std.cpu()},
            "version": __version__,
            **state,
        }

    n_tr = data.signals["train"].shape[0]
    stop = ""
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(
            total=cfg.max_epochs, initial=state["epoch"], desc=f"train {cfg.method}", unit="epoch"
        )
    noisy = not math.isinf(cfg.snr)
    while True:
        if state["epoch"] >= cfg.max_epochs:
            stop = "max_epochs"
            break
        if state["bad_epochs"] >= cfg.patience:
            stop = "early_stopping"
            break
        if cfg.max_seconds is not None and time.perf_counter() - t_start > cfg.max_seconds:
            stop = "time_budget"
            break
        t_ep = time.perf_counter()
        ep = state["epoch"]
        g = torch.Generator().manual_seed(cfg.seed * 100_003 + ep)
        perm = torch.randperm(n_tr, generator=g).to(device)
        model.train()
        if noisy:
            gdev = torch.Generator(device=device).manual_seed(cfg.seed * 7919 + ep)
            sig_all, b1_all = data.signals["train"][perm], data.b1["train"][perm]
        else:
            feat_all = data.clean["train"][perm]
        tgt_all = data.target["train"][perm]
        run_loss = torch.zeros((), device=device)
        seen = 0
        for s in range(0, n_tr, cfg.batch_size):
            sl = slice(s, s + cfg.batch_size)
            if noisy:
                fb = features(
                    sig_all[sl], b1_all[sl], cfg.n_cycles, cfg.complex, snr=cfg.snr, generator=gdev
                )
            else:
                fb = feat_all[sl]
            loss = _loss(model, cfg, fb, tgt_all[sl])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            run_loss += loss.detach() * fb.shape[0]
            state["step"] += 1
            seen = s + fb.shape[0]
            if (
                cfg.max_seconds is not None
                and state["step"] % 32 == 0
                and time.perf_counter() - t_start > cfg.max_seconds
            ):
                break  # budget spent mid-epoch: validate and stop (recorded as a partial epoch)
        model.eval()
        val = _eval_loss(model, cfg, data.fixed["val"], data.target["val"])
        state["epoch"] = ep + 1
        if val < state["best_val"]:
            state["best_val"] = val
            state["bad_epochs"] = 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            state["bad_epochs"] += 1
            if cfg.lr_patience and state["bad_epochs"] % cfg.lr_patience == 0:
                for grp in opt.param_groups:  # saved with the optimiser: a resume keeps it
                    grp["lr"] *= cfg.lr_decay
        rec = {
            "epoch": ep + 1,
            "train_loss": float(run_loss) / max(seen, 1),
            "samples": seen,
            "val_loss": val,
            "lr": opt.param_groups[0]["lr"],
            "seconds": time.perf_counter() - t_ep,
        }
        state["history"].append(rec)
        log.info(
            "epoch %d train %.3e val %.3e (%.1f s)", ep + 1, rec["train_loss"], val, rec["seconds"]
        )
        if bar is not None:
            bar.update(1)
            bar.set_postfix(val=f"{val:.2e}")
        if path is not None:
            _save(path, checkpoint_dict())
    if bar is not None:
        bar.close()
    if path is not None:
        _save(path, {**checkpoint_dict(), "stop_reason": stop})
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    test = _eval_loss(model, cfg, data.fixed["test"], data.target["test"])
    return TrainResult(model, cfg, state["history"], stop, time.perf_counter() - t_start, test)


def load_model(
    path: str | os.PathLike, device: torch.device | str = "cpu"
) -> tuple[RelaxNet, TrainConfig]:
    """Load the best weights of a checkpoint; returns ``(model in eval mode, config)``."""
    p = Path(path)
    if not p.is_file():
        raise MrphysError(f"model checkpoint {p} does not exist.")
    try:
        ck = torch.load(p, map_location=device, weights_only=False)
        cfg = _config_from(ck["config"])
        model = build_network(cfg.method, cfg.distribution).to(device)
        model.load_state_dict(ck["best_model"])
    except MrphysError:
        raise
    except Exception as e:
        raise MrphysError(f"{p} is not an mrphys relax checkpoint ({type(e).__name__}).") from None
    model.eval()
    return model, cfg
