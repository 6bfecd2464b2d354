"""The registry of dynamic reconstruction methods: the one list the command line, the benchmark and
the demo read.

Each :class:`ReconMethod` names a function ``fn(data, **options) -> (T, Y, X) complex64`` that
takes a :class:`mrphys.physics.radial.RadialData`. Functions are referenced by import path so that
reading the registry stays cheap (the INR pulls in its network code only when it runs).

    from mrphys.recon.registry import METHODS, reconstruct
    rec = reconstruct("grasp", data, iterations=30)   # a Reconstruction
    rec.image                                          # (T, Y, X) complex64
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from mrphys.errors import MrphysError

__all__ = ["METHODS", "ReconMethod", "Reconstruction", "get", "names", "reconstruct"]


@dataclass(frozen=True)
class ReconMethod:
    """One reconstruction method.

    Attributes:
        name: the name the command line takes (``--method NAME``).
        title: a short label for tables and figures.
        target: ``"module:function"`` of the implementation.
        iterative: whether it takes ``iterations`` (and ``progress``).
        options: the keyword options it accepts besides ``data``.
        description: one line for ``--help`` and docs.
    """

    name: str
    title: str
    target: str
    iterative: bool
    options: tuple[str, ...]
    description: str

    @property
    def fn(self) -> Callable[..., torch.Tensor]:
        module, func = self.target.split(":")
        return getattr(importlib.import_module(module), func)


_BASE = "mrphys.recon.baselines"

METHODS: dict[str, ReconMethod] = {
    m.name: m
    for m in (
        ReconMethod(
            "gridding",
            "gridding",
            f"{_BASE}:gridding",
            False,
            ("backend", "combine"),
            "density-compensated NUFFT adjoint, coil-combined",
        ),
        ReconMethod(
            "cg-sense",
            "CG-SENSE",
            f"{_BASE}:cg_sense",
            True,
            ("iterations", "lam", "tol", "backend", "progress", "density", "tau", "mismatch"),
            "Tikhonov-regularised least squares by conjugate gradients",
        ),
        ReconMethod(
            "grasp",
            "GRASP (TV)",
            f"{_BASE}:grasp",
            True,
            ("iterations", "lam_tv", "rho", "inner", "backend", "progress"),
            "temporal total variation by ADMM (the GRASP model)",
        ),
        ReconMethod(
            "ls",
            "L+S",
            f"{_BASE}:low_rank_sparse",
            True,
            ("iterations", "lam_l", "lam_s", "backend", "progress"),
            "low-rank plus sparse (Otazo et al. 2015) by FISTA",
        ),
        ReconMethod(
            "inr",
            "INR",
            "mrphys.recon.inr:reconstruct_inr",
            True,
            ("iterations", "frames_out", "matrix_out", "seed", "device", "config"),
            "scan-specific hash-encoded spatiotemporal neural representation (Feng et al. 2025)",
        ),
    )
}


@dataclass
class Reconstruction:
    """What a reconstruction method returns through :func:`reconstruct`.

    Attributes:
        image: ``(T, Y, X)`` complex64 image series, in the units of the data's ``truth``
            (``(T', Y', X')`` where the INR renders other frames or matrices).
        method: the registry name of the method.
        seconds: wall time of the reconstruction in s.
        options: the options it was called with (None-valued ones dropped).
    """

    image: torch.Tensor
    method: str
    seconds: float
    options: dict = field(default_factory=dict)


def names() -> list[str]:
    """The method names in registry order."""
    return list(METHODS)


def get(name: str) -> ReconMethod:
    """The :class:`ReconMethod` called ``name`` (a clear error for an unknown one)."""
    if name not in METHODS:
        raise MrphysError(
            f"reconstruction method must be one of {', '.join(METHODS)}; got {name!r}."
        )
    return METHODS[name]


def reconstruct(name: str, data, **options) -> Reconstruction:
    """Run method ``name`` on ``data`` with the given options; None-valued options are dropped
    (the method's frozen default applies). An option the method does not take is an error."""
    m = get(name)
    opts = {k: v for k, v in options.items() if v is not None}
    extra = sorted(set(opts) - set(m.options))
    if extra:
        raise MrphysError(
            f"method {name} does not take {', '.join(extra)}; it takes {', '.join(m.options)}."
        )
    fn = m.fn
    t0 = time.perf_counter()
    image = fn(data, **opts)
    return Reconstruction(image, name, time.perf_counter() - t0, opts)
