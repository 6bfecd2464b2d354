"""Event-based differentiable Bloch simulator (METHODS section 1).

One step per event, never per clock tick:

* RF (hard pulse, at the start of a block): the 3x3 rotation by ``a = flip * B1`` about
  ``(cos p, sin p, 0)`` applied to (Mx, My, Mz); in complex form with ``m = Mx + i My``
  ``m' = cos^2(a/2) m + sin^2(a/2) e^{2ip} conj(m) - i e^{ip} sin(a) Mz``,
  ``Mz' = cos(a) Mz + sin(a) Im(m e^{-ip})``.
* Free precession over a block of duration ``d`` with constant gradient ``G``:
  ``m *= exp(-i (gamma G.r + dw) d - d/T2)``, ``Mz = Mz E1 + rho (1 - E1)``, ``E1 = exp(-d/T1)``,
  ``dw = 2 pi db0``.
* ADC: all samples of a block in closed form, ``s_k = sum_v m_v W[v, k]``,
  ``W = exp(-i (gamma G.r_v + dw_v) t_k - t_k/T2_v)``; W is built once per distinct readout and
  the samples of all repetitions come from one batched matmul. Demodulated by ``exp(-i phase)``.
* Spoiler: ``m = 0`` at the end of a block; the zero transverse state is tracked exactly and
  costs nothing until the next RF pulse.
* A :class:`~mrphys.physics.sequence.Loop` without ADC (dummy repetitions) is applied in one step:
  its per-voxel affine map (in the frame that follows the RF phase increment) is raised to the
  power ``count`` by repeated squaring.

Background voxels (T1 = 0 or T2 = 0) carry no magnetisation; no NaN in values or gradients.
"""

from __future__ import annotations

import logging
import math

import torch

from mrphys.errors import MrphysError, check
from mrphys.physics.sequence import GAMMA, Block, Loop, RFPulse, Sequence, wrapped_multiple
from mrphys.tissue.phantom import Phantom

__all__ = ["simulate", "simulate_kspace"]

log = logging.getLogger(__name__)


