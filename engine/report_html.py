"""What the HTML reports share (`promo diff --report`, engine/backtest_report.py; `promo simulate --report`,
engine/simulate_report.py): the page skeleton and its inline style, matplotlib figures as PNGs embedded as
base64 `data:` URIs, and writing the page in one rename.

A page is self-contained: no script, no stylesheet, no font and no image is fetched. Every value a caller
puts in it goes through `escape` (ids and labels come from rule files and corpora).
"""
from __future__ import annotations

import base64
import io
import os
import tempfile
from html import escape
from pathlib import Path
from typing import Iterable

STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:60em;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:1em 0}th,td{padding:.3em .8em;border-bottom:1px solid #ddd}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em}
img{max-width:100%}p.note{color:#555}th{text-align:left}
.multiples{display:flex;flex-wrap:wrap;gap:1em}.multiples figure{flex:1 1 27em;margin:0}
figcaption{font-size:.9em;color:#444}"""

__all__ = ["STYLE", "escape", "figure", "page", "png", "pyplot", "write_page"]


def page(title: str, body: Iterable[str]) -> str:
    """The whole document: `title` (plain text, escaped here) and `body`, HTML its caller escaped."""
    return "\n".join(["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
                      f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>", *body,
                      "</body></html>\n"])


def write_page(path: str, html: str) -> None:
    """Writes the page beside `path` and renames it into place (a reader never sees half a page), readable
    as any new file is (the umask's mode, not the temporary file's 0600): a report is there to be shared."""
    data = html.encode("utf-8")
    target = Path(path)
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp",
                                     dir=target.parent if str(target.parent) else Path("."))
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            mask = os.umask(0o022)
            os.umask(mask)
            os.fchmod(out.fileno(), 0o666 & ~mask)
        os.replace(temporary, target)
    except BaseException:
        if os.path.lexists(temporary):
            os.unlink(temporary)
        raise


def pyplot():
    """matplotlib's pyplot on the Agg backend: no display, nothing but PNG bytes."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def png(plt, fig) -> bytes:
    """The figure as PNG bytes (no timestamp or version in them, so the same data gives the same bytes)."""
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def figure(image: bytes, caption: str, **attributes: str) -> str:
    """A <figure>: the PNG inline as a data: URI, `caption` (plain text) as its alt text and caption;
    `attributes` (data_promotion="x" becomes data-promotion="x") escaped."""
    uri = "data:image/png;base64," + base64.b64encode(image).decode("ascii")
    extra = "".join(f' {name.replace("_", "-")}="{escape(value)}"' for name, value in attributes.items())
    return (f'<figure{extra}><img src="{uri}" alt="{escape(caption)}">'
            f"<figcaption>{escape(caption)}</figcaption></figure>")
