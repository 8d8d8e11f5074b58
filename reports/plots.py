"""Static SVG plots for offline reports: scatter, heat map, trend lines, calibration curve.

Each function returns one ``<svg>`` element as text, ready to inline in an HTML page: no
script, no external file, no font download (the page's sans-serif font). Points carry a
``<title>`` so a browser shows the exact figures on hover. Missing values (None or NaN)
are left out of a plot, never drawn as zero; a plot with nothing to show says so.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

WIDTH = 640
HEIGHT = 380
MARGIN = {"left": 70, "right": 20, "top": 36, "bottom": 56}
PALETTE = ("#1f5fa8", "#d9822b", "#2f8f4e", "#a83279", "#6b6b6b", "#8c6d1f")
AXIS = "#444"
GRID = "#e3e3e3"


def _ok(v) -> bool:  # noqa: ANN001
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def fmt(v: float) -> str:
    """A number as a tick or tooltip reads it: 1,234 / 12.5 / 0.034."""
    if not _ok(v):
        return "n/a"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 10 or float(v).is_integer():
        return f"{v:.1f}".rstrip("0").rstrip(".")
    if a >= 0.1:
        return f"{v:.2f}".rstrip("0").rstrip(".")
    return f"{v:.3f}".rstrip("0").rstrip(".") or "0"


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values covering ``[lo, hi]``."""
    if not (_ok(lo) and _ok(hi)):
        return []
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    v = start
    while v <= hi + step * 1e-9 and len(ticks) < 50:
        ticks.append(round(v, 12))
        v += step
    if ticks and ticks[-1] < hi:
        ticks.append(round(ticks[-1] + step, 12))
    return ticks


class _Frame:
    """Axes of one plot: data ranges to pixel positions."""

    def __init__(self, x_lo: float, x_hi: float, y_lo: float, y_hi: float, width: int = WIDTH, height: int = HEIGHT):
        self.xt = nice_ticks(x_lo, x_hi)
        self.yt = nice_ticks(y_lo, y_hi)
        self.x_lo, self.x_hi = self.xt[0], self.xt[-1]
        self.y_lo, self.y_hi = self.yt[0], self.yt[-1]
        self.w, self.h = width, height
        self.left, self.right = MARGIN["left"], width - MARGIN["right"]
        self.top, self.bottom = MARGIN["top"], height - MARGIN["bottom"]

    def x(self, v: float) -> float:
        return self.left + (v - self.x_lo) / ((self.x_hi - self.x_lo) or 1) * (self.right - self.left)

    def y(self, v: float) -> float:
        return self.bottom - (v - self.y_lo) / ((self.y_hi - self.y_lo) or 1) * (self.bottom - self.top)

    def axes(self, x_label: str, y_label: str, x_ticks: bool = True) -> list[str]:
        out = []
        for t in self.yt:
            yy = self.y(t)
            out.append(f'<line x1="{self.left}" x2="{self.right}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="{GRID}"/>')
            out.append(f'<text x="{self.left - 6}" y="{yy + 4:.1f}" text-anchor="end" font-size="11">{fmt(t)}</text>')
        if x_ticks:
            for t in self.xt:
                xx = self.x(t)
                out.append(f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{self.top}" y2="{self.bottom}" stroke="{GRID}"/>')
                out.append(f'<text x="{xx:.1f}" y="{self.bottom + 16}" text-anchor="middle" font-size="11">'
                           f'{fmt(t)}</text>')
        out.append(f'<line x1="{self.left}" x2="{self.right}" y1="{self.bottom}" y2="{self.bottom}" stroke="{AXIS}"/>')
        out.append(f'<line x1="{self.left}" x2="{self.left}" y1="{self.top}" y2="{self.bottom}" stroke="{AXIS}"/>')
        out.append(f'<text x="{(self.left + self.right) / 2:.0f}" y="{self.h - 12}" text-anchor="middle" '
                   f'font-size="12">{_esc(x_label)}</text>')
        cy = (self.top + self.bottom) / 2
        out.append(f'<text x="16" y="{cy:.0f}" text-anchor="middle" font-size="12" '
                   f'transform="rotate(-90 16 {cy:.0f})">{_esc(y_label)}</text>')
        return out


def _svg(body: list[str], title: str, width: int = WIDTH, height: int = HEIGHT, kind: str = "plot") -> str:
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" class="plot plot-{kind}" role="img" aria-label="{_esc(title)}" '
            f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" font-family="sans-serif">')
    caption = f'<text x="{width / 2:.0f}" y="20" text-anchor="middle" font-size="14" font-weight="bold">{_esc(title)}</text>'
    return head + caption + "".join(body) + "</svg>"


def empty(title: str, message: str, width: int = WIDTH, height: int = 160) -> str:
    """A plot-sized box that says why there is no plot."""
    body = [f'<rect x="1" y="30" width="{width - 2}" height="{height - 32}" fill="#fafafa" stroke="{GRID}"/>',
            f'<text x="{width / 2:.0f}" y="{height / 2 + 10:.0f}" text-anchor="middle" font-size="13" fill="#555">'
            f'{_esc(message)}</text>']
    return _svg(body, title, width, height, kind="empty")


def scatter(points: Sequence[dict], title: str, x_label: str, y_label: str, *, zero_line: bool = False) -> str:
    """One dot per point: ``{"x", "y", "label"}``, optional ``"low"``/``"high"`` (a vertical interval).

    Points with a missing ``x`` or ``y`` are left out (their count is printed under the title).
    """
    pts = [p for p in points if _ok(p.get("x")) and _ok(p.get("y"))]
    if not pts:
        return empty(title, "no data to plot")
    ys = [p["y"] for p in pts] + [p[k] for p in pts for k in ("low", "high") if _ok(p.get(k))]
    xs = [p["x"] for p in pts]
    y_lo = min(ys + ([0.0] if zero_line else []))
    fr = _Frame(min(0.0, min(xs)), max(xs), min(0.0, y_lo), max(ys))
    body = fr.axes(x_label, y_label)
    if zero_line and fr.y_lo < 0 < fr.y_hi:
        body.append(f'<line x1="{fr.left}" x2="{fr.right}" y1="{fr.y(0):.1f}" y2="{fr.y(0):.1f}" stroke="{AXIS}" '
                    f'stroke-dasharray="4 3"/>')
    for p in pts:
        cx, cy = fr.x(p["x"]), fr.y(p["y"])
        tip = _esc(p.get("tip") or f"{p.get('label', '')}: {fmt(p['x'])}, {fmt(p['y'])}")
        if _ok(p.get("low")) and _ok(p.get("high")):
            body.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{fr.y(p["low"]):.1f}" y2="{fr.y(p["high"]):.1f}" '
                        f'stroke="{PALETTE[0]}" stroke-opacity="0.35"/>')
        body.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="4" fill="{PALETTE[0]}" fill-opacity="0.75">'
                    f'<title>{tip}</title></circle>')
    skipped = len(points) - len(pts)
    if skipped:
        body.append(f'<text x="{WIDTH - 20}" y="{MARGIN["top"] - 2}" text-anchor="end" font-size="11" fill="#777">'
                    f'{skipped} without a value not shown</text>')
    return _svg(body, title, kind="scatter")


