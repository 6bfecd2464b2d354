"""Training the SPIN reconstruction network (AUTOMAP or FFT + U-Net) on simulated data.

Per the paper: loss = MSE + L1 activity penalty (1e-4), RMSProp (momentum 0, alpha 0.9), lr 5e-4
for ``decay_start`` epochs then divided by ``decay`` per epoch, batch 100, Glorot initialisation.
Checkpoints hold model, optimiser, config, epoch, normalisation and package version, and resume
exactly (the shuffling of epoch ``e`` is seeded by ``(seed, e)``). Metrics per epoch go to JSON.

Note: this application module uses the networks of :mod:`mrphys.recon` (AUTOMAP lives there by
the project layout).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn

from mrphys import __version__
from mrphys.design.data import Normalisation, SpinData
from mrphys.errors import MrphysError, check
from mrphys.metrics import psnr, ssim

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
        check(self.lr > 0, f"learning rate must be > 0; got {self.lr}.")


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
    """Network images ``(M, N, N)`` from normalised k-space ``(M, N, N)``, in batches."""
    dev = next(model.parameters()).device
    model.eval()
    out = [model(k[i : i + batch].to(dev)).float().cpu() for i in range(0, k.shape[0], batch)]
    return torch.cat(out)


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


def save_checkpoint(
    path: Path,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    cfg: TrainConfig,
    epoch: int,
    norm: Normalisation,
    extra: dict | None = None,
) -> None:
    """Atomically write a checkpoint (``epoch`` = epochs completed)."""
    from mrphys.io import atomic_file

    state = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "config": asdict(cfg),
        "epoch": epoch,
        "normalisation": norm.as_dict(),
        "version": __version__,
        "extra": extra or {},
    }
    with atomic_file(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(
    path: str | Path, device: torch.device | str = "cpu"
) -> tuple[nn.Module, TrainConfig, Normalisation, dict]:
    """Model (eval mode), config, normalisation and the raw checkpoint dict from ``path``."""
    p = Path(path)
    if not p.is_file():
        raise MrphysError(f"checkpoint {p} does not exist.")
    try:
        state = torch.load(p, map_location=device, weights_only=False)
        cfg = TrainConfig(**state["config"])
    except (KeyError, TypeError, RuntimeError, EOFError) as e:
        raise MrphysError(f"{p} is not a mrphys SPIN checkpoint ({type(e).__name__}).") from None
    model = build_model(cfg).to(device)
    model.load_state_dict(state["model"])
    model.eval()
    return model, cfg, Normalisation(**state["normalisation"]), state


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
) -> tuple[nn.Module, list[dict]]:
    """Train the reconstruction network; returns ``(model, history)``.

    Args:
        cfg: network and optimiser settings.
        train_data, test_data: data sets (test may be None: no test metrics).
        norm: input normalisation (stored in the checkpoint).
        out: folder for ``checkpoint.pt`` (after every epoch) and ``train_metrics.json``.
        resume: a checkpoint to continue from (its config must match ``cfg`` apart from epochs).
        model: start from this model instead of a new one (e.g. the DFT-initialised AUTOMAP).

    ``history`` has one dict per epoch: epoch, lr, train_loss (MSE + penalty, mean over
    batches), test mse/ssim/psnr, seconds.
    """
    from mrphys.io import save_json

    cfg.check()
    check(
        train_data.acq.matrix == cfg.matrix,
        f"data matrix {train_data.acq.matrix} differs from the network matrix {cfg.matrix}.",
    )
    device = torch.device(device)
    model = (model if model is not None else build_model(cfg)).to(device)
    opt = torch.optim.RMSprop(param_groups(model, cfg), lr=cfg.lr, alpha=cfg.alpha, momentum=0.0)
    start, history = 0, []
    if resume is not None:
        p = Path(resume)
        if not p.is_file():
            raise MrphysError(f"checkpoint {p} to resume from does not exist.")
        state = torch.load(p, map_location=device, weights_only=False)
        old = dict(state["config"])
        new = asdict(cfg)
        old.pop("epochs")
        new.pop("epochs")
        if old != new:
            diff = sorted(k for k in new if old.get(k) != new[k])
            raise MrphysError(
                f"checkpoint {p} was trained with other settings ({', '.join(diff)})."
            )
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start = int(state["epoch"])
        history = list(state["extra"].get("history", []))
        log.info("resuming from epoch %d", start)

    k_train = norm.apply(train_data.kspace)
    y_train = train_data.target.float()
    k_test = norm.apply(test_data.kspace) if test_data is not None else None
    n = len(train_data)
    epochs = range(start, cfg.epochs)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.epochs, initial=start, desc=f"training {cfg.net}", unit="epoch")
    for epoch in epochs:
        t0 = time.perf_counter()
        for g in opt.param_groups:
            g["lr"] = lr_at(epoch, cfg) * g.get("lr_scale", 1.0)
        model.train()
        gen = torch.Generator().manual_seed(cfg.seed * 100003 + epoch)
        perm = torch.randperm(n, generator=gen)
        tot, nb = 0.0, 0
        for i in range(0, n, cfg.batch_size):
            idx = perm[i : i + cfg.batch_size]
            k = k_train[idx].to(device)
            y = y_train[idx].to(device)
            pred, pen = model.forward_with_penalty(k)
            loss = (pred - y).square().mean() + pen
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot += float(loss.detach())
            nb += 1
        rec = {"epoch": epoch + 1, "lr": lr_at(epoch, cfg), "train_loss": tot / max(nb, 1)}
        if test_data is not None:
            rec.update(image_metrics(predict(model, k_test, cfg.batch_size), test_data.target))
        rec["seconds"] = round(time.perf_counter() - t0, 3)
        history.append(rec)
        if out is not None:
            save_checkpoint(
                out / "checkpoint.pt", model, opt, cfg, epoch + 1, norm, {"history": history}
            )
            save_json(out / "train_metrics.json", history)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{rec['train_loss']:.2e}", psnr=f"{rec.get('psnr', 0):.1f}")
        log.info("epoch %d: %s", epoch + 1, rec)
    if bar is not None:
        bar.close()
    model.eval()
    return model, history
