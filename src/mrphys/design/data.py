"""SPIN training and test data: random Table-1 phantoms, Bloch-simulated spin-echo k-space, noise,
Eq. 13 targets; normalisation; an on-disk cache keyed by a hash of the settings.

Noise model (our reading of "standard deviation 2.5 % of the max signal magnitude"): for each
phantom, ``sigma = noise * max|k_ref|`` where ``k_ref`` is the noiseless k-space of that phantom
acquired with the *reference* sequence (90/180 deg, TE 40 ms). Complex Gaussian noise of standard
deviation ``sigma`` (``sigma / sqrt 2`` in each of the real and imaginary parts, as in
``mrphys simulate``) is added. The noise level is fixed per phantom, independent of the sequence
being evaluated: receiver noise does not change when the flip angle changes, so a 30 deg
acquisition has lower SNR (tying sigma to the current signal would make every flip angle equally
good for a network that normalises its input). The standard-normal noise draw ``z`` of every
phantom is stored, so that the test loss is a deterministic function of the sequence (common
random numbers: finite differences then see the sequence change, not a new noise draw).

Normalisation (stored with every checkpoint): network input
``k_n = scale * exp(-i phase) * k / max|k|`` (``max|k|`` of each acquisition). ``phase`` makes the
echo image real and positive; ``scale`` makes ``Re(ifft(k_n))`` match the Eq. 13 target in least
squares, so an inverse-DFT-initialised network starts at the right scale.

Phantoms of a matrix that divides 64 are drawn at 64 x 64 and subsampled (nearest neighbour, pure
tissue values kept): the random placement of the 8 ellipses is slow to converge on coarse grids.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from mrphys.errors import MrphysError, check
from mrphys.physics.fourier import ifft2c
from mrphys.physics.noise import standard_complex_normal
from mrphys.physics.signal import spin_echo_image
from mrphys.resources import check_memory, check_time
from mrphys.tissue import Phantom, spin_shepp_logan
from mrphys.train import load_plain
from mrphys.utils import cache_dir, derived_seed

log = logging.getLogger(__name__)

#: bump when the data-generation code changes meaning (part of the cache key)
DATA_VERSION = 4
#: phantoms per generation chunk (fixed: the random stream depends on it)
CHUNK = 100
#: a lower bound on the Bloch simulation time per phantom pixel (s): measured 37 ms per 32x32 and
#: 75 ms per 64x64 phantom on one core of a 2-core EPYC; used to refuse runs of weeks
SIMULATE_SECONDS_PER_PIXEL = 1e-5
#: bytes per phantom pixel of a data set (maps, noise, k-space, target; twice while concatenated)
DATA_BYTES_PER_PIXEL = 64


@dataclass(frozen=True)
class Acquisition:
    """Spin-echo acquisition settings (SI units: rad, s, m).

    ``flip1``, ``flip2`` in rad, ``te``, ``tr`` in s, ``fov`` in m; ``noise`` is the relative
    noise standard deviation (0.025 = 2.5 % of the reference max |k|).
    """

    matrix: int = 64
    fov: float = 0.064
    tr: float = 10.0
    te: float = 0.04
    flip1: float = math.pi / 2
    flip2: float = math.pi
    noise: float = 0.025

    def check(self) -> None:
        check(8 <= self.matrix <= 256, f"matrix must lie in [8, 256]; got {self.matrix}.")
        check(0 < self.fov < 2, f"fov must be in m, in (0, 2); got {self.fov}.")
        check(0 < self.te < self.tr, f"te must lie in (0, tr) s; got te {self.te}, tr {self.tr}.")
        check(0 <= self.flip1 <= math.pi, f"flip1 must lie in [0, pi] rad; got {self.flip1}.")
        check(0 <= self.flip2 <= math.pi, f"flip2 must lie in [0, pi] rad; got {self.flip2}.")
        check(0 <= self.noise <= 1, f"noise must lie in [0, 1]; got {self.noise}.")


#: the reference acquisition of the paper (noise level and training data)
REFERENCE = Acquisition()

#: ``simulator(phantom, flip1, flip2, te, acq) -> k (B, N, N) complex``; flips rad, te s
Simulator = Callable[
    [Phantom, torch.Tensor | float, torch.Tensor | float, torch.Tensor | float, Acquisition],
    torch.Tensor,
]


def bloch_simulator(
    ph: Phantom,
    flip1: torch.Tensor | float,
    flip2: torch.Tensor | float,
    te: torch.Tensor | float,
    acq: Acquisition,
    tr: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """Spin-echo k-space ``(B, N, N)`` complex64 by the event-based Bloch simulator.

    Differentiable w.r.t. ``flip1``, ``flip2`` (rad), ``te`` and ``tr`` (s, default ``acq.tr``)
    when given as tensors that require grad. The prephase lobe starts at 16.8 ms (SPIN) or
    earlier for short TE. Below TR 5 s, 64 dummy repetitions (instead of 4) reach the steady
    state of CSF (T1 4.2 s).
    """
    from mrphys.physics import bloch, sequence

    tr = acq.tr if tr is None else tr
    tr_f = float(tr.detach()) if isinstance(tr, torch.Tensor) else float(tr)
    te_f = float(te.detach()) if isinstance(te, torch.Tensor) else float(te)
    pre = min(0.0168, 0.5 * te_f - 0.0032)
    check(pre > 0, f"te must exceed 6.4 ms for the spin-echo timing; got {te_f * 1e3:g} ms.")
    seq = sequence.spin_echo(
        matrix=acq.matrix,
        fov=acq.fov,
        tr=tr,
        te=te,
        flip1=flip1,
        flip2=flip2,
        prephase_start=pre,
        n_dummy=4 if tr_f >= 5.0 else 64,
    )
    k = bloch.simulate_kspace(seq, ph)
    return k.reshape(-1, acq.matrix, acq.matrix)


@dataclass
class SpinData:
    """A SPIN data set of ``M`` phantoms, all tensors on CPU unless moved.

    Attributes:
        rho, t1, t2: tissue maps ``(M, N, N)`` (t1, t2 in s), kept for re-simulation.
        sigma: noise standard deviation per phantom ``(M,)`` (fixed, from the reference).
        z: standard complex normal noise draw ``(M, N, N)`` complex64 (E|z|^2 = 1).
        kspace: noisy k-space at ``acq`` ``(M, N, N)`` complex64 (un-normalised).
        target: Eq. 13 image ``(M, N, N)``.
        acq: the acquisition of ``kspace``.
        seed: the seed it was made from.
    """

    rho: torch.Tensor
    t1: torch.Tensor
    t2: torch.Tensor
    sigma: torch.Tensor
    z: torch.Tensor
    kspace: torch.Tensor
    target: torch.Tensor
    acq: Acquisition
    seed: int

    def __len__(self) -> int:
        return int(self.rho.shape[0])

    def phantom(self, idx: slice | torch.Tensor | None = None) -> Phantom:
        """The phantoms (or a subset) as a batched :class:`Phantom`."""
        sel = slice(None) if idx is None else idx
        fov = (self.acq.fov, self.acq.fov)
        return Phantom(self.rho[sel], self.t1[sel], self.t2[sel], fov=fov)

    def subset(self, n: int) -> SpinData:
        """The first ``n`` phantoms."""
        check(1 <= n <= len(self), f"subset size must lie in [1, {len(self)}]; got {n}.")
        return replace(
            self,
            rho=self.rho[:n],
            t1=self.t1[:n],
            t2=self.t2[:n],
            sigma=self.sigma[:n],
            z=self.z[:n],
            kspace=self.kspace[:n],
            target=self.target[:n],
        )


def random_phantoms(n: int, acq: Acquisition, generator: torch.Generator) -> Phantom:
    """``n`` random SPIN phantoms ``(n, N, N)`` (drawn at 64 x 64 and subsampled when N | 64)."""
    if acq.matrix < 64 and 64 % acq.matrix == 0:
        ph = spin_shepp_logan(n, matrix=64, fov=acq.fov, generator=generator)
        f = 64 // acq.matrix
        # voxel 2j of the fine grid sits where voxel j of the coarse grid does (Phantom convention)
        return Phantom(
            ph.rho[:, ::f, ::f].contiguous(),
            ph.t1[:, ::f, ::f].contiguous(),
            ph.t2[:, ::f, ::f].contiguous(),
            fov=(acq.fov, acq.fov),
        )
    return spin_shepp_logan(n, matrix=acq.matrix, fov=acq.fov, generator=generator)


def target_image(ph: Phantom, acq: Acquisition = REFERENCE) -> torch.Tensor:
    """SPIN ground truth: Eq. 13 at the reference TR and TE, ``(B, N, N)``."""
    return spin_echo_image(ph, tr=acq.tr, te=acq.te)


def _with_stored_noise(k: torch.Tensor, sigma: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``k + sigma * z`` with ``sigma`` ``(B,)`` and ``z`` ``(B, N, N)`` complex (E|z|^2 = 1):
    the stored draw of each phantom (common random numbers), not a new one."""
    return k + sigma.to(k.real.dtype)[:, None, None] * z.to(k.dtype)


