"""The viewer's HTML: one self-contained file, its script, style, layout library and data inline.

The page asks for nothing over the network: its Content-Security-Policy forbids every
fetch (`default-src 'none'`) except, in `--serve` mode, to the server that sent it.
"""

from __future__ import annotations

import functools
import html
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Final

from archdsl.tools.view.data import Payload

ASSETS: Final = Path(__file__).resolve().parent / "assets"

_STATIC_CSP: Final = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:"
)
_LIVE_CSP: Final = _STATIC_CSP + "; connect-src 'self'"


@functools.cache
def _asset(name: str) -> str:
    return (ASSETS / name).read_text(encoding="utf-8")


def render_page(payload: Payload, *, version: int = 0, live: bool = False) -> str:
    """The complete HTML page for a graph or error payload.

    Args:
        payload: from `graph_payload` or `error_payload`.
        version: the server's counter of rebuilds (`--serve`), so the page asks for newer.
        live: follow the server that sent the page, reloading as the spec changes.
    """
    title = payload.get("network") or Path(payload["spec"]).name
    values = {
        "CSP": _LIVE_CSP if live else _STATIC_CSP,
        "TITLE": html.escape(f"{title} · archdsl view"),
        "LIVE": "1" if live else "0",
        "CSS": _asset("viewer.css"),
        "DAGRE": _asset("dagre.min.js"),
        "JS": _asset("viewer.js"),
        "DATA": script_json({"version": version, "payload": payload}),
    }
    # One pass, so a placeholder spelled inside the data is left alone.
    return re.sub(r"\{\{([A-Z]+)\}\}", lambda m: values[m.group(1)], _asset("page.html"))


def script_json(value: Any) -> str:
    """JSON safe inside `<script type="application/json">`: no `<` can close the element."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def write_page(path: str | Path, text: str) -> Path:
    """Write the page atomically: a browser reloading it never sees half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
