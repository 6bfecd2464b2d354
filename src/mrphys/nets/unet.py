"""A light alternative to AUTOMAP: centred inverse FFT followed by a small residual U-Net.

k-space ``(B, N, N)`` complex -> centred inverse FFT (:func:`mrphys.physics.fourier.ifft2c`,
``norm="backward"``) -> channels ``[Re, Im]`` -> U-Net (two poolings) ->
``Re(ifft) + correction`` ``(B, N, N)``. ``N`` must be divisible by 4. With ``zero_last=True``
(default) the last layer starts at zero, so the untrained network is exactly ``Re(ifft(k))``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from mrphys.errors import check
from mrphys.physics.fourier import ifft2c


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1),
        nn.ReLU(inplace=True),
    )


class FFTUNet(nn.Module):
    """Inverse FFT plus a residual U-Net.

    Args:
        matrix: N (divisible by 4).
        width: channels of the first level (doubled at each of the two poolings).
        penalty: L1 activity penalty weight on the last hidden feature map (as for AUTOMAP).
        zero_last: start the output layer at zero (untrained net = inverse FFT real part).

    ``forward(k)``: complex ``(B, N, N)`` -> real image ``(B, N, N)``.
    """

    def __init__(
        self, matrix: int = 64, width: int = 16, penalty: float = 1e-4, zero_last: bool = True
    ) -> None:
        super().__init__()
        ok = matrix % 4 == 0 and matrix >= 8
        check(ok, f"matrix must be a multiple of 4 >= 8; got {matrix}.")
        check(width >= 1, f"width must be >= 1; got {width}.")
        self.matrix = matrix
        self.penalty = float(penalty)
        w = width
        self.enc1 = _block(2, w)
        self.enc2 = _block(w, 2 * w)
        self.mid = _block(2 * w, 4 * w)
        self.up2 = nn.ConvTranspose2d(4 * w, 2 * w, 2, stride=2)
        self.dec2 = _block(4 * w, 2 * w)
        self.up1 = nn.ConvTranspose2d(2 * w, w, 2, stride=2)
        self.dec1 = _block(2 * w, w)
        self.out = nn.Conv2d(w, 1, 1)
        if zero_last:
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def forward_with_penalty(self, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Image ``(B, N, N)`` and the scalar L1 activity penalty."""
        n = self.matrix
        check(
            torch.is_complex(k) and k.shape[-2:] == (n, n),
            f"k-space must be complex with shape (B, {n}, {n}); got {tuple(k.shape)}.",
        )
        img = ifft2c(k.reshape(-1, n, n), norm="backward")
        x = torch.stack([img.real, img.imag], dim=1).to(self.out.weight.dtype)
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        m = self.mid(F.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([self.up2(m), e2], dim=1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], dim=1))
        out = x[:, 0] + self.out(d1)[:, 0]
        pen = self.penalty * d1.abs().sum(dim=(1, 2, 3)).mean() / (n * n)
        return out, pen

    def forward(self, k: torch.Tensor) -> torch.Tensor:
        """Image ``(B, N, N)`` from complex k-space ``(B, N, N)``."""
        return self.forward_with_penalty(k)[0]
