"""Analytic phase-cycled bSSFP steady state and its SSFP configurations (METHODS section 3).

The steady-state formula itself lives once, in :func:`mrphys.physics.signal.bssfp_closed_form`;
:func:`pc_bssfp_signal` evaluates it for the ``N`` phase increments of a cycled series. Noise and
the relaxometry SNR definition live in :mod:`mrphys.physics.noise`.

All relaxation times and TR/TE are in seconds, angles in radians. Functions broadcast over any
leading shape and are differentiable (double precision passes ``torch.autograd.gradcheck``).
"""

from __future__ import annotations

import math

import torch

from mrphys.errors import check
from mrphys.physics.crlb import CramerRao, cramer_rao
from mrphys.physics.signal import bssfp_closed_form

__all__ = [
    "phase_increments",
    "pc_bssfp_signal",
    "configurations",
    "remove_common_phase",
    "PC_BSSFP_PARAMETERS",
    "pc_bssfp_cramer_rao",
]


def _as_tensor(x: torch.Tensor | float, like: torch.Tensor | None = None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    if like is not None:
        return torch.as_tensor(x, dtype=like.dtype, device=like.device)
    return torch.as_tensor(x, dtype=torch.get_default_dtype())


def phase_increments(
    n_cycles: int,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """RF phase increments ``phi_j = pi * (2j - 1) / N`` for ``j = 1..N``, in rad.

    Returns a real tensor of shape ``(N,)``.
    """
    check(int(n_cycles) >= 1, f"n_cycles must be a positive integer; got {n_cycles}.")
    j = torch.arange(1, int(n_cycles) + 1, dtype=dtype, device=device)
    return math.pi * (2 * j - 1) / int(n_cycles)


def _remove_common_phase(signals: torch.Tensor) -> torch.Tensor:
    """Multiply every phase-cycle signal of a voxel by ``exp(-i arg(sum_j S_j))``.

    Args:
        signals: complex ``(..., N)``.
    Returns:
        complex ``(..., N)`` whose phase-cycle sum is real and non-negative.
    """
    total = signals.sum(dim=-1, keepdim=True)
    # unit phasor conj(total)/|total|; guard voxels with no signal
    mag = total.abs().clamp_min(torch.finfo(total.real.dtype).tiny)
    return signals * (total.conj() / mag)


#: Public name (the keyword argument of :func:`pc_bssfp_signal` shadows it inside that function).
remove_common_phase = _remove_common_phase


def pc_bssfp_signal(
    t1: torch.Tensor | float,
    t2: torch.Tensor | float,
    b1: torch.Tensor | float,
    theta: torch.Tensor | float,
    *,
    tr: float | torch.Tensor,
    te: float | torch.Tensor,
    flip: float | torch.Tensor,
    n_cycles: int | None = None,
    increments: torch.Tensor | None = None,
    m0: torch.Tensor | float = 1.0,
    remove_common_phase: bool = False,
) -> torch.Tensor:
    """Phase-cycled bSSFP steady-state signals (METHODS section 3).

    ``S_j = M0 (1-E1) sin(a) (1 - E2 e^{-i v_j}) / (C cos v_j + D) e^{-TE/T2} e^{i theta TE/TR}``
    with ``a = b1 * flip``, ``v_j = theta - phi_j``, ``phi_j = pi (2j-1)/N``,
    ``C = E2 (E1 - 1)(1 + cos a)``, ``D = (1 - E1 cos a) - (E1 - cos a) E2^2``
    (:func:`mrphys.physics.signal.bssfp_closed_form` at each increment).

    Args:
        t1, t2: relaxation times in s, broadcastable real tensors (or floats).
        b1: relative transmit field (1 = nominal), broadcastable.
        theta: off-resonance phase accumulated per TR in rad, broadcastable.
        tr, te: repetition and echo time in s (floats, or 0-d tensors to differentiate).
        flip: nominal flip angle in rad: one number, or a tensor ``(N,)`` with one flip angle
            per acquisition (a general protocol), or ``(P..., N)``: a batch of protocols.
        n_cycles: number of phase cycles N, with the increments ``pi (2j-1)/N``; or
        increments: the RF phase increments ``(N,)`` in rad (a general protocol), or
            ``(P..., N)``: a batch of protocols. Give exactly one of ``n_cycles`` and
            ``increments``; all of ``flip``, ``increments``, ``tr`` and ``te`` may require
            gradients (protocol design).
        m0: equilibrium magnetisation (broadcastable).
        remove_common_phase: multiply each voxel by ``exp(-i arg(sum_j S_j))``.

    Returns:
        complex tensor ``(..., N)`` (complex128 for float64 inputs, else complex64), ``...`` the
        broadcast shape of the inputs. A batch of protocols broadcasts against the tissues like
        any other input: protocols ``(C, 1, N)`` and tissues ``(S,)`` give ``(C, S, N)``.
    """
    ref = next((v for v in (t1, t2, b1, theta, m0) if isinstance(v, torch.Tensor)), None)
    t1, t2, b1, theta, m0 = (_as_tensor(v, ref) for v in (t1, t2, b1, theta, m0))
    dtype = torch.promote_types(torch.promote_types(t1.dtype, t2.dtype), b1.dtype)
    dtype = torch.promote_types(dtype, theta.dtype)
    if not dtype.is_floating_point:
        dtype = torch.get_default_dtype()
    t1, t2, b1, theta = (v.to(dtype).unsqueeze(-1) for v in (t1, t2, b1, theta))
    m0 = m0.unsqueeze(-1) if isinstance(m0, torch.Tensor) and m0.dim() > 0 else m0
    check(
        (n_cycles is None) != (increments is None),
        "give either n_cycles or increments (the RF phase increments), not both or neither.",
    )
    if increments is None:
        phi = phase_increments(n_cycles, dtype=dtype, device=t1.device)
    else:
        check(
            increments.dim() >= 1,
            "increments must have the acquisitions on their last axis (N,) or (..., N).",
        )
        phi = increments.to(dtype=dtype, device=t1.device)
    if isinstance(flip, torch.Tensor):
        flip = flip.to(dtype=dtype, device=t1.device)
    if isinstance(flip, torch.Tensor) and flip.dim() > 0:
        check(
            flip.shape[-1] == phi.shape[-1],
            f"flip has {flip.shape[-1]} angles but the protocol has {phi.shape[-1]} acquisitions.",
        )

    s = bssfp_closed_form(m0, t1, t2, b1 * flip, theta, phi, tr, te)
    if remove_common_phase:
        s = _remove_common_phase(s)
    return s


def configurations(
    signals: torch.Tensor, phases: int | torch.Tensor, *, normalise: bool = True
) -> torch.Tensor:
    """SSFP configurations ``F_p = (1/N) sum_j S_j exp(+i p phi_j)`` for ``p = -1, 0, 1``.

    Args:
        signals: complex ``(..., N)`` phase-cycle signals.
        phases: the number of cycles N (increments ``pi (2j-1)/N``) or the increments ``(N,)``
            in rad.
        normalise: divide by ``sqrt(|F_-1|^2 + |F_0|^2 + |F_1|^2)`` (cancels M0 and gain).

    Returns:
        complex ``(..., 3)`` ordered ``(F_-1, F_0, F_1)``.
    """
    n = signals.shape[-1]
    rdtype = signals.real.dtype
    if isinstance(phases, torch.Tensor):
        phi = phases.to(device=signals.device, dtype=rdtype)
    else:
        phi = phase_increments(int(phases), dtype=rdtype, device=signals.device)
    check(
        phi.shape == (n,),
        f"signals have {n} phase cycles on their last axis but {phi.numel()} phase increments "
        "were given.",
    )
    p = torch.tensor([-1.0, 0.0, 1.0], dtype=rdtype, device=signals.device)
    arg = p[:, None] * phi[None, :]  # (3, N)
    kernel = torch.complex(torch.cos(arg), torch.sin(arg)) / n  # (3, N)
    # as (3, N) @ (N, M): a short, wide product is ~7x faster than the tall, skinny (M, N) @ (N, 3)
    flat = signals.reshape(-1, n)
    f = (kernel.to(signals.dtype) @ flat.transpose(0, 1)).transpose(0, 1)
    f = f.reshape(*signals.shape[:-1], 3)  # (..., 3)
    if normalise:
        norm = (f.real**2 + f.imag**2).sum(dim=-1, keepdim=True).sqrt()
        f = f / norm.clamp_min(torch.finfo(rdtype).tiny)
    return f


#: parameter order of :func:`pc_bssfp_cramer_rao` (``b1`` only when it is unknown)
PC_BSSFP_PARAMETERS = ("t1", "t2", "m0_re", "m0_im", "theta", "b1")


def pc_bssfp_cramer_rao(
    t1: torch.Tensor,
    t2: torch.Tensor,
    b1: torch.Tensor,
    theta: torch.Tensor,
    *,
    sigma: float | torch.Tensor,
    tr: float | torch.Tensor,
    te: float | torch.Tensor,
    flip: float | torch.Tensor,
    n_cycles: int | None = None,
    increments: torch.Tensor | None = None,
    m0: complex | torch.Tensor = 1.0,
    b1_known: bool = True,
) -> CramerRao:
    """Cramer-Rao bounds of pc-bSSFP relaxometry (:mod:`mrphys.physics.crlb`).

    Unknowns: ``T1, T2`` (s), the complex ``M0`` (real and imaginary part: it absorbs the receive
    phase and gain), the off-resonance phase ``theta`` (rad per TR) and, when ``b1_known`` is
    False, the relative transmit field ``B1``: the parameter order is
    :data:`PC_BSSFP_PARAMETERS` (without ``b1`` when it is known). Noise: white Gaussian of
    standard deviation ``sigma`` in each of the real and imaginary parts of every acquisition
    (``mrphys.physics.noise.sigma_relax(snr, per_channel=True)`` for the relaxometry SNR).

    Args:
        t1, t2, b1, theta: broadcastable real tensors ``(...)``; float64 recommended.
        sigma: number or ``(...)`` tensor.
        tr, te, flip, n_cycles, increments: the protocol, as for :func:`pc_bssfp_signal`
            (per-acquisition ``flip`` and ``increments`` for a general protocol, ``(C, 1, N)``
            for ``C`` protocols at once against tissues ``(S,)``); tensors may require gradients
            (the bound is differentiable with respect to the protocol).
        m0: complex equilibrium magnetisation (number or ``(...)`` tensor).
        b1_known: B1 measured separately (a B1 map) or estimated from the data.
    Returns:
        :class:`~mrphys.physics.crlb.CramerRao` with ``variance`` ``(..., 5)`` or ``(..., 6)``,
        ``...`` the tissue shape broadcast with the protocols' leading shape (``(C, S)`` above).
    """
    t1, t2, b1, theta = torch.broadcast_tensors(
        *(
            torch.as_tensor(v, dtype=torch.float64) if not isinstance(v, torch.Tensor) else v
            for v in (t1, t2, b1, theta)
        )
    )
    m0c = torch.as_tensor(
        m0,
        dtype=torch.complex128 if t1.dtype == torch.float64 else torch.complex64,
        device=t1.device,
    )
    m0c = m0c.expand(t1.shape)
    cols = [t1, t2, m0c.real, m0c.imag, theta] + ([] if b1_known else [b1])
    params = torch.stack([c.to(t1.dtype) for c in cols], dim=-1)

    def model(p: torch.Tensor) -> torch.Tensor:
        b1p = b1 if b1_known else p[..., 5]
        return pc_bssfp_signal(
            p[..., 0],
            p[..., 1],
            b1p,
            p[..., 4],
            tr=tr,
            te=te,
            flip=flip,
            n_cycles=n_cycles,
            increments=increments,
            m0=torch.complex(p[..., 2], p[..., 3]),
        )

    return cramer_rao(model, params, sigma)
