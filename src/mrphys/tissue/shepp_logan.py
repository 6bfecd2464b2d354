"""Shepp-Logan-type tissue phantoms.

* :func:`spin_shepp_logan`: the SPIN paper's Table 1 phantoms (paper 000): four fixed ellipses
  (scalp, bone/marrow, CSF, grey matter) and eight ellipses (two CSF, one WM, five tumours) placed
  at random, without overlap, inside the grey-matter region. Batched and seeded.
* :func:`gach_shepp_logan`: the MR Shepp-Logan of Gach et al. (2008) at any matrix, with
  T1 = A * B0^C (field dependent) for 1.5 T, 3 T or any field.

Geometry is in normalised coordinates: x in [-1, 1] across columns, y in [-1, 1] up the rows
(row 0 is the top, y = +1). Later ellipses overwrite earlier ones (not additive).
"""

from __future__ import annotations

import math

import torch

from mrphys.errors import MrphysError, check
from mrphys.tissue.phantom import Phantom

# (rho, T1 ms, T2 ms) of SPIN Table 1 tissues
SPIN_TISSUES = {
    "scalp": (0.8, 324.0, 70.0),
    "marrow": (0.12, 533.0, 50.0),
    "csf": (0.98, 4200.0, 1990.0),
    "gm": (0.745, 857.0, 100.0),
    "wm": (0.617, 583.0, 80.0),
    "tumor": (0.95, 926.0, 100.0),
}
# fixed ellipses 1-4: (cx, cy, a, b, angle deg, tissue)
SPIN_FIXED = [
    (0.0, 0.0, 0.72, 0.95, 0.0, "scalp"),
    (0.0, 0.0, 0.69, 0.92, 0.0, "marrow"),
    (0.0, -0.0184, 0.66, 0.87, 0.0, "csf"),
    (0.0, -0.0184, 0.63, 0.84, 0.0, "gm"),
]
# randomly placed ellipses 5-12: (a, b, angle deg, tissue)
SPIN_RANDOM = [
    (0.35, 0.13, -72.0, "csf"),
    (0.28, 0.09, 72.0, "csf"),
    (0.18, 0.22, 0.0, "wm"),
    (0.08, 0.08, 0.0, "tumor"),
    (0.08, 0.05, 0.0, "tumor"),
    (0.08, 0.05, -90.0, "tumor"),
    (0.08, 0.08, 0.0, "tumor"),
    (0.08, 0.08, 0.0, "tumor"),
]


