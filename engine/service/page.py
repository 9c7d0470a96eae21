"""The preview page (`GET /preview`): one HTML file shipped with the package (`preview.html`), and the
headers it is served with.

The page holds no data: it asks for an admin key and fetches everything from the admin endpoints, so
serving it needs no key. Its one inline script and one inline style are allowed by their SHA-256 in
the Content-Security-Policy, and nothing else is: no other script, no inline event handler, no
framing, no request to another origin. So even a value that were inserted as markup by mistake could
not run; the page inserts every value from a rule file, cart or account as text.
"""
from __future__ import annotations

import base64
import hashlib
import re
from functools import lru_cache
from pathlib import Path

PAGE = Path(__file__).with_name("preview.html")
MEDIA_TYPE = "text/html; charset=utf-8"
_INLINE = re.compile(r"<(script|style)>(.*?)</\1>", re.DOTALL)


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


@lru_cache(maxsize=1)
def page() -> tuple[bytes, dict[str, str]]:
    """The page's bytes and its headers (read once: the file is part of the installed package)."""
    html = PAGE.read_text("utf-8")
    scripts = [_hash(body) for kind, body in _INLINE.findall(html) if kind == "script"]
    styles = [_hash(body) for kind, body in _INLINE.findall(html) if kind == "style"]
    policy = "; ".join([
        "default-src 'self'", f"script-src {' '.join(scripts)}", f"style-src {' '.join(styles)}",
        "img-src 'self'", "connect-src 'self'", "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'",
        "object-src 'none'"])
    headers = {"Content-Security-Policy": policy, "X-Content-Type-Options": "nosniff",
               "Referrer-Policy": "no-referrer", "Cache-Control": "no-store", "X-Frame-Options": "DENY"}
    return html.encode("utf-8"), headers
