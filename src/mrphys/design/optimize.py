"""SPIN sequence optimisation: the published finite-difference loop and exact-gradient learning.

Two ways to learn the acquisition (paper 000, METHODS section 2):

* :func:`finite_difference` (as published): a reconstruction network trained on 90 deg data is
  kept fixed; the first flip angle starts at 30 deg and is updated by
  ``alpha <- alpha - step * (L(alpha + delta) - L(alpha)) / (delta * L(alpha))`` with ``L`` the
  test-set MSE, i.e. a forward difference of ``log L`` (so that ``step``, in deg^2, does not
  depend on the image scale; the paper's ``eta = 0.001`` cannot be transferred, its loss scale
  is unknown). Every iteration costs two test-set simulations.
* :func:`autograd_flip`: the same problem with the exact derivative through the Bloch simulator and
  the network (one forward and one backward pass per step, on random minibatches of phantoms).
* :func:`joint`: network weights and sequence parameters learned together by exact gradients:
  both flip angles, TE, and a subset of phase-encode lines (a sigmoid weight per line; the
  ``budget`` lines of largest weight are acquired, with straight-through gradients to the
  weights, and a budget penalty keeps the mean weight at the budget), from a random start.

Compute is counted in simulated phantoms (forward-equivalents; a backward pass through the
simulator is counted separately) and in seconds.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import torch
import torch.nn as nn

from mrphys import train as ddp  # torchrun data parallel (issue 18)
from mrphys.design.data import Normalisation, SpinData, acquire, bloch_simulator
from mrphys.design.train import TrainConfig, build_model, image_metrics, param_groups
from mrphys.errors import check
from mrphys.physics.fourier import ifft2c
from mrphys.train import Record, Trainer, plain_config
from mrphys.utils import check_seed

log = logging.getLogger(__name__)

#: keep example images of this many test phantoms per iteration (for the figures)
N_SHOW = 4

#: the test-set metrics of :func:`evaluate`, network first, then the inverse FFT of the input
METRICS = ("mse", "ssim", "psnr", "fft_mse", "fft_ssim", "fft_psnr")


@dataclass
class TestHistory(Record):
    """Test-set metrics per iteration of a sequence optimisation, the start included
    (``K + 1`` entries for ``K`` iterations)."""

    #: first flip angle in deg
    flip_angle_deg: list[float] = field(default_factory=list)
    #: mean squared error of the network images (image units squared)
    mse: list[float] = field(default_factory=list)
    #: mean SSIM of the network images (dimensionless)
    ssim: list[float] = field(default_factory=list)
    #: mean PSNR of the network images in dB
    psnr: list[float] = field(default_factory=list)
    #: the same three for the real part of the inverse FFT of the normalised input
    fft_mse: list[float] = field(default_factory=list)
    fft_ssim: list[float] = field(default_factory=list)
    fft_psnr: list[float] = field(default_factory=list)
    #: cumulative simulated phantoms (forward-equivalents)
    simulated: list[int] = field(default_factory=list)
    #: cumulative wall time in s
    seconds: list[float] = field(default_factory=list)
    #: network images of the first ``N_SHOW`` test phantoms, ``(K + 1, N_SHOW, N, N)``
    images: torch.Tensor | None = None
    #: inverse-FFT images of the same phantoms, ``(K + 1, N_SHOW, N, N)``
    fft_images: torch.Tensor | None = None

    def add_metrics(self, m: dict[str, float]) -> None:
        """Append one iteration's :data:`METRICS`."""
        for key in METRICS:
            getattr(self, key).append(m[key])


