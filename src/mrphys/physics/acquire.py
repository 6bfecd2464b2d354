"""A Cartesian acquisition of a phantom, end to end: what ``mrphys simulate`` computes.

:func:`simulate_cartesian` builds a phantom and a sequence, Bloch-simulates the k-space, adds
complex noise (:func:`~mrphys.physics.noise.sigma_peak`, a fraction of the peak ``|k|``),
reconstructs by the centred inverse FFT and scores the magnitude against the closed-form image of
the same tissue (SPIN Eq. 13 for spin echo, the bSSFP and spoiled-GRE steady states otherwise).
Times are given in ms and angles in degrees, as on the command line; the result holds SI units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mrphys.errors import MrphysError
from mrphys.physics import bloch, sequence, signal
from mrphys.physics.fourier import ifft2c
from mrphys.physics.noise import add_complex_noise, sigma_peak
from mrphys.physics.sequence import Sequence
from mrphys.tissue import Phantom

__all__ = ["PHANTOMS", "SEQUENCE_DEFAULTS", "CartesianAcquisition", "simulate_cartesian"]

#: sequence -> default (TR ms, TE ms, flip deg)
SEQUENCE_DEFAULTS = {
    "spin-echo": (10000.0, 40.0, 90.0),
    "bssfp": (4.8, 2.4, 30.0),
    "gre": (50.0, 5.0, 30.0),
}
PHANTOMS = ("spin-shepp-logan", "gach")
#: the longest TR in ms (100 s: far beyond full T1 recovery of any tissue)
MAX_TR_MS = 100_000.0


@dataclass
class CartesianAcquisition:
    """A simulated Cartesian acquisition and its reconstruction.

    Attributes:
        kspace: complex ``(N, N)`` = ``[phase encodes, readout]``, k = 0 at index ``N // 2``
            (on the device it was simulated on).
        image: magnitude of the centred inverse FFT (``norm="backward"``), float32 ``(N, N)``
            on the CPU, on the scale of ``truth``.
        truth: closed-form image of the phantom, float32 ``(N, N)`` on the CPU.
        phantom: the phantom (``rho``, ``t1``, ``t2`` in s, ``(N, N)``).
        sequence: the simulated sequence.
        tr, te, flip, fov: repetition and echo time (s), flip angle (rad), field of view (m).
        psnr_db, ssim: PSNR (dB) and SSIM of ``image`` against ``truth``.
    """

    kspace: torch.Tensor
    image: torch.Tensor
    truth: torch.Tensor
    phantom: Phantom
    sequence: Sequence
    tr: float
    te: float
    flip: float
    fov: float
    psnr_db: float
    ssim: float

    @property
    def voxel_mm(self) -> tuple[float, float, float]:
        """In-plane voxel size and a 1 mm slice (mm)."""
        n = self.kspace.shape[-1]
        return (self.fov * 1e3 / n, self.fov * 1e3 / n, 1.0)


def _settings(
    name: str, phantom: str, matrix: int, noise_pct: float, tr_ms, te_ms, flip_deg, fov_mm
) -> tuple[float, float, float, float]:
    """Check the settings; returns TR (s), TE (s), flip (rad) and FOV (m)."""
    if name not in SEQUENCE_DEFAULTS:
        raise MrphysError(f"sequence must be one of {', '.join(SEQUENCE_DEFAULTS)}; got {name!r}.")
    if phantom not in PHANTOMS:
        raise MrphysError(f"phantom must be one of {', '.join(PHANTOMS)}; got {phantom!r}.")
    if not 16 <= matrix <= 512:
        raise MrphysError(f"matrix must be an integer in [16, 512]; got {matrix}.")
    if not 0 <= noise_pct <= 100:
        raise MrphysError(f"noise_pct must lie in [0, 100]; got {noise_pct}.")
    given = (tr_ms, te_ms, flip_deg)
    tr, te, flip = (
        d if v is None else v for v, d in zip(given, SEQUENCE_DEFAULTS[name], strict=True)
    )
    if not 0 < tr <= MAX_TR_MS:  # also NaN and inf: a sentence naming the option
        raise MrphysError(f"tr_ms must lie in (0, {MAX_TR_MS:g}] ms; got {tr}.")
    if not 0 < te < tr:
        raise MrphysError(f"te_ms must be positive and below the TR; got TE {te} ms, TR {tr} ms.")
    if not 0 < flip <= 180:
        raise MrphysError(f"flip_deg must lie in (0, 180]; got {flip}.")
    if fov_mm is None:
        fov_mm = float(matrix) if phantom == "spin-shepp-logan" else 240.0
    if not 1 <= fov_mm <= 1000:
        raise MrphysError(f"fov_mm must lie in [1, 1000] mm; got {fov_mm}.")
    return tr * 1e-3, te * 1e-3, math.radians(flip), fov_mm * 1e-3


def simulate_cartesian(
    sequence_name: str,
    *,
    phantom: str = "spin-shepp-logan",
    matrix: int = 64,
    noise_pct: float = 0.0,
    tr_ms: float | None = None,
    te_ms: float | None = None,
    flip_deg: float | None = None,
    fov_mm: float | None = None,
    field_t: float = 3.0,
    seed: int = 0,
    device: torch.device | str = "cpu",
    system: sequence.System | None = None,
) -> CartesianAcquisition:
    """Bloch-simulate a Cartesian acquisition of a phantom and reconstruct it.

    Args:
        sequence_name: ``spin-echo`` (90/180), ``bssfp`` (alternating 0/pi phase) or ``gre``.
        phantom: ``spin-shepp-logan`` (a random SPIN phantom drawn with ``seed``) or ``gach``.
        matrix: image matrix N (N x N) in [16, 512].
        noise_pct: complex noise std in % of the peak ``|k|`` of the noise-free data.
        tr_ms, te_ms, flip_deg: sequence timing (ms) and (first) flip angle (deg); None takes
            :data:`SEQUENCE_DEFAULTS`.
        fov_mm: field of view (mm); default 1 mm pixels for the SPIN phantom, 240 mm for Gach.
        field_t: B0 (T) of the Gach phantom's T1 values.
        seed: seed of the phantom; the noise is drawn with ``seed + 1``.
        device: a resolved device for the simulation.
        system: hardware limits for scanner-ready sequences (finite RF, ramps, rasters; the
            Pulseq file passes ``check_timing()``), or None for the idealised builders.
    """
    from mrphys.metrics import psnr, ssim
    from mrphys.tissue import gach_shepp_logan, spin_shepp_logan
    from mrphys.utils import make_generator

    tr, te, flip, fov = _settings(
        sequence_name, phantom, matrix, noise_pct, tr_ms, te_ms, flip_deg, fov_mm
    )
    n = matrix
    if phantom == "spin-shepp-logan":
        ph = spin_shepp_logan(1, matrix=n, fov=fov, generator=make_generator(seed))[0]
    else:
        ph = gach_shepp_logan(n, field_t=field_t, fov=fov)
    ph = ph.to(device=device)
    if sequence_name == "spin-echo":
        seq = sequence.spin_echo(matrix=n, fov=fov, tr=tr, te=te, flip1=flip, system=system)
        truth = signal.spin_echo_image(ph, tr=tr, te=te)  # SPIN Eq. 13: the 90/180 target image
    elif sequence_name == "bssfp":
        # one alternating-phase (0, pi) steady state; relaxometry uses the phase-cycled series
        seq = sequence.bssfp(tr=tr, te=te, flip=flip, phase_increment=math.pi, matrix=n, fov=fov,
                             system=system)  # fmt: skip
        truth = signal.bssfp_steady_state(ph.rho, ph.t1, ph.t2, tr=tr, te=te, flip=flip).abs()
    else:
        seq = sequence.gre(tr=tr, te=te, flip=flip, matrix=n, fov=fov, system=system)
        truth = signal.spoiled_gre_steady_state(ph.rho, ph.t1, ph.t2, tr=tr, te=te, flip=flip)
    with torch.no_grad():
        k = bloch.simulate_kspace(seq, ph).reshape(n, n)  # (n_pe, n_ro)
    if noise_pct > 0:
        g = make_generator(seed + 1, device=k.device)
        k = add_complex_noise(k, sigma_peak(k, noise_pct / 100), g)
    image = ifft2c(k, norm="backward").abs().float().cpu()
    truth = truth.float().cpu()
    score = {"psnr_db": float(psnr(image, truth)), "ssim": float(ssim(image, truth))}
    return CartesianAcquisition(k, image, truth, ph, seq, tr, te, flip, fov, **score)