def settings_key(settings: dict) -> str:
    """A short hash of a JSON-serialisable settings dict (the cache key)."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


#: the tensors of a SPIN data set, as stored in a cache file
_FIELDS = ("rho", "t1", "t2", "sigma", "z", "kspace", "target")


def default_cache_dir() -> Path:
    """Folder for cached SPIN data: :func:`mrphys.utils.cache_dir` / ``spin``."""
    return cache_dir() / "spin"


def _read_cache(
    path: Path, settings: dict, rows: int | None = None, what: str = "SPIN data cache"
) -> dict[str, torch.Tensor] | None:
    """The tensors of a cache file (or chunk file, ``rows`` phantoms) written by
    :func:`make_data` for ``settings``, or None (with a warning) when the file is unreadable,
    holds anything but tensors and plain values (read with ``weights_only=True``: nothing in it
    runs), or does not match ``settings``."""
    try:
        d = load_plain(path, what=what)
    except MrphysError as e:
        log.warning("%s Simulating the data anew.", e)
        return None
    tensors = d.get("tensors") if isinstance(d, dict) else None
    n = settings["n"] if rows is None else rows
    ok = (
        isinstance(tensors, dict)
        and d.get("settings") == settings
        and all(isinstance(tensors.get(k), torch.Tensor) for k in _FIELDS)
        and all(tensors[k].shape[:1] == (n,) for k in _FIELDS)
    )
    if not ok:
        log.warning("%s %s does not hold these settings' data; simulating anew", what, path)
        return None
    log.info("loaded cached SPIN data %s", path)
    return {k: tensors[k] for k in _FIELDS}


def chunk_seeds(seed: int, chunk: int) -> tuple[int, int]:
    """Seeds of the phantom and noise generators of chunk ``chunk`` (phantoms ``100 c`` to
    ``100 c + 99``): each chunk draws from its own streams, so any process can simulate any
    chunk. Chunk 0 keeps the streams of data version 3 (data sets of up to 100 phantoms are
    unchanged)."""
    if chunk == 0:
        return derived_seed(seed), derived_seed(seed, 1, 7919)
    return derived_seed(seed, 1_000_003, chunk), derived_seed(seed, 2_000_029, chunk)


def _simulate_chunk(
    c: int, n: int, seed: int, acq: Acquisition, simulator: Simulator
) -> dict[str, torch.Tensor]:
    """The tensors of chunk ``c`` of a data set of ``n`` phantoms (CPU)."""
    b = min(CHUNK, n - c * CHUNK)
    s_ph, s_z = chunk_seeds(seed, c)
    ph = random_phantoms(b, acq, torch.Generator().manual_seed(s_ph))
    # interleaved (re, im) pairs, as in the stored data sets; each part divided by sqrt 2 for
    # E|z|^2 = 1 (a complex division would round differently)
    gen_z = torch.Generator().manual_seed(s_z)
    z = standard_complex_normal((b, acq.matrix, acq.matrix), gen_z, draw="interleaved")
    z = torch.complex(z.real / math.sqrt(2), z.imag / math.sqrt(2))
    with torch.no_grad():
        k_ref = simulator(ph, REFERENCE.flip1, REFERENCE.flip2, REFERENCE.te, acq)
        sigma = acq.noise * k_ref.abs().flatten(1).amax(1)
        same = (acq.flip1, acq.flip2, acq.te) == (REFERENCE.flip1, REFERENCE.flip2, REFERENCE.te)
        k = k_ref if same else simulator(ph, acq.flip1, acq.flip2, acq.te, acq)
    return {
        "rho": ph.rho,
        "t1": ph.t1,
        "t2": ph.t2,
        "sigma": sigma.float(),
        "z": z,
        "kspace": _with_stored_noise(k, sigma, z).to(torch.complex64),
        "target": target_image(ph),
    }


def _settings(n: int, seed: int, acq: Acquisition, simulator: Simulator) -> dict:
    return {
        "n": n,
        "seed": seed,
        "acq": asdict(acq),
        "version": DATA_VERSION,
        "simulator": f"{simulator.__module__}.{simulator.__qualname__}",
    }


def _chunk_file(parts: Path, c: int) -> Path:
    return parts / f"chunk-{c:06d}.pt"


def _chunk_rows(n: int, c: int) -> int:
    return min(CHUNK, n - c * CHUNK)


def _read_chunk(parts: Path, n: int, c: int, settings: dict) -> dict[str, torch.Tensor] | None:
    f = _chunk_file(parts, c)
    return _read_cache(f, settings, _chunk_rows(n, c), "SPIN data chunk") if f.is_file() else None


def _simulate_chunks(
    chunks: list[int],
    n: int,
    seed: int,
    acq: Acquisition,
    simulator: Simulator,
    settings: dict,
    parts: Path | None,
    progress: bool,
) -> dict[int, dict[str, torch.Tensor]]:
    """Simulate ``chunks`` (those already in ``parts`` are read instead); each chunk simulated
    is written to ``parts`` atomically at once (a killed run keeps what it finished)."""
    from mrphys.io import atomic_file
    from mrphys.train import is_writer

    done: dict[int, dict[str, torch.Tensor]] = {}
    todo = []
    for c in chunks:
        t = _read_chunk(parts, n, c, settings) if parts is not None else None
        if t is None:
            todo.append(c)
        else:
            done[c] = t
    if done:
        log.info("%d of %d chunks were cached already", len(done), len(chunks))
    it = todo
    if progress and is_writer():
        from tqdm import tqdm

        it = tqdm(todo, desc="simulating phantoms", unit="chunk")
    for c in it:
        done[c] = _simulate_chunk(c, n, seed, acq, simulator)
        if parts is not None:
            with atomic_file(_chunk_file(parts, c)) as tmp:
                torch.save({"tensors": done[c], "settings": settings, "chunk": c}, tmp)
    return done


def _assemble(
    path: Path, parts: Path, n: int, settings: dict, have: dict | None = None
) -> dict[str, torch.Tensor] | None:
    """Join the chunks (those in ``have``, the others from their files in ``parts``) into the
    cache file ``path`` (atomically, under a lock; the chunk files are then removed); None when
    a chunk is missing."""
    import fcntl

    from mrphys.io import atomic_file

    lock = path.with_name(f".{path.name}.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if path.is_file():  # another job assembled it meanwhile
            done = _read_cache(path, settings)
            if done is not None:
                return done
        got = []
        for c in range(math.ceil(n / CHUNK)):
            t = have[c] if have and c in have else _read_chunk(parts, n, c, settings)
            if t is None:
                return None
            got.append(t)
        tensors = {k: torch.cat([t[k] for t in got]) for k in _FIELDS}
        with atomic_file(path) as tmp:
            torch.save({"tensors": tensors, "settings": settings}, tmp)
        shutil.rmtree(parts, ignore_errors=True)
        log.info("cached SPIN data in %s", path)
        return tensors
    finally:
        os.close(fd)


def _check_size(n: int, acq: Acquisition) -> None:
    check(n >= 1, f"number of phantoms must be >= 1; got {n}.")
    acq.check()
    pixels = n * acq.matrix**2
    what = f"simulating {n} phantoms of {acq.matrix}x{acq.matrix}"
    check_time(pixels * SIMULATE_SECONDS_PER_PIXEL / 3600, what, "--phantoms or --matrix")
    check_memory(pixels * DATA_BYTES_PER_PIXEL, what, "--phantoms or --matrix")


def simulate_shard(
    n: int,
    seed: int,
    shard: tuple[int, int],
    acq: Acquisition = REFERENCE,
    simulator: Simulator = bloch_simulator,
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> bool:
    """Simulate shard ``I`` of ``N`` (``shard = (I, N)``, 1-based) of the data set of
    :func:`make_data` into its cache: the chunks ``c`` with ``c % N == I - 1`` that are not
    cached yet, each written atomically. ``N`` such jobs, run anywhere with a shared
    ``cache_dir`` (default :func:`default_cache_dir`), simulate the set once; the job that
    finds every chunk present joins them into the cache file. Returns whether the cache file
    is complete."""
    i, m = shard
    check(1 <= i <= m, f"shard must satisfy 1 <= I <= N; got {i}/{m}.")
    _check_size(n, acq)
    settings = _settings(n, seed, acq, simulator)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = cache / f"spin-{settings_key(settings)}.pt"
    if path.is_file() and _read_cache(path, settings) is not None:
        return True
    parts = path.with_suffix(".parts")
    mine = list(range(math.ceil(n / CHUNK)))[i - 1 :: m]
    _simulate_chunks(mine, n, seed, acq, simulator, settings, parts, progress)
    return _assemble(path, parts, n, settings) is not None


def make_data(
    n: int,
    seed: int,
    acq: Acquisition = REFERENCE,
    simulator: Simulator = bloch_simulator,
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> SpinData:
    """Make (or load from ``cache_dir``) ``n`` SPIN phantoms with noisy k-space at ``acq``.

    The phantoms come in chunks of 100, each drawn from its own generators seeded by
    ``(seed, chunk)`` (:func:`chunk_seeds`), so a data set of ``n`` phantoms (``n`` a multiple
    of 100) is the first ``n`` of a larger one with the same seed, and chunks can be simulated
    anywhere. The reference noise level needs the reference acquisition; when ``acq`` differs
    from it the phantoms are simulated twice. Returns CPU tensors.

    The cache file is ``cache_dir / spin-<key>.pt`` with ``key`` a hash of ``n``, ``seed``,
    ``acq``, the data version and the simulator's name (a stand-in simulator gets its own cache
    entries). While it is being made, each simulated chunk is written atomically to
    ``spin-<key>.parts/``: a run that is stopped resumes with the missing chunks (as do
    :func:`simulate_shard` jobs). Files hold tensors and plain values only and are read with
    ``weights_only=True``; one that is broken, holds anything else or other settings is
    simulated anew (with a warning).

    Under ``torchrun`` the ranks simulate the chunks in shares (rank ``r`` of ``W`` the
    contiguous chunks ``[r C / W, (r + 1) C / W)``) and every rank gets the whole set (through
    the cache when there is one, else by an all-reduce).
    """
    from mrphys.train import barrier, gather_rows, is_writer, rank, world_size

    _check_size(n, acq)
    settings = _settings(n, seed, acq, simulator)
    path = parts = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"spin-{settings_key(settings)}.pt"
        parts = path.with_suffix(".parts")
        if path.is_file():
            tensors = _read_cache(path, settings)
            if tensors is not None:
                return SpinData(**tensors, acq=acq, seed=seed)
            barrier()  # every rank has looked at it before rank 0 removes it (replaced below)
            if is_writer():
                path.unlink(missing_ok=True)
    n_chunks = math.ceil(n / CHUNK)
    r, w = rank(), world_size()
    mine = list(range(r * n_chunks // w, (r + 1) * n_chunks // w))
    if path is None and n_chunks < w:  # too few chunks to share: each rank simulates them all
        mine, w = list(range(n_chunks)), 1
    done = _simulate_chunks(mine, n, seed, acq, simulator, settings, parts, progress)
    if w == 1 and path is None:
        return SpinData(**{k: torch.cat([done[c][k] for c in mine]) for k in _FIELDS},
                        acq=acq, seed=seed)  # fmt: skip
    if path is not None:
        barrier()  # every rank's chunks are on disk
        tensors = _assemble(path, parts, n, settings, done) if is_writer() else None
        barrier()
        if tensors is None:
            tensors = _read_cache(path, settings)
        check(tensors is not None, f"the SPIN data cache {path} could not be assembled.")
        return SpinData(**tensors, acq=acq, seed=seed)
    # torchrun without a cache: the rows of my chunks into a zero set, summed over the ranks
    lo = mine[0] * CHUNK if mine else 0
    rows = slice(lo, lo + sum(_chunk_rows(n, c) for c in mine))
    tensors = {k: gather_rows(torch.cat([done[c][k] for c in mine]), n, rows) for k in _FIELDS}
    return SpinData(**tensors, acq=acq, seed=seed)


@dataclass
class Normalisation:
    """Network input normalisation ``k_n = scale * exp(-i phase) * k / max|k|`` (see module doc).

    The division by each acquisition's own ``max|k|`` (per phantom) makes the network input
    independent of the overall signal level, as in the paper's set-up, where a 30 deg
    acquisition differs from a 90 deg one by its SNR and contrast, not by its brightness.
    """

    scale: float = 1.0
    phase: float = 0.0

    def apply(self, k: torch.Tensor) -> torch.Tensor:
        """Normalised k-space ``(B, N, N)`` complex, same shape as ``k`` (differentiable)."""
        f = self.scale * complex(math.cos(self.phase), -math.sin(self.phase))
        peak = k.abs().flatten(1).amax(1).clamp_min(1e-30)
        return k * (f / peak)[:, None, None]

    def as_dict(self) -> dict[str, float]:
        return {"scale": float(self.scale), "phase": float(self.phase)}


def fit_normalisation(data: SpinData) -> Normalisation:
    """Phase and scale from training data (see module doc)."""
    k = Normalisation().apply(data.kspace.to(torch.complex128))
    img = ifft2c(k, norm="backward")  # the networks' (unnormalised) inverse FFT
    tgt = data.target.to(torch.float64)
    proj = (img * tgt).sum()  # <img, target>: its angle is the common phase
    check(bool(proj.abs() > 0), "the training k-space is zero; cannot normalise.")
    phase = float(torch.angle(proj))
    rot = (img * complex(math.cos(phase), -math.sin(phase))).real
    scale = float((rot * tgt).sum() / rot.square().sum())
    if not math.isfinite(scale) or scale <= 0:
        raise MrphysError("the training k-space does not correlate with the targets.")
    return Normalisation(scale=scale, phase=phase)


def acquire(
    data: SpinData,
    flip1: torch.Tensor | float,
    flip2: torch.Tensor | float | None = None,
    te: torch.Tensor | float | None = None,
    idx: slice | torch.Tensor | None = None,
    simulator: Simulator = bloch_simulator,
    device: torch.device | str | None = None,
    tr: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """Noisy k-space ``(B, N, N)`` of (a subset ``idx`` of) ``data``'s phantoms at a new sequence.

    Flip angles in rad, TE and TR in s (defaults: those of ``data.acq``); tensors that require
    grad give a differentiable result. The noise is the stored draw ``sigma * z`` of each
    phantom (common random numbers), so the result is a deterministic function of the
    sequence. ``device``: simulate there (default: where the data are, the CPU).
    """
    sel = slice(None) if idx is None else idx
    flip2 = data.acq.flip2 if flip2 is None else flip2
    te = data.acq.te if te is None else te
    ph = data.phantom(sel)
    if device is not None:
        ph = ph.to(device)  # simulate where the network runs
    if tr is None:
        k = simulator(ph, flip1, flip2, te, data.acq)
    else:  # a learned TR (s); the simulator must accept ``tr``
        k = simulator(ph, flip1, flip2, te, data.acq, tr=tr)
    return _with_stored_noise(k, data.sigma[sel].to(k.device), data.z[sel].to(k.device))