def evaluate(
    model: nn.Module,
    norm: Normalisation,
    data: SpinData,
    flip1: float,
    flip2: float | None = None,
    te: float | None = None,
    mask: torch.Tensor | None = None,
    batch: int = 100,
    simulator: Callable = bloch_simulator,
    tr: float | None = None,
) -> tuple[dict[str, float], torch.Tensor, torch.Tensor]:
    """Test-set metrics of the network at a sequence (flips rad, TE s, line ``mask`` ``(N,)``).

    Returns ``(metrics, net_images, fft_images)``: means of mse, ssim, psnr (network) and
    fft_mse, fft_ssim, fft_psnr (real part of the inverse FFT of the normalised input); the
    images ``(N_SHOW, N, N)`` of the first test phantoms.
    """
    dev = next(model.parameters()).device
    model.eval()
    outs, ffts = [], []
    with torch.no_grad():
        for s in range(0, len(data), batch):
            sl = slice(s, s + batch)
            k = norm.apply(acquire(data, flip1, flip2, te, sl, simulator, dev, tr))
            if mask is not None:
                k = k * mask.to(k.device)[None, :, None]
            outs.append(model(k.to(dev)).float().cpu())
            ffts.append(ifft2c(k, norm="backward").real.float().cpu())
    net, fft = torch.cat(outs), torch.cat(ffts)
    m = image_metrics(net, data.target)
    m.update({f"fft_{key}": v for key, v in image_metrics(fft, data.target).items()})
    return m, net[:N_SHOW].clone(), fft[:N_SHOW].clone()


@dataclass
class FDConfig:
    """Settings of the published finite-difference loop (angles in deg)."""

    start_deg: float = 30.0
    iterations: int = 7
    delta_deg: float = 1.0
    step: float = 500.0  # deg^2: alpha -= step * d(log L)/d(alpha in deg)

    def check(self) -> None:
        check(
            0 < self.start_deg < 180,
            f"start flip angle must lie in (0, 180) deg; got {self.start_deg}.",
        )
        check(self.iterations >= 1, f"iterations must be >= 1; got {self.iterations}.")
        check(0 < abs(self.delta_deg) < 20, f"delta must lie in (0, 20) deg; got {self.delta_deg}.")
        check(
            math.isfinite(self.step) and self.step > 0,
            f"step must be a positive number of deg^2; got {self.step}.",
        )


@dataclass
class FDHistory(TestHistory):
    """History of :func:`finite_difference` (the published loop)."""

    #: forward difference d log L / d alpha per deg at each iteration (NaN for the last entry)
    grad: list[float] = field(default_factory=list)


def finite_difference(
    model: nn.Module,
    norm: Normalisation,
    test: SpinData,
    cfg: FDConfig,
    simulator: Callable = bloch_simulator,
    progress: bool = True,
) -> FDHistory:
    """The published loop: first flip angle by finite differences of the test loss, network fixed.

    Returns the :class:`FDHistory` (``K + 1`` entries for ``K = cfg.iterations``).
    """
    cfg.check()
    t0 = time.perf_counter()
    hist = FDHistory()
    imgs, ffts = [], []
    alpha = float(cfg.start_deg)
    n_sim = 0
    m0, net, fft = evaluate(model, norm, test, math.radians(alpha), simulator=simulator)
    n_sim += len(test)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.iterations, desc="finite-difference flip angle", unit="it")
    for it in range(cfg.iterations + 1):
        hist.add_metrics(m0)
        hist.flip_angle_deg.append(alpha)
        imgs.append(net)
        ffts.append(fft)
        if it == cfg.iterations:
            hist.grad.append(float("nan"))
            hist.simulated.append(n_sim)
            hist.seconds.append(time.perf_counter() - t0)
            break
        m1, _, _ = evaluate(
            model, norm, test, math.radians(alpha + cfg.delta_deg), simulator=simulator
        )
        n_sim += len(test)
        grad = (m1["mse"] - m0["mse"]) / (cfg.delta_deg * m0["mse"])
        hist.grad.append(grad)
        hist.simulated.append(n_sim)
        hist.seconds.append(time.perf_counter() - t0)
        alpha = min(max(alpha - cfg.step * grad, 1.0), 179.0)
        m0, net, fft = evaluate(model, norm, test, math.radians(alpha), simulator=simulator)
        n_sim += len(test)
        log.info("FD iteration %d: flip %.2f deg, mse %.5g", it + 1, alpha, m0["mse"])
        if bar is not None:
            bar.update(1)
            bar.set_postfix(flip=f"{alpha:.1f}", mse=f"{m0['mse']:.3g}")
    if bar is not None:
        bar.close()
    hist.images = torch.stack(imgs)
    hist.fft_images = torch.stack(ffts)
    return hist


