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

The loop is the package's one trainer (:class:`mrphys.train.Trainer`): a checkpoint written
atomically after every epoch holds the current and best model, the optimiser, the config, the
normalisation, epoch/step counters, history and the package version; :func:`train` resumes from
an existing checkpoint with the same data settings, bitwise as if it had not stopped.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from mrphys import train as ddp  # torchrun data parallel (issue 18)
from mrphys.errors import MrphysError, check
from mrphys.relax import data as relax_data
from mrphys.relax.data import DISTRIBUTIONS, Protocol, features, is_complex_method
from mrphys.relax.networks import RelaxNet, build_network, model_features
from mrphys.resources import check_memory, check_time
from mrphys.train import Record, Trainer, load_checkpoint, plain_config, seed_everything
from mrphys.utils import check_seed, derived_seed

log = logging.getLogger(__name__)

__all__ = [
    "NETWORK_METHODS",
    "EpochRecord",
    "TrainConfig",
    "TrainResult",
    "TrainingData",
    "adam",
    "load_model",
    "train",
    "training_loss",
]

NETWORK_METHODS = ("svnn", "pinn", "svnn-complex", "pinn-complex")

#: repetition times a bSSFP protocol can have (ms): below 1 ms no RF pulse and readout fit, and
#: the simulated signals (and training) break down
TR_RANGE_MS = (1.0, 100.0)
#: bytes per training sample and phase cycle (complex128 simulation, complex64 signals, features)
TRAIN_BYTES_PER_SAMPLE_CYCLE = 64
#: a lower bound on the training time per sample and epoch (s): measured 35 us (svnn) to 150 us
#: (pinn-complex) on one core of a 2-core EPYC
TRAIN_SECONDS_PER_SAMPLE_EPOCH = 2e-5

