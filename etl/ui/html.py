"""Server-rendered HTML for the WebEngage page: one layout, tables, inline SVG bar charts. No script, no CDN:
it works offline and inside the Airflow UI's sandboxed frame. Every value goes through :func:`esc`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import urlencode

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1a202c;background:#fff}
header{display:flex;gap:1.2em;align-items:baseline;padding:.7em 1.2em;border-bottom:1px solid #e2e8f0}
header b{font-size:1.1em} header a{color:#2b6cb0;text-decoration:none} header a.on{font-weight:600;color:#1a202c}
main{padding:1em 1.2em} h1{font-size:1.3em;margin:.2em 0 .6em} h2{font-size:1.1em;margin:1.4em 0 .5em}
table{border-collapse:collapse;margin:.4em 0 1em} th,td{padding:.28em .6em;border-bottom:1px solid #edf2f7;
text-align:left;vertical-align:top} th{background:#f7fafc;font-weight:600;white-space:nowrap}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums} a{color:#2b6cb0}
pre{background:#f7fafc;border:1px solid #e2e8f0;padding:.7em;overflow-x:auto;white-space:pre-wrap}
.tag{display:inline-block;padding:0 .45em;border-radius:.6em;font-size:.85em;background:#edf2f7}
.success{background:#c6f6d5}.failed,.abandoned{background:#fed7d7}.running{background:#bee3f8}
.dry{background:#fefcbf}.muted{color:#718096}.warn{background:#fffaf0;border:1px solid #f6ad55;padding:.5em .8em}
form{margin:.3em 0 1em} select,input,button{font:inherit;padding:.15em .4em} svg text{font-size:11px;fill:#4a5568}
"""

NAV = (("runs", "Runs"), ("cohorts", "Cohorts"), ("budget", "Budget"))


def esc(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def href(path: str, **query: object) -> str:
    """A relative link (the page may be mounted under any prefix), query values encoded."""
    given = {k: str(v) for k, v in query.items() if v not in (None, "")}
    return esc(path + ("?" + urlencode(given) if given else ""))


def number(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else esc(value)


def when(value: datetime | str | None) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        return esc(value.replace("T", " ")[:19])
    return f"{value:%Y-%m-%d %H:%M:%S}"


def tag(text: str, css: str = "") -> str:
    return f'<span class="tag {esc(css or text)}">{esc(text)}</span>'


def page(title: str, body: str, *, active: str = "", root: str = "./") -> str:
    """The whole document. ``root`` is the relative path back to the app's root from this page."""
    links = " ".join(
        f'<a href="{esc(root + ("" if key == "runs" else key))}"{" class=on" if key == active else ""}>{label}</a>'
        for key, label in NAV
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{esc(title)} · WebEngage</title><style>{_CSS}</style></head>"
        f"<body><header><b>WebEngage</b>{links}</header><main><h1>{esc(title)}</h1>{body}</main></body></html>"
    )


@dataclass(frozen=True)
class Column:
    title: str
    numeric: bool = False


def table(columns: Sequence[Column | str], rows: Iterable[Sequence[str]], *, empty: str = "nothing yet") -> str:
    """A table of already-escaped cells."""
    cols = [c if isinstance(c, Column) else Column(c) for c in columns]
    head = "".join(f"<th{' class=n' if c.numeric else ''}>{esc(c.title)}</th>" for c in cols)
    body = []
    for row in rows:
        cells = "".join(f"<td{' class=n' if c.numeric else ''}>{v}</td>" for c, v in zip(cols, row, strict=True))
        body.append(f"<tr>{cells}</tr>")
    if not body:
        return f'<p class="muted">{esc(empty)}</p>'
    thead = f"<thead><tr>{head}</tr></thead>" if any(c.title for c in cols) else ""
    return f"<table>{thead}<tbody>{''.join(body)}</tbody></table>"


@dataclass(frozen=True)
class Bar:
    label: str  # shown under the bar (short)
    value: int
    title: str  # the tooltip (run id, exact figure)


def bar_chart(caption: str, bars: Sequence[Bar], *, color: str, height: int = 110) -> str:
    """An inline SVG bar chart, oldest bar first, its own scale (the maximum is labelled)."""
    if not bars:
        return ""
    highest = max(b.value for b in bars)
    top = highest or 1
    width = max(24, min(60, 900 // len(bars)))
    inner = height - 18
    parts = []
    for i, b in enumerate(bars):
        h = round(inner * b.value / top)
        x = 46 + i * width
        parts.append(
            f'<rect x="{x + 2}" y="{inner - h + 4}" width="{width - 4}" height="{max(h, 1 if b.value else 0)}" '
            f'fill="{esc(color)}"><title>{esc(b.title)}</title></rect>'
        )
        if len(bars) <= 40:
            parts.append(f'<text x="{x + width / 2}" y="{height - 2}" text-anchor="middle">{esc(b.label)}</text>')
    total_w = 50 + len(bars) * width
    return (
        f'<figure style="margin:.3em 0 1em"><figcaption>{esc(caption)}</figcaption>'
        f'<svg role="img" aria-label="{esc(caption)}" width="{total_w}" height="{height + 4}" '
        f'viewBox="0 0 {total_w} {height + 4}">'
        f'<text x="42" y="12" text-anchor="end">{highest:,}</text>'
        f'<text x="42" y="{inner + 4}" text-anchor="end">0</text>'
        f'<line x1="45" y1="4" x2="45" y2="{inner + 4}" stroke="#cbd5e0"/>{"".join(parts)}</svg></figure>'
    )


def pre(text: str) -> str:
    return f"<pre>{esc(text)}</pre>"


def kv(pairs: Iterable[tuple[str, Any]]) -> str:
    """A two-column table of label -> value (values escaped here)."""
    return table(["", ""], ([esc(k), number(v)] for k, v in pairs))
