"""The one training loop of the package: checkpoints, exact resume, seeding, early stopping.

Every network of mrphys trains through :class:`Trainer`: the relaxometry MLPs
(:mod:`mrphys.relax.train`), the SPIN reconstruction networks (:mod:`mrphys.design.train`) and
the joint sequence + network learning (:func:`mrphys.design.optimize.joint`). The caller writes
one function that runs one *unit* of work (an epoch, or one iteration of a fixed-iteration fit)
and returns that unit's record (a dict of plain numbers, tensors allowed); the trainer runs the
units, keeps the history, stops early, schedules the learning rate, shows a tqdm bar and writes a
checkpoint after every ``checkpoint_every`` units.

A checkpoint is a ``torch.save`` dict of tensors and plain values, written atomically:

``format`` (``"mrphys-checkpoint"``), ``format_version``, ``version`` (package version);
``model`` (``state_dict``), ``best_model`` (weights of the best unit, when a ``monitor`` is set);
``optimizer`` (its ``state_dict``; a dict name -> ``state_dict`` for several optimisers);
``config`` (the run's settings, JSON-able, compared on resume); ``normalisation`` (input
statistics, tensors or numbers); ``epoch`` (units completed), ``step`` (optimiser steps);
``rng`` (name -> ``torch.Generator`` state, a uint8 tensor); ``history`` (one record per unit);
``best_val``, ``bad_epochs``, ``stop_reason``.

Exact resume: draw a unit's randomness either from a generator seeded by ``(seed, unit)`` or
from a generator registered in ``generators`` (its state travels in the checkpoint). Then a run
stopped after any unit and resumed gives bitwise the same weights as one that ran through.

Checkpoints are read with ``torch.load(weights_only=True)``: a file that holds anything but
tensors and plain values is refused with a :class:`~mrphys.errors.MrphysError`, never executed.

Data parallel (``torchrun``): :func:`init_distributed` joins the process group torchrun describes
in ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` (``gloo`` for CPU tensors, ``nccl`` for CUDA ones, each
rank on GPU ``LOCAL_RANK``). A unit function keeps the one-process *global* order: every rank
draws the same permutation and the same global batches (generators seeded by ``(seed, unit)``),
takes its contiguous part :func:`local_part` of each global batch, weights its local mean loss
by its share of the batch, and calls :func:`sync_gradients` after ``backward``: one all-reduce
sums the gradients (and the loss), so that every rank steps with the gradient of the global
batch and N processes give the one-process weights to float tolerance, whatever N. The trainer
broadcasts rank 0's weights when it starts, shows the bar and writes checkpoints on rank 0 only,
takes the time-budget decision on all ranks together, and records ``world_size`` in the
checkpoint. A checkpoint holds the full model and optimiser state, so a run resumes with any
world size (the file must be readable by every rank).
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import logging
import math
import os
import pickle
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from mrphys import __version__
from mrphys.errors import MrphysError, check

log = logging.getLogger(__name__)

__all__ = [
    "CHECKPOINT_FORMAT",
    "Record",
    "Trainer",
    "barrier",
    "gather_rows",
    "init_distributed",
    "is_writer",
    "load_checkpoint",
    "load_plain",
    "local_part",
    "plain_config",
    "rank",
    "save_checkpoint",
    "seed_everything",
    "sync_gradients",
    "torchrun_env",
    "world_size",
]

#: the ``format`` entry of every checkpoint the trainer writes
CHECKPOINT_FORMAT = "mrphys-checkpoint"
_FORMAT_VERSION = 1


class Record:
    """Base of the typed results (training histories, fits, run results): a dataclass whose
    fields carry units and shapes in their docs. ``to_dict()`` is the JSON form (what
    ``metrics.json`` files hold: fields that are ``None`` and tensors are left out)."""

    def _names(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self) if getattr(self, f.name) is not None]

    def to_dict(self) -> dict[str, Any]:
        """Plain fields (no tensors, no ``None``), nested records as dicts: the JSON form."""
        out: dict[str, Any] = {}
        for k in self._names():
            v = getattr(self, k)
            if isinstance(v, torch.Tensor):
                continue
            if isinstance(v, Record):
                v = v.to_dict()
            elif isinstance(v, list):
                v = [x.to_dict() if isinstance(x, Record) else x for x in v]
            out[k] = v
        return out


def plain_config(cfg: Any) -> dict[str, Any]:
    """A settings dataclass (nested ones included) as JSON-able types: tuples become lists."""

    def plain(v: Any) -> Any:
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, Path):
            return str(v)
        return v

    d = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg)
    return plain(d)


def seed_everything(seed: int) -> None:
    """Seed PyTorch's global generators (CPU and CUDA): the default layer initialisation.

    Functions of the package that draw during training take their own ``torch.Generator``.
    """
    torch.manual_seed(seed)


# -- data parallel (torchrun) ---------------------------------------------------------------


def torchrun_env() -> tuple[int, int, int] | None:
    """``(rank, world size, local rank)`` from the environment ``torchrun`` sets, or ``None``
    outside torchrun.

    Raises:
        MrphysError: the variables are there but are no valid integers.
    """
    env = os.environ
    if "WORLD_SIZE" not in env or "RANK" not in env:
        return None
    try:
        r, w = int(env["RANK"]), int(env["WORLD_SIZE"])
        local = int(env.get("LOCAL_RANK", r))
    except ValueError:
        raise MrphysError(
            "RANK, WORLD_SIZE and LOCAL_RANK must be integers (as torchrun sets them); got "
            f"{env.get('RANK')!r}, {env.get('WORLD_SIZE')!r}, {env.get('LOCAL_RANK')!r}."
        ) from None
    check(w >= 1 and 0 <= r < w, f"RANK must lie in [0, WORLD_SIZE); got {r} of {w}.")
    return r, w, local


def _group() -> bool:
    d = torch.distributed
    return bool(d.is_available() and d.is_initialized())


def init_distributed(device: torch.device | str | None = None) -> int:
    """Join the process group ``torchrun`` describes (once); returns the world size.

    Outside torchrun, or with ``WORLD_SIZE`` 1, nothing happens and 1 is returned. The backend
    is ``gloo`` for CPU tensors and ``nccl`` for CUDA tensors (both when CUDA is present and
    ``device`` is not the CPU); with CUDA, each process makes GPU ``LOCAL_RANK`` its current
    device, so that ``cuda`` means its own GPU. The rendezvous is torchrun's (``env://``:
    ``MASTER_ADDR``, ``MASTER_PORT``), single-node or multi-node alike.
    """
    d = torch.distributed
    if _group():
        return d.get_world_size()
    env = torchrun_env()
    if env is None or env[1] <= 1:
        return 1
    check(d.is_available(), "this PyTorch has no torch.distributed; cannot run under torchrun.")
    _, _, local = env
    dev = None if device is None else torch.device(device)
    cuda = torch.cuda.is_available() and (dev is None or dev.type == "cuda")
    if cuda:
        torch.cuda.set_device(local % torch.cuda.device_count())
    d.init_process_group(backend="cpu:gloo,cuda:nccl" if cuda else "gloo")
    atexit.register(_leave)
    log.info("joined torchrun process group: rank %d of %d", d.get_rank(), d.get_world_size())
    return d.get_world_size()


def _leave() -> None:
    if _group():
        with contextlib.suppress(Exception):  # a peer that died first: nothing left to close
            torch.distributed.destroy_process_group()


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return torch.distributed.get_rank() if _group() else 0


def world_size() -> int:
    """Number of processes of the job (1 without a process group)."""
    return torch.distributed.get_world_size() if _group() else 1


def is_writer() -> bool:
    """Whether this process writes files: rank 0, or no process group."""
    return rank() == 0


def _writes() -> bool:
    return is_writer()


def barrier() -> None:
    """Wait for every rank (nothing without a process group)."""
    if world_size() > 1:
        torch.distributed.barrier()


def local_part(n: int) -> slice:
    """This rank's contiguous part of a global batch of ``n`` items: rank ``r`` of ``W`` takes
    ``[r n // W, (r + 1) n // W)`` (the whole batch for one process; empty when ``n < W``)."""
    r, w = rank(), world_size()
    return slice(r * n // w, (r + 1) * n // w)


def sync_gradients(
    params: nn.Module | Iterable[torch.Tensor], loss: torch.Tensor | float = 0.0
) -> torch.Tensor:
    """Sum the gradients of ``params`` and the (detached) ``loss`` over all ranks, in place.

    Each rank's ``loss`` must be its share of the global-batch loss (its local mean times its
    local count over the global count), then the sum is the one-process gradient and loss. A
    parameter without a gradient counts as zero. Returns the global loss (0-d, detached); with
    one process, ``loss`` unchanged and no communication.
    """
    loss_t = loss.detach() if isinstance(loss, torch.Tensor) else torch.tensor(float(loss))
    if world_size() == 1:
        return loss_t
    ps = [p for p in (params.parameters() if isinstance(params, nn.Module) else params)]
    ps = [p for p in ps if p.requires_grad]
    groups: dict[tuple, list[torch.Tensor]] = {}
    for p in ps:
        groups.setdefault((p.dtype, p.device), []).append(p)
    key = (loss_t.dtype, ps[0].device if ps else loss_t.device)
    groups.setdefault(key, [])
    out = loss_t
    for (dtype, dev), grp in groups.items():
        parts = [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in grp]
        if (dtype, dev) == key:
            parts.append(loss_t.to(dev, dtype).reshape(1))
        flat = torch.cat(parts)
        torch.distributed.all_reduce(flat)
        offset = 0
        for p in grp:
            g = flat[offset : offset + p.numel()].view_as(p)
            if p.grad is None:
                p.grad = g.clone()
            else:
                p.grad.copy_(g)
            offset += p.numel()
        if (dtype, dev) == key:
            out = flat[-1].detach().clone()
    return out


def gather_rows(local: torch.Tensor, n: int, part: slice | None = None) -> torch.Tensor:
    """The ``(n, ...)`` tensor whose rows ``part`` (default :func:`local_part` ``(n)``) each rank
    computed as ``local`` (every rank gets all rows; one all-reduce; the parts must tile
    ``range(n)``). One process: ``local`` itself."""
    if world_size() == 1:
        return local
    part = local_part(n) if part is None else part
    check(
        local.shape[0] == part.stop - part.start,
        f"gather_rows: this rank holds {local.shape[0]} rows; its part of {n} has "
        f"{part.stop - part.start}.",
    )
    full = torch.zeros((n, *local.shape[1:]), dtype=local.dtype, device=local.device)
    full[part] = local
    torch.distributed.all_reduce(torch.view_as_real(full) if full.is_complex() else full)
    return full


def _comm_device() -> str:
    """Where small control tensors go: the CPU (gloo), unless the group is NCCL alone."""
    return "cuda" if torch.distributed.get_backend() == "nccl" else "cpu"


def _any_rank(flag: bool) -> bool:
    """Whether ``flag`` holds on any rank (all ranks must call this together)."""
    if world_size() == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=_comm_device())
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return bool(t.item() > 0)


def save_checkpoint(path: str | os.PathLike, state: Mapping[str, Any]) -> None:
    """Atomically write ``state`` (tensors and plain values) to ``path``; rank 0 only."""
    if not _writes():
        return
    from mrphys.io import atomic_file

    full = {"format": CHECKPOINT_FORMAT, "format_version": _FORMAT_VERSION, **state}
    full.setdefault("version", __version__)
    with atomic_file(path) as tmp:
        torch.save(full, tmp)


def load_plain(
    path: str | os.PathLike, map_location: torch.device | str = "cpu", what: str = "checkpoint"
) -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain values, nothing executed.

    Raises:
        MrphysError: one sentence naming ``path`` (a ``what``) when it is missing, broken or
            truncated, or holds objects other than tensors and plain values (a pickled object is
            refused, never run).
    """
    p = Path(path)
    if not p.is_file():
        raise MrphysError(f"{what} {p} does not exist.")
    try:
        with warnings.catch_warnings():  # e.g. a note on the pickle protocol: not for the user
            warnings.simplefilter("ignore")
            return torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "global" not in str(e).lower():  # not an object the guard stopped: a broken file
            raise MrphysError(f"{p} is not a readable {what} (UnpicklingError).") from None
        raise MrphysError(
            f"{p} holds objects other than tensors and plain values; refusing to load it as a "
            f"{what}."
        ) from None
    except Exception as e:  # a broken pickle stream raises almost anything (KeyError, ...)
        raise MrphysError(f"{p} is not a readable {what} ({type(e).__name__}).") from None


def load_checkpoint(
    path: str | os.PathLike, map_location: torch.device | str = "cpu"
) -> dict[str, Any]:
    """Read a checkpoint dict without executing anything in it (:func:`load_plain`).

    Files of earlier package versions (the flat dicts of relax and SPIN training) load too.

    Raises:
        MrphysError: the file is missing, unreadable, holds objects other than tensors and plain
            values, or has no ``model`` weights and ``config``.
    """
    p = Path(path)
    ck = load_plain(p, map_location)
    if not (isinstance(ck, dict) and isinstance(ck.get("model"), dict) and "config" in ck):
        raise MrphysError(f"{p} is not an mrphys checkpoint (no model weights and config).")
    return ck


def _clone_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class Trainer:
    """Runs units of work (epochs or iterations) with history, early stopping, learning-rate
    schedules, progress bar and checkpoints.

    Args:
        model: the module being trained (its ``state_dict`` is checkpointed; train several
            modules together as an ``nn.ModuleDict``).
        optimizer: one optimiser, or a dict name -> optimiser.
        config: the run's settings, JSON-able (see :func:`plain_config`); stored, and compared
            on :meth:`resume` except for the keys in ``resume_ignore``.
        units: total number of units (epochs or iterations) to run.
        checkpoint: file written after every ``checkpoint_every`` units and at the end.
        normalisation: input statistics stored in the checkpoint.
        generators: name -> ``torch.Generator`` drawn from across units (state checkpointed).
        monitor: key of the unit record to minimise (validation loss): enables early stopping
            after ``patience`` units without improvement, the best-weights copy, and the
            plateau decay ``lr *= lr_decay`` after every ``lr_patience`` such units (0: off).
        schedule: learning rate of (0-based) unit ``u``; set before the unit on every parameter
            group as ``schedule(u) * group.get("lr_scale", 1)``.
        max_seconds: wall-time budget in s, counted from ``started`` (``time.perf_counter()``
            value; default: construction); the run stops before the next unit when spent.
        progress: show a tqdm bar (``desc``, ``unit``), with ``postfix(record)`` as postfix
            (rank 0 only under torchrun).
        log_every: log a unit's record (``logging.INFO``) every this many units.
        on_unit: called as ``on_unit(trainer)`` after each unit (and its checkpoint), on every
            rank (write files only where :func:`is_writer`).

    The unit function receives the 0-based unit index and returns its record; with a
    ``monitor``, ``lr`` (the first parameter group's rate after any plateau decay) is added when
    the record has none. It may count optimiser steps in :attr:`step` and stop a unit early by
    :meth:`out_of_time`.

    A fixed-iteration fit (one unit per optimiser step, a checkpoint every 100)::

        gen = torch.Generator().manual_seed(seed)
        t = Trainer(model, opt, plain_config(cfg), units=3000, checkpoint=path,
                    checkpoint_every=100, generators={"batches": gen}, progress=True,
                    unit="it", on_unit=lambda t: t.epoch % 100 or report(t.history[-1]))
        if resume and path.exists():
            t.resume(path)
        t.run(lambda it: {"loss": step(gen)})
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | Mapping[str, torch.optim.Optimizer],
        config: Mapping[str, Any],
        *,
        units: int,
        checkpoint: str | os.PathLike | None = None,
        checkpoint_every: int = 1,
        normalisation: Mapping[str, Any] | None = None,
        generators: Mapping[str, torch.Generator] | None = None,
        monitor: str | None = None,
        patience: int | None = None,
        lr_patience: int = 0,
        lr_decay: float = 0.5,
        schedule: Callable[[int], float] | None = None,
        max_seconds: float | None = None,
        started: float | None = None,
        resume_ignore: tuple[str, ...] = (),
        progress: bool = False,
        desc: str = "train",
        unit: str = "epoch",
        postfix: Callable[[dict], dict[str, str]] | None = None,
        log_every: int = 1,
        on_unit: Callable[[Trainer], None] | None = None,
    ) -> None:
        check(units >= 0, f"the number of training units must be >= 0; got {units}.")
        check(checkpoint_every >= 1, f"checkpoint_every must be >= 1; got {checkpoint_every}.")
        check(patience is None or patience >= 1, f"patience must be >= 1; got {patience}.")
        check(lr_patience >= 0, f"lr_patience must be >= 0; got {lr_patience}.")
        self.model = model
        self._single = isinstance(optimizer, torch.optim.Optimizer)
        self.optimizers: dict[str, torch.optim.Optimizer] = (
            {"optimizer": optimizer} if self._single else dict(optimizer)
        )
        self.config = dict(config)
        self.units = units
        self.path = Path(checkpoint) if checkpoint is not None else None
        self.checkpoint_every = checkpoint_every
        self.normalisation = dict(normalisation or {})
        self.generators = dict(generators or {})
        self.monitor, self.patience = monitor, patience
        self.lr_patience, self.lr_decay = lr_patience, lr_decay
        self.schedule = schedule
        self.max_seconds = max_seconds
        self.started = time.perf_counter() if started is None else started
        self.resume_ignore = tuple(resume_ignore)
        self.progress, self.desc, self.unit, self.postfix = progress, desc, unit, postfix
        self.on_unit = on_unit
        self.log_every = max(1, int(log_every))
        #: units completed
        self.epoch = 0
        #: optimiser steps taken (counted by the unit function)
        self.step = 0
        #: processes of the torchrun job (1 without one); recorded in the checkpoint
        self.world_size = world_size()
        #: one record per unit (records a caller adds before :meth:`run` are kept)
        self.history: list[dict[str, Any]] = []
        self.best_val = math.inf
        self.bad_epochs = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.stop_reason = ""

    # -- checkpoints ---------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """The checkpoint dict of the run as it stands."""
        opt = {k: o.state_dict() for k, o in self.optimizers.items()}
        st = {
            "model": self.model.state_dict(),
            "optimizer": opt["optimizer"] if self._single else opt,
            "config": self.config,
            "normalisation": self.normalisation,
            "epoch": self.epoch,
            "step": self.step,
            "rng": {k: g.get_state() for k, g in self.generators.items()},
            "history": self.history,
            "best_val": self.best_val,
            "bad_epochs": self.bad_epochs,
            "stop_reason": self.stop_reason,
            "version": __version__,
            "world_size": self.world_size,
        }
        if self.monitor is not None:
            st["best_model"] = self.best_state if self.best_state is not None else st["model"]
        return st

    def save(self) -> None:
        """Write the checkpoint (when a path was given)."""
        if self.path is not None:
            save_checkpoint(self.path, self.state())

    def resume(self, path: str | os.PathLike) -> dict[str, Any]:
        """Continue from a checkpoint: weights, optimisers, counters, history, generator states.

        Returns the checkpoint dict. Raises :class:`MrphysError` when its settings differ from
        this run's (other than ``resume_ignore``).
        """
        p = Path(path)
        dev = next(iter(self.model.state_dict().values()), torch.zeros(())).device
        ck = load_checkpoint(p, map_location=dev)
        old = {k: v for k, v in dict(ck["config"]).items() if k not in self.resume_ignore}
        new = {k: v for k, v in self.config.items() if k not in self.resume_ignore}
        diff = sorted(k for k in set(old) | set(new) if old.get(k, ...) != new.get(k, ...))
        if diff:
            raise MrphysError(
                f"checkpoint {p} was trained with other settings ({', '.join(diff)}); resume "
                "with the same settings or start a new run."
            )
        try:
            self.model.load_state_dict(ck["model"])
            opt = ck["optimizer"]
            for k, o in self.optimizers.items():
                o.load_state_dict(opt if self._single else opt[k])
        except (KeyError, RuntimeError, ValueError) as e:
            raise MrphysError(
                f"checkpoint {p} does not fit this model or optimiser ({type(e).__name__})."
            ) from None
        for k, g in self.generators.items():
            if k in ck.get("rng", {}):
                g.set_state(ck["rng"][k])
        self.epoch = int(ck.get("epoch", 0))
        self.step = int(ck.get("step", 0))
        # SPIN checkpoints before the one trainer kept the history under "extra"
        self.history = list(ck.get("history", ck.get("extra", {}).get("history", [])))
        self.best_val = float(ck.get("best_val", math.inf))
        self.bad_epochs = int(ck.get("bad_epochs", 0))
        self.best_state = ck.get("best_model") if self.monitor is not None else None
        log.info("resuming %s from %s %d", p, self.unit, self.epoch)
        return ck

    # -- the loop ------------------------------------------------------------------------------
    def out_of_time(self) -> bool:
        """Whether the wall-time budget is spent (on any rank: under torchrun every rank must
        ask at the same point, and all get the same answer)."""
        if self.max_seconds is None:
            return False
        return _any_rank(time.perf_counter() - self.started > self.max_seconds)

    def _join(self) -> None:
        """Under torchrun: every rank at the same unit (a resume file seen by all), then rank
        0's weights everywhere (identical starts whatever each rank initialised)."""
        if world_size() == 1:
            return
        e = torch.tensor([float(self.epoch), -float(self.epoch)], device=_comm_device())
        torch.distributed.all_reduce(e, op=torch.distributed.ReduceOp.MAX)
        if e[0] != -e[1]:
            raise MrphysError(
                f"the ranks of this torchrun job start from different {self.unit}s "
                f"({int(-e[1])} to {int(e[0])}); the checkpoint to resume from must be readable "
                "by every rank (a shared folder)."
            )
        with torch.no_grad():
            for t in self.model.state_dict().values():
                torch.distributed.broadcast(torch.view_as_real(t) if t.is_complex() else t, src=0)

    def _stop(self) -> str:
        if self.epoch >= self.units:
            return "max_epochs"
        if self.patience is not None and self.bad_epochs >= self.patience:
            return "early_stopping"
        if self.out_of_time():
            return "time_budget"
        return ""

    def _after(self, rec: dict[str, Any]) -> None:
        if self.monitor is None:
            return
        val = rec[self.monitor]
        if val < self.best_val:
            self.best_val, self.bad_epochs = val, 0
            self.best_state = _clone_state(self.model)
        else:
            self.bad_epochs += 1
            if self.lr_patience and self.bad_epochs % self.lr_patience == 0:
                for o in self.optimizers.values():  # saved with the optimiser: a resume keeps it
                    for grp in o.param_groups:
                        grp["lr"] *= self.lr_decay

    def run(self, unit_fn: Callable[[int], dict[str, Any]]) -> str:
        """Run units until ``units`` are done, early stopping or the time budget; returns the
        stop reason (``max_epochs``, ``early_stopping`` or ``time_budget``)."""
        self._join()
        bar = None
        if self.progress and is_writer():
            from tqdm import tqdm

            bar = tqdm(total=self.units, initial=self.epoch, desc=self.desc, unit=self.unit)
        try:
            while not (stop := self._stop()):
                u = self.epoch
                if self.schedule is not None:
                    lr = self.schedule(u)
                    for o in self.optimizers.values():
                        for grp in o.param_groups:
                            grp["lr"] = lr * grp.get("lr_scale", 1.0)
                rec = unit_fn(u)
                self.epoch = u + 1
                self._after(rec)
                if self.monitor is not None and "lr" not in rec:
                    rec["lr"] = next(iter(self.optimizers.values())).param_groups[0]["lr"]
                self.history.append(rec)
                if self.epoch % self.log_every == 0 or self.epoch == self.units:
                    log.info("%s %d: %s", self.unit, u + 1, _brief(rec))
                if self.path is not None and (
                    self.epoch % self.checkpoint_every == 0 or self.epoch == self.units
                ):
                    self.save()
                if bar is not None:
                    bar.update(1)
                    if self.postfix is not None:
                        bar.set_postfix(self.postfix(rec))
                if self.on_unit is not None:
                    self.on_unit(self)
        finally:
            if bar is not None:
                bar.close()
        self.stop_reason = stop
        self.save()
        barrier()  # the final checkpoint is in place before any rank goes on
        return stop

    def load_best(self) -> None:
        """Put the best weights (lowest ``monitor``) into the model, when tracked."""
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)


def _brief(rec: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in rec.items() if not isinstance(v, torch.Tensor)}
