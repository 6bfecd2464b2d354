"""End-to-end SPIN runs that write a folder: data, reference network, sequence optimisation.

Used by the ``mrphys spin`` command and the demo. Every function writes into a folder it is
given (the caller makes it atomic) and returns the numbers it wrote.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from mrphys import plot
from mrphys.design.data import Acquisition, Normalisation, SpinData, fit_normalisation, make_data
from mrphys.design.optimize import FDConfig, JointConfig, finite_difference, joint
from mrphys.design.train import TrainConfig, build_model, load_checkpoint, train

log = logging.getLogger(__name__)


@dataclass
class DataConfig:
    """How many phantoms, their size and seeds; ``cache`` is a folder for simulated data."""

    n_train: int = 2000
    n_test: int = 200
    matrix: int = 32
    seed: int = 0
    cache: str | None = None

    def make(self, progress: bool = True) -> tuple[SpinData, SpinData]:
        """Training (seed) and test (seed + 1) data at the reference 90/180 deg acquisition."""
        acq = Acquisition(matrix=self.matrix)
        tr = make_data(self.n_train, self.seed, acq, cache_dir=self.cache, progress=progress)
        te = make_data(self.n_test, self.seed + 1, acq, cache_dir=self.cache, progress=progress)
        return tr, te


def train_reference(
    out: Path,
    data: DataConfig,
    cfg: TrainConfig,
    device: torch.device | str = "cpu",
    resume: str | Path | None = None,
    progress: bool = True,
    datasets: tuple[SpinData, SpinData] | None = None,
) -> tuple[nn.Module, Normalisation, list[dict], tuple[SpinData, SpinData]]:
    """Train the reconstruction network on 90 deg data; writes ``checkpoint.pt`` and
    ``train_metrics.json`` into ``out``. Returns model, normalisation, history and the data."""
    tr, te = datasets if datasets is not None else data.make(progress)
    norm = fit_normalisation(tr)
    model, hist = train(cfg, tr, te, norm, out=out, resume=resume, device=device, progress=progress)
    return model, norm, hist, (tr, te)


@dataclass
class OptimizeConfig:
    """Settings of ``mrphys spin optimize``."""

    method: str = "finite-difference"
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            net="unet", matrix=32, width=16, epochs=8, batch_size=50
        )
    )
    fd: FDConfig = field(default_factory=FDConfig)
    joint: JointConfig = field(default_factory=JointConfig)
    checkpoint: str | None = None


def _plain(hist: dict) -> dict:
    return {k: v for k, v in hist.items() if not isinstance(v, torch.Tensor)}


def run_optimize(
    out: Path, cfg: OptimizeConfig, device: torch.device | str = "cpu", progress: bool = True
) -> dict:
    """Run a sequence optimisation into ``out``; returns the metrics written to ``metrics.json``.

    ``finite-difference``: the published loop on a network trained on 90 deg data (loaded from
    ``cfg.checkpoint`` or trained here into ``out/reference``). ``autograd``: joint learning of
    network and sequence (``cfg.joint``) from a random start (or the given start values); the
    network starts from ``cfg.checkpoint`` when given, otherwise untrained.
    """
    from mrphys.io import save_json

    t0 = time.perf_counter()
    ref_hist: list[dict] = []
    if cfg.checkpoint is not None:  # checked before any simulation
        model, tcfg, norm, _ = load_checkpoint(cfg.checkpoint, device)
        if tcfg.matrix != cfg.data.matrix:
            from mrphys.errors import MrphysError

            raise MrphysError(
                f"the checkpoint is for matrix {tcfg.matrix}, the data for "
                f"{cfg.data.matrix}; pass --matrix {tcfg.matrix}."
            )
        cfg.joint.train = tcfg  # the network's own settings (optimiser groups)
    tr, te = cfg.data.make(progress)
    if cfg.checkpoint is None and cfg.method == "finite-difference":
        ref = out / "reference"
        ref.mkdir()
        model, norm, ref_hist, _ = train_reference(
            ref, cfg.data, cfg.train, device, progress=progress, datasets=(tr, te)
        )
    elif cfg.checkpoint is None:
        norm = fit_normalisation(tr)
        model = build_model(cfg.train).to(device)
    t_ref = time.perf_counter() - t0
    if cfg.method == "finite-difference":
        hist = finite_difference(model, norm, te, cfg.fd, progress=progress)
        extra: dict = {}
    else:

        def save(it: int, h: dict) -> None:
            torch.save(
                {
                    "model": model.state_dict(),
                    "iteration": it,
                    "normalisation": norm.as_dict(),
                    "history": _plain(h),
                    "config": asdict(cfg.joint),
                },
                out / "joint_checkpoint.pt",
            )

        model, seq, hist = joint(
            cfg.joint,
            tr,
            te,
            norm,
            model=model,
            device=device,
            progress=progress,
            on_iteration=save,
        )
        extra = {"line_weights": hist["line_weights"][-1].tolist()}
    names = plot.spin_figures(out, hist, te.target[0])
    metrics = _plain(hist)
    metrics.update(extra)
    metrics.update(
        {
            "method": cfg.method,
            "reference_training": ref_hist,
            "seconds_reference": round(t_ref, 2),
            "seconds_total": round(time.perf_counter() - t0, 2),
            "n_train": len(tr),
            "n_test": len(te),
            "matrix": cfg.data.matrix,
            "figures": names,
        }
    )
    save_json(out / "metrics.json", metrics)
    save_json(out / "config.json", asdict(cfg))
    torch.save(
        {
            "images": hist["images"],
            "fft_images": hist["fft_images"],
            "target": te.target[: hist["images"].shape[1]],
        },
        out / "images.pt",
    )
    log.info(
        "SPIN %s: flip %.1f -> %.1f deg",
        cfg.method,
        metrics["flip_angle_deg"][0],
        metrics["flip_angle_deg"][-1],
    )
    return metrics


def summary(m: dict) -> str:
    """One line: flip angle and test metrics at the start and the end."""
    f, s, p, e = m["flip_angle_deg"], m["ssim"], m["psnr"], m["mse"]
    return (
        f"flip {f[0]:.1f} -> {f[-1]:.1f} deg, MSE {e[0]:.5f} -> {e[-1]:.5f}, "
        f"SSIM {s[0]:.3f} -> {s[-1]:.3f}, PSNR {p[0]:.2f} -> {p[-1]:.2f} dB "
        f"({len(f) - 1} iterations)"
    )
