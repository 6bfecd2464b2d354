"""SVNN and PINN relaxometry networks (magnitude and complex), METHODS section 3.

One MLP class serves all four methods; SVNN and PINN differ only in the loss (see
:mod:`mrphys.relax.train`). The MLP itself (:class:`mrphys.nets.mlp.RelaxNet`):
the output mapped to a parameter box ``lo + (hi - lo) * sigmoid``. Inputs are z-scored with
statistics stored as buffers, so they travel with the ``state_dict`` and the checkpoint.

Magnitude: 4 inputs (|F-1|, |F0|, |F1|, B1), 64 hidden, outputs (T1, T2): 4,610 parameters.
Complex: 6 inputs (Re F-1, Re F0, Re F1, -Im F-1, Im F1, B1), 256 hidden, outputs (T1, T2, theta):
68,355 parameters.
"""

from __future__ import annotations

import torch

from mrphys.nets.mlp import RelaxNet
from mrphys.physics.ssfp import phase_increments
from mrphys.relax.data import Protocol, is_complex_method, n_features, parameter_box

__all__ = ["RelaxNet", "build_network", "model_features"]


#: box of the heteroscedastic outputs: the log standard deviation of T1 and T2 in units of their
#: box widths (exp(-10) = 4.5e-5 to 1 box width)
LOG_SD_BOX = (-10.0, 0.0)


def build_network(
    method: str, distribution: str = "uniform", heteroscedastic: bool = False
) -> RelaxNet:
    """The paper's network for ``method`` in svnn, pinn, svnn-complex, pinn-complex.

    ``heteroscedastic``: two more outputs, the log standard deviations of T1 and T2 in box widths
    (within :data:`LOG_SD_BOX`), trained with a Gaussian negative log-likelihood
    (:func:`mrphys.relax.train.training_loss`).
    """
    cplx = is_complex_method(method)
    lo, hi = parameter_box(distribution, cplx)
    if heteroscedastic:
        lo = torch.cat([lo, torch.full((2,), LOG_SD_BOX[0])])
        hi = torch.cat([hi, torch.full((2,), LOG_SD_BOX[1])])
    return RelaxNet(n_features(cplx), 256 if cplx else 64, lo, hi)


def model_features(
    params: torch.Tensor, b1: torch.Tensor, protocol: Protocol, complex_: bool
) -> torch.Tensor:
    """Features (without the B1 column) simulated from predicted parameters (the PINN encoder).

    Same numbers as ``configurations(pc_bssfp_signal(..., remove_common_phase=True))`` but in
    real arithmetic and with the factors that the normalisation cancels left out, which makes the
    PINN training step several times cheaper: ``S_j ~ (1 - E2 e^{-i v_j}) / (C cos v_j + D)``; the
    common phase of a voxel is ``arg(F_0)`` because ``sum_j S_j = N F_0``.

    Args:
        params: ``(B, 2)`` (T1, T2 in s) or ``(B, 3)`` (with theta in rad).
        b1: ``(B,)`` relative transmit field.
    Returns:
        ``(B, 3)`` magnitudes or ``(B, 5)`` complex features, differentiable in ``params``.
    """
    dtype, dev = params.dtype, params.device
    n = protocol.n_cycles
    phi = phase_increments(n, dtype=dtype, device=dev)
    p = torch.tensor([-1.0, 0.0, 1.0], dtype=dtype, device=dev)
    kc = torch.cos(phi[:, None] * p[None, :]) / n  # (N, 3)
    ks = torch.sin(phi[:, None] * p[None, :]) / n
    e1 = torch.exp(-protocol.tr / params[:, 0:1])
    e2 = torch.exp(-protocol.tr / params[:, 1:2])
    ca = torch.cos(b1.to(dtype)[:, None] * protocol.flip)
    c = e2 * (e1 - 1) * (1 + ca)
    d = (1 - e1 * ca) - (e1 - ca) * e2 * e2
    v = params[:, 2:3] - phi if complex_ else -phi.expand(params.shape[0], n)
    cv, sv = torch.cos(v), torch.sin(v)
    inv = 1.0 / (c * cv + d)
    re = (1 - e2 * cv) * inv
    im = (e2 * sv) * inv
    f_re = re @ kc - im @ ks  # (B, 3)
    f_im = re @ ks + im @ kc
    if not complex_:
        mag = torch.sqrt(f_re * f_re + f_im * f_im)
        return mag / torch.sqrt((mag * mag).sum(-1, keepdim=True))
    # rotate by conj(F_0)/|F_0|, then normalise
    r0, i0 = f_re[:, 1:2], f_im[:, 1:2]
    nrm0 = torch.sqrt(r0 * r0 + i0 * i0)
    cr, ci = r0 / nrm0, i0 / nrm0
    g_re = f_re * cr + f_im * ci
    g_im = f_im * cr - f_re * ci
    tot = torch.sqrt((g_re * g_re + g_im * g_im).sum(-1, keepdim=True))
    g_re, g_im = g_re / tot, g_im / tot
    return torch.cat([g_re, -g_im[:, :1], g_im[:, 2:]], dim=-1)
