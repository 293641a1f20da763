"""`archdsl view --serve`: the page on 127.0.0.1, rebuilt when the spec or an import changes.

Standard library only. A watcher thread polls the files' modification times; each
rebuild bumps a version number, and the page long-polls `/state?since=V`, which
answers as soon as the version moves past V (or after `_POLL_SECONDS`, unchanged).
A spec with errors gives an error payload: the page shows the diagnostics instead of
a stale graph, and the graph again once the file is fixed.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Final
from urllib.parse import parse_qs, urlsplit

from archdsl.errors import ArchError
from archdsl.frontend import build_graph
from archdsl.lang.values import Value
from archdsl.tools.view.data import Payload, error_payload, graph_payload
from archdsl.tools.view.page import render_page

LOOPBACK: Final = "127.0.0.1"
_POLL_SECONDS: Final = 20.0
"""How long `/state` holds a request open when nothing changes."""
_WATCH_SECONDS: Final = 0.25
"""How often the watcher looks at the files' modification times."""


class Live:
    """The current payload of one spec, its version, and the files it was built from."""

    def __init__(self, build: Callable[[], tuple[Payload, set[Path]]]) -> None:
        self._build = build
        self._changed = threading.Condition()
        self.version = 0
        self.payload: Payload = {}
        self.files: dict[Path, tuple[int, int] | None] = {}
        self.refresh()

    def refresh(self) -> None:
        """Rebuild, publish the new payload, and notify every waiting request."""
        payload, files = self._build()
        stamps = {path: _stamp(path) for path in files}
        with self._changed:
            self.payload = payload
            self.files = stamps
            self.version += 1
            self._changed.notify_all()

    def stale(self) -> bool:
        """Whether a watched file changed (or appeared, or went) since the last build."""
        return any(_stamp(path) != stamp for path, stamp in self.files.items())

    def wait(self, since: int, timeout: float) -> tuple[int, Payload]:
        """The version and payload once the version differs from `since`, or at `timeout`."""
        with self._changed:
            self._changed.wait_for(lambda: self.version != since, timeout=timeout)
            return self.version, self.payload


def builder(
    spec: str | Path,
    *,
    network: str | None = None,
    arguments: Mapping[str, Value] | None = None,
    batch: int | None = None,
) -> Callable[[], tuple[Payload, set[Path]]]:
    """A function that builds `spec` into a payload and names the files to watch.

    The files are the spec, every file a node's source or call site is in, and the
    file of every error, so a fix in an imported file is seen too.
    """
    spec = str(spec)

    def build() -> tuple[Payload, set[Path]]:
        files = {Path(spec)}
        try:
            graph = build_graph(spec, network=network, **dict(arguments or {}))
        except ArchError as error:
            errors = getattr(error, "errors", (error,))
            files |= {Path(e.span.filename) for e in errors if e.span is not None}
            return error_payload(error, spec=spec), files
        except Exception:  # a compiler bug: show it on the page rather than stop serving
            text = traceback.format_exc()
            print(text, file=sys.stderr)
            failure = ArchError(f"internal error while building the spec:\n{text}")
            return error_payload(failure, spec=spec), files
        payload = graph_payload(graph, spec=spec, batch=batch)
        files |= {Path(f["name"]) for f in payload["files"]}
        return payload, files

    return build


def make_server(live: Live, port: int = 0) -> ThreadingHTTPServer:
    """An HTTP server for `live` on 127.0.0.1:`port` (0: any free port), not yet serving."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "archdsl-view"

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path in ("/", "/index.html"):
                with live._changed:
                    version, payload = live.version, live.payload
                self._send(
                    "text/html; charset=utf-8", render_page(payload, version=version, live=True)
                )
            elif url.path == "/state":
                try:
                    since = int(parse_qs(url.query).get("since", ["-1"])[0])
                except ValueError:
                    since = -1
                version, payload = live.wait(since, _POLL_SECONDS)
                body = {"version": version}
                if version != since:
                    body["payload"] = payload
                self._send("application/json", json.dumps(body))
            else:
                self.send_error(HTTPStatus.NOT_FOUND)

        def _send(self, kind: str, text: str) -> None:
            data = text.encode("utf-8")
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass  # one line per long poll would drown the terminal

    server = _Server((LOOPBACK, port), Handler)
    server.daemon_threads = True
    return server


class _Server(ThreadingHTTPServer):
    """A browser that closes a tab mid-reply (a reload, a long poll cut short) is no error."""

    def handle_error(self, request: object, client_address: object) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):  # broken pipe, reset
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]


def watch(live: Live, stop: threading.Event, interval: float = _WATCH_SECONDS) -> None:
    """Rebuild whenever a watched file changes, until `stop` is set."""
    while not stop.wait(interval):
        if live.stale():
            time.sleep(0.05)  # let an editor finish writing before reading
            live.refresh()


def start(
    spec: str | Path,
    *,
    port: int = 0,
    network: str | None = None,
    arguments: Mapping[str, Value] | None = None,
    batch: int | None = None,
) -> tuple[ThreadingHTTPServer, Callable[[], None]]:
    """Serve `spec` in background threads; returns the server and a function that stops it."""
    live = Live(builder(spec, network=network, arguments=arguments, batch=batch))
    server = make_server(live, port)
    stop = threading.Event()
    threads = [
        threading.Thread(target=server.serve_forever, name="archdsl-view-http", daemon=True),
        threading.Thread(target=watch, args=(live, stop), name="archdsl-view-watch", daemon=True),
    ]
    for thread in threads:
        thread.start()

    def shutdown() -> None:
        stop.set()
        server.shutdown()
        server.server_close()
        for thread in threads:
            thread.join(timeout=5)

    return server, shutdown


def serve(
    spec: str | Path,
    *,
    port: int = 8765,
    network: str | None = None,
    arguments: Mapping[str, Value] | None = None,
    batch: int | None = None,
) -> int:
    """`archdsl view --serve`: serve until Ctrl-C."""
    try:
        server, shutdown = start(spec, port=port, network=network, arguments=arguments, batch=batch)
    except OSError as error:
        raise ArchError(
            f"cannot serve on {LOOPBACK}:{port}: {error.strerror or error}",
            help="pick another port with `--port P` (0: any free one)",
        ) from None
    host, bound = server.server_address[:2]
    print(f"serving {spec} at http://{host}:{bound}/ (Ctrl-C to stop)", flush=True)
    try:
        threading.Event().wait()
    finally:
        shutdown()
    return 0


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size
