"""Training the SPIN reconstruction network (AUTOMAP or FFT + U-Net) on simulated data.

Per the paper: loss = MSE + L1 activity penalty (1e-4), RMSProp (momentum 0, alpha 0.9), lr 5e-4
for ``decay_start`` epochs then divided by ``decay`` per epoch, batch 100, Glorot initialisation.
The loop is the package's one trainer (:class:`mrphys.train.Trainer`): checkpoints hold model,
optimiser, config, epoch, normalisation, history and package version, and resume exactly (the
shuffling of epoch ``e`` is seeded by ``(seed, e)``). Metrics per epoch go to JSON. The networks
come from :mod:`mrphys.nets`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from mrphys.design.data import Normalisation, SpinData
from mrphys.errors import MrphysError, check
from mrphys.metrics import psnr, ssim
from mrphys.train import (
    Record,
    Trainer,
    gather_rows,
    init_distributed,
    is_writer,
    local_part,
    plain_config,
    sync_gradients,
    world_size,
)
from mrphys.train import load_checkpoint as read_checkpoint
from mrphys.utils import check_seed, derived_seed

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Network and optimiser settings (the defaults are the paper's)."""

    net: str = "automap"  # "automap" or "unet"
    matrix: int = 64
    channels: int = 64  # AUTOMAP conv filters
    width: int = 16  # U-Net first-level channels
    init: str = "glorot"  # AUTOMAP: "glorot" (paper) or "dft"
    epochs: int = 300
    batch_size: int = 100
    lr: float = 5e-4
    alpha: float = 0.9  # RMSProp decay
    decay_start: int = 250
    decay: float = 1.01
    penalty: float = 1e-4
    seed: int = 0
    #: AUTOMAP FC1 learning-rate factor; None: 1 for Glorot, 1/N^2 for the DFT initialisation,
    #: whose FC1 weights are ~c/N^2 and would be wiped out by RMSProp's ~lr-sized first steps
    fc1_lr_scale: float | None = None

    def check(self) -> None:
        check(self.net in ("automap", "unet"), f"net must be automap or unet; got {self.net!r}.")
        check(self.epochs >= 1, f"epochs must be >= 1; got {self.epochs}.")
        check(self.batch_size >= 1, f"batch size must be >= 1; got {self.batch_size}.")
        check(
            0 < self.lr < float("inf"),
            f"learning rate must be a positive number; got {self.lr}.",
        )
        check_seed(self.seed)


def build_model(cfg: TrainConfig) -> nn.Module:
    """The network of ``cfg``: ``forward(k (B, N, N) complex) -> image (B, N, N)``.

    The initial weights are drawn from ``cfg.seed`` (the global random state is left as it was).
    """
    cfg.check()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        if cfg.net == "automap":
            from mrphys.nets.automap import Automap

            return Automap(cfg.matrix, cfg.channels, init=cfg.init, penalty=cfg.penalty)
        from mrphys.nets.unet import FFTUNet

        return FFTUNet(cfg.matrix, cfg.width, penalty=cfg.penalty)


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """Optimiser parameter groups, each with its ``lr_scale`` (see ``fc1_lr_scale``)."""
    scale = cfg.fc1_lr_scale
    if scale is None:
        scale = 1.0 / cfg.matrix**2 if (cfg.net == "automap" and cfg.init == "dft") else 1.0
    fc1 = getattr(model, "fc1", None)
    if fc1 is None or scale == 1.0:
        return [{"params": list(model.parameters()), "lr_scale": 1.0}]
    ids = {id(p) for p in fc1.parameters()}
    rest = [p for p in model.parameters() if id(p) not in ids]
    return [
        {"params": list(fc1.parameters()), "lr_scale": float(scale)},
        {"params": rest, "lr_scale": 1.0},
    ]


def lr_at(epoch: int, cfg: TrainConfig) -> float:
    """Learning rate of (0-based) ``epoch``: constant, then divided by ``decay`` per epoch."""
    return cfg.lr / cfg.decay ** max(0, epoch + 1 - cfg.decay_start)


@torch.no_grad()
def predict(model: nn.Module, k: torch.Tensor, batch: int = 100) -> torch.Tensor:
    """Network images ``(M, N, N)`` from normalised k-space ``(M, N, N)``, in batches.

    Under torchrun each rank predicts its part (:func:`mrphys.train.local_part`) and every rank
    gets all ``M`` images (the ranks hold the same weights)."""
    dev = next(model.parameters()).device
    model.eval()
    n = k.shape[0]
    k = k[local_part(n)]
    out = [model(k[i : i + batch].to(dev)).float() for i in range(0, k.shape[0], batch)]
    mine = torch.cat(out) if out else torch.zeros((0, *k.shape[1:]), device=dev)
    return gather_rows(mine, n).cpu()