def _grid(n: int, device=None, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised pixel-centre coordinates ``(y, x)``, each ``(n, n)``; y points up."""
    c = (torch.arange(n, device=device, dtype=dtype) + 0.5) * 2.0 / n - 1.0
    y, x = torch.meshgrid(-c, c, indexing="ij")
    return y, x


def _ellipse_mask(y, x, cx, cy, a, b, angle_rad) -> torch.Tensor:
    """Inside-mask of ellipses with centres ``cx, cy`` of shape ``(B,)`` on grid ``(Y, X)``."""
    cx = torch.as_tensor(cx, dtype=x.dtype, device=x.device).reshape(-1, 1, 1)
    cy = torch.as_tensor(cy, dtype=x.dtype, device=x.device).reshape(-1, 1, 1)
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    dx, dy = x - cx, y - cy
    xr = dx * c + dy * s
    yr = -dx * s + dy * c
    return (xr / a) ** 2 + (yr / b) ** 2 <= 1.0


def _boundary(a: float, b: float, th: float, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Boundary points of an ellipse centred at 0, each of shape ``(len(t),)``."""
    bx = a * torch.cos(t) * math.cos(th) - b * torch.sin(t) * math.sin(th)
    by = a * torch.cos(t) * math.sin(th) + b * torch.sin(t) * math.cos(th)
    return bx, by


def _inside(px, py, cx, cy, a, b, th) -> torch.Tensor:
    """Whether points ``(px, py)`` lie inside ellipses centred at ``(cx, cy)`` (broadcasting)."""
    c, s = math.cos(th), math.sin(th)
    dx, dy = px - cx, py - cy
    return ((dx * c + dy * s) / a) ** 2 + ((-dx * s + dy * c) / b) ** 2 <= 1.0


def _overlap(px, py, a, b, th, qx, qy, qa, qb, qth, margin, t) -> torch.Tensor:
    """Whether candidate ellipses (centres ``px, py``) come within ``margin`` of placed ones.

    Two ellipses intersect iff a boundary point of one lies inside the other or one contains the
    other's centre; both are grown by ``margin`` so that they cannot touch on the pixel grid.
    """
    bx, by = _boundary(a + margin, b + margin, th, t)
    qbx, qby = _boundary(qa + margin, qb + margin, qth, t)
    hit = _inside(
        px[:, None] + bx, py[:, None] + by, qx[:, None], qy[:, None], qa + margin, qb + margin, qth
    ).any(1)
    hit |= _inside(
        qx[:, None] + qbx, qy[:, None] + qby, px[:, None], py[:, None], a + margin, b + margin, th
    ).any(1)
    hit |= _inside(px, py, qx, qy, qa, qb, qth) | _inside(qx, qy, px, py, a, b, th)
    return hit


def _paint(maps: dict[str, torch.Tensor], mask: torch.Tensor, tissue: tuple[float, float, float]):
    rho, t1_ms, t2_ms = tissue
    for key, val in (("rho", rho), ("t1", t1_ms * 1e-3), ("t2", t2_ms * 1e-3)):
        maps[key] = torch.where(mask, torch.full_like(maps[key], val), maps[key])


def _place_random(
    n: int, matrix: int, generator: torch.Generator, tries: int = 60
) -> tuple[torch.Tensor, torch.Tensor]:
    """Centres ``(n, len(SPIN_RANDOM), 2)`` of ellipses 5-12 placed one after another by
    rejection, and which of the ``n`` phantoms succeeded (``(n,)`` bool)."""
    ga, gb, gcx, gcy = 0.63 * 0.97, 0.84 * 0.97, 0.0, -0.0184  # allowed region
    margin = 2.0 / matrix  # one pixel: placed ellipses must not touch
    t = torch.linspace(0, 2 * math.pi, 97, dtype=torch.float64)[:-1]
    centres = torch.zeros(n, len(SPIN_RANDOM), 2, dtype=torch.float64)
    alive = torch.ones(n, dtype=torch.bool)
    placed: list[tuple[torch.Tensor, torch.Tensor, float, float, float]] = []
    for e, (a, b, ang, _tissue) in enumerate(SPIN_RANDOM):
        th = math.radians(ang)
        bx, by = _boundary(a, b, th, t)
        cx = torch.zeros(n, dtype=torch.float64)
        cy = torch.zeros(n, dtype=torch.float64)
        todo = alive.clone()
        for _ in range(tries):
            idx = todo.nonzero().flatten()
            if idx.numel() == 0:
                break
            m = idx.numel()
            px = (torch.rand(m, generator=generator, dtype=torch.float64) * 2 - 1) * ga + gcx
            py = (torch.rand(m, generator=generator, dtype=torch.float64) * 2 - 1) * gb + gcy
            ok = (
                ((px[:, None] + bx - gcx) / ga) ** 2 + ((py[:, None] + by - gcy) / gb) ** 2 <= 1
            ).all(1)
            # overlap tests only for candidates inside the region; far-apart pairs pass at once
            cand = ok.nonzero().flatten()
            for qx, qy, qa, qb, qth in placed:
                if cand.numel() == 0:
                    break
                pcx, pcy = px[cand], py[cand]
                qcx, qcy = qx[idx[cand]], qy[idx[cand]]
                reach = max(a, b) + max(qa, qb) + 2 * margin
                near = (pcx - qcx) ** 2 + (pcy - qcy) ** 2 < reach**2
                hit = torch.zeros_like(near)
                if bool(near.any()):
                    hit[near] = _overlap(
                        pcx[near],
                        pcy[near],
                        a,
                        b,
                        th,
                        qcx[near],
                        qcy[near],
                        qa,
                        qb,
                        qth,
                        margin,
                        t,
                    )
                ok[cand[hit]] = False
                cand = cand[~hit]
            acc = idx[ok]
            cx[acc], cy[acc] = px[ok], py[ok]
            todo[acc] = False
        alive &= ~todo
        centres[:, e, 0], centres[:, e, 1] = cx, cy
        placed.append((cx, cy, a, b, th))
    return centres, alive


def spin_shepp_logan(
    batch: int = 1,
    matrix: int = 64,
    fov: float = 0.064,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    max_tries: int = 100,
) -> Phantom:
    """Random SPIN phantoms (paper 000, Table 1): a :class:`Phantom` of shape ``(batch, N, N)``.

    Ellipses 5-12 get uniformly random centres, accepted when the whole ellipse lies inside the
    grey-matter ellipse (ellipse 4, with a 3 % margin) and stays at least one pixel away from the
    ellipses placed before it. Placement is vectorised over the batch; a phantom
    that finds no room for a later ellipse starts again from ellipse 5. T1 and T2 are returned
    in s, ``fov`` is in m.

    Args:
        batch: number of phantoms B.
        matrix: N, pixels per side.
        fov: field of view in m (64 mm in the paper).
        generator: a CPU ``torch.Generator`` for reproducible phantoms (same seed, same phantoms).
    """
    check(batch >= 1, f"batch must be >= 1; got {batch}.")
    check(matrix >= 32, f"matrix must be >= 32 pixels for the SPIN phantom; got {matrix}.")
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    # paint tissue labels, then look the maps up (cheaper than painting three float maps)
    names = list(SPIN_TISSUES)
    y, x = _grid(matrix, dtype=torch.float32)
    label = torch.zeros(matrix, matrix, dtype=torch.long)  # 0 = background
    for cx, cy, a, b, ang, tissue in SPIN_FIXED:
        m = _ellipse_mask(y, x, [cx], [cy], a, b, math.radians(ang))[0]
        label[m] = names.index(tissue) + 1
    label = label.expand(batch, -1, -1).clone()

    centres = torch.zeros(batch, len(SPIN_RANDOM), 2, dtype=torch.float64)
    todo = torch.arange(batch)
    for _ in range(max_tries):
        # a phantom whose later ellipses find no room starts again (no dead ends)
        c, ok = _place_random(len(todo), matrix, generator)
        centres[todo[ok]] = c[ok]
        todo = todo[~ok]
        if todo.numel() == 0:
            break
    if todo.numel():
        raise MrphysError(
            f"could not place the SPIN ellipses without overlap in {max_tries} tries."
        )
    c32 = centres.float()
    for i, (a, b, ang, tissue) in enumerate(SPIN_RANDOM):
        mask = _ellipse_mask(y, x, c32[:, i, 0], c32[:, i, 1], a, b, math.radians(ang))
        label[mask] = names.index(tissue) + 1
    table = torch.tensor(
        [(0.0, 0.0, 0.0)] + [(r, t1 * 1e-3, t2 * 1e-3) for r, t1, t2 in SPIN_TISSUES.values()],
        dtype=torch.float64,
    )
    vals = table.to(dtype)[label].to(device)  # (B, N, N, 3)
    conv = {"rho": vals[..., 0], "t1": vals[..., 1], "t2": vals[..., 2]}
    return Phantom(conv["rho"], conv["t1"], conv["t2"], fov=(fov, fov))


# Gach et al. 2008: tissue -> (PD, A, C, explicit T1 in s or None, T2 in s); T1 = A * B0^C
GACH_TISSUES = {
    "scalp": (0.80, 0.324, 0.137, None, 0.070),
    "marrow": (0.12, 0.533, 0.088, None, 0.050),
    "csf": (0.98, None, None, 4.2, 1.99),
    "gm": (0.745, 0.857, 0.376, None, 0.100),
    "wm": (0.617, 0.583, 0.382, None, 0.080),
    "tumor": (0.95, 0.926, 0.217, None, 0.100),
}
# in-plane ellipses of the central slice: (cx, cy, a, b, angle deg, tissue, PD override)
GACH_ELLIPSES = [
    (0.0, 0.0, 0.72, 0.95, 0.0, "scalp", None),
    (0.0, 0.0, 0.69, 0.92, 0.0, "marrow", None),
    (0.0, -0.0184, 0.6624, 0.874, 0.0, "csf", None),
    (0.0, -0.0184, 0.6524, 0.864, 0.0, "gm", None),
    (-0.22, 0.0, 0.41, 0.16, -72.0, "csf", None),
    (0.22, 0.0, 0.31, 0.11, 72.0, "csf", None),
    (0.0, 0.35, 0.21, 0.25, 0.0, "wm", None),
    (0.0, 0.1, 0.046, 0.046, 0.0, "tumor", None),
    (-0.08, -0.605, 0.046, 0.023, 0.0, "tumor", None),
    (0.06, -0.605, 0.046, 0.023, -90.0, "tumor", None),
    (0.0, -0.1, 0.046, 0.046, 0.0, "tumor", None),
    (0.0, -0.605, 0.023, 0.023, 0.0, "tumor", None),
    (0.06, -0.105, 0.056, 0.04, -90.0, "tumor", 0.93),
]


def gach_tissue_values(tissue: str, field_t: float = 3.0) -> tuple[float, float, float]:
    """``(PD, T1 s, T2 s)`` of a Gach phantom tissue at field ``field_t`` (T)."""
    pd, a, c, t1, t2 = GACH_TISSUES[tissue]
    if t1 is None:
        t1 = a * field_t**c
    return pd, t1, t2


def gach_shepp_logan(
    matrix: int = 128,
    field_t: float = 3.0,
    fov: float = 0.24,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Phantom:
    """The Gach et al. (2008) MR Shepp-Logan phantom, central slice, shape ``(N, N)``.

    Args:
        matrix: N, any size >= 8.
        field_t: B0 in T (1.5 and 3 are the standard choices): sets T1 = A * B0^C.
        fov: field of view in m.
    """
    check(matrix >= 8, f"matrix must be >= 8; got {matrix}.")
    check(0.1 <= field_t <= 12, f"field_t must be a field strength in [0.1, 12] T; got {field_t}.")
    y, x = _grid(matrix, dtype=torch.float64)
    maps = {k: torch.zeros(1, matrix, matrix, dtype=torch.float64) for k in ("rho", "t1", "t2")}
    for cx, cy, a, b, ang, tissue, pd in GACH_ELLIPSES:
        m = _ellipse_mask(y, x, [cx], [cy], a, b, math.radians(ang))
        rho, t1, t2 = gach_tissue_values(tissue, field_t)
        _paint(maps, m, (pd if pd is not None else rho, t1 * 1e3, t2 * 1e3))
    conv = {k: v[0].to(device=device, dtype=dtype) for k, v in maps.items()}
    return Phantom(conv["rho"], conv["t1"], conv["t2"], fov=(fov, fov))
