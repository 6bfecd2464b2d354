"""Event-based differentiable Bloch simulator (METHODS section 1).

One step per event, never per clock tick:

* Finite RF (:class:`~mrphys.physics.sequence.ShapedRF`): one rotation per RF sample about
  ``(2 pi dt Re s_j, 2 pi dt Im s_j, -(gamma G(t).r + dw) dt)`` (the gradient term from the
  exact moment over the sample), composed as SU(2) spinors in a balanced tree and cached per
  pulse shape (RF phases enter as rotations about z, so RF spoiling and phase cycling reuse it);
  free precession before and after the pulse inside its block; half the pulse's relaxation on
  either side (symmetric splitting, second order in duration / T2). Spins at ``z`` positions
  (``slice_positions``) give the slice profile; without off-resonance, B1 map or in-plane
  gradients during the pulse the rotation is computed once per z position.
* Gradients: a constant per block, or piecewise-linear waveforms
  (:class:`~mrphys.physics.sequence.Grad`: trapezoids with ramps, extended trapezoids,
  arbitrary shapes) whose moments are integrated in closed form per linear piece, for the block
  and at every ADC sample (ramp sampling), never by time stepping.
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
from mrphys.physics.sequence import (
    GAMMA,
    Block,
    Grad,
    Loop,
    RFPulse,
    Sequence,
    ShapedRF,
    moment,
    wrapped_multiple,
)
from mrphys.tissue.phantom import Phantom

__all__ = ["simulate", "simulate_kspace", "block_response"]

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
        z: torch.Tensor | None = None,
        n_z: int = 1,
    ) -> None:
        self.rho, self.r1, self.r2, self.dw, self.b1 = rho, r1, r2, dw, b1
        self.x, self.y, self.z, self.n_z, self.cdtype = x, y, z, n_z, cdtype
        self._shaped: dict[tuple, tuple] = {}
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
        key = (id(b.duration), id(b.gx), id(b.gy), id(b.gz))
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

    def _gz(self, b: Block) -> torch.Tensor | Grad | None:
        """The block's z gradient where spins lie off z = 0 (ignored otherwise)."""
        return b.gz if self.z is not None else None

    def phase_of(self, mx, my, mz) -> torch.Tensor:
        """``-gamma (mx x + my y + mz z)`` in rad for moments in T s / m (0-dim, or ``(K,)``
        giving ``(V, K)``); None moments are 0."""
        ph = torch.zeros((), dtype=self.x.dtype, device=self.x.device)
        for m, r in ((mx, self.x), (my, self.y), (mz, self.z)):
            if m is None or r is None:
                continue
            ph = ph + (r * m if m.dim() == 0 else r[:, None] * m[None, :])
        return -GAMMA * ph

    # gradient phase factor exp(-i gamma M.r) of the block's moment M, (V,), or None
    def position(self, b: Block) -> torch.Tensor | None:
        gz = self._gz(b)
        if b.gx is None and b.gy is None and gz is None:
            return None
        k = (id(b.gx), id(b.gy), id(gz), id(b.duration))
        if k not in self._pos:
            self._keep.append((b.gx, b.gy, gz, b.duration))
            d = b.duration
            ph = self.phase_of(moment(b.gx, d), moment(b.gy, d), moment(gz, d))
            self._pos[k] = torch.complex(torch.cos(ph), torch.sin(ph))
        return self._pos[k]

    def prepare_positions(self, blocks: list[Block]) -> None:
        """Gradient phase factors of all distinct gradient blocks in one vectorised step
        (``(L, V)``), instead of a few small operations per block."""
        todo: dict[tuple, Block] = {}
        for b in blocks:
            gz = self._gz(b)
            if (b.gx is None and b.gy is None and gz is None) or isinstance(b.rf, ShapedRF):
                continue
            k = (id(b.gx), id(b.gy), id(gz), id(b.duration))
            if k not in self._pos:
                todo.setdefault(k, b)
        if len(todo) < 2:
            return
        zero = torch.zeros((), dtype=self.x.dtype, device=self.x.device)
        bl = list(todo.values())

        def mom(g, d):
            m = moment(g, d)
            return zero if m is None else m

        mx = torch.stack([mom(b.gx, b.duration) for b in bl])[:, None]
        my = torch.stack([mom(b.gy, b.duration) for b in bl])[:, None]
        ph = mx * self.x + my * self.y  # (L, V)
        if self.z is not None:
            mz = torch.stack([mom(b.gz, b.duration) for b in bl])[:, None]
            ph = ph + mz * self.z
        ph = -GAMMA * ph
        f = torch.complex(torch.cos(ph), torch.sin(ph))
        for i, (k, b) in enumerate(todo.items()):
            self._keep.append((b.gx, b.gy, self._gz(b), b.duration))
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
        gz = self._gz(b)
        k = (id(b.gx), id(b.gy), id(gz), id(adc.dwell), id(adc.delay), adc.num)
        if k not in self._w:
            self._keep.append((b.gx, b.gy, gz, adc.dwell, adc.delay))
            idx = torch.arange(adc.num, device=self.x.device, dtype=self.x.dtype) + 0.5
            t = adc.delay + idx * adc.dwell  # (K,)
            if not any(isinstance(g, Grad) for g in (b.gx, b.gy, gz)):
                gr = torch.zeros_like(self.x)
                for g, r in ((b.gx, self.x), (b.gy, self.y), (gz, self.z)):
                    if g is not None:
                        gr = gr + g * r
                ph = (-GAMMA * gr)[:, None] * t[None, :]  # (V, K)
            else:  # closed-form moment of each waveform at each sample time

                def mt(g):
                    if g is None:
                        return None
                    return g.moment(t) if isinstance(g, Grad) else g * t

                ph = self.phase_of(mt(b.gx), mt(b.gy), mt(gz))
                ph = ph.expand(self.x.shape[0], adc.num)
            if self.dw is None:
                decay = torch.exp((self.r2[..., None] * -t).clamp(min=-80.0))  # (N, V, K)
                pk = torch.stack([torch.cos(ph), torch.sin(ph)], dim=-1)  # (V, K, 2)
                w = torch.view_as_complex(decay.unsqueeze(-1) * pk)
            else:
                tot = ph - self.dw[..., None] * t
                w = torch.exp(torch.complex(-self.r2[..., None] * t, tot))
            self._w[k] = w
        return self._w[k]

    # finite RF pulse: the whole block as pre-precession, rotation core, post-precession
    def shaped(self, b: Block) -> tuple:
        """``(pre, core, post)`` of a block with a :class:`ShapedRF` (RF phase 0): ``pre`` and
        ``post`` are ``(factor, e1, rec)`` of the free intervals before and after the pulse,
        ``core`` the rotation ``(..., V, 3, 3)`` of the pulse with half the pulse's relaxation
        before and after it (symmetric splitting, error O((tau/T2)^2))."""
        rf = b.rf
        gz = self._gz(b)
        key = (id(rf.signal), rf.dwell, rf.delay, rf.freq_offset, id(b.duration), id(b.gx),
               id(b.gy), id(gz))  # fmt: skip
        if key in self._shaped:
            return self._shaped[key]
        self._keep.append((rf, b.duration, b.gx, b.gy, gz))
        dev, rdt = self.x.device, self.x.dtype
        s_n = rf.n
        t0 = float(rf.delay)
        t1 = t0 + s_n * float(rf.dwell)
        d = b.duration
        check(
            t1 <= float(d.detach()) * (1 + 1e-9) + 1e-12,
            f"an RF pulse ending at {t1:g} s does not fit its block of {float(d):g} s.",
        )
        edges = t0 + torch.arange(s_n + 1, device=dev, dtype=rdt) * float(rf.dwell)

        def mom_at(g, t):
            if g is None:
                return None
            return g.moment(t) if isinstance(g, Grad) else g * t

        def diff(m, i0, i1):
            return None if m is None else m[..., i1] - m[..., i0]

        tt = torch.cat([torch.zeros(1, device=dev, dtype=rdt), edges, d.reshape(1).to(rdt)])
        mx, my, mz = mom_at(b.gx, tt), mom_at(b.gy, tt), mom_at(gz, tt)
        # free intervals [0, t0] and [t1, d]
        dur_pre = torch.tensor(t0, device=dev, dtype=rdt)
        dur_post = d - t1
        pre = self._free(dur_pre, diff(mx, 0, 1), diff(my, 0, 1), diff(mz, 0, 1))
        post = self._free(dur_post, diff(mx, -2, -1), diff(my, -2, -1), diff(mz, -2, -1))
        # per-sample precession angle (rad) of every spin from the exact moment increments
        inc = [None if m is None else m[2 : s_n + 2] - m[1 : s_n + 1] for m in (mx, my, mz)]
        inplane = any(
            m is not None and bool((m.detach() != 0).any()) for m in inc[:2]
        )  # in-plane gradients during the pulse
        reduce_z = not inplane and self.dw is None and self.b1 is None
        dt = float(rf.dwell)
        tj = (torch.arange(s_n, device=dev, dtype=rdt) + 0.5) * dt
        sig = rf.signal.to(device=dev)
        if not sig.is_complex():
            sig = torch.complex(sig, torch.zeros_like(sig))
        if rf.freq_offset:
            ang = 2 * math.pi * rf.freq_offset * tj
            sig = sig * torch.complex(torch.cos(ang), torch.sin(ang)).to(sig.dtype)
        ax = 2 * math.pi * dt * sig.real.to(rdt)  # (S,) rotation angle components in rad
        ay = 2 * math.pi * dt * sig.imag.to(rdt)
        if reduce_z:
            # the rotation depends on z only: compute it once per slice position
            if self.z is None or inc[2] is None:
                zs = torch.zeros(1, device=dev, dtype=rdt)
                az = torch.zeros(1, s_n, device=dev, dtype=rdt)
            else:
                zs = self.z[: self.n_z]
                az = GAMMA * zs[:, None] * inc[2][None, :]  # (Z, S)
            rot = _rotation_product(ax, ay, az, None)  # (Z, 3, 3)
            if self.z is not None and self.n_z > 1:
                nv = self.x.shape[0]
                rot = rot.repeat(nv // self.n_z, 1, 1)  # spins are z-fastest
            else:
                rot = rot.expand(self.x.shape[0], 3, 3)
        else:
            az = -self.phase_of(inc[0], inc[1], inc[2])  # (V, S): gamma dM.r
            if self.dw is not None:
                az = az.unsqueeze(0) + self.dw[..., None] * dt  # (N, V, S)
            b1 = self.b1
            rot = _rotation_product(ax, ay, az, b1)
        half = torch.tensor(0.5 * (t1 - t0), device=dev, dtype=rdt)
        e1h = _exp_neg(self.r1 * half)
        hr = (_exp_neg(self.r2 * half), e1h, self.rho - self.rho * e1h)
        self._shaped[key] = (pre, rot, post, hr)
        return self._shaped[key]

    def _free(self, d: torch.Tensor, mx, my, mz) -> tuple:
        """``(factor, e1, rec)`` of free precession over ``d`` s with moments ``m*``."""
        e1 = _exp_neg(self.r1 * d)
        rec = self.rho - self.rho * e1
        f = _exp_neg(self.r2 * d)
        ph = -self.dw * d if self.dw is not None else None
        if any(m is not None for m in (mx, my, mz)):
            g = self.phase_of(mx, my, mz)
            ph = g if ph is None else ph + g
        if ph is not None:
            f = torch.complex(f * torch.cos(ph), f * torch.sin(ph))
        return f, e1, rec


def _rotation_product(
    ax: torch.Tensor, ay: torch.Tensor, az: torch.Tensor, b1: torch.Tensor | None
) -> torch.Tensor:
    """Product ``R_{S-1} ... R_0`` of per-sample rotations, ``(..., P, 3, 3)``.

    Sample ``j`` turns (Mx, My, Mz) right-handedly about ``(ax_j b1, ay_j b1, -az_j)`` by its
    length (rad): the hard-pulse convention of :func:`_rf_apply` for the RF part, free
    precession ``m *= exp(-i az)`` for the z part. ``ax, ay``: ``(S,)``; ``az``: ``(..., P, S)``;
    ``b1``: None or ``(N, P)``. Rotations are composed as SU(2) spinors (Cayley-Klein
    parameters ``a, b``; 4 complex products per composition) in a balanced tree (log2 S
    steps), chunked over spins to bound memory, and turned into 3x3 matrices at the end.
    """
    s_n = ax.shape[0]
    lead = az.shape[:-1]
    if b1 is not None:
        lead = torch.broadcast_shapes(lead, b1.shape)
    az = az.expand(*lead, s_n)
    flat = az.reshape(-1, s_n)
    b1f = None if b1 is None else b1.expand(lead).reshape(-1)
    step = max(1, int(8e6 // max(s_n, 1)))
    outs = []
    for i in range(0, flat.shape[0], step):
        vz = -flat[i : i + step].transpose(0, 1)  # (S, P)
        vx = ax[:, None].expand_as(vz)
        vy = ay[:, None].expand_as(vz)
        if b1f is not None:
            vx = vx * b1f[None, i : i + step]
            vy = vy * b1f[None, i : i + step]
        a, b = _spinor(vx, vy, vz)
        while a.shape[0] > 1:
            if a.shape[0] % 2:  # pad with the identity (a = 1, b = 0)
                a = torch.cat([a, torch.ones_like(a[:1])], dim=0)
                b = torch.cat([b, torch.zeros_like(b[:1])], dim=0)
            a1, b1_, a2, b2 = a[0::2], b[0::2], a[1::2], b[1::2]  # later sample (2) on the left
            a, b = a2 * a1 - b2.conj() * b1_, b2 * a1 + a2.conj() * b1_
        outs.append(_spinor_matrix(a[0], b[0]))
    out = torch.cat(outs, dim=0) if len(outs) > 1 else outs[0]
    return out.reshape(*lead, 3, 3)


def _spinor(vx: torch.Tensor, vy: torch.Tensor, vz: torch.Tensor) -> tuple:
    """Cayley-Klein parameters of the right-handed rotation about ``v`` by ``|v|`` rad:
    ``U = cos(t/2) I - i sin(t/2) n.sigma = [[a, -conj b], [b, conj a]]``; smooth (and
    differentiable) at ``v = 0``."""
    th2 = vx * vx + vy * vy + vz * vz
    small = th2 < 1e-10
    th = torch.sqrt(torch.where(small, torch.ones_like(th2), th2))
    c = torch.where(small, 1 - th2 / 8, torch.cos(th / 2))
    sn = torch.where(small, 0.5 - th2 / 48, torch.sin(th / 2) / th)  # sin(t/2) / t
    a = torch.complex(c, -vz * sn)
    b = torch.complex(vy * sn, -vx * sn)
    return a, b


def _spinor_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The 3x3 rotation ``(P, 3, 3)`` acting on (Mx, My, Mz) of the spinor ``(a, b)``:
    ``R_ij = Re tr(sigma_i U sigma_j U^H) / 2``, written out."""
    ar, ai, br, bi = a.real, a.imag, b.real, b.imag
    r = [
        [ar * ar - ai * ai + bi * bi - br * br, 2 * (ai * ar - bi * br), 2 * (ai * bi + ar * br)],
        [-2 * (ai * ar + bi * br), ar * ar - ai * ai - bi * bi + br * br, 2 * (ar * bi - ai * br)],
        [2 * (ai * bi - ar * br), -2 * (ai * br + ar * bi), ar * ar + ai * ai - bi * bi - br * br],
    ]
    return torch.stack([torch.stack(row, -1) for row in r], -2)


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
        if isinstance(b.rf, ShapedRF):
            if b.adc is not None:
                raise MrphysError(
                    "an ADC in the block of a finite RF pulse is not supported; put it in a "
                    "block of its own."
                )
            mxy, mz = _shaped_apply(b, mxy, mz, ctx)
            continue
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


def _free_apply(mxy, mz, f) -> tuple:
    fac, e1, rec = f
    return (None if mxy is None else mxy * fac), torch.addcmul(rec, mz, e1)


def _shaped_apply(b: Block, mxy, mz, ctx: _Ctx) -> tuple:
    """A block with a finite RF pulse: free precession up to the pulse, the pulse (rotation
    about axes turned by the RF phase, half its relaxation on either side), free precession to
    the block end, then the spoiler."""
    pre, rot, post, hr = ctx.shaped(b)
    mxy, mz = _free_apply(mxy, mz, pre)
    mxy, mz = _free_apply(mxy, mz, hr)
    p = b.rf.phase
    turn = torch.complex(torch.cos(p), torch.sin(p)).to(ctx.cdtype)
    r = [[rot[..., i, j] for j in range(3)] for i in range(3)]
    mxy, mz = _rf_apply(None if mxy is None else mxy * turn.conj(), mz, r)
    mxy = mxy * turn
    mxy, mz = _free_apply(mxy, mz, hr)
    mxy, mz = _free_apply(mxy, mz, post)
    return (None if b.spoil else mxy), mz


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
    phantom: Phantom,
    isochromats: int | tuple[int, int],
    slice_positions: torch.Tensor | None = None,
) -> tuple[dict[str, torch.Tensor | None], torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Flattened tissue maps (B, V*I*Z) and spin positions x, y, z (V*I*Z,), z fastest."""
    ph = phantom.as_batch()
    if isinstance(isochromats, int):
        niy, nix = 1, isochromats
    else:
        niy, nix = (int(v) for v in isochromats)
    check(niy >= 1 and nix >= 1, f"isochromats must be >= 1; got {isochromats!r}.")
    zs = None
    n_z = 1
    if slice_positions is not None:
        zs = torch.as_tensor(slice_positions, dtype=ph.dtype, device=ph.device).reshape(-1)
        check(
            zs.numel() >= 1 and bool(torch.isfinite(zs).all()) and bool(zs.abs().max() < 1),
            "slice_positions must be a 1-D list of finite z positions in m (|z| < 1 m).",
        )
        n_z = zs.numel()
    n_iso = niy * nix * n_z
    ny, nx = ph.matrix
    dy, dx = ph.fov[0] / ny, ph.fov[1] / nx
    y, x = ph.positions()
    oy = ((torch.arange(niy, device=ph.device, dtype=ph.dtype) + 0.5) / niy - 0.5) * dy
    ox = ((torch.arange(nix, device=ph.device, dtype=ph.dtype) + 0.5) / nix - 0.5) * dx
    oyy, oxx = torch.meshgrid(oy, ox, indexing="ij")
    ys = (y.reshape(-1, 1) + oyy.reshape(1, -1)).reshape(-1)
    xs = (x.reshape(-1, 1) + oxx.reshape(1, -1)).reshape(-1)
    if zs is not None:
        xs = xs.repeat_interleave(n_z)
        ys = ys.repeat_interleave(n_z)
        zs = zs.repeat(xs.numel() // n_z)
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
    return maps, xs, ys, zs


def simulate(
    seq: Sequence,
    phantom: Phantom,
    isochromats: int | tuple[int, int] = 1,
    chunk: int | None = None,
    slice_positions: torch.Tensor | None = None,
    coils: torch.Tensor | None = None,
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
        slice_positions: ``(Z,)`` z positions in m of isochromats through the slice (each
            carries ``rho / Z``): z gradients and slice-selective RF act on them. None: one
            spin per voxel at z = 0 (z gradients have no effect).
        coils: receive sensitivities ``(C, Y, X)`` complex (e.g.
            :func:`~mrphys.physics.coils.birdcage_maps`): each coil's signal is the sum over
            spins of ``S_c(r) (Mx + i My)``; the result gains a coil axis ``(B, C, n_adc)``.

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
    same = all(t.device == dev and t.dtype == (cdt if t.is_complex() else rdt) for t in params)
    sq = seq if same else seq.to(device=dev, dtype=rdt)
    maps, xs, ys, zs = _prepare(phantom, isochromats, slice_positions)
    sens = None
    if coils is not None:
        check(
            isinstance(coils, torch.Tensor) and coils.dim() == 3
            and tuple(coils.shape[1:]) == tuple(phantom.matrix),
            f"coils must be a (C, Y, X) tensor with (Y, X) = {tuple(phantom.matrix)}.",
        )  # fmt: skip
        rep = xs.numel() // (phantom.matrix[0] * phantom.matrix[1])
        sens = coils.to(device=dev, dtype=cdt).reshape(coils.shape[0], -1)
        sens = sens.repeat_interleave(rep, dim=1)  # (C, V*I*Z): every spin of a voxel
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
        n_z = 1 if slice_positions is None else int(torch.as_tensor(slice_positions).numel())
        outs.append(_simulate_chunk(sq, part, xs, ys, cdt, n_adc, zs, n_z, sens))
    out = torch.cat(outs, dim=0) if len(outs) > 1 else outs[0]
    return out if phantom.batched else out[0]


def _simulate_chunk(
    seq: Sequence,
    m: dict,
    xs: torch.Tensor,
    ys: torch.Tensor,
    cdt: torch.dtype,
    n_adc: int,
    zs: torch.Tensor | None = None,
    n_z: int = 1,
    sens: torch.Tensor | None = None,
) -> torch.Tensor:
    ctx = _Ctx(m["rho"], m["r1"], m["r2"], m["dw"], m["b1"], xs, ys, cdt, zs, n_z)
    distinct = []
    for b, count in seq._iter_blocks_counted():
        key = (id(b.duration), id(b.gx), id(b.gy), id(b.gz))
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
        lead = (n,) if sens is None else (n, sens.shape[0])
        return torch.zeros(*lead, 0, dtype=cdt, device=mz.device)
    # group ADC occurrences by readout (same W); one batched matmul per group
    groups: dict[tuple, list[int]] = {}
    for i, (b, _) in enumerate(record):
        k = (id(b.gx), id(b.gy), id(b.gz), id(b.adc.dwell), id(b.adc.delay), b.adc.num)
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
        phases = torch.stack([record[i][0].adc.phase for i in idxs])  # (G,)
        demod = torch.complex(torch.cos(phases), -torch.sin(phases))
        if sens is None:
            sig = torch.bmm(states, w)  # (N, G, K)
            sig = sig * demod[None, :, None]
            pieces.append(sig.reshape(n, -1))
        else:  # (N, C, G, V) weighted states, one matmul for all coils
            g = states.shape[1]
            cs = (states[:, None] * sens[None, :, None, :]).reshape(n, -1, states.shape[-1])
            sig = torch.bmm(cs, w).reshape(n, sens.shape[0], g, -1)
            sig = sig * demod[None, None, :, None]
            pieces.append(sig.reshape(n, sens.shape[0], -1))
        for i in idxs:
            order.extend(range(offsets[i], offsets[i] + b0.adc.num))
    allsig = torch.cat(pieces, dim=-1) if len(pieces) > 1 else pieces[0]
    order_t = torch.tensor(order, device=mz.device)
    if bool((order_t == torch.arange(len(order), device=mz.device)).all()):
        return allsig
    inv = torch.empty_like(order_t)
    inv[order_t] = torch.arange(len(order), device=mz.device)
    return allsig[..., inv]


def simulate_kspace(
    seq: Sequence,
    phantom: Phantom,
    isochromats: int | tuple[int, int] = 1,
    chunk: int | None = None,
    slice_positions: torch.Tensor | None = None,
    coils: torch.Tensor | None = None,
) -> torch.Tensor:
    """:func:`simulate` reshaped to ``(B, [C,] *seq.kspace_shape)`` (e.g. ``(B, n_pe, n_ro)``),
    without ``B`` for an unbatched phantom. For the Cartesian builders the centred inverse FFT
    :func:`mrphys.physics.fourier.ifft2c` of the result gives the image."""
    sig = simulate(seq, phantom, isochromats, chunk, slice_positions, coils)
    return sig.reshape(*sig.shape[:-1], *seq.kspace_shape)


def block_response(
    block: Block,
    z: torch.Tensor,
    t1: float = math.inf,
    t2: float = math.inf,
    db0: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Magnetisation of spins at ``z`` (m, at x = y = 0) after one ``block`` from equilibrium
    ``M = (0, 0, 1)``: the slice profile of a slice-selective RF block (with its rephaser when
    the block holds one). The same code path as :func:`simulate`.

    Args:
        block: a :class:`Block` (typically a :class:`ShapedRF` with a ``gz`` gradient).
        z: ``(Z,)`` positions in m (float32 or float64; sets the dtype).
        t1, t2: relaxation times in s (inf: none). db0: off-resonance in Hz.

    Returns:
        ``(mxy, mz)``: complex ``(Z,)`` and real ``(Z,)``, demodulated by nothing (the rotating
        frame at z = 0).
    """
    z = torch.as_tensor(z)
    check(z.dim() == 1 and z.numel() >= 1, "z must be a 1-D tensor of positions in m.")
    rdt = z.dtype if z.is_floating_point() else torch.get_default_dtype()
    z = z.to(rdt)
    cdt = torch.complex64 if rdt == torch.float32 else torch.complex128
    one = torch.ones(1, z.numel(), dtype=rdt, device=z.device)
    r1 = one * (0.0 if math.isinf(t1) else 1.0 / t1)
    r2 = one * (0.0 if math.isinf(t2) else 1.0 / t2)
    dw = None if not db0 else one * (2 * math.pi * db0)
    zero = torch.zeros_like(z)
    ctx = _Ctx(one, r1, r2, dw, None, zero, zero, cdt, z, z.numel())
    seq = Sequence([block])
    same = all(
        t.device == z.device and t.dtype == (cdt if t.is_complex() else rdt)
        for t in seq.parameters()
    )
    blk = seq.items[0] if same else seq.to(device=z.device, dtype=rdt).items[0]
    mxy, mz = _run_blocks([blk], None, one, ctx, [])
    if mxy is None:
        mxy = torch.zeros_like(one, dtype=cdt)
    return mxy[0], mz[0]