class _Ctx:
    """Tissue maps of a batch chunk and caches keyed by parameter-tensor identity."""

    def __init__(
        self,
        rho: torch.Tensor,
        r1: torch.Tensor,
        r2: torch.Tensor,
        dw: torch.Tensor | None,
        b1: torch.Tensor | None,
        x: torch.Tensor,
        y: torch.Tensor,
        cdtype: torch.dtype,
    ) -> None:
        self.rho, self.r1, self.r2, self.dw, self.b1 = rho, r1, r2, dw, b1
        self.x, self.y, self.cdtype = x, y, cdtype
        self._tis: dict[int, tuple] = {}
        self._pos: dict[tuple, torch.Tensor] = {}
        self._rf: dict[tuple, tuple] = {}
        self._w: dict[tuple, torch.Tensor] = {}
        self._prec: dict[tuple, torch.Tensor] = {}
        self.uses: dict[tuple, int] = {}  # how often each (duration, gx, gy) occurs
        self._keep: list = []  # keep keyed tensors alive so that ids stay unique

    # free precession and relaxation over d, tissue part (N, V)
    def tissue(self, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(p2, e1, rec)``: transverse factor (real, or complex with off-resonance),
        longitudinal decay and recovery over ``d`` s, each ``(N, V)``."""
        k = id(d)
        if k not in self._tis:
            self._keep.append(d)
            e1 = _exp_neg(self.r1 * d)
            rec = self.rho - self.rho * e1
            p2 = _exp_neg(self.r2 * d)
            if self.dw is not None:
                ang = -self.dw * d
                p2 = torch.complex(p2 * torch.cos(ang), p2 * torch.sin(ang))
            self._tis[k] = (p2, e1, rec)
        return self._tis[k]

    def precession(self, b: Block) -> torch.Tensor:
        """Transverse factor of a block, ``(N, V)`` (or ``(V,)``-broadcastable), cached when the
        same (duration, gx, gy) tensors recur."""
        key = (id(b.duration), id(b.gx), id(b.gy))
        hit = self._prec.get(key)
        if hit is not None:
            return hit
        p2 = self.tissue(b.duration)[0]
        pos = self.position(b)
        if pos is None:
            f = p2
        elif p2.is_complex():
            f = p2 * pos
        else:
            f = torch.view_as_complex(p2.unsqueeze(-1) * torch.view_as_real(pos))
        if self.uses.get(key, 0) > 1:
            self._prec[key] = f
        return f

    # gradient phase factor exp(-i gamma G.r d), shape (V,), or None without gradients
    def position(self, b: Block) -> torch.Tensor | None:
        if b.gx is None and b.gy is None:
            return None
        k = (id(b.gx), id(b.gy), id(b.duration))
        if k not in self._pos:
            self._keep.append((b.gx, b.gy, b.duration))
            ph = 0.0
            if b.gx is not None:
                ph = ph + b.gx * self.x
            if b.gy is not None:
                ph = ph + b.gy * self.y
            ph = (-GAMMA * b.duration) * ph
            self._pos[k] = torch.complex(torch.cos(ph), torch.sin(ph))
        return self._pos[k]

    def prepare_positions(self, blocks: list[Block]) -> None:
        """Gradient phase factors of all distinct gradient blocks in one vectorised step
        (``(L, V)``), instead of a few small operations per block."""
        todo: dict[tuple, Block] = {}
        for b in blocks:
            if b.gx is None and b.gy is None:
                continue
            k = (id(b.gx), id(b.gy), id(b.duration))
            if k not in self._pos:
                todo.setdefault(k, b)
        if len(todo) < 2:
            return
        zero = torch.zeros((), dtype=self.x.dtype, device=self.x.device)
        bl = list(todo.values())
        gx = torch.stack([zero if b.gx is None else b.gx for b in bl])[:, None]
        gy = torch.stack([zero if b.gy is None else b.gy for b in bl])[:, None]
        d = torch.stack([b.duration for b in bl])[:, None]
        ph = (-GAMMA * d) * (gx * self.x + gy * self.y)  # (L, V)
        f = torch.complex(torch.cos(ph), torch.sin(ph))
        for i, (k, b) in enumerate(todo.items()):
            self._keep.append((b.gx, b.gy, b.duration))
            self._pos[k] = f[i]

    def rf(self, rf: RFPulse) -> list[list[torch.Tensor]]:
        """Rotation matrix entries ``R[i][j]``, 0-dim (or ``(N, V)`` with a B1 map), acting on
        (Mx, My, Mz): angle ``flip * b1`` about ``(cos phase, sin phase, 0)``."""
        k = (id(rf.flip), id(rf.phase))
        if k not in self._rf:
            self._keep.append(rf)
            a = rf.flip if self.b1 is None else rf.flip * self.b1
            ca, sa = torch.cos(a), torch.sin(a)
            cp, sp = torch.cos(rf.phase), torch.sin(rf.phase)
            ca, sa, cp, sp = torch.broadcast_tensors(ca, sa, cp, sp)
            oc = 1 - ca
            rows = [
                [ca + oc * cp * cp, oc * cp * sp, sa * sp],
                [oc * cp * sp, ca + oc * sp * sp, -sa * cp],
                [-sa * sp, sa * cp, ca],
            ]
            self._rf[k] = rows
        return self._rf[k]

    # closed-form ADC matrix (N, V, K)
    def adc_matrix(self, b: Block) -> torch.Tensor:
        adc = b.adc
        k = (id(b.gx), id(b.gy), id(adc.dwell), id(adc.delay), adc.num)
        if k not in self._w:
            self._keep.append((b.gx, b.gy, adc.dwell, adc.delay))
            idx = torch.arange(adc.num, device=self.x.device, dtype=self.x.dtype) + 0.5
            t = adc.delay + idx * adc.dwell  # (K,)
            gr = torch.zeros_like(self.x)
            if b.gx is not None:
                gr = gr + b.gx * self.x
            if b.gy is not None:
                gr = gr + b.gy * self.y
            ph = (-GAMMA * gr)[:, None] * t[None, :]  # (V, K)
            if self.dw is None:
                decay = torch.exp((self.r2[..., None] * -t).clamp(min=-80.0))  # (N, V, K)
                pk = torch.stack([torch.cos(ph), torch.sin(ph)], dim=-1)  # (V, K, 2)
                w = torch.view_as_complex(decay.unsqueeze(-1) * pk)
            else:
                tot = ph - self.dw[..., None] * t
                w = torch.exp(torch.complex(-self.r2[..., None] * t, tot))
            self._w[k] = w
        return self._w[k]


def _exp_neg(x: torch.Tensor) -> torch.Tensor:
    """``exp(-x)`` for ``x >= 0``, exactly 0 beyond ``x = 80`` (no denormal slow paths; the
    gradient there is below 1e-34 and is dropped)."""
    big = x > 80.0
    return torch.where(big, torch.zeros_like(x), torch.exp(-torch.where(big, 0.0, x)))


def _rf_apply(
    mxy: torch.Tensor | None, mz: torch.Tensor, r: list[list[torch.Tensor]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate (Re mxy, Im mxy, mz) by the matrix ``r`` (entries 0-dim or ``(N, V)``);
    ``mxy=None`` means no transverse magnetisation (after a spoiler), which saves most work."""
    if mxy is None:
        return torch.complex(mz * r[0][2], mz * r[1][2]), mz * r[2][2]
    mx, my = mxy.real, mxy.imag
    new = []
    for i in range(3):
        acc = torch.addcmul(mx * r[i][0], my, r[i][1])
        new.append(torch.addcmul(acc, mz, r[i][2]))
    return torch.complex(new[0], new[1]), new[2]


def _run_blocks(
    blocks: list[Block],
    mxy: torch.Tensor | None,
    mz: torch.Tensor,
    ctx: _Ctx,
    record: list | None,
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Advance the state through ``blocks``; ``record`` collects (block, m at ADC start).

    ``mxy`` is ``(..., N, V)`` complex, or None for zero transverse magnetisation."""
    for b in blocks:
        if b.rf is not None:
            mxy, mz = _rf_apply(mxy, mz, ctx.rf(b.rf))
        if b.adc is not None:
            if record is None:
                raise MrphysError("internal: an ADC inside a collapsed loop.")
            record.append((b, torch.zeros_like(mz, dtype=ctx.cdtype) if mxy is None else mxy))
        _, e1, rec = ctx.tissue(b.duration)
        if b.spoil:
            mxy = None
        elif mxy is not None:
            mxy = mxy * ctx.precession(b)
        mz = torch.addcmul(rec, mz, e1)
    return mxy, mz


def _run_loop(loop: Loop, mxy: torch.Tensor | None, mz: torch.Tensor, ctx: _Ctx) -> tuple:
    """Apply ``loop.count`` repetitions at once through the power of their affine map."""
    cd = ctx.cdtype
    rd = mz.dtype
    if mxy is None:
        mxy = torch.zeros(mz.shape, dtype=cd, device=mz.device)
    shape = mz.shape
    e = torch.tensor([0, 1, 1j, 0], dtype=cd, device=mz.device).view(4, *([1] * mz.dim()))
    z = torch.tensor([0, 0, 0, 1], dtype=rd, device=mz.device).view(4, *([1] * mz.dim()))
    m4 = e.expand(4, *shape)
    z4 = z.expand(4, *shape)
    m4, z4 = _run_blocks(loop.blocks, m4, z4, ctx, None)
    if m4 is None:  # the loop ends with a spoiler
        m4 = torch.zeros((4, *shape), dtype=cd, device=mz.device)
    z4 = z4.expand(4, *shape)
    inc = loop.phase_increment
    m4 = m4 * torch.complex(torch.cos(inc), -torch.sin(inc))
    out = torch.stack([m4.real, m4.imag, z4], dim=-1)  # (4, N, V, 3)
    b = out[0]
    cols = out[1:] - b  # (3, N, V, 3): column j = image of unit vector j
    a = cols.permute(1, 2, 3, 0)  # (N, V, 3 rows, 3 cols)
    top = torch.cat([a, b.unsqueeze(-1)], dim=-1)  # (N, V, 3, 4)
    last = torch.zeros(*shape, 1, 4, dtype=rd, device=mz.device)
    last[..., 0, 3] = 1
    t = torch.cat([top, last], dim=-2)  # (N, V, 4, 4)
    tn = torch.linalg.matrix_power(t, int(loop.count))
    v = torch.stack([mxy.real, mxy.imag, mz, torch.ones_like(mz)], dim=-1)
    v = (tn[..., :3, :] @ v.unsqueeze(-1)).squeeze(-1)
    tot = wrapped_multiple(inc, int(loop.count))
    m = torch.complex(v[..., 0], v[..., 1]) * torch.complex(torch.cos(tot), torch.sin(tot))
    return m, v[..., 2]


def _prepare(
    phantom: Phantom, isochromats: int | tuple[int, int]
) -> tuple[dict[str, torch.Tensor | None], torch.Tensor, torch.Tensor]:
    """Flattened tissue maps (B, V*I) and isochromat positions (V*I,)."""
    ph = phantom.as_batch()
    if isinstance(isochromats, int):
        niy, nix = 1, isochromats
    else:
        niy, nix = (int(v) for v in isochromats)
    check(niy >= 1 and nix >= 1, f"isochromats must be >= 1; got {isochromats!r}.")
    n_iso = niy * nix
    ny, nx = ph.matrix
    dy, dx = ph.fov[0] / ny, ph.fov[1] / nx
    y, x = ph.positions()
    oy = ((torch.arange(niy, device=ph.device, dtype=ph.dtype) + 0.5) / niy - 0.5) * dy
    ox = ((torch.arange(nix, device=ph.device, dtype=ph.dtype) + 0.5) / nix - 0.5) * dx
    oyy, oxx = torch.meshgrid(oy, ox, indexing="ij")
    ys = (y.reshape(-1, 1) + oyy.reshape(1, -1)).reshape(-1)
    xs = (x.reshape(-1, 1) + oxx.reshape(1, -1)).reshape(-1)
    b = len(ph)

    def flat(t: torch.Tensor | None) -> torch.Tensor | None:
        if t is None:
            return None
        t = t.reshape(b, -1, 1).expand(b, ny * nx, n_iso)
        return t.reshape(b, -1)

    t1, t2 = flat(ph.t1), flat(ph.t2)
    tissue = (t1 > 0) & (t2 > 0)
    one = torch.ones_like(t1)
    zero = torch.zeros_like(t1)
    maps = {
        "rho": torch.where(tissue, flat(ph.rho) / n_iso, zero),
        "r1": torch.where(tissue, 1 / torch.where(tissue, t1, one), zero),
        "r2": torch.where(tissue, 1 / torch.where(tissue, t2, one), zero),
        "dw": None if ph.db0 is None else 2 * math.pi * flat(ph.db0),
        "b1": flat(ph.b1),
    }
    return maps, xs, ys


def simulate(
    seq: Sequence,
    phantom: Phantom,
    isochromats: int | tuple[int, int] = 1,
    chunk: int | None = None,
) -> torch.Tensor:
    """Simulate the ADC signal of ``seq`` for ``phantom``.

    Args:
        seq: the sequence (parameter tensors may require grad; moved to the phantom's
            device and dtype differentiably).
        phantom: tissue maps ``(B, Y, X)`` or ``(Y, X)`` (rho, T1/T2 in s, optional b1, db0 in
            Hz); float32 or float64, CPU or CUDA; maps may require grad.
        isochromats: isochromats per voxel on a regular sub-voxel grid: ``n`` (``n`` along x)
            or ``(ny, nx)``; each carries ``rho / (ny nx)``.
        chunk: phantoms simulated at once (bounds memory); default: about 32 MB of ADC
            matrices per chunk on CPU (cache-friendly: 16 SPIN phantoms), 1 GB on GPU.

    Returns:
        complex tensor ``(B, n_adc)`` (``(n_adc,)`` for an unbatched phantom), complex64 for
        float32 phantoms, complex128 for float64; ADC samples in acquisition order, each the sum
        over voxels of ``Mx + i My`` demodulated by the receiver phase.
    """
    if not isinstance(seq, Sequence):
        raise MrphysError(f"seq must be a mrphys Sequence; got {type(seq).__name__}.")
    if not isinstance(phantom, Phantom):
        raise MrphysError(f"phantom must be a mrphys Phantom; got {type(phantom).__name__}.")
    rdt = phantom.dtype
    check(
        rdt in (torch.float32, torch.float64),
        f"phantom maps must be float32 or float64; got {rdt}.",
    )
    cdt = torch.complex64 if rdt == torch.float32 else torch.complex128
    dev = phantom.device
    params = seq.parameters()
    same = all(t.device == dev and t.dtype == rdt for t in params)
    sq = seq if same else seq.to(device=dev, dtype=rdt)
    maps, xs, ys = _prepare(phantom, isochromats)
    bsz, nv = maps["rho"].shape
    n_adc = sq.adc_count
    kmax = max([b.adc.num for b, _ in sq._iter_blocks_counted() if b.adc is not None] + [1])
    if chunk is None:
        # ~32 MB of ADC matrices per chunk: fastest on CPU (cache), bounded memory on GPU
        per = nv * max(kmax, 16) * (8 if cdt == torch.complex64 else 16)
        chunk = max(1, int(32e6 // per)) if dev.type == "cpu" else max(1, int(1e9 // per))
    check(int(chunk) >= 1, f"chunk must be >= 1; got {chunk}.")
    outs = []
    for s in range(0, bsz, int(chunk)):
        sl = slice(s, s + int(chunk))
        part = {k: (None if v is None else v[sl]) for k, v in maps.items()}
        outs.append(_simulate_chunk(sq, part, xs, ys, cdt, n_adc))
    out = torch.cat(outs, dim=0) if len(outs) > 1 else outs[0]
    return out if phantom.batched else out[0]


def _simulate_chunk(
    seq: Sequence, m: dict, xs: torch.Tensor, ys: torch.Tensor, cdt: torch.dtype, n_adc: int
) -> torch.Tensor:
    ctx = _Ctx(m["rho"], m["r1"], m["r2"], m["dw"], m["b1"], xs, ys, cdt)
    distinct = []
    for b, count in seq._iter_blocks_counted():
        key = (id(b.duration), id(b.gx), id(b.gy))
        ctx.uses[key] = ctx.uses.get(key, 0) + count
        distinct.append(b)
    ctx.prepare_positions(distinct)
    mz = m["rho"]
    mxy: torch.Tensor | None = None  # no transverse magnetisation at equilibrium
    record: list[tuple[Block, torch.Tensor]] = []
    for it in seq.items:
        if isinstance(it, Loop):
            if any(b.adc is not None for b in it.blocks) or it.count < 3:
                mxy, mz = _run_blocks(it.expand(), mxy, mz, ctx, record)
            else:
                mxy, mz = _run_loop(it, mxy, mz, ctx)
        else:
            mxy, mz = _run_blocks([it], mxy, mz, ctx, record)
    n = mz.shape[0]
    if not record:
        return torch.zeros(n, 0, dtype=cdt, device=mz.device)
    # group ADC occurrences by readout (same W); one batched matmul per group
    groups: dict[tuple, list[int]] = {}
    for i, (b, _) in enumerate(record):
        k = (id(b.gx), id(b.gy), id(b.adc.dwell), id(b.adc.delay), b.adc.num)
        groups.setdefault(k, []).append(i)
    offsets = []
    pos = 0
    for b, _ in record:
        offsets.append(pos)
        pos += b.adc.num
    pieces = []
    order = []
    for idxs in groups.values():
        b0 = record[idxs[0]][0]
        w = ctx.adc_matrix(b0)  # (N, V, K)
        states = torch.stack([record[i][1] for i in idxs]).transpose(0, 1)  # (N, G, V)
        sig = torch.bmm(states, w)  # (N, G, K)
        phases = torch.stack([record[i][0].adc.phase for i in idxs])  # (G,)
        demod = torch.complex(torch.cos(phases), -torch.sin(phases))
        sig = sig * demod[None, :, None]
        pieces.append(sig.reshape(n, -1))
        for i in idxs:
            order.extend(range(offsets[i], offsets[i] + b0.adc.num))
    allsig = torch.cat(pieces, dim=1) if len(pieces) > 1 else pieces[0]
    order_t = torch.tensor(order, device=mz.device)
    if bool((order_t == torch.arange(len(order), device=mz.device)).all()):
        return allsig
    inv = torch.empty_like(order_t)
    inv[order_t] = torch.arange(len(order), device=mz.device)
    return allsig[:, inv]


def simulate_kspace(
    seq: Sequence,
    phantom: Phantom,
    isochromats: int | tuple[int, int] = 1,
    chunk: int | None = None,
) -> torch.Tensor:
    """:func:`simulate` reshaped to ``(B, *seq.kspace_shape)`` (e.g. ``(B, n_pe, n_ro)``), or
    ``seq.kspace_shape`` for an unbatched phantom. For the Cartesian builders the centred inverse
    FFT :func:`mrphys.physics.fourier.ifft2c` of the result gives the image."""
    sig = simulate(seq, phantom, isochromats=isochromats, chunk=chunk)
    return sig.reshape(*sig.shape[:-1], *seq.kspace_shape)
