"""A self-contained HTML page builder for offline reports: inline CSS, no script, no external file.

A page opens from disk without a network (no CDN, no web font, no JavaScript): plots are
inline SVG (``reports.plots``), tables are plain HTML, collapsible parts use ``<details>``.
Every piece of text is escaped here; callers pass plain strings and numbers.

    page("Activity vs accomplishment", subtitle, [section("reps", "Reps", table(cols, rows))])
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

CSS = """
:root { --ink:#1d2733; --muted:#5b6675; --line:#dde3ea; --bg:#f6f8fa; --accent:#1f5fa8; --wait:#8a5a00; }
* { box-sizing: border-box; }
body { margin:0; font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; color:var(--ink);
       background:#fff; line-height:1.45; font-size:14px; }
header.top { background:var(--ink); color:#fff; padding:18px 32px 14px; }
header.top h1 { margin:0 0 4px; font-size:24px; }
header.top p { margin:2px 0; color:#d5dde6; }
nav.toc { background:var(--bg); border-bottom:1px solid var(--line); padding:8px 32px; position:sticky; top:0; z-index:2; }
nav.toc a { color:var(--accent); margin-right:16px; text-decoration:none; white-space:nowrap; }
main { padding:8px 32px 40px; max-width:1400px; }
section { margin:26px 0 10px; }
h2 { font-size:20px; border-bottom:2px solid var(--line); padding-bottom:4px; margin:0 0 10px; }
h3 { font-size:16px; margin:18px 0 6px; }
p.intro { color:var(--muted); margin:4px 0 10px; max-width:980px; }
.cards { display:flex; flex-wrap:wrap; gap:12px; margin:10px 0; }
.card { border:1px solid var(--line); border-radius:8px; padding:10px 14px; min-width:170px; background:#fff; }
.card .label { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.03em; }
.card .value { font-size:22px; font-weight:600; }
.card .sub { color:var(--muted); font-size:12px; }
.note { border-left:4px solid var(--accent); background:#eef4fb; padding:8px 12px; margin:10px 0; max-width:980px; }
.note.wait { border-color:var(--wait); background:#fdf5e6; }
.note.warn { border-color:#b3261e; background:#fdeceb; }
.scroll { overflow-x:auto; max-width:100%; }
table { border-collapse:collapse; margin:6px 0 12px; font-size:13px; }
th, td { border-bottom:1px solid var(--line); padding:4px 8px; text-align:right; white-space:nowrap; }
th { background:var(--bg); position:sticky; top:0; font-weight:600; vertical-align:bottom; white-space:normal;
     max-width:130px; }
td.wrap { white-space:normal; text-align:left; min-width:260px; }
td.text, th.text { text-align:left; }
tr:hover td { background:#fafcff; }
td.na { color:#9aa3ad; }
caption { text-align:left; color:var(--muted); padding:4px 0; caption-side:bottom; font-size:12px; }
.est { font-style:italic; }
.iv { color:var(--muted); font-size:12px; }
.plots { display:flex; flex-wrap:wrap; gap:18px; align-items:flex-start; }
.plots figure { margin:0; border:1px solid var(--line); border-radius:8px; padding:6px; background:#fff; }
.plots figcaption { color:var(--muted); font-size:12px; max-width:640px; padding:4px 6px; }
svg.plot { max-width:100%; height:auto; }
details { margin:8px 0; } summary { cursor:pointer; color:var(--accent); }
ul.tight { margin:4px 0 10px; padding-left:22px; max-width:980px; }
footer { color:var(--muted); font-size:12px; border-top:1px solid var(--line); padding:12px 32px; }
@media print { nav.toc { display:none; } th { position:static; } }
"""


def esc(value: Any) -> str:
    """Escaped text of any value."""
    return html.escape("" if value is None else str(value), quote=True)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def number(v: Any, digits: int = 1) -> str:
    """1,234 for counts; ``digits`` decimals for other numbers; an en dash when missing."""
    if not _finite(v):
        return "–"
    if float(v).is_integer() and abs(v) >= 1 and digits <= 1:
        return f"{int(v):,}"
    return f"{v:,.{digits}f}"


def count(v: Any) -> str:
    return f"{int(v):,}" if _finite(v) else "–"


def percent(v: Any, digits: int = 1) -> str:
    return f"{100 * v:.{digits}f}%" if _finite(v) else "–"


def estimate(value: Any, low: Any, high: Any, fmt: Callable[[Any], str] = number) -> str:
    """An estimate with its 90% interval, marked up as one: ``2.1 (0.8 to 3.3)``."""
    if not _finite(value):
        return '<span class="na">–</span>'
    iv = f' <span class="iv">({fmt(low)} to {fmt(high)})</span>' if _finite(low) and _finite(high) else ""
    return f'<span class="est" title="estimate, 90% interval">{esc(fmt(value))}</span>{iv}'


@dataclass
class Column:
    """One table column: the row key, its header, how a value reads, and whether it is text.

    ``render`` receives the whole row and returns HTML (for estimates with intervals);
    otherwise ``fmt`` formats ``row[key]`` and the result is escaped.
    """

    key: str
    header: str
    fmt: Callable[[Any], str] = number
    text: bool = False
    render: Callable[[dict], str] | None = None
    title: str = ""


def table(columns: Sequence[Column], rows: Sequence[dict], *, caption: str = "", max_rows: int | None = None,
          table_id: str = "") -> str:
    """An HTML table; ``max_rows`` cuts it and says how many rows were left out."""
    shown = list(rows if max_rows is None else rows[:max_rows])
    head = "".join(f'<th class="{"text" if col.text else ""}" title="{esc(col.title)}">{esc(col.header)}</th>'
                   for col in columns)
    body = []
    for row in shown:
        cells = []
        for col in columns:
            if col.render is not None:
                cells.append(f'<td class="{"wrap" if col.text else ""}">{col.render(row)}</td>')
                continue
            v = row.get(col.key)
            if v is None:
                cells.append(f'<td class="na{" text" if col.text else ""}">–</td>')
            else:
                cells.append(f'<td class="{"text" if col.text else ""}">{esc(col.fmt(v) if not col.text else v)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    if not shown:
        body.append(f'<tr><td class="text na" colspan="{len(columns)}">no rows</td></tr>')
    cut = "" if max_rows is None or len(rows) <= max_rows else f" Showing {max_rows:,} of {len(rows):,} rows."
    cap = f"<caption>{esc(caption)}{esc(cut)}</caption>" if caption or cut else ""
    ident = f' id="{esc(table_id)}"' if table_id else ""
    return f'<div class="scroll"><table{ident}>{cap}<thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def cards(items: Sequence[tuple[str, str, str]]) -> str:
    """Headline figures: ``(label, value HTML, sub text)``."""
    out = [f'<div class="card"><div class="label">{esc(label)}</div><div class="value">{value}</div>'
           f'<div class="sub">{esc(sub)}</div></div>' for label, value, sub in items]
    return '<div class="cards">' + "".join(out) + "</div>"


def note(text: str, kind: str = "info") -> str:
    """A boxed remark: ``info``, ``wait`` (a figure waits for something) or ``warn``."""
    return f'<div class="note {esc(kind)}">{esc(text)}</div>'


def paragraph(text: str) -> str:
    return f'<p class="intro">{esc(text)}</p>'


def bullets(items: Sequence[str]) -> str:
    return '<ul class="tight">' + "".join(f"<li>{esc(i)}</li>" for i in items) + "</ul>"


def figure(svg: str, caption: str) -> str:
    """An inline SVG plot with its caption."""
    return f"<figure>{svg}<figcaption>{esc(caption)}</figcaption></figure>"


def plots(*figures: str) -> str:
    return '<div class="plots">' + "".join(figures) + "</div>"


def details(summary: str, body: str) -> str:
    """A collapsed part (no script: the browser's ``<details>``)."""
    return f"<details><summary>{esc(summary)}</summary>{body}</details>"


def subheading(text: str) -> str:
    return f"<h3>{esc(text)}</h3>"


def section(section_id: str, title: str, *parts: str, intro: str = "") -> tuple[str, str, str]:
    """One section of a page: ``(id, title, html)``."""
    body = (paragraph(intro) if intro else "") + "".join(parts)
    return section_id, title, f'<section id="{esc(section_id)}"><h2>{esc(title)}</h2>{body}</section>'


def page(title: str, subtitle_lines: Sequence[str], sections: Sequence[tuple[str, str, str]],
         footer: str = "") -> str:
    """The whole document: header, a table of contents, the sections, a footer."""
    nav = "".join(f'<a href="#{esc(i)}">{esc(t)}</a>' for i, t, _ in sections)
    sub = "".join(f"<p>{esc(line)}</p>" for line in subtitle_lines)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f'<header class="top"><h1>{esc(title)}</h1>{sub}</header>'
        f'<nav class="toc">{nav}</nav><main>{"".join(h for _, _, h in sections)}</main>'
        f"<footer>{esc(footer)}</footer></body></html>\n"
    )
