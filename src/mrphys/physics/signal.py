"""Closed-form steady-state signals (METHODS section 1): spin echo, bSSFP, spoiled GRE.

The one home of each closed form: the spin echo (:func:`spin_echo_steady_state`, with SPIN
Eq. 13 as ``exact=False``; :func:`spin_echo_image` evaluates it on a phantom) and the bSSFP steady
state (:func:`bssfp_closed_form`; :func:`bssfp_steady_state` here and
:func:`mrphys.physics.ssfp.pc_bssfp_signal` for a phase-cycled series call it).

Every function broadcasts its tensor arguments (any shapes that broadcast together), is
differentiable in all of them (double precision passes ``torch.autograd.gradcheck``) and follows
the device and dtype of its inputs. Units: times in s, angles in rad, off-resonance in Hz.
Voxels without tissue (``t1 <= 0`` or ``t2 <= 0``, the phantom background) give 0 with finite
gradients.

These are the references the Bloch simulator (:mod:`mrphys.physics.bloch`) is tested against;
the sign conventions are the simulator's (precession ``exp(-i 2 pi df t)``, receiver phase
``RF phase - pi/2`` so that an excitation from +z reads real positive).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from mrphys.errors import check, check_finite

if TYPE_CHECKING:
    from mrphys.tissue.phantom import Phantom

__all__ = [
    "spin_echo_steady_state",
    "spin_echo_image",
    "bssfp_closed_form",
    "bssfp_steady_state",
    "spoiled_gre_steady_state",
    "ernst_angle",
]

Value = torch.Tensor | float


def _tensors(*xs: Value) -> list[torch.Tensor]:
    """Tensors of a common floating dtype and device (floats follow the first tensor)."""
    ref = next((x for x in xs if isinstance(x, torch.Tensor)), None)
    device = None if ref is None else ref.device
    dtype = None
    for x in xs:
        if isinstance(x, torch.Tensor) and x.is_floating_point():
            dtype = x.dtype if dtype is None else torch.promote_types(dtype, x.dtype)
    dtype = dtype or torch.get_default_dtype()
    out = []
    for x in xs:
        if isinstance(x, torch.Tensor):
            out.append(x.to(dtype=dtype, device=device))
        else:
            check_finite("a signal-model argument", float(x))
            out.append(torch.tensor(float(x), dtype=dtype, device=device))
    return out


def _relaxation(
    t1: torch.Tensor, t2: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tissue mask and safe relaxation times (1 s in the background, so gradients stay finite)."""
    check_finite("t1", t1)
    check_finite("t2", t2)
    check(bool((t1 >= 0).all()) and bool((t2 >= 0).all()), "t1 and t2 must be >= 0 s.")
    if t1.numel() and t2.numel():
        check(
            float(t1.detach().max()) < 100 and float(t2.detach().max()) < 100,
            "t1 and t2 are in seconds and must be below 100 s (milliseconds given?).",
        )
    tissue = (t1 > 0) & (t2 > 0)
    one = torch.ones((), dtype=t1.dtype, device=t1.device)
    return tissue, torch.where(tissue, t1, one), torch.where(tissue, t2, one)


def _times(tr: torch.Tensor, te: torch.Tensor) -> None:
    check_finite("tr", tr)
    check_finite("te", te)
    check(bool((tr > 0).all()), "tr must be > 0 s.")
    check(bool((te >= 0).all()) and bool((te <= tr).all()), "te must lie in [0, tr] s.")


