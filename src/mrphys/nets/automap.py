"""AUTOMAP (Zhu et al., Nature 2018) as used by SPIN (paper 000, METHODS section 2).

k-space ``(B, N, N)`` complex -> ``[Re, Im]`` flattened to ``2 N^2`` -> FC ``N^2`` tanh ->
FC ``N^2`` tanh -> reshape ``(N, N)`` -> conv ``C`` filters 5x5 ReLU -> conv ``C`` filters 5x5
ReLU (the L1 activity penalty acts on this output) -> transposed conv, 1 filter 7x7 ->
image ``(B, N, N)``.
For N = 64 and C = 64 this has 50.5 M parameters (the paper's network).

``init="dft"`` sets the network so that, before training, it returns the real part of the centred
inverse FFT ``mrphys.physics.fourier.ifft2c(k, norm="backward")``:

* FC1 holds ``c * [Re A, -Im A]`` with ``A`` the centred inverse 2-D DFT matrix, so its
  pre-activation is ``c * Re(ifft(k))``; with small ``c`` the tanh is linear to ``O(c^2)``.
* FC2 is ``(c2 / c) * I`` (again tanh in its linear range), conv1 passes ``+x / c2`` and
  ``-x / c2`` in channels 0 and 1 (a Dirac path), conv2 copies those two channels, and the
  transposed conv returns ``ReLU(x) - ReLU(-x) = x``. The other channels keep their Glorot weights
  but enter the output through zero weights, so they start learning after the first step.

The untrained network then equals ``Re(ifft(k))`` to a relative error of about ``max(c, c2)^2 *
max|x|^2 / 3`` (tested). Data are normalised beforehand (see :mod:`mrphys.design.data`) so that
the image is real and positive: then the real part is the image.
"""

from __future__ import annotations

import logging

import torch
import torch.nn as nn
import torch.nn.functional as F

from mrphys.errors import check
from mrphys.physics.fourier import centred_idft_matrix

log = logging.getLogger(__name__)