def _color(v: float, lo: float, hi: float, diverging: bool) -> str:
    if diverging:
        m = max(abs(lo), abs(hi)) or 1.0
        t = max(-1.0, min(1.0, v / m))
        if t >= 0:  # white -> blue
            r, g, b = (int(255 - t * (255 - c)) for c in (31, 95, 168))
        else:  # white -> orange
            r, g, b = (int(255 + t * (255 - c)) for c in (217, 130, 43))
        return f"rgb({r},{g},{b})"
    t = 0.0 if hi <= lo else (v - lo) / (hi - lo)
    r, g, b = (int(255 - t * (255 - c)) for c in (31, 95, 168))
    return f"rgb({r},{g},{b})"


def heatmap(rows: Sequence[str], cols: Sequence[str], values: Sequence[Sequence[float | None]], title: str, *,
            row_label: str, col_label: str, value_format=fmt, diverging: bool = False,  # noqa: ANN001
            counts: Sequence[Sequence[int]] | None = None) -> str:
    """A grid of coloured cells, the value written in each; None/NaN cells are grey "n/a"."""
    flat = [v for r in values for v in r if _ok(v)]
    if not rows or not cols or not flat:
        return empty(title, "no data to plot")
    lo, hi = min(flat), max(flat)
    cell_w, cell_h = 74, 28
    left, top = 120, 74
    width = max(WIDTH, left + cell_w * len(cols) + 20)
    height = top + cell_h * len(rows) + 44
    body = [f'<text x="{left + cell_w * len(cols) / 2:.0f}" y="{top - 22}" text-anchor="middle" font-size="12">'
            f'{_esc(col_label)}</text>',
            f'<text x="12" y="{top - 6}" font-size="12">{_esc(row_label)}</text>']
    for j, col in enumerate(cols):
        body.append(f'<text x="{left + cell_w * j + cell_w / 2:.0f}" y="{top - 6}" text-anchor="middle" '
                    f'font-size="11">{_esc(col)}</text>')
    for i, row in enumerate(rows):
        y = top + cell_h * i
        body.append(f'<text x="{left - 6}" y="{y + cell_h / 2 + 4:.0f}" text-anchor="end" font-size="11">'
                    f'{_esc(row)}</text>')
        for j, _col in enumerate(cols):
            v = values[i][j]
            x = left + cell_w * j
            n = f" (n={counts[i][j]:,})" if counts is not None else ""
            if _ok(v):
                fill = _color(v, lo, hi, diverging)
                dark = abs(v) > 0.6 * max(abs(lo), abs(hi)) if diverging else (v - lo) > 0.6 * ((hi - lo) or 1)
                body.append(f'<rect x="{x}" y="{y}" width="{cell_w - 2}" height="{cell_h - 2}" fill="{fill}">'
                            f'<title>{_esc(row)} / {_esc(cols[j])}: {_esc(value_format(v))}{n}</title></rect>')
                body.append(f'<text x="{x + cell_w / 2 - 1:.0f}" y="{y + cell_h / 2 + 3:.0f}" text-anchor="middle" '
                            f'font-size="11" fill="{"#fff" if dark else "#222"}">{_esc(value_format(v))}</text>')
            else:
                body.append(f'<rect x="{x}" y="{y}" width="{cell_w - 2}" height="{cell_h - 2}" fill="#f0f0f0">'
                            f'<title>{_esc(row)} / {_esc(cols[j])}: no activities</title></rect>')
                body.append(f'<text x="{x + cell_w / 2 - 1:.0f}" y="{y + cell_h / 2 + 3:.0f}" text-anchor="middle" '
                            f'font-size="10" fill="#999">n/a</text>')
    return _svg(body, title, width, height, kind="heatmap")