def spin_echo_steady_state(
    rho: Value,
    t1: Value,
    t2: Value,
    tr: Value,
    te: Value,
    flip1: Value = math.pi / 2,
    flip2: Value = math.pi,
    exact: bool = True,
) -> torch.Tensor:
    """Spin-echo amplitude at the echo time in the steady state with spoiling.

    ``exact=True``: excitation ``flip1`` at t = 0, refocusing ``flip2`` at TE/2, transverse
    magnetisation spoiled before the next excitation, the refocusing pulse acting on z as
    ``cos(flip2)`` (exact for the 90_y/180_x-type phases of
    :func:`mrphys.physics.sequence.spin_echo`). With ``E1 = exp(-TR/T1)``,
    ``Eh = exp(-TE/(2 T1))``, ``Er = exp(-(TR - TE/2)/T1)``:
    ``Mz- = rho (cos(f2) (1 - Eh) Er + 1 - Er) / (1 - cos(f1) cos(f2) E1)`` and the echo is
    ``Mz- sin(f1) sin^2(f2/2) exp(-TE/T2)``. For 90/180 this is METHODS section 1:
    ``rho (1 - 2 exp(-(TR - TE/2)/T1) + exp(-TR/T1)) exp(-TE/T2)``, the same as
    :func:`spin_echo_image` with ``exact=True``. For ``flip2 != pi`` it is the
    spin-echo pathway only (a Bloch simulation of one voxel without dephasing also sees the FID
    of the refocusing pulse).

    ``exact=False``: SPIN Eq. 13, ``rho (1 - exp(-TR/T1)) exp(-TE/T2)`` (flip angles ignored; the
    SPIN ground truth, :func:`spin_echo_image` with ``exact=False``).

    Args:
        rho: proton density (any units), broadcastable.
        t1, t2: relaxation times in s, broadcastable; 0 marks background.
        tr, te: repetition and echo time in s.
        flip1, flip2: excitation and refocusing flip angles in rad.
        exact: steady state (True) or SPIN Eq. 13 (False).

    Returns:
        real tensor of the broadcast shape.
    """
    rho, t1, t2, tr, te, f1, f2 = _tensors(rho, t1, t2, tr, te, flip1, flip2)
    _times(tr, te)
    tissue, t1s, t2s = _relaxation(t1, t2)
    t2decay = torch.exp(-te / t2s)
    if exact:
        e1 = torch.exp(-tr / t1s)
        eh = torch.exp(-te / (2 * t1s))
        er = torch.exp(-(tr - te / 2) / t1s)
        c1, c2 = torch.cos(f1), torch.cos(f2)
        mz = rho * (c2 * (1 - eh) * er + 1 - er) / (1 - c1 * c2 * e1)
        s = mz * torch.sin(f1) * torch.sin(f2 / 2) ** 2 * t2decay
    else:
        s = rho * (1 - torch.exp(-tr / t1s)) * t2decay
    return torch.where(tissue, s, torch.zeros_like(s))


def spin_echo_image(
    ph: Phantom,
    tr: Value = 10.0,
    te: Value = 0.04,
    exact: bool = False,
) -> torch.Tensor:
    """Spin-echo image of a phantom's tissue maps: the SPIN ground truth.

    :func:`spin_echo_steady_state` of ``ph.rho``, ``ph.t1``, ``ph.t2`` with 90/180 pulses:
    ``exact=False`` is SPIN Eq. 13, ``rho (1 - exp(-TR/T1)) exp(-TE/T2)``; ``exact=True`` the
    steady state ``rho (1 - 2 exp(-(TR - TE/2)/T1) + exp(-TR/T1)) exp(-TE/T2)``.

    Args:
        ph: the phantom, maps ``(B, Y, X)`` or ``(Y, X)``.
        tr, te: repetition and echo time in s.
        exact: steady state (True) or SPIN Eq. 13 (False).

    Returns:
        real tensor of the shape, dtype and device of ``ph.rho``; 0 where T1 or T2 is 0.
    """
    return spin_echo_steady_state(ph.rho, ph.t1, ph.t2, tr, te, exact=exact)


def bssfp_closed_form(
    m0: Value,
    t1: torch.Tensor,
    t2: torch.Tensor,
    flip: torch.Tensor,
    theta: torch.Tensor,
    phase_increment: Value,
    tr: Value,
    te: Value,
) -> torch.Tensor:
    """The bSSFP steady state at TE (ideal hard pulses, no spoiling, no input checks).

    With ``E1 = exp(-TR/T1)``, ``E2 = exp(-TR/T2)``, ``v = theta - phase_increment``,
    ``C = E2 (E1 - 1)(1 + cos a)``, ``D = (1 - E1 cos a) - (E1 - cos a) E2^2``:
    ``S = M0 (1 - E1) sin(a) (1 - E2 e^{-iv}) / (C cos v + D) e^{-TE/T2} e^{i theta TE/TR}``
    (METHODS section 3, one phase cycle). The callers check their inputs and mask the
    background: :func:`bssfp_steady_state` and :func:`mrphys.physics.ssfp.pc_bssfp_signal`.

    Args:
        m0: equilibrium magnetisation, broadcastable.
        t1, t2: relaxation times in s (> 0), real tensors, broadcastable.
        flip: actual flip angle ``a`` in rad, broadcastable.
        theta: off-resonance phase per TR in rad, broadcastable.
        phase_increment: RF phase increment per TR in rad, broadcastable.
        tr, te: repetition and echo time in s (floats or broadcastable tensors).

    Returns:
        complex tensor of the broadcast shape (complex128 for float64 inputs, else complex64).
    """
    e1 = torch.exp(-tr / t1)
    e2 = torch.exp(-tr / t2)
    ca, sa = torch.cos(flip), torch.sin(flip)
    c = e2 * (e1 - 1) * (1 + ca)
    d = (1 - e1 * ca) - (e1 - ca) * e2**2
    v = theta - phase_increment
    # 1 - E2 exp(-i v) = (1 - E2 cos v) + i E2 sin v
    num = torch.complex(1 - e2 * torch.cos(v), e2 * torch.sin(v))
    amp = m0 * (1 - e1) * sa / (c * torch.cos(v) + d) * torch.exp(-te / t2)
    ph = theta * (te / tr)
    return num * amp * torch.complex(torch.cos(ph), torch.sin(ph))