class Automap(nn.Module):
    """AUTOMAP reconstruction network for square ``N x N`` Cartesian k-space.

    Args:
        matrix: N (64 in the paper).
        channels: filters of the two 5x5 conv layers (64 in the paper).
        init: ``"glorot"`` (the paper) or ``"dft"`` (the untrained network is the inverse FFT).
        dft_scale: the small gains ``c = c2`` of the DFT initialisation (keeps tanh linear).
        penalty: weight of the L1 activity penalty on the second conv layer's output (1e-4).

    Shapes: ``forward(k)`` takes complex ``(B, N, N)`` (or real ``(B, N, N, 2)``) and returns the
    image ``(B, N, N)`` (real); :meth:`forward_with_penalty` also returns the scalar penalty.
    """

    def __init__(
        self,
        matrix: int = 64,
        channels: int = 64,
        init: str = "glorot",
        dft_scale: float = 0.01,
        penalty: float = 1e-4,
    ) -> None:
        super().__init__()
        check(matrix >= 4, f"matrix must be >= 4; got {matrix}.")
        check(channels >= 2, f"channels must be >= 2; got {channels}.")
        check(init in ("glorot", "dft"), f"init must be 'glorot' or 'dft'; got {init!r}.")
        n = matrix
        self.matrix = n
        self.channels = channels
        self.penalty = float(penalty)
        self.init_mode = init
        self.fc1 = nn.Linear(2 * n * n, n * n)
        self.fc2 = nn.Linear(n * n, n * n)
        self.conv1 = nn.Conv2d(1, channels, 5, padding=2)
        self.conv2 = nn.Conv2d(channels, channels, 5, padding=2)
        self.deconv = nn.ConvTranspose2d(channels, 1, 7, padding=3)
        self.reset_parameters()
        if init == "dft":
            self.init_dft(dft_scale)

    def reset_parameters(self) -> None:
        """Glorot (Xavier) uniform weights and zero biases, as in the paper (its ref. [9])."""
        for m in (self.fc1, self.fc2, self.conv1, self.conv2, self.deconv):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)

    @torch.no_grad()
    def init_dft(self, scale: float = 0.01) -> None:
        """Make the untrained network the real part of the centred inverse FFT (see module doc)."""
        n = self.matrix
        a = centred_idft_matrix(n)
        m2 = torch.kron(a, a)  # (N^2, N^2): vec(A K A^T) = kron(A, A) vec(K), row-major vec
        w1 = torch.cat([m2.real, -m2.imag], dim=1) * scale
        self.fc1.weight.copy_(w1.to(self.fc1.weight.dtype))
        self.fc1.bias.zero_()
        self.fc2.weight.copy_(torch.eye(n * n, dtype=self.fc2.weight.dtype))  # c2 / c = 1
        self.fc2.bias.zero_()
        # conv1: channel 0 = +x / c2, channel 1 = -x / c2 (Dirac path); others keep Glorot
        self.conv1.weight[:2].zero_()
        self.conv1.weight[0, 0, 2, 2] = 1.0 / scale
        self.conv1.weight[1, 0, 2, 2] = -1.0 / scale
        self.conv1.bias.zero_()
        # conv2: copy channels 0 and 1, and keep them apart from the others
        self.conv2.weight[:2].zero_()
        self.conv2.weight[:, :2].zero_()
        self.conv2.weight[0, 0, 2, 2] = 1.0
        self.conv2.weight[1, 1, 2, 2] = 1.0
        self.conv2.bias.zero_()
        # transposed conv: out = ch0 - ch1; other channels enter with zero weight
        self.deconv.weight.zero_()
        self.deconv.weight[0, 0, 3, 3] = 1.0
        self.deconv.weight[1, 0, 3, 3] = -1.0
        self.deconv.bias.zero_()

    def _flatten(self, k: torch.Tensor) -> torch.Tensor:
        n = self.matrix
        if torch.is_complex(k):
            check(
                k.shape[-2:] == (n, n),
                f"k-space must have shape (B, {n}, {n}); got {tuple(k.shape)}.",
            )
            k = k.reshape(-1, n, n)
            return torch.cat([k.real.flatten(1), k.imag.flatten(1)], dim=1)
        check(
            k.shape[-3:] == (n, n, 2),
            f"real k-space must have shape (B, {n}, {n}, 2); got {tuple(k.shape)}.",
        )
        k = k.reshape(-1, n, n, 2)
        return torch.cat([k[..., 0].flatten(1), k[..., 1].flatten(1)], dim=1)

    def forward_with_penalty(self, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Image ``(B, N, N)`` and the activity penalty ``penalty * mean|conv2 output|``.

        The penalty is the paper's L1 term on the last hidden feature map; it is averaged over the
        batch and summed over the feature map, divided by ``N^2`` so that it sits on the scale of
        the per-pixel MSE (the paper's exact normalisation is not stated).
        """
        n = self.matrix
        x = self._flatten(k).to(self.fc1.weight.dtype)
        x = torch.tanh(self.fc1(x))
        x = torch.tanh(self.fc2(x))
        x = x.view(-1, 1, n, n)
        x = F.relu(self.conv1(x))
        h = F.relu(self.conv2(x))
        out = self.deconv(h)[:, 0]
        pen = self.penalty * h.abs().sum(dim=(1, 2, 3)).mean() / (n * n)
        return out, pen

    def forward(self, k: torch.Tensor) -> torch.Tensor:
        """Image ``(B, N, N)`` from k-space ``(B, N, N)`` complex."""
        return self.forward_with_penalty(k)[0]

    def fc_output(self, k: torch.Tensor) -> torch.Tensor:
        """Output of the FC pair reshaped to ``(B, N, N)`` (before the conv layers)."""
        n = self.matrix
        x = self._flatten(k).to(self.fc1.weight.dtype)
        return torch.tanh(self.fc2(torch.tanh(self.fc1(x)))).view(-1, n, n)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
