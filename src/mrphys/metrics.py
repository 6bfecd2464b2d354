"""Image and parameter metrics, batched over leading dimensions (torch).

Images are ``(..., Y, X)``; a metric returns one value per image, shape ``(...)``. Complex inputs
are compared by magnitude. ``data_range`` defaults to the maximum of ``|ref|`` per image (the usual
choice for MR magnitude images); pass it explicitly to compare with other tools.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mrphys.errors import check


def _real(x: torch.Tensor) -> torch.Tensor:
    return x.abs() if x.is_complex() else x


def _pair(x: torch.Tensor, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x, ref = torch.as_tensor(x), torch.as_tensor(ref)
    check(x.shape == ref.shape, f"image shapes differ: {tuple(x.shape)} vs {tuple(ref.shape)}.")
    check(x.dim() >= 2, f"images must have shape (..., Y, X); got {tuple(x.shape)}.")
    x, ref = _real(x), _real(ref)
    dt = torch.promote_types(torch.promote_types(x.dtype, ref.dtype), torch.float32)
    return x.to(dt), ref.to(dt)


def _range(ref: torch.Tensor, data_range) -> torch.Tensor:
    if data_range is None:
        return ref.flatten(-2).amax(-1)
    return torch.as_tensor(data_range, dtype=ref.dtype, device=ref.device)


def mse(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image, shape ``(...)``."""
    x, ref = _pair(x, ref)
    return ((x - ref) ** 2).flatten(-2).mean(-1)


def psnr(x: torch.Tensor, ref: torch.Tensor, data_range=None) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image: ``10 log10(range^2 / MSE)``."""
    x, ref = _pair(x, ref)
    r = _range(ref, data_range)
    err = ((x - ref) ** 2).flatten(-2).mean(-1)
    return 10 * torch.log10(r**2 / err.clamp_min(torch.finfo(err.dtype).tiny))


def nrmse(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Normalised root-mean-square error ``||x - ref|| / ||ref||`` per image (complex-aware)."""
    x, ref = torch.as_tensor(x), torch.as_tensor(ref)
    check(x.shape == ref.shape, f"image shapes differ: {tuple(x.shape)} vs {tuple(ref.shape)}.")
    num = (x - ref).abs().flatten(-2).norm(dim=-1)
    return num / ref.abs().flatten(-2).norm(dim=-1).clamp_min(1e-30)


def ssim(
    x: torch.Tensor,
    ref: torch.Tensor,
    data_range=None,
    win_size: int = 7,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Structural similarity per image, as ``skimage.metrics.structural_similarity``.

    Same definition as scikit-image's default: uniform ``win_size`` window, sample covariance,
    mean over the image without a ``(win_size - 1) / 2`` border. Shape ``(...)``.
    """
    x, ref = _pair(x, ref)
    check(
        min(x.shape[-2:]) >= win_size,
        f"images must be at least {win_size} pixels per side for SSIM; got {tuple(x.shape[-2:])}.",
    )
    lead = x.shape[:-2]
    r = _range(ref, data_range)
    a = x.reshape(-1, 1, *x.shape[-2:])
    b = ref.reshape(-1, 1, *ref.shape[-2:])
    pool = lambda t: F.avg_pool2d(t, win_size, stride=1)  # noqa: E731 - valid windows only
    n = win_size * win_size
    cov_norm = n / (n - 1)
    ux, uy = pool(a), pool(b)
    vx = cov_norm * (pool(a * a) - ux * ux)
    vy = cov_norm * (pool(b * b) - uy * uy)
    vxy = cov_norm * (pool(a * b) - ux * uy)
    r = r.reshape(-1, 1, 1, 1) if r.dim() else r
    r = r.expand(a.shape[0], 1, 1, 1) if r.dim() else r
    c1, c2 = (k1 * r) ** 2, (k2 * r) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1).reshape(lead)


def cod(y_true: torch.Tensor, y_pred: torch.Tensor, dim=None) -> torch.Tensor:
    """Coefficient of determination ``1 - sum (y - y_pred)^2 / sum (y - mean y)^2``.

    Over all elements (``dim=None``) or over ``dim``.
    """
    y_true, y_pred = torch.as_tensor(y_true), torch.as_tensor(y_pred)
    check(y_true.shape == y_pred.shape, "y_true and y_pred must have the same shape.")
    if dim is None:
        y_true, y_pred, dim = y_true.flatten(), y_pred.flatten(), 0
    res = ((y_true - y_pred) ** 2).sum(dim)
    tot = ((y_true - y_true.mean(dim, keepdim=True)) ** 2).sum(dim)
    return 1 - res / tot


def relative_error(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Element-wise relative error in percent, ``(x - ref) / ref * 100``."""
    x, ref = torch.as_tensor(x), torch.as_tensor(ref)
    return (x - ref) / ref * 100
