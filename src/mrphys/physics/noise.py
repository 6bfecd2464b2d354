"""Complex Gaussian noise and the project's SNR definitions: the one home for both.

Every simulated acquisition in mrphys adds circularly symmetric complex white Gaussian noise. A
noise level is always stated as ``sigma``, the standard deviation of the **complex** sample
(``E|n|^2 = sigma^2``, so ``sigma / sqrt 2`` in each of the real and imaginary parts), and each
application sets ``sigma`` by one of these definitions:

- :func:`sigma_peak`: ``fraction * max |k|`` of the noise-free data (``mrphys simulate
  --noise-pct``; SPIN: 2.5 % of the reference acquisition's peak).
- :func:`sigma_mean`: ``mean |k| / SNR`` of the noise-free data (dynamic radial simulation).
- :func:`sigma_relax`: ``0.074 / SNR`` (METHODS 3: per channel ``0.074 / (sqrt 2 SNR)``, the SNR
  relative to a signal level of 0.074; pc-bSSFP relaxometry).

``inf`` (or None where accepted) means noise-free: sigma 0.
"""

from __future__ import annotations

import math

import torch

from mrphys.errors import MrphysError, check

__all__ = [
    "RELAX_NOISE_REFERENCE",
    "add_complex_noise",
    "correlated_complex_noise",
    "sigma_mean",
    "sigma_peak",
    "sigma_relax",
    "standard_complex_normal",
]

#: Signal level that sets the relaxometry noise: per-channel sigma = 0.074 / (sqrt(2) * SNR).
RELAX_NOISE_REFERENCE = 0.074


def standard_complex_normal(
    shape: tuple[int, ...] | torch.Size,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    draw: str = "split",
) -> torch.Tensor:
    """``re + i im`` with ``re, im`` independent standard normals (so ``E|z|^2 = 2``).

    Args:
        shape: output shape.
        generator: seeded generator on ``device``.
        dtype: real dtype of the draws (the result is the matching complex dtype).
        device: device of the result.
        draw: ``"split"`` draws all real parts, then all imaginary parts (two ``randn`` calls);
            ``"interleaved"`` draws ``(..., 2)`` pairs in one call. Both are kept because stored
            data sets and their numbers were made with each; new code uses ``"split"``.
    """
    check(draw in ("split", "interleaved"), f"draw must be split or interleaved; got {draw!r}.")
    shape = tuple(shape)
    if draw == "interleaved":
        z = torch.randn(shape + (2,), generator=generator, dtype=dtype, device=device)
        return torch.view_as_complex(z)
    re = torch.randn(shape, generator=generator, dtype=dtype, device=device)
    im = torch.randn(shape, generator=generator, dtype=dtype, device=device)
    return torch.complex(re, im)


def add_complex_noise(
    x: torch.Tensor,
    sigma: float | torch.Tensor,
    generator: torch.Generator | None = None,
    draw: str = "split",
) -> torch.Tensor:
    """``x + n`` with ``n`` complex Gaussian of complex standard deviation ``sigma``.

    Args:
        x: complex tensor, any shape.
        sigma: complex standard deviation (``E|n|^2 = sigma^2``); a float, or a real tensor
            broadcastable to ``x`` (per-sample levels). ``0`` returns ``x`` unchanged.
        generator: seeded generator on ``x.device``.
        draw: see :func:`standard_complex_normal`.
    """
    if not isinstance(sigma, torch.Tensor) and float(sigma) == 0.0:
        return x
    z = standard_complex_normal(
        x.shape, generator=generator, dtype=x.real.dtype, device=x.device, draw=draw
    )
    if isinstance(sigma, torch.Tensor):
        return x + z * (sigma.to(x.real.dtype) / math.sqrt(2.0))
    return x + (float(sigma) / math.sqrt(2.0)) * z


def sigma_peak(k: torch.Tensor, fraction: float) -> float:
    """Complex noise std as a fraction of the peak ``max |k|`` of noise-free data."""
    check(0 <= fraction <= 1, f"noise fraction must lie in [0, 1]; got {fraction}.")
    return float(fraction) * float(k.abs().max())


def sigma_mean(k: torch.Tensor, snr: float | None) -> float:
    """Complex noise std for ``SNR = mean |k| / sigma`` of noise-free data (None/inf: 0)."""
    if snr is None or math.isinf(float(snr)):
        return 0.0
    check(math.isfinite(float(snr)) and float(snr) > 0, f"SNR must be positive; got {snr}.")
    return float(k.abs().mean()) / float(snr)


def sigma_relax(snr: float | torch.Tensor, per_channel: bool = False) -> float | torch.Tensor:
    """Noise std of the relaxometry protocol (METHODS 3): per channel ``0.074 / (sqrt 2 SNR)``,
    complex ``0.074 / SNR``.

    Args:
        snr: a positive number, or a real tensor of per-sample SNRs (``inf``: no noise, std 0).
        per_channel: return the std of the real (and of the imaginary) part, computed as
            ``0.074 / (sqrt 2 SNR)`` (the rounding the relaxometry data sets were made with),
            instead of the complex std.
    """
    if isinstance(snr, torch.Tensor):
        ref = snr * math.sqrt(2.0) if per_channel else snr
        sig = RELAX_NOISE_REFERENCE / ref
        return torch.where(torch.isinf(snr), torch.zeros_like(sig), sig)
    check(snr > 0, f"SNR must be positive; got {snr}.")
    if math.isinf(snr):
        return 0.0
    return RELAX_NOISE_REFERENCE / ((math.sqrt(2.0) * float(snr)) if per_channel else float(snr))


def correlated_complex_noise(
    shape: tuple[int, ...] | torch.Size,
    covariance: torch.Tensor,
    coil_axis: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Complex Gaussian noise correlated between coils: ``E[n n^H] = covariance`` along
    ``coil_axis`` (independent along every other axis), complex64.

    Drawn as ``L z / sqrt 2`` with ``L L^H = covariance`` (Cholesky) and ``z`` from
    :func:`standard_complex_normal` (``E|z|^2 = 2``); a diagonal ``sigma^2 I`` gives the noise of
    :func:`add_complex_noise`.

    Args:
        shape: output shape; ``shape[coil_axis] == C``.
        covariance: ``(C, C)`` Hermitian positive definite (complex noise covariance).
        coil_axis: the coil axis of ``shape``.
        generator: seeded generator on ``device``.
        device: device of the result.
    """
    shape = tuple(shape)
    cov = torch.as_tensor(covariance).to(torch.complex128)
    c = shape[coil_axis]
    check(cov.shape == (c, c), f"covariance must be ({c}, {c}) for {c} coils; got {cov.shape}.")
    try:
        chol = torch.linalg.cholesky(cov.cpu())
    except RuntimeError:
        raise MrphysError("covariance must be Hermitian positive definite.") from None
    z = standard_complex_normal(shape, generator=generator, device=device).to(torch.complex128)
    z = torch.movedim(z, coil_axis, -1)
    n = (z @ chol.to(z.device).mT) / math.sqrt(2.0)  # rows: L z
    return torch.movedim(n, -1, coil_axis).to(torch.complex64)
