"""The exported ONNX file opens in Netron: serve it, render it in headless Chromium, look.

    python bench/netron_open.py [SPEC] [--screenshot netron.png] [--layer layer1.0.conv1]

Needs `netron` (`pip install 'archdsl[dev]'`), playwright and a system Chromium (as
`tests/test_view_browser.py`: found on PATH or named by `ARCHDSL_CHROMIUM`). Exports
SPEC (default `specs/resnet18.arch`) with `archdsl compile -o model.onnx`, serves it with
`netron.start` on localhost (no browser of netron's own), opens the page in Chromium,
waits for Netron's graph to be drawn, then checks that the rendered SVG holds the
layer names (each `--layer`, and at least half of the ONNX file's node names are
tested against the page's text) and that Netron shows no error dialog. Saves a
screenshot and prints what it found; exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from archdsl.cli.main import main as archdsl  # noqa: E402

FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


def chromium() -> str:
    """The system's Chromium."""
    named = os.environ.get("ARCHDSL_CHROMIUM")
    for candidate in ([named] if named else []) + ["chromium", "chromium-browser"]:
        found = shutil.which(candidate)
        if found:
            return found
    sys.exit("netron_open needs Chromium: apt-get install chromium, or set ARCHDSL_CHROMIUM")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", nargs="?", default=str(ROOT / "specs" / "resnet18.arch"))
    parser.add_argument("--screenshot", default="netron.png")
    parser.add_argument("--layer", action="append", default=None)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait")
    args = parser.parse_args()
    layers = args.layer or ["layer1.0.conv1", "layer2.0.residual.shortcut"]
    try:
        import netron
        import onnx
        from playwright.sync_api import TimeoutError as PlaywrightTimeout
        from playwright.sync_api import sync_playwright
    except ImportError as error:
        sys.exit(f"netron_open needs {error.name}: pip install 'archdsl[dev]'")

    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "model.onnx"
        with contextlib.redirect_stdout(io.StringIO()):
            code = archdsl(["compile", args.spec, "-o", str(model)])
        if code != 0:
            return 1
        names = [node.name for node in onnx.load(model).graph.node if "/" not in node.name]
        host, port = netron.start(str(model), ("localhost", 0), browse=False)
        url = f"http://{host}:{port}/"
        print(f"netron {netron.__version__} serving {model.name} at {url}")
        failures: list[str] = []
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium(), args=FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            problems: list[str] = []
            page.on("pageerror", lambda e: problems.append(str(e)))
            start = time.perf_counter()
            page.goto(url)
            # First visit: Netron asks for cookie consent in its message box; accept it.
            consent = page.get_by_role("button", name="Accept")
            with contextlib.suppress(PlaywrightTimeout):
                consent.click(timeout=10_000)
            # Netron draws each node as a `g.graph-node` inside `svg#canvas` once loaded.
            # (Playwright's locators only: Netron disables `window.eval`.)
            page.locator("#canvas g.graph-node").first.wait_for(timeout=args.timeout * 1000)
            seconds = time.perf_counter() - start
            svg_text = page.locator("#canvas").text_content() or ""
            nodes = page.locator("#canvas g.graph-node").count()
            # Names are in the SVG either way; Netron shows them with View > Show Names.
            page.keyboard.press("Control+U")
            page.wait_for_timeout(1000)
            page.screenshot(path=args.screenshot)
            message = page.locator("#message-text")
            dialog = [message.text_content() or ""] if message.is_visible() else []
            browser.close()
        netron.stop()
        found = [n for n in names if n in svg_text]
        print(f"graph drawn in {seconds:.1f} s: {nodes} node boxes for {len(names)} ONNX nodes")
        print(f"layer names in the SVG: {len(found)} of {len(names)} ({', '.join(found[:5])}, ...)")
        for layer in layers:
            ok = layer in svg_text
            print(f"  `{layer}`: {'found' if ok else 'NOT FOUND'}")
            if not ok:
                failures.append(f"`{layer}` is not in the rendered graph")
        if len(found) < len(names) / 2:
            failures.append(f"only {len(found)} of {len(names)} layer names are in the graph")
        shown = [d for d in dialog if d]
        if shown:
            failures.append(f"Netron shows a message: {shown[0][:200]}")
        if problems:
            failures.append(f"page errors: {problems[:3]}")
        print(f"screenshot {args.screenshot}")
    for failure in failures:
        print(f"FAILED: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
