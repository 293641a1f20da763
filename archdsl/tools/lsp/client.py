"""A small synchronous LSP client over a subprocess's pipes, for tests and the benchmark.

It speaks what an editor speaks (`Content-Length` framing, JSON-RPC 2.0, the
initialize handshake, document notifications) and keeps everything plain JSON, so a
test reads exactly what the editor would receive.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

Message = dict[str, Any]


class LspClient:
    """Start `archdsl lsp`, then send requests and notifications and wait for replies."""

    def __init__(self, command: Sequence[str] | None = None, *, cwd: str | None = None) -> None:
        command = command or [sys.executable, "-m", "archdsl", "lsp"]
        self.process = subprocess.Popen(
            list(command),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=cwd,
        )
        self._inbox: queue.Queue[Message | None] = queue.Queue()
        self._next_id = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.notifications: list[Message] = []
        self.versions: dict[str, int] = {}

    # framing ------------------------------------------------------------------------
    def _send(self, message: Message) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode("utf-8")
        assert self.process.stdin is not None
        self.process.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.process.stdin.flush()

    def _read(self) -> None:
        stream = self.process.stdout
        assert stream is not None
        while True:
            length = None
            while True:
                line = stream.readline()
                if not line:
                    self._inbox.put(None)
                    return
                if line in (b"\r\n", b"\n"):
                    break
                name, _, value = line.decode("ascii").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if length is None:
                continue
            self._inbox.put(json.loads(stream.read(length)))

    def _next(self, deadline: float) -> Message:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the language server did not answer in time")
        try:
            message = self._inbox.get(timeout=remaining)
        except queue.Empty:
            raise TimeoutError("the language server did not answer in time") from None
        if message is None:
            raise ConnectionError("the language server exited")
        return message

    # JSON-RPC -------------------------------------------------------------------------
    def request(self, method: str, params: Any, *, timeout: float = 60.0) -> Any:
        """Send a request and return its result (notifications meanwhile are kept)."""
        self._next_id += 1
        ident = self._next_id
        self._send({"id": ident, "method": method, "params": params})
        deadline = time.monotonic() + timeout
        while True:
            message = self._next(deadline)
            if message.get("id") == ident and "method" not in message:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result")
            self._keep(message)

    def notify(self, method: str, params: Any) -> None:
        """Send a notification (no reply)."""
        self._send({"method": method, "params": params})

    def _keep(self, message: Message) -> None:
        if "id" in message and "method" in message:  # a request from the server
            self._send({"id": message["id"], "result": None})
        else:
            self.notifications.append(message)

    def wait_diagnostics(self, uri: str, *, timeout: float = 60.0) -> list[Message]:
        """The diagnostics published for the document's latest version."""
        deadline = time.monotonic() + timeout
        want = self.versions.get(uri)
        while True:
            for i, message in enumerate(self.notifications):
                params = message.get("params") or {}
                if (
                    message.get("method") == "textDocument/publishDiagnostics"
                    and params.get("uri") == uri
                    and params.get("version") == want
                ):
                    del self.notifications[: i + 1]
                    return list(params["diagnostics"])
            self._keep(self._next(deadline))

    # the editor's side ---------------------------------------------------------------
    def initialize(self, root: str | Path) -> Message:
        """The handshake: `initialize`, then `initialized`."""
        result = self.request(
            "initialize",
            {"processId": None, "rootUri": Path(root).resolve().as_uri(), "capabilities": {}},
        )
        self.notify("initialized", {})
        return result

    def open(self, uri: str, text: str) -> None:
        """`textDocument/didOpen` (version 1)."""
        self.versions[uri] = 1
        self.notify(
            "textDocument/didOpen",
            {"textDocument": {"uri": uri, "languageId": "arch", "version": 1, "text": text}},
        )

    def change(self, uri: str, text: str) -> None:
        """`textDocument/didChange` with the whole new text."""
        self.versions[uri] = self.versions.get(uri, 0) + 1
        self.notify(
            "textDocument/didChange",
            {
                "textDocument": {"uri": uri, "version": self.versions[uri]},
                "contentChanges": [{"text": text}],
            },
        )

    def at(self, method: str, uri: str, line: int, character: int) -> Any:
        """A positional request (hover, definition, completion) at 0-based line, character."""
        return self.request(
            method,
            {"textDocument": {"uri": uri}, "position": {"line": line, "character": character}},
        )

    def close(self) -> None:
        """`shutdown`, `exit`, and wait for the process."""
        try:
            self.request("shutdown", None, timeout=10)
            self.notify("exit", None)
            self.process.wait(timeout=10)
        except (TimeoutError, ConnectionError, OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()
        finally:
            for stream in (self.process.stdin, self.process.stdout):
                if stream is not None:
                    stream.close()

    def __enter__(self) -> LspClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
