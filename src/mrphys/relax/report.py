"""The per-subject HTML report of ``mrphys relax bids``: one self-contained file.

For each pc-bSSFP series: the maps (a slice, colour bars, units), histograms of T1 and T2 per
tissue mask, median and interquartile range per tissue and map, and the fit quality (voxels
fitted and without signal, implausible values, the statistics of every further map the fit
returns, such as a residual or an uncertainty). Figures are PNG embedded as base64
(:mod:`mrphys.plot`), so the file can be mailed or archived alone.
"""

from __future__ import annotations

import base64
import html
import io
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mrphys.io import atomic_file

__all__ = ["SeriesReport", "write_report"]

#: colour map and range (None: the 1st-99th percentile; "sym": symmetric about 0) per field;
#: T1 and T2 in the brain's range at 3 T (s), so that fluid does not take the colour scale
_STYLE: dict[str, tuple[str, Any]] = {
    "t1": ("magma", (0.0, 2.5)),
    "t2": ("viridis", (0.0, 0.15)),
    "db0": ("RdBu_r", "sym"),
}


@dataclass
class SeriesReport:
    """What the report shows of one series.

    Attributes:
        name: the series' BIDS name (``sub-01_acq-pcbssfp``).
        maps: field name -> ``(array (X, Y, Z) in the file's unit, unit, description)``.
        tissues: mask name -> bool ``(X, Y, Z)`` (``fitted`` first: the voxels fitted).
        facts: name -> value, shown as a table (method, protocol, counts, times).
    """

    name: str
    maps: dict[str, tuple[np.ndarray, str, str]]
    tissues: dict[str, np.ndarray]
    facts: dict[str, Any] = field(default_factory=dict)


def _png(draw: Any, *args: Any, **kwargs: Any) -> str:
    buf = io.BytesIO()
    draw(buf, *args, **kwargs)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _table(rows: list[list[Any]], head: list[str]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            v = f"{v:.4g}"
        elif isinstance(v, list):
            v = ", ".join(f"{x:g}" if isinstance(x, float) else str(x) for x in v)
        return html.escape(str(v))

    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{cell(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def _slice(fitted: np.ndarray) -> int:
    """The slice with the most fitted voxels."""
    return int(np.argmax(fitted.reshape(-1, fitted.shape[2]).sum(0)))


def _section(s: SeriesReport) -> str:
    from mrphys import plot

    fitted = s.tissues.get("fitted", np.ones(next(iter(s.maps.values()))[0].shape, bool))
    z = _slice(fitted)
    panels = []
    for name, (arr, unit, _) in s.maps.items():
        if arr.dtype == np.uint8 or arr.ndim != 3:
            continue
        cmap, style = _STYLE.get(name, ("cividis", None))
        vals = arr[fitted & np.isfinite(arr)]
        lim = style if isinstance(style, tuple) and unit == "s" else None
        if lim is None and vals.size:
            lo, hi = np.percentile(vals, [1, 99]).tolist()
            if style == "sym":
                lo, hi = -max(abs(lo), abs(hi)), max(abs(lo), abs(hi))
            lim = (lo, hi if hi > lo else lo + 1e-9)
        image = torch.from_numpy(np.ascontiguousarray(arr[:, ::-1, z].T))  # rows: +Y at the top
        panels.append((image, f"{name} ({unit})" if unit else name, cmap, lim))
    parts = [f"<h2>{html.escape(s.name)}</h2>"]
    if panels:
        maps_png = _png(plot.image_panels, panels)
        parts.append(
            f"<p>Maps, slice z = {z} (colour range: T1 0-2.5 s, T2 0-0.15 s, others the "
            "1st-99th percentile of the fitted voxels)"
            f'</p><img alt="maps" src="data:image/png;base64,{maps_png}">'
        )
    hist = [
        (
            f"{name.upper()} ({s.maps[name][1]})",
            {k: s.maps[name][0][m] for k, m in s.tissues.items()},
        )
        for name in ("t1", "t2")
        if name in s.maps
    ]
    if hist:
        ranges = [_STYLE[n][1] for n in ("t1", "t2") if n in s.maps]
        hist_png = _png(plot.histograms, hist, ranges=ranges)
        parts.append(
            '<p>Histograms per tissue mask</p><img alt="histograms" '
            f'src="data:image/png;base64,{hist_png}">'
        )
    rows = []
    for tissue, m in s.tissues.items():
        for name, (arr, unit, _) in s.maps.items():
            if arr.dtype == np.uint8:
                continue
            v = arr[m & np.isfinite(arr)]
            if v.size:
                q1, med, q3 = np.percentile(v, [25, 50, 75]).tolist()
                rows.append([tissue, name, unit, int(m.sum()), med, q1, q3])
    parts.append("<h3>Values per tissue mask</h3>")
    parts.append(_table(rows, ["mask", "map", "unit", "voxels", "median", "25 %", "75 %"]))
    parts.append("<h3>Fit quality</h3>" + _table(_quality(s, fitted), ["measure", "value"]))
    parts.append("<h3>Fit</h3>" + _table([[k, v] for k, v in s.facts.items()], ["", ""]))
    return "\n".join(parts)


def _quality(s: SeriesReport, fitted: np.ndarray) -> list[list[Any]]:
    """Fit-quality rows: implausible values, and each further map's summary (a residual,
    a quality mask, an uncertainty) in the fitted voxels."""
    n = int(fitted.sum())
    rows: list[list[Any]] = [["voxels fitted", n]]
    if n and "t1" in s.maps and "t2" in s.maps:
        t1, t2 = s.maps["t1"][0][fitted], s.maps["t2"][0][fitted]
        bad = ~np.isfinite(t1) | ~np.isfinite(t2) | (t1 <= 0) | (t2 <= 0) | (t2 > t1)
        rows.append(["implausible (T1 or T2 <= 0, not finite, or T2 > T1), %", 100 * bad.mean()])
    for name, (arr, unit, desc) in s.maps.items():
        if name in ("t1", "t2", "db0") or not n:
            continue
        v = arr[fitted]
        if arr.dtype == np.uint8:
            rows.append([f"{name}: {desc}; fraction of fitted voxels, %", 100 * (v != 0).mean()])
        else:
            med, p95 = np.percentile(v[np.isfinite(v)], [50, 95]).tolist() if v.size else (0, 0)
            rows.append(
                [f"{name} ({unit or 'no unit'}) median / 95th percentile", f"{med:.4g} / {p95:.4g}"]
            )
    return rows


_CSS = (
    "body{font-family:sans-serif;margin:2em;max-width:1400px}"
    "table{border-collapse:collapse;margin:0.5em 0}"
    "td,th{border:1px solid #bbb;padding:2px 8px;text-align:left;font-size:90%}"
    "img{max-width:100%}"
)


def write_report(path: str | os.PathLike, title: str, series: list[SeriesReport]) -> None:
    """Write the self-contained HTML report of one subject (atomically).

    Args:
        path: the ``.html`` file.
        title: the subject (``sub-01``).
        series: one :class:`SeriesReport` per fitted series.
    """
    import mrphys

    body = "\n".join(_section(s) for s in series)
    doc = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)} "
        f"relaxometry</title><style>{_CSS}</style></head><body><h1>{html.escape(title)}: "
        f"T1/T2 relaxometry</h1><p>mrphys {mrphys.__version__}, "
        f"{len(series)} pc-bSSFP series.</p>\n{body}\n</body></html>\n"
    )
    with atomic_file(path) as tmp:
        tmp.write_text(doc, encoding="utf-8")
