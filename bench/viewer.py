"""Time `archdsl view` pages opening in headless Chromium, and measure their size.

    python bench/viewer.py [--models resnet152 googlenet resnet50] [--repeat 5]
        [--chromium /usr/bin/chromium] [--shots DIR]

For each spec: the time to build the page in Python (parse, check, page data, HTML),
the HTML size, and, over `--repeat` fresh tabs, the median time from navigation to the
drawn folded graph (the page's own `performance.now()` when it is ready, and the wall
time Playwright saw), then the time to lay out and draw everything expanded. The goal
(issue 14): ResNet-152 and GoogLeNet open in under 2 s, ResNet-152's page under 2 MB.
`--shots DIR` also saves the screenshots used in docs/viewer.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from archdsl.frontend import build_graph  # noqa: E402
from archdsl.tools.view.data import graph_payload  # noqa: E402
from archdsl.tools.view.page import render_page  # noqa: E402

FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def build(spec: Path, out: Path) -> tuple[float, int, int]:
    """Write the page; return seconds, bytes and layers."""
    start = time.perf_counter()
    graph = build_graph(spec.relative_to(ROOT))
    page = render_page(graph_payload(graph, spec=str(spec.relative_to(ROOT))))
    seconds = time.perf_counter() - start
    out.write_text(page, encoding="utf-8")
    return seconds, len(page.encode()), len(graph)


def open_times(browser, path: Path, repeat: int) -> tuple[float, float, float, int]:
    """Median ready time in the page and wall time, expand-all time, units drawn."""
    ready, wall, expand = [], [], []
    units = 0
    for _ in range(repeat):
        tab = browser.new_page(viewport={"width": 1400, "height": 1000})
        start = time.perf_counter()
        tab.goto(path.as_uri())
        tab.wait_for_selector('body[data-ready="1"]')
        wall.append(time.perf_counter() - start)
        ready.append(float(tab.get_attribute("body", "data-ready-ms")) / 1000)
        expand.append(
            tab.evaluate(
                "() => { const t = performance.now();"
                " document.getElementById('expand-all').click();"
                " return (performance.now() - t) / 1000; }"
            )
        )
        units = tab.eval_on_selector_all("#graph [data-unit]", "e => e.length")
        tab.close()
    return statistics.median(ready), statistics.median(wall), statistics.median(expand), units


def screenshots(browser, folder: Path, pages: dict[str, Path]) -> None:
    """The pictures of docs/viewer.md: folded ResNet-50, an open block, a diagnostic."""
    folder.mkdir(parents=True, exist_ok=True)
    tab = browser.new_page(viewport={"width": 1200, "height": 760})
    tab.goto(pages["resnet50"].as_uri())
    tab.wait_for_selector('body[data-ready="1"]')
    tab.screenshot(path=str(folder / "view-resnet50.png"))
    tab.click('[data-toggle="s:layer2.0"]')
    tab.click('[data-unit="n:layer2.0.conv2"]')
    tab.eval_on_selector(
        '[data-unit="n:layer2.0.conv2"]', "e => e.scrollIntoView({block: 'center'})"
    )
    tab.screenshot(path=str(folder / "view-block.png"))
    tab.close()
    from archdsl.tools.view.server import start

    with tempfile.TemporaryDirectory() as tmp:
        for name in ("resnet18.arch", "resnet_blocks.arch"):
            shutil.copy(ROOT / "specs" / name, tmp)
        spec = Path(tmp) / "resnet18.arch"
        server, stop = start(spec, port=0)
        try:
            host, port = server.server_address[:2]
            tab = browser.new_page(viewport={"width": 1000, "height": 330})
            tab.goto(f"http://{host}:{port}/")
            tab.wait_for_selector('body[data-kind="graph"]')
            text = spec.read_text()
            spec.write_text(
                text.replace("basic_stage(128, 2, stride = 2)", "basic_stage(128, 2, strid = 2)")
            )
            tab.wait_for_selector('body[data-kind="errors"]')
            tab.screenshot(path=str(folder / "view-errors.png"))
            tab.close()
        finally:
            stop()
    for shot in folder.glob("view-*.png"):
        _shrink(shot)


def _shrink(path: Path) -> None:
    """64 colours are plenty for a screenshot of boxes and text: a third of the bytes."""
    from PIL import Image

    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet152", "googlenet", "resnet50"])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--shots", type=Path, help="save the docs' screenshots here")
    args = parser.parse_args()
    os.chdir(ROOT)  # the pages name their files relative to the checkout, as a user types them

    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, args=FLAGS)
        pages: dict[str, Path] = {}
        print(
            f"{'spec':<10} {'layers':>6} {'build s':>8} {'HTML':>10} {'open s':>7} "
            f"{'wall s':>7} {'boxes':>6} {'expand-all s':>13}"
        )
        for model in args.models:
            pages[model] = Path(tmp) / f"{model}.html"
            seconds, size, layers = build(ROOT / "specs" / f"{model}.arch", pages[model])
            ready, wall, expand, units = open_times(browser, pages[model], args.repeat)
            print(
                f"{model:<10} {layers:>6} {seconds:>8.2f} {size:>10,} {ready:>7.2f} "
                f"{wall:>7.2f} {units:>6} {expand:>13.2f}"
            )
        print(
            f"median of {args.repeat} fresh tabs; `open`: navigation to the drawn folded "
            "graph, by the page's clock; `boxes`: drawn after expand-all"
        )
        if args.shots:
            if "resnet50" not in pages:
                pages["resnet50"] = Path(tmp) / "resnet50.html"
                build(ROOT / "specs" / "resnet50.arch", pages["resnet50"])
            screenshots(browser, args.shots, pages)
            print(f"screenshots in {args.shots}")
        browser.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