#: settings that may change when a run is resumed (they do not define the data or the model)
_RESUMABLE = ("max_epochs", "patience", "max_seconds", "lr_patience", "lr_decay")


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
    # SVNN only: also predict the standard deviations of T1 and T2 (Gaussian likelihood loss)
    heteroscedastic: bool = False

    def __post_init__(self) -> None:
        check(
            self.method in NETWORK_METHODS,
            f"method must be one of {NETWORK_METHODS}; got {self.method!r}.",
        )
        check(
            not self.heteroscedastic or self.method.startswith("svnn"),
            f"heteroscedastic outputs need labels: an svnn method, not {self.method}.",
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
        check(
            math.isfinite(self.lr) and self.lr > 0, f"lr must be a positive number; got {self.lr}."
        )
        check(
            self.max_seconds is None or (math.isfinite(self.max_seconds) and self.max_seconds > 0),
            f"max_seconds must be a positive number of seconds (or None); got {self.max_seconds}.",
        )
        lo, hi = TR_RANGE_MS
        check(
            lo <= self.tr * 1e3 <= hi,
            f"TR must lie in [{lo:g}, {hi:g}] ms for a bSSFP protocol; got {self.tr * 1e3:g} ms.",
        )
        check_seed(self.seed)

    def check_resources(self) -> None:
        """Refuse a training run whose data cannot fit in memory, or whose ``max_epochs`` would
        take more than a week (unless ``max_seconds`` bounds the call), before any work."""
        check_memory(
            self.n_samples * (TRAIN_BYTES_PER_SAMPLE_CYCLE * self.n_cycles + 256),
            f"training data of {self.n_samples} samples with {self.n_cycles} phase cycles",
            "--samples or --phase-cycles",
        )
        if self.max_seconds is None:
            seconds = 0.6 * self.n_samples * self.max_epochs * TRAIN_SECONDS_PER_SAMPLE_EPOCH
            what = f"training {self.max_epochs} epochs of {int(0.6 * self.n_samples)} samples"
            check_time(seconds / 3600, what, "--samples or --max-epochs (or set --max-minutes)")

    @property
    def protocol(self) -> Protocol:
        return Protocol(self.n_cycles, self.tr, self.te, self.flip)

    @property
    def complex(self) -> bool:
        return is_complex_method(self.method)

    def data_key(self) -> dict:
        """The fields that define the data and the model (must match to resume)."""
        d = asdict(self)
        for k in _RESUMABLE:
            d.pop(k)
        return d


@dataclass(eq=True)
class EpochRecord(Record):
    """One training epoch."""

    #: epochs completed (1-based)
    epoch: int
    #: mean training loss over the epoch's samples (dimensionless: z-scored or unit-box MSE)
    train_loss: float
    #: training samples seen (fewer than the training split when the time budget cut the epoch)
    samples: int
    #: loss on the validation split (fixed noise at the training SNR)
    val_loss: float
    #: learning rate after the epoch (after any plateau decay)
    lr: float
    #: wall time of the epoch in s
    seconds: float


@dataclass
class TrainResult(Record):
    """A finished (or paused) training run."""

    #: the network with the best (lowest validation loss) weights, in eval mode
    model: RelaxNet
    config: TrainConfig
    #: one record per epoch, resumed epochs included
    history: list[EpochRecord] = field(default_factory=list)
    #: ``max_epochs``, ``early_stopping`` or ``time_budget``
    stop_reason: str = ""
    #: wall time of this call in s
    seconds: float = 0.0
    #: loss of the best weights on the test split
    test_loss: float = math.nan

    def to_dict(self) -> dict:
        """History, stop reason, seconds and test loss (the model is left out)."""
        return {
            "config": plain_config(self.config),
            "history": [h.to_dict() for h in self.history],
            "stop_reason": self.stop_reason,
            "seconds": self.seconds,
            "test_loss": self.test_loss,
            "world_size": ddp.world_size(),
        }


class TrainingData:
    """Simulated split ``train``/``val``/``test`` (float32, on ``device``).

    Attributes (dicts keyed by split): ``signals`` ``(M, n_cycles)`` complex, ``b1`` ``(M,)``,
    ``target`` ``(M, 2)`` (T1, T2 in s) or ``(M, 3)`` (with theta in rad), ``clean`` noise-free
    features ``(M, F)``; ``fixed`` (``val``, ``test``): features with fixed noise at the
    training SNR.
    """

    def __init__(self, cfg: TrainConfig, device: torch.device) -> None:
        g = torch.Generator().manual_seed(cfg.seed)  # CPU draws: same data on every device
        p = relax_data.sample_parameters(cfg.n_samples, cfg.distribution, cfg.complex, g)
        sig = relax_data.simulate_signals(p, cfg.protocol)
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
        gn = torch.Generator().manual_seed(derived_seed(cfg.seed, 1, 1))
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


def training_loss(
    model: RelaxNet, cfg: TrainConfig, feats: torch.Tensor, target: torch.Tensor
) -> torch.Tensor:
    """The method's loss on a batch: features ``(B, F)``, true parameters ``(B, 2 or 3)``.

    SVNN: MSE of the unit-box outputs; PINN: MSE of the z-scored features re-simulated from the
    predicted parameters (the target is not used).
    """
    if cfg.method.startswith("svnn"):
        k = target.shape[-1]
        unit_t = (target - model.lo[:k]) / (model.hi[:k] - model.lo[:k])
        unit = model.unit_output(feats)
        if not cfg.heteroscedastic:
            return torch.mean((unit - unit_t) ** 2)
        # Gaussian negative log-likelihood of T1 and T2 in box widths (theta: squared error)
        log_sd = model.scale(unit)[:, k:]
        z = (unit[:, :2] - unit_t[:, :2]) * torch.exp(-log_sd)
        nll = torch.mean(0.5 * z * z + log_sd)
        return nll + (torch.mean((unit[:, 2:k] - unit_t[:, 2:]) ** 2) if k > 2 else 0.0)
    pred = model(feats)
    sim = model_features(pred, feats[:, -1], cfg.protocol, cfg.complex)
    m, s = model.feat_mean[:-1], model.feat_std[:-1]
    return torch.mean(((sim - m) / s - (feats[:, :-1] - m) / s) ** 2)


@torch.no_grad()
def _eval_loss(model: RelaxNet, cfg: TrainConfig, feats, target, chunk: int = 65536) -> float:
    tot, n = 0.0, feats.shape[0]
    for s in range(0, n, chunk):
        part = training_loss(model, cfg, feats[s : s + chunk], target[s : s + chunk])
        tot += float(part) * min(chunk, n - s)
    return tot / n


def adam(model: RelaxNet, lr: float) -> torch.optim.Optimizer:
    """Adam on the model's parameters (the fused kernel where this PyTorch has it)."""
    try:  # the fused kernel saves most of the per-step overhead of these tiny networks
        return torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(model.parameters(), lr=lr)


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
    cfg.check_resources()
    device = torch.device(device)
    ddp.init_distributed(device)  # torchrun: ranks split each global batch (mrphys.train)
    t_start = time.perf_counter()
    seed_everything(cfg.seed)  # default PyTorch layer initialisation, seeded
    model = build_network(cfg.method, cfg.distribution, cfg.heteroscedastic).to(device)
    opt = adam(model, cfg.lr)
    path = Path(checkpoint) if checkpoint is not None else None
    config = plain_config(cfg)
    if not cfg.heteroscedastic:  # checkpoints from before the option resume unchanged
        config.pop("heteroscedastic")
    trainer = Trainer(
        model,
        opt,
        config,
        units=cfg.max_epochs,
        checkpoint=path,
        monitor="val_loss",
        patience=cfg.patience,
        lr_patience=cfg.lr_patience,
        lr_decay=cfg.lr_decay,
        max_seconds=cfg.max_seconds,
        started=t_start,
        resume_ignore=_RESUMABLE,
        progress=progress,
        desc=f"train {cfg.method}",
        postfix=lambda r: {"val": f"{r['val_loss']:.2e}"},
    )
    resumed = path is not None and path.exists() and resume
    if resumed:  # before the data are simulated: a bad checkpoint is refused at once
        trainer.resume(path)
    data = TrainingData(cfg, device)
    if not resumed:
        model.set_normalisation(data.clean["train"].mean(0), data.clean["train"].std(0))
    trainer.normalisation = {"mean": model.feat_mean.cpu(), "std": model.feat_std.cpu()}

    n_tr = data.signals["train"].shape[0]
    noisy = not math.isinf(cfg.snr)

    def epoch(ep: int) -> dict:
        t_ep = time.perf_counter()
        g = torch.Generator().manual_seed(derived_seed(cfg.seed, 100_003, ep))
        perm = torch.randperm(n_tr, generator=g).to(device)
        model.train()
        if noisy:
            gdev = torch.Generator(device=device).manual_seed(derived_seed(cfg.seed, 7919, ep))
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
            n_b, part = fb.shape[0], ddp.local_part(fb.shape[0])  # torchrun: this rank's share
            loss = torch.zeros((), device=device)
            opt.zero_grad(set_to_none=True)
            if part.stop > part.start:
                loss = training_loss(model, cfg, fb[part], tgt_all[sl][part])
                if part.stop - part.start < n_b:  # its share of the global-batch mean
                    loss = loss * ((part.stop - part.start) / n_b)
                loss.backward()
            loss = ddp.sync_gradients(model, loss)
            opt.step()
            run_loss += loss.detach() * fb.shape[0]
            trainer.step += 1
            seen = s + fb.shape[0]
            if trainer.step % 32 == 0 and trainer.out_of_time():
                break  # budget spent mid-epoch: validate and stop (recorded as a partial epoch)
        model.eval()
        val = _eval_loss(model, cfg, data.fixed["val"], data.target["val"])
        return {
            "epoch": ep + 1,
            "train_loss": float(run_loss) / max(seen, 1),
            "samples": seen,
            "val_loss": val,
            "seconds": time.perf_counter() - t_ep,
        }

    stop = trainer.run(epoch)
    trainer.load_best()
    model.eval()
    test = _eval_loss(model, cfg, data.fixed["test"], data.target["test"])
    history = [EpochRecord(**h) for h in trainer.history]
    return TrainResult(model, cfg, history, stop, time.perf_counter() - t_start, test)


def load_model(
    path: str | os.PathLike, device: torch.device | str = "cpu"
) -> tuple[RelaxNet, TrainConfig]:
    """Load the best weights of a checkpoint; returns ``(model in eval mode, config)``.

    Checkpoints of earlier package versions load too. Raises :class:`MrphysError` for a missing
    file, one that is not a relax checkpoint, or one holding anything but tensors and plain
    values (nothing in it is executed).
    """
    p = Path(path)
    if not p.is_file():
        raise MrphysError(f"model checkpoint {p} does not exist.")
    ck = load_checkpoint(p, map_location=device)
    try:
        cfg = _config_from(ck["config"])
        model = build_network(cfg.method, cfg.distribution, cfg.heteroscedastic).to(device)
        model.load_state_dict(ck["best_model"])
    except MrphysError:
        raise
    except Exception as e:
        raise MrphysError(f"{p} is not an mrphys relax checkpoint ({type(e).__name__}).") from None
    model.eval()
    return model, cfg


def _config_from(d: dict) -> TrainConfig:
    return TrainConfig(**{k: v for k, v in d.items() if k in TrainConfig.__dataclass_fields__})
