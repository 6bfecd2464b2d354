"""End-to-end SPIN runs that write a folder: data, reference network, sequence optimisation.

Used by the ``mrphys spin`` command and the demo. Every function writes into a folder it is
given (the caller makes it atomic) and returns the numbers it wrote.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from mrphys import plot
from mrphys.design.data import Acquisition, Normalisation, SpinData, fit_normalisation, make_data
from mrphys.design.optimize import (
    FDConfig,
    FDHistory,
    JointConfig,
    JointHistory,
    finite_difference,
    joint,
)
from mrphys.design.train import EpochRecord, TrainConfig, build_model, load_checkpoint, train
from mrphys.errors import MrphysError
from mrphys.train import Record, is_writer, world_size
from mrphys.utils import check_seed, derived_seed

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
        check_seed(self.seed)
        acq = Acquisition(matrix=self.matrix)
        tr = make_data(self.n_train, self.seed, acq, cache_dir=self.cache, progress=progress)
        test_seed = derived_seed(self.seed, 1, 1)
        te = make_data(self.n_test, test_seed, acq, cache_dir=self.cache, progress=progress)
        return tr, te

    def simulate_shard(self, shard: tuple[int, int], progress: bool = True) -> bool:
        """Shard ``(I, N)`` of the training and test data of :meth:`make` into ``cache``
        (:func:`mrphys.design.data.simulate_shard`, issue 18); whether both are complete."""
        from mrphys.design.data import simulate_shard

        check_seed(self.seed)
        if self.cache is None:
            raise MrphysError("cache must name a folder for a shard of the data (shared by all).")
        acq, kw = Acquisition(matrix=self.matrix), {"cache_dir": self.cache, "progress": progress}
        tr = simulate_shard(self.n_train, self.seed, shard, acq, **kw)
        return simulate_shard(self.n_test, derived_seed(self.seed, 1, 1), shard, acq, **kw) and tr


def train_reference(
    out: Path,
    data: DataConfig,
    cfg: TrainConfig,
    device: torch.device | str = "cpu",
    resume: str | Path | None = None,
    progress: bool = True,
    datasets: tuple[SpinData, SpinData] | None = None,
    running: Path | None = None,
) -> tuple[nn.Module, Normalisation, list[EpochRecord], tuple[SpinData, SpinData]]:
    """Train the reconstruction network on 90 deg data; writes ``checkpoint.pt`` and
    ``train_metrics.json`` into ``out``. Returns model, normalisation, history and the data.

    ``running``: the checkpoint written after every epoch (see :func:`running_checkpoint`; it is
    resumed when it exists and copied to ``out / "checkpoint.pt"`` at the end). Without it the
    per-epoch checkpoint is ``out / "checkpoint.pt"`` itself.
    """
    tr, te = datasets if datasets is not None else data.make(progress)
    norm = fit_normalisation(tr)
    if running is not None and running.is_file():
        resume = running
    model, hist = train(cfg, tr, te, norm, out=out, resume=resume, device=device,
                        progress=progress, checkpoint=running)  # fmt: skip
    if running is not None and is_writer():  # torchrun: rank 0 removes it after the copy
        shutil.copyfile(running, out / "checkpoint.pt")
    return model, norm, hist, (tr, te)


def train_to_folder(
    out: str | Path,
    data: DataConfig,
    cfg: TrainConfig,
    device: torch.device | str = "cpu",
    resume: str | Path | None = None,
    overwrite: bool = False,
    running: Path | None = None,
) -> list[EpochRecord]:
    """``mrphys spin train``: :func:`train_reference` into the new folder ``out`` (made atomic
    by :func:`mrphys.io.output_dir`), with ``config.json`` (data, training settings and
    normalisation) and ``metrics.json`` (the last epoch). Returns the history."""
    from mrphys.io import output_dir, save_json

    with output_dir(out, overwrite=overwrite) as tmp:
        _, norm, hist, _ = train_reference(tmp, data, cfg, device, resume=resume, running=running)
        config = {"data": asdict(data), "train": asdict(cfg), "normalisation": norm.as_dict(),
                  "world_size": world_size()}  # fmt: skip
        save_json(tmp / "config.json", config)
        save_json(tmp / "metrics.json", hist[-1] if hist else {})
    return hist


def running_checkpoint(out: str | Path) -> Path:
    """Where a run that writes the folder ``out`` keeps its checkpoint until it has finished:
    ``OUT.checkpoint.pt`` beside ``out`` (outside its temporary folder, so that an interrupted
    or killed run leaves it). Running the same command again resumes from it; the caller
    removes it once ``out`` is complete."""
    p = Path(out)
    return p.parent / f"{p.name}.checkpoint.pt"


def open_running(out: str | Path, overwrite: bool = False) -> tuple[Path, int | None]:
    """The checkpoint of a run writing ``out`` (:func:`running_checkpoint`), read before any work.

    With ``overwrite`` an interrupted run's checkpoint is removed (only a checkpoint mrphys
    wrote); otherwise one that exists is read (a broken or unsafe file is one sentence, now).

    Returns:
        ``(checkpoint path, epochs or iterations done)``; done is ``None`` when the run starts
        afresh.
    """
    from mrphys.io import discard_output
    from mrphys.train import load_checkpoint as read_checkpoint

    ck = running_checkpoint(out)
    if not ck.is_file():
        return ck, None
    if overwrite:
        discard_output(ck)
        return ck, None
    return ck, read_checkpoint(ck).get("epoch", 0)


@contextlib.contextmanager
def keep_running(ck: Path, say: Callable[[str], object]) -> Iterator[None]:
    """Remove the running checkpoint ``ck`` when the block succeeds; on Ctrl-C ``say`` (a line)
    where the last finished epoch (or iteration) is, and re-raise."""
    try:
        yield
    except KeyboardInterrupt:
        if ck.is_file():
            say(f"interrupted: the same command continues from {ck}\n")
        else:
            say("interrupted before the first epoch ended: nothing to continue\n")
        raise
    if is_writer():  # torchrun: rank 0 removes it, once it has copied it into the output
        ck.unlink(missing_ok=True)


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


@dataclass
class OptimizeResult(Record):
    """What :func:`run_optimize` wrote; ``to_dict()`` is ``metrics.json``."""

    #: ``finite-difference`` or ``autograd``
    method: str
    #: per-iteration test metrics and sequence values
    history: FDHistory | JointHistory
    #: epochs of the reference network trained here (empty when loaded or not trained)
    reference_training: list[EpochRecord]
    #: wall time in s spent on data and the reference network, and in all
    seconds_reference: float
    seconds_total: float
    #: training and test phantoms, and the matrix size ``N``
    n_train: int
    n_test: int
    matrix: int
    #: file names of the figures written
    figures: list[str]
    #: autograd: the final line weights ``sigmoid(w)``, ``N`` values in ``[0, 1]``
    line_weights: list[float] | None = None

    def to_dict(self) -> dict:
        """The flat ``metrics.json`` form: the history's lists, then the run's numbers."""
        out = self.history.to_dict()
        if self.line_weights is not None:
            out["line_weights"] = self.line_weights
        rest = super().to_dict()
        rest.pop("history")
        rest.pop("line_weights", None)
        out.update(rest)
        return out


def run_optimize(
    out: Path,
    cfg: OptimizeConfig,
    device: torch.device | str = "cpu",
    progress: bool = True,
    running: Path | None = None,
) -> OptimizeResult:
    """Run a sequence optimisation into ``out``; returns what it wrote (``metrics.json`` is its
    ``to_dict()``).

    ``finite-difference``: the published loop on a network trained on 90 deg data (loaded from
    ``cfg.checkpoint`` or trained here into ``out/reference``). ``autograd``: joint learning of
    network and sequence (``cfg.joint``) from a random start (or the given start values); the
    network starts from ``cfg.checkpoint`` when given, otherwise untrained.

    ``running``: the checkpoint of the training done here (the reference network, or the joint
    learning), written after every epoch or iteration and resumed when it exists (see
    :func:`running_checkpoint`); copied into ``out`` at the end.
    """
    from mrphys.io import save_json

    t0 = time.perf_counter()
    ref_hist: list[EpochRecord] = []
    if cfg.checkpoint is not None:  # checked before any simulation
        model, tcfg, norm, _ = load_checkpoint(cfg.checkpoint, device)
        if tcfg.matrix != cfg.data.matrix:
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
            ref, cfg.data, cfg.train, device, progress=progress, datasets=(tr, te), running=running
        )
    elif cfg.checkpoint is None:
        norm = fit_normalisation(tr)
        model = build_model(cfg.train).to(device)
    t_ref = time.perf_counter() - t0
    line_weights = None
    if cfg.method == "finite-difference":
        hist = finite_difference(model, norm, te, cfg.fd, progress=progress)
    else:
        model, seq, hist = joint(
            cfg.joint,
            tr,
            te,
            norm,
            model=model,
            device=device,
            progress=progress,
            checkpoint=running if running is not None else out / "joint_checkpoint.pt",
            resume=running is not None,
        )
        if running is not None and is_writer():
            shutil.copyfile(running, out / "joint_checkpoint.pt")
        line_weights = hist.line_weights[-1].tolist()
    names = plot.spin_figures(out, hist, te.target[0])
    res = OptimizeResult(
        method=cfg.method,
        history=hist,
        reference_training=ref_hist,
        seconds_reference=round(t_ref, 2),
        seconds_total=round(time.perf_counter() - t0, 2),
        n_train=len(tr),
        n_test=len(te),
        matrix=cfg.data.matrix,
        figures=names,
        line_weights=line_weights,
    )
    save_json(out / "metrics.json", {**res.to_dict(), "world_size": world_size()})
    save_json(out / "config.json", {**asdict(cfg), "world_size": world_size()})
    _export_sequence(out / "sequence.seq", hist, te.acq, cfg.method)
    torch.save(
        {
            "images": hist.images,
            "fft_images": hist.fft_images,
            "target": te.target[: hist.images.shape[1]],
        },
        out / "images.pt",
    )
    log.info(
        "SPIN %s: flip %.1f -> %.1f deg",
        cfg.method,
        hist.flip_angle_deg[0],
        hist.flip_angle_deg[-1],
    )
    return res


def _export_sequence(path: Path, hist: FDHistory | JointHistory, acq, method: str) -> None:
    """The learned sequence as a scanner-ready Pulseq file (learned values in its definitions)."""
    from mrphys.physics.pulseq_io import write_learned_spin_echo

    h = hist.to_dict()
    flip1 = h["flip_angle_deg"][-1]
    flip2 = h.get("flip2_deg", [math.degrees(acq.flip2)])[-1]
    te_ms = h.get("te_ms", [acq.te * 1e3])[-1]
    tr_ms = h.get("tr_ms", [acq.tr * 1e3])[-1]
    learned = {"Method": method, "Flip1Deg": flip1, "Flip2Deg": flip2, "TEms": te_ms,
               "TRms": tr_ms}  # fmt: skip
    if getattr(hist, "line_weights", None) is not None:
        learned["LineWeights"] = [round(float(v), 4) for v in hist.line_weights[-1]]
    write_learned_spin_echo(path, acq.matrix, acq.fov, tr_ms * 1e-3, te_ms * 1e-3,
                            math.radians(flip1), math.radians(flip2), learned)  # fmt: skip


def summary(m: OptimizeResult | dict) -> str:
    """One line: flip angle and test metrics at the start and the end (of a result or of its
    ``metrics.json`` dict)."""
    h = m.history.to_dict() if isinstance(m, OptimizeResult) else m
    f, s, p, e = h["flip_angle_deg"], h["ssim"], h["psnr"], h["mse"]
    return (
        f"flip {f[0]:.1f} -> {f[-1]:.1f} deg, MSE {e[0]:.5f} -> {e[-1]:.5f}, "
        f"SSIM {s[0]:.3f} -> {s[-1]:.3f}, PSNR {p[0]:.2f} -> {p[-1]:.2f} dB "
        f"({len(f) - 1} iterations)"
    )