def loss_at(
    model: nn.Module,
    norm: Normalisation,
    data: SpinData,
    flip1: torch.Tensor,
    flip2: torch.Tensor | float | None = None,
    te: torch.Tensor | float | None = None,
    idx: slice | torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    simulator: Callable = bloch_simulator,
    penalty: bool = False,
    tr: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """Mean squared error of the network on (a subset of) ``data`` at a sequence; differentiable
    w.r.t. ``flip1``, ``flip2`` (rad), ``te``, ``tr`` (s), ``mask`` ``(N,)`` and the weights.
    With ``penalty`` the network's L1 activity penalty is added (the training loss)."""
    dev = next(model.parameters()).device
    sel = slice(None) if idx is None else idx
    k = norm.apply(acquire(data, flip1, flip2, te, sel, simulator, dev, tr))
    if mask is not None:
        k = k * mask.to(device=k.device, dtype=k.real.dtype)[None, :, None]
    pred, pen = model.forward_with_penalty(k)
    loss = (pred - data.target[sel].to(dev, pred.dtype)).square().mean()
    return loss + pen if penalty else loss


@dataclass
class AutogradConfig:
    """Exact-gradient optimisation of the first flip angle with the network fixed (deg)."""

    start_deg: float = 30.0
    steps: int = 30
    batch: int = 16
    lr_deg: float = 8.0  # Adam step size in deg
    tolerance_deg: float = 5.0  # stop when |alpha - 90| < tolerance (0: run all steps)
    seed: int = 0


@dataclass
class AutogradHistory(Record):
    """History of :func:`autograd_flip`: one entry per Adam step, the start included."""

    #: first flip angle in deg
    flip_angle_deg: list[float]
    #: minibatch MSE of the step (image units squared; NaN at the start)
    loss: list[float]
    #: cumulative phantoms simulated, each also back-propagated
    simulated: list[int]
    #: cumulative wall time in s
    seconds: list[float]


def autograd_flip(
    model: nn.Module,
    norm: Normalisation,
    train: SpinData,
    cfg: AutogradConfig,
    simulator: Callable = bloch_simulator,
) -> AutogradHistory:
    """First flip angle by exact gradients (Adam on random minibatches of ``train``), network fixed.

    Returns the :class:`AutogradHistory` (one entry per step, the start included).
    """
    for p in model.parameters():
        p.requires_grad_(False)
    model.eval()
    alpha = torch.tensor(math.radians(cfg.start_deg), dtype=torch.float32, requires_grad=True)
    opt = torch.optim.Adam([alpha], lr=math.radians(cfg.lr_deg))
    gen = torch.Generator().manual_seed(check_seed(cfg.seed))
    hist = AutogradHistory([cfg.start_deg], [float("nan")], [0], [0.0])
    t0 = time.perf_counter()
    n_sim = 0
    try:
        for _ in range(cfg.steps):
            glob = torch.randperm(len(train), generator=gen)[: cfg.batch]
            idx = glob[ddp.local_part(len(glob))]  # this rank's part of the global minibatch
            loss = loss_at(model, norm, train, alpha, idx=idx, simulator=simulator)
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                alpha.clamp_(math.radians(1.0), math.radians(179.0))
            n_sim += len(idx)
            deg = math.degrees(float(alpha.detach()))
            hist.flip_angle_deg.append(deg)
            hist.loss.append(float(loss.detach()))
            hist.simulated.append(n_sim)
            hist.seconds.append(time.perf_counter() - t0)
            if cfg.tolerance_deg > 0 and abs(deg - 90.0) < cfg.tolerance_deg:
                break
    finally:
        for p in model.parameters():
            p.requires_grad_(True)
    return hist


@dataclass
class JointConfig:
    """Joint learning of network and sequence by exact gradients (angles deg, TE ms).

    ``learn`` lists what the sequence may change: ``flip1``, ``flip2``, ``te``, ``tr``,
    ``lines`` (phase-encode subset). ``budget`` is the fraction of phase-encode lines kept (1: all).
    ``target`` is ``se`` (Eq. 13 at TR 10 s, TE 40 ms) or ``t1`` (Eq. 13 with TR ``t1_tr_ms``:
    a T1-weighted contrast the network has to produce).
    """

    # what is learned, and from where (None: a random start)
    start_flip1_deg: float | None = None  # None: random in [10, 170]
    start_flip2_deg: float | None = None  # None: random in [60, 180]
    start_te_ms: float | None = None  # None: random in [20, 80]
    start_tr_ms: float | None = None  # None: 10000, or random in [1000, 10000] if TR is learned
    learn: tuple[str, ...] = ("flip1", "flip2", "te", "lines")
    # the task
    budget: float = 1.0
    #: always acquire the k-space centre line (the per-acquisition normalisation divides by
    #: max |k|, which sits there; without it a run can settle on a poor line set, seen once)
    keep_centre: bool = True
    target: str = "se"
    #: TR of the ``t1`` target contrast in ms
    t1_tr_ms: float = 600.0
    #: ``(min, max)`` that TE is mapped into, in ms
    te_range_ms: tuple[float, float] = (12.0, 120.0)
    #: ``(min, max)`` that TR is mapped into, in ms
    tr_range_ms: tuple[float, float] = (200.0, 10000.0)
    # the loop
    #: test-set evaluations (each after ``steps_per_iteration`` training steps)
    iterations: int = 10
    steps_per_iteration: int = 20
    #: training phantoms per step
    batch: int = 16
    #: seeds the start values and the minibatches
    seed: int = 0
    # the optimisers
    #: the network's settings (architecture; RMSProp ``alpha``; FC1 learning-rate scale)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(net="automap", init="dft"))
    #: RMSProp learning rate of the network (times each group's ``lr_scale``)
    lr_net: float = 5e-4
    #: Adam step on the unconstrained sequence parameters
    lr_seq: float = 0.05
    #: weight of the budget penalty ``(mean line weight - budget)^2``
    budget_weight: float = 1.0

    def check(self) -> None:
        ok = set(self.learn) <= {"flip1", "flip2", "te", "tr", "lines"}
        names = ",".join(self.learn)
        check(ok, f"learn must be a subset of flip1, flip2, te, tr, lines; got {names}.")
        check(
            len(self.learn) > 0,
            "learn names nothing; give one or more of flip1, flip2, te, tr, lines.",
        )
        for name in ("lr_net", "lr_seq", "budget_weight", "t1_tr_ms"):
            v = getattr(self, name)
            check(math.isfinite(v) and v >= 0, f"{name} must be a finite number >= 0; got {v}.")
        for name in ("start_flip1_deg", "start_flip2_deg", "start_te_ms", "start_tr_ms"):
            v = getattr(self, name)
            check(v is None or math.isfinite(v), f"{name} must be a finite number; got {v}.")
        check(0 < self.budget <= 1, f"line budget must lie in (0, 1]; got {self.budget}.")
        check(self.target in ("se", "t1"), f"target must be se or t1; got {self.target!r}.")
        check(self.iterations >= 1, f"iterations must be >= 1; got {self.iterations}.")
        check(self.steps_per_iteration >= 1, "steps per iteration must be >= 1.")
        check(self.batch >= 1, f"batch must be >= 1; got {self.batch}.")
        check_seed(self.seed)
        (te_lo, te_hi), (tr_lo, tr_hi) = self.te_range_ms, self.tr_range_ms
        check(0 < te_lo < te_hi, f"TE range must satisfy 0 < min < max; got {te_lo}, {te_hi} ms.")
        check(0 < tr_lo < tr_hi, f"TR range must satisfy 0 < min < max; got {tr_lo}, {tr_hi} ms.")


def _logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


class SequenceParams(nn.Module):
    """Learnable spin-echo parameters in unconstrained form.

    ``flip1 = pi * sigmoid(u1)``, ``flip2 = pi * sigmoid(u2)`` (rad), ``te = te_min + (te_max -
    te_min) * sigmoid(u3)`` (s), TR likewise, line weights ``sigmoid(w)`` ``(N,)``. Parameters
    not learned are frozen buffers.
    """

    def __init__(
        self,
        matrix: int,
        flip1: float,
        flip2: float,
        te: float,
        te_range: tuple,
        learn: tuple[str, ...],
        lines0: torch.Tensor,
        tr: float = 10.0,
        tr_range: tuple = (0.2, 10.0),
    ) -> None:
        super().__init__()
        self.te_min, self.te_max = te_range
        self.tr_min, self.tr_max = tr_range
        vals = {
            "tr": torch.tensor(_logit((tr - self.tr_min) / (self.tr_max - self.tr_min))),
            "flip1": torch.tensor(_logit(flip1 / math.pi)),
            "flip2": torch.tensor(_logit(flip2 / math.pi)),
            "te": torch.tensor(_logit((te - self.te_min) / (self.te_max - self.te_min))),
            "lines": lines0.float(),
        }
        for name, v in vals.items():
            if name in learn:
                setattr(self, name, nn.Parameter(v))
            else:
                self.register_buffer(name, v)

    def values(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(flip1 rad, flip2 rad, te s, line weights (N,))``."""
        f1 = math.pi * torch.sigmoid(self.flip1)
        f2 = math.pi * torch.sigmoid(self.flip2)
        te = self.te_min + (self.te_max - self.te_min) * torch.sigmoid(self.te)
        return f1, f2, te, torch.sigmoid(self.lines)

    def tr_value(self) -> torch.Tensor:
        """TR in s (``tr_min + (tr_max - tr_min) * sigmoid(u)``)."""
        return self.tr_min + (self.tr_max - self.tr_min) * torch.sigmoid(self.tr)


def hard_mask(weights: torch.Tensor, budget: float, centre: bool = False) -> torch.Tensor:
    """The ``round(budget * N)`` lines of largest weight as a 0/1 mask ``(N,)``.

    ``centre``: the k-space centre line ``N//2`` is always acquired (it counts in the budget).
    """
    n = weights.numel()
    keep = max(1, round(budget * n))
    w = weights.detach().cpu().clone()
    m = torch.zeros(n)
    if centre:
        m[n // 2] = 1.0
        w[n // 2] = -float("inf")
        keep -= 1
    if keep > 0:
        m[torch.topk(w, keep).indices] = 1.0
    return m


@dataclass
class JointHistory(TestHistory):
    """History of :func:`joint`: one entry per iteration, the start included."""

    #: refocusing flip angle in deg
    flip2_deg: list[float] = field(default_factory=list)
    #: echo time in ms
    te_ms: list[float] = field(default_factory=list)
    #: repetition time in ms
    tr_ms: list[float] = field(default_factory=list)
    #: phase-encode lines acquired (of ``N``)
    lines_kept: list[int] = field(default_factory=list)
    #: line weights ``sigmoid(w)`` ``(K + 1, N)``
    line_weights: torch.Tensor | None = None
    #: mean training loss of the iteration's steps (NaN at the start)
    train_loss: list[float] = field(default_factory=list)

    @classmethod
    def from_records(cls, records: list[dict]) -> JointHistory:
        """Gather the per-iteration records of the trainer."""
        stacked = ("images", "fft_images", "line_weights")
        lists = [f for f in cls.__dataclass_fields__ if f not in stacked]
        h = cls(**{f: [r[f] for r in records] for f in lists})
        for f in stacked:
            setattr(h, f, torch.stack([r[f] for r in records]))
        return h


def joint(
    cfg: JointConfig,
    train: SpinData,
    test: SpinData,
    norm: Normalisation,
    model: nn.Module | None = None,
    device: torch.device | str = "cpu",
    simulator: Callable = bloch_simulator,
    progress: bool = True,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
) -> tuple[nn.Module, SequenceParams, JointHistory]:
    """Learn network weights and sequence parameters together by exact gradients.

    Each step simulates a random minibatch of training phantoms at the current sequence,
    reconstructs, and back-propagates MSE (+ activity penalty + budget penalty) into both the
    network and the sequence (RMSProp for the network, as in training; Adam for the sequence).
    After each iteration (``steps_per_iteration`` steps) the test set is evaluated at the current
    sequence with the hard line mask. Returns ``(model, seq, history)``.

    ``checkpoint``: written after every iteration (network, sequence, both optimisers, the
    generator state, the history); with ``resume`` an existing one is continued, bitwise as if
    the run had not stopped (``cfg`` may differ in ``iterations`` only).
    """
    cfg.check()
    ranks = ddp.init_distributed(device)  # torchrun: ranks split each minibatch (mrphys.train)
    check(cfg.batch >= ranks, f"batch must be >= the {ranks} torchrun processes; got {cfg.batch}.")
    n = train.acq.matrix
    gen = torch.Generator().manual_seed(cfg.seed)

    def draw(lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(torch.rand((), generator=gen))

    f1 = cfg.start_flip1_deg if cfg.start_flip1_deg is not None else draw(10, 170)
    f2 = cfg.start_flip2_deg if cfg.start_flip2_deg is not None else draw(60, 180)
    te = cfg.start_te_ms if cfg.start_te_ms is not None else draw(20, 80)
    te = min(max(te, cfg.te_range_ms[0] + 0.5), cfg.te_range_ms[1] - 0.5)
    learn_tr = "tr" in cfg.learn
    tr0 = (
        cfg.start_tr_ms
        if cfg.start_tr_ms is not None
        else (draw(1000, 10000) if learn_tr else train.acq.tr * 1e3)
    )
    tr0 = min(max(tr0, cfg.tr_range_ms[0] * 1.001), cfg.tr_range_ms[1] * 0.999)
    lines0 = torch.full((n,), _logit(min(cfg.budget, 0.99)))
    lines0 += 0.01 * torch.randn(n, generator=gen)
    seq = SequenceParams(
        n,
        math.radians(min(f1, 179.0)),
        math.radians(min(f2, 179.5)),
        te * 1e-3,
        (cfg.te_range_ms[0] * 1e-3, cfg.te_range_ms[1] * 1e-3),
        cfg.learn,
        lines0,
        tr=tr0 * 1e-3,
        tr_range=(cfg.tr_range_ms[0] * 1e-3, cfg.tr_range_ms[1] * 1e-3),
    )
    tcfg = replace_matrix(cfg.train, n)
    model = (model if model is not None else build_model(tcfg)).to(device)
    groups = param_groups(model, tcfg)
    for g in groups:
        g["lr"] = cfg.lr_net * g["lr_scale"]
    opts = {"network": torch.optim.RMSprop(groups, lr=cfg.lr_net, alpha=tcfg.alpha)}
    seq_params = list(seq.parameters())
    if seq_params:
        opts["sequence"] = torch.optim.Adam(seq_params, lr=cfg.lr_seq)
    tgt_train, tgt_test = train.target, test.target
    if cfg.target == "t1":
        from mrphys.design.data import Acquisition, target_image

        acq_t1 = Acquisition(matrix=n, fov=train.acq.fov, tr=cfg.t1_tr_ms * 1e-3, te=train.acq.te)
        tgt_train = target_image(train.phantom(), acq_t1)
        tgt_test = target_image(test.phantom(), acq_t1)
    train_t = replace(train, target=tgt_train)
    test_t = replace(test, target=tgt_test)

    trainer = Trainer(
        nn.ModuleDict({"network": model, "sequence": seq}),
        opts,
        plain_config(cfg),
        units=cfg.iterations,
        checkpoint=checkpoint,
        normalisation=norm.as_dict(),
        generators={"minibatches": gen},
        resume_ignore=("iterations",),
        progress=progress,
        desc="joint sequence + network",
        unit="it",
        postfix=lambda r: {"flip": f"{r['flip_angle_deg']:.1f}", "psnr": f"{r['psnr']:.1f}"},
    )
    # cumulative counters: simulated phantoms and seconds (continued on resume)
    count = {"simulated": 0, "t0": time.perf_counter()}

    def record(train_loss: float) -> dict:
        with torch.no_grad():
            a1, a2, te_s, w = seq.values()
            tr_s = float(seq.tr_value())
        mask = hard_mask(w, cfg.budget, cfg.keep_centre) if cfg.budget < 1 else None
        m, net, fft = evaluate(
            model,
            norm,
            test_t,
            float(a1),
            float(a2),
            float(te_s),
            mask,
            simulator=simulator,
            tr=tr_s if learn_tr else None,
        )
        return {
            "flip_angle_deg": math.degrees(float(a1)),
            "flip2_deg": math.degrees(float(a2)),
            "te_ms": float(te_s) * 1e3,
            "tr_ms": tr_s * 1e3,
            "lines_kept": int(n if mask is None else mask.sum()),
            **{key: m[key] for key in METRICS},
            "simulated": count["simulated"],
            "seconds": time.perf_counter() - count["t0"],
            "train_loss": train_loss,
            "images": net,
            "fft_images": fft,
            "line_weights": w.detach().cpu().clone(),
        }

    if resume and checkpoint is not None and os.path.exists(checkpoint):
        trainer.resume(checkpoint)
        last = trainer.history[-1]
        count["simulated"] = last["simulated"]
        count["t0"] -= last["seconds"]
    else:
        trainer.history.append(record(float("nan")))

    def iteration(it: int) -> dict:
        model.train()
        tot = 0.0
        for _ in range(cfg.steps_per_iteration):
            glob = torch.randperm(len(train), generator=gen)[: cfg.batch]
            idx = glob[ddp.local_part(len(glob))]  # this rank's part of the global minibatch
            a1, a2, te_s, w = seq.values()
            mask = None
            if cfg.budget < 1:
                # straight-through: acquire the hard top-k lines (as at test time), gradient
                # through the soft weights
                mask = hard_mask(w, cfg.budget, cfg.keep_centre).to(w) + w - w.detach()
            tr_s = seq.tr_value() if learn_tr else None
            loss = loss_at(
                model, norm, train_t, a1, a2, te_s, idx, mask, simulator, penalty=True, tr=tr_s
            )
            if cfg.budget < 1:
                loss = loss + cfg.budget_weight * (w.mean() - cfg.budget).square()
            if len(idx) < len(glob):
                loss = loss * (len(idx) / len(glob))
            for opt in opts.values():
                opt.zero_grad(set_to_none=True)
            loss.backward()
            loss = ddp.sync_gradients(trainer.model, loss)
            for opt in opts.values():
                opt.step()
            trainer.step += 1
            count["simulated"] += len(glob)
            tot += float(loss.detach())
        return record(tot / cfg.steps_per_iteration)

    trainer.run(iteration)
    model.eval()
    return model, seq, JointHistory.from_records(trainer.history)


def replace_matrix(cfg: TrainConfig, matrix: int) -> TrainConfig:
    """``cfg`` with its matrix set to ``matrix``."""
    d = asdict(cfg)
    d["matrix"] = matrix
    return TrainConfig(**d)