def image_metrics(x: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """Test-set means of MSE, SSIM and PSNR (dB) of images ``(M, N, N)`` against targets.

    PSNR and SSIM use the data range of each target image (``mrphys.metrics`` default).
    """
    x, target = x.float(), target.float()
    return {
        "mse": float((x - target).square().mean()),
        "ssim": float(ssim(x, target).mean()),
        "psnr": float(psnr(x, target).mean()),
    }


@dataclass
class EpochRecord(Record):
    """One training epoch of the SPIN network (test metrics when a test set was given)."""

    #: epochs completed (1-based)
    epoch: int
    #: learning rate of the epoch (before the FC1 ``lr_scale``)
    lr: float
    #: mean over the epoch's batches of MSE + L1 activity penalty (image units squared)
    train_loss: float
    #: test-set mean squared error of the network images against the Eq. 13 targets
    mse: float | None = None
    #: test-set mean SSIM (dimensionless)
    ssim: float | None = None
    #: test-set mean PSNR in dB (data range of each target)
    psnr: float | None = None
    #: wall time of the epoch in s (rounded to ms)
    seconds: float = 0.0
    #: processes that trained the epoch (torchrun's world size; 1 without torchrun)
    world_size: int = 1


def load_checkpoint(
    path: str | Path, device: torch.device | str = "cpu"
) -> tuple[nn.Module, TrainConfig, Normalisation, dict]:
    """Model (eval mode), config, normalisation and the raw checkpoint dict from ``path``.

    Checkpoints of earlier package versions load too; nothing in the file is executed.
    """
    p = Path(path)
    if not p.is_file():
        raise MrphysError(f"checkpoint {p} does not exist.")
    state = read_checkpoint(p, map_location=device)
    try:
        cfg = TrainConfig(**state["config"])
        norm = Normalisation(**state["normalisation"])
    except (KeyError, TypeError) as e:
        raise MrphysError(f"{p} is not a mrphys SPIN checkpoint ({type(e).__name__}).") from None
    model = build_model(cfg).to(device)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError:
        raise MrphysError(f"{p} holds weights that do not fit its SPIN network.") from None
    model.eval()
    return model, cfg, norm, state


def train(
    cfg: TrainConfig,
    train_data: SpinData,
    test_data: SpinData | None,
    norm: Normalisation,
    out: Path | None = None,
    resume: str | Path | None = None,
    device: torch.device | str = "cpu",
    progress: bool = True,
    model: nn.Module | None = None,
    checkpoint: str | Path | None = None,
) -> tuple[nn.Module, list[EpochRecord]]:
    """Train the reconstruction network; returns ``(model in eval mode, history)``.

    Args:
        cfg: network and optimiser settings.
        train_data, test_data: data sets (test may be None: no test metrics).
        norm: input normalisation (stored in the checkpoint).
        out: folder for ``train_metrics.json`` (after every epoch) and, unless ``checkpoint``
            is given, ``checkpoint.pt``.
        resume: a checkpoint to continue from (its config must match ``cfg`` apart from epochs).
        model: start from this model instead of a new one (e.g. the DFT-initialised AUTOMAP).
        checkpoint: the file written after every epoch (default ``out / "checkpoint.pt"``); put
            it outside a temporary output folder to keep it when the run is interrupted.

    ``history`` has one :class:`EpochRecord` per epoch, resumed epochs included.

    Under ``torchrun`` (see :mod:`mrphys.train`) the ranks split every global batch of
    ``cfg.batch_size`` and average the gradients: the result is the one-process one; rank 0
    writes the files.
    """
    from mrphys.io import save_json

    cfg.check()
    check(
        train_data.acq.matrix == cfg.matrix,
        f"data matrix {train_data.acq.matrix} differs from the network matrix {cfg.matrix}.",
    )
    device = torch.device(device)
    init_distributed(device)
    model = (model if model is not None else build_model(cfg)).to(device)
    opt = torch.optim.RMSprop(param_groups(model, cfg), lr=cfg.lr, alpha=cfg.alpha, momentum=0.0)

    def write_metrics(t: Trainer) -> None:
        if is_writer():
            save_json(out / "train_metrics.json", t.history)

    trainer = Trainer(
        model,
        opt,
        plain_config(cfg),
        units=cfg.epochs,
        checkpoint=checkpoint if checkpoint is not None or out is None else out / "checkpoint.pt",
        normalisation=norm.as_dict(),
        schedule=lambda epoch: lr_at(epoch, cfg),
        resume_ignore=("epochs",),
        progress=progress,
        desc=f"training {cfg.net}",
        postfix=lambda r: {"loss": f"{r['train_loss']:.2e}", "psnr": f"{r.get('psnr') or 0:.1f}"},
        on_unit=write_metrics if out is not None else None,
    )
    if resume is not None:
        p = Path(resume)
        if not p.is_file():
            raise MrphysError(f"checkpoint {p} to resume from does not exist.")
        trainer.resume(p)

    k_train = norm.apply(train_data.kspace)
    y_train = train_data.target.float()
    k_test = norm.apply(test_data.kspace) if test_data is not None else None
    n = len(train_data)

    def epoch_fn(epoch: int) -> dict:
        t0 = time.perf_counter()
        model.train()
        gen = torch.Generator().manual_seed(derived_seed(cfg.seed, 100003, epoch))
        perm = torch.randperm(n, generator=gen)
        tot, nb = 0.0, 0
        for i in range(0, n, cfg.batch_size):
            glob = perm[i : i + cfg.batch_size]
            idx = glob[local_part(len(glob))]  # this rank's part of the global batch
            opt.zero_grad(set_to_none=True)
            loss = torch.zeros((), device=device)
            if len(idx):
                k = k_train[idx].to(device)
                y = y_train[idx].to(device)
                pred, pen = model.forward_with_penalty(k)
                loss = (pred - y).square().mean() + pen
                if len(idx) < len(glob):  # its share of the global-batch mean
                    loss = loss * (len(idx) / len(glob))
                loss.backward()
            loss = sync_gradients(model, loss)
            opt.step()
            trainer.step += 1
            tot += float(loss)
            nb += 1
        rec = {"epoch": epoch + 1, "lr": lr_at(epoch, cfg), "train_loss": tot / max(nb, 1)}
        if test_data is not None:
            rec.update(image_metrics(predict(model, k_test, cfg.batch_size), test_data.target))
        rec["seconds"] = round(time.perf_counter() - t0, 3)
        rec["world_size"] = world_size()
        return rec

    trainer.run(epoch_fn)
    model.eval()
    return model, [EpochRecord(**h) for h in trainer.history]