def lines(x_labels: Sequence[str], series: dict[str, Sequence[float | None]], title: str, y_label: str,
          *, width: int = WIDTH, height: int = 300, dashed_from: int | None = None) -> str:
    """One line per series over categorical x positions (e.g. weeks); gaps where a value is missing.

    ``dashed_from``: index from which points are drawn hollow (e.g. weeks whose labels are
    not all closed yet).
    """
    vals = [v for s in series.values() for v in s if _ok(v)]
    if not x_labels or not vals:
        return empty(title, "no data to plot", width)
    n = len(x_labels)
    fr = _Frame(0, max(n - 1, 1), min(0.0, min(vals)), max(vals), width, height)
    fr.x_lo, fr.x_hi = 0, max(n - 1, 1)
    fr.bottom -= 14  # room for a second legend row
    body = fr.axes("", y_label, x_ticks=False)
    per_label = 7 * max(len(str(v)) for v in x_labels) + 12
    step = max(1, math.ceil(n / max(1, (fr.right - fr.left) // per_label)))
    for k in range(0, n, step):
        xx = fr.x(k)
        body.append(f'<text x="{xx:.1f}" y="{fr.bottom + 16}" text-anchor="middle" font-size="10">'
                    f'{_esc(x_labels[k])}</text>')
    legend_x, legend_y = fr.left + 4, height - 22
    for si, (name, ys) in enumerate(series.items()):
        color = PALETTE[si % len(PALETTE)]
        path, pen = [], False
        for k, v in enumerate(ys):
            if not _ok(v):
                pen = False
                continue
            path.append(f'{"L" if pen else "M"}{fr.x(k):.1f},{fr.y(v):.1f}')
            pen = True
        if path:
            body.append(f'<path d="{" ".join(path)}" fill="none" stroke="{color}" stroke-width="2"/>')
        for k, v in enumerate(ys):
            if _ok(v):
                hollow = dashed_from is not None and k >= dashed_from
                body.append(f'<circle cx="{fr.x(k):.1f}" cy="{fr.y(v):.1f}" r="2.5" '
                            f'fill="{"#fff" if hollow else color}" stroke="{color}">'
                            f'<title>{_esc(name)}, {_esc(x_labels[k])}: {fmt(v)}</title></circle>')
        if legend_x + 24 + 6.5 * len(name) > width and legend_x > fr.left + 4:
            legend_x, legend_y = fr.left + 4, legend_y + 14
        body.append(f'<rect x="{legend_x}" y="{legend_y}" width="10" height="10" fill="{color}"/>'
                    f'<text x="{legend_x + 14}" y="{legend_y + 9}" font-size="11">{_esc(name)}</text>')
        legend_x += 24 + 6.5 * len(name)
    return _svg(body, title, width, height, kind="lines")


def calibration(bins: Sequence[dict], title: str) -> str:
    """Observed rate against mean predicted probability per bin (``{"predicted", "observed", "n"}``), with the diagonal."""
    pts = [b for b in bins if _ok(b.get("predicted")) and _ok(b.get("observed"))]
    if not pts:
        return empty(title, "no closed labels in the window")
    top = max(max(b["predicted"] for b in pts), max(b["observed"] for b in pts))
    fr = _Frame(0.0, top, 0.0, top)
    body = fr.axes("predicted probability of an advance (mean of the bin)", "observed share advanced")
    d = min(fr.x_hi, fr.y_hi)
    body.append(f'<line x1="{fr.x(0):.1f}" y1="{fr.y(0):.1f}" x2="{fr.x(d):.1f}" y2="{fr.y(d):.1f}" stroke="#999" '
                f'stroke-dasharray="5 4"><title>perfect calibration</title></line>')
    path = " ".join(f'{"L" if k else "M"}{fr.x(b["predicted"]):.1f},{fr.y(b["observed"]):.1f}'
                    for k, b in enumerate(pts))
    body.append(f'<path d="{path}" fill="none" stroke="{PALETTE[0]}" stroke-width="2"/>')
    for b in pts:
        body.append(f'<circle cx="{fr.x(b["predicted"]):.1f}" cy="{fr.y(b["observed"]):.1f}" r="4" fill="{PALETTE[0]}">'
                    f'<title>predicted {fmt(b["predicted"])}, observed {fmt(b["observed"])} '
                    f'over {b.get("n", 0):,} activities</title></circle>')
    return _svg(body, title, kind="calibration")