def bssfp_steady_state(
    rho: Value,
    t1: Value,
    t2: Value,
    tr: Value,
    te: Value,
    flip: Value,
    off_resonance_hz: Value = 0.0,
    phase_increment: Value = math.pi,
    theta: Value | None = None,
) -> torch.Tensor:
    """Complex balanced-SSFP steady state at TE (ideal hard pulses, no spoiling).

    :func:`bssfp_closed_form` with ``theta = -2 pi off_resonance_hz TR`` by default (the
    simulator's precession sign), checked inputs and 0 in the background. On resonance with the
    alternating phase (``phase_increment = pi``) and ``TE = TR/2`` the signal is real, with
    magnitude ``rho (1 - E1) sin(a) sqrt(E2) / (1 - (E1 - E2) cos a - E1 E2)`` (METHODS 1).

    Args:
        rho: proton density, broadcastable.
        t1, t2: relaxation times in s, broadcastable; 0 marks background.
        tr, te: repetition and echo time in s.
        flip: actual flip angle in rad (multiply by B1 yourself), broadcastable.
        off_resonance_hz: off-resonance in Hz, broadcastable (ignored when ``theta`` is given).
        phase_increment: RF phase increment per TR in rad (``pi``: alternating; the phase cycle
            ``phi_j`` of METHODS section 3 for a phase-cycled series).
        theta: off-resonance phase per TR in rad, instead of ``off_resonance_hz``.

    Returns:
        complex tensor of the broadcast shape (complex128 for float64 inputs, else complex64).
    """
    if theta is None:
        rho, t1, t2, tr, te, a, df, phi = _tensors(
            rho, t1, t2, tr, te, flip, off_resonance_hz, phase_increment
        )
        th = -2 * math.pi * df * tr
    else:
        rho, t1, t2, tr, te, a, th, phi = _tensors(
            rho, t1, t2, tr, te, flip, theta, phase_increment
        )
    _times(tr, te)
    tissue, t1s, t2s = _relaxation(t1, t2)
    s = bssfp_closed_form(rho, t1s, t2s, a, th, phi, tr, te)
    return torch.where(tissue, s, torch.zeros((), dtype=s.dtype, device=s.device))


def spoiled_gre_steady_state(
    rho: Value, t1: Value, t2: Value, tr: Value, te: Value, flip: Value
) -> torch.Tensor:
    """Ideally spoiled gradient echo (Ernst): ``rho sin(a) (1 - E1) / (1 - E1 cos a) e^{-TE/T2}``.

    ``E1 = exp(-TR/T1)``. The decay is ``exp(-TE/T2)`` because the simulator has no T2'
    (intra-voxel dephasing) unless several isochromats and off-resonance are given.

    Args:
        rho: proton density, broadcastable.
        t1, t2: relaxation times in s, broadcastable; 0 marks background.
        tr, te: repetition and echo time in s.
        flip: flip angle in rad, broadcastable.

    Returns:
        real tensor of the broadcast shape.
    """
    rho, t1, t2, tr, te, a = _tensors(rho, t1, t2, tr, te, flip)
    _times(tr, te)
    tissue, t1s, t2s = _relaxation(t1, t2)
    e1 = torch.exp(-tr / t1s)
    s = rho * torch.sin(a) * (1 - e1) / (1 - e1 * torch.cos(a)) * torch.exp(-te / t2s)
    return torch.where(tissue, s, torch.zeros_like(s))


def ernst_angle(t1: Value, tr: Value) -> torch.Tensor:
    """Flip angle in rad that maximises the spoiled GRE signal: ``arccos(exp(-TR/T1))``."""
    t1, tr = _tensors(t1, tr)
    check(bool((t1 > 0).all()) and bool((tr > 0).all()), "t1 and tr must be > 0 s.")
    return torch.arccos(torch.exp(-tr / t1))
