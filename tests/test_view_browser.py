"""`archdsl view` in a real browser: headless Chromium driven by Playwright.

Chromium comes from the system (Debian's `chromium`; `.ci/run` installs it), found on
PATH or named by `ARCHDSL_CHROMIUM`; nothing is downloaded at test time. Without it
these tests skip, saying so, unless `ARCHDSL_REQUIRE_BROWSER=1` (CI sets it): then
they fail. Playwright starts each browser with a fresh temporary profile.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from archdsl.cli import main
from archdsl.errors import ArchError
from archdsl.frontend import build_graph
from archdsl.graph.report import build_report
from archdsl.lang.numbers import format_count

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _missing(reason: str) -> None:
    if os.environ.get("ARCHDSL_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (ARCHDSL_REQUIRE_BROWSER=1)")
    pytest.skip(reason)


def chromium() -> str | None:
    """The system's Chromium, if any."""
    named = os.environ.get("ARCHDSL_CHROMIUM")
    if named:
        return named if os.access(named, os.X_OK) else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the browser tests need playwright: pip install -e '.[test]'")
    executable = chromium()
    if executable is None:
        _missing(
            "Chromium is not installed (apt-get install chromium), or ARCHDSL_CHROMIUM names no program"
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    tab = context.new_page()
    tab.problems = []
    tab.requests = []
    tab.on("console", lambda m: m.type in ("error", "warning") and tab.problems.append(m.text))
    tab.on("pageerror", lambda e: tab.problems.append(str(e)))
    tab.on("request", lambda r: tab.requests.append(r.url))
    yield tab
    context.close()


@pytest.fixture(scope="module")
def resnet50_page(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("view") / "resnet50.html"
    assert main(["view", str(SPECS / "resnet50.arch"), "-o", str(out), "--batch", "8"]) == 0
    return out


@pytest.fixture(scope="module")
def resnet50():
    return build_graph(SPECS / "resnet50.arch")


def _open(page, path: Path) -> None:
    page.goto(path.as_uri())
    page.wait_for_selector('body[data-ready="1"]', timeout=15_000)


def _units(page) -> set[str]:
    return set(
        page.eval_on_selector_all("#graph [data-unit]", "els => els.map(e => e.dataset.unit)")
    )


def test_page_loads_offline_without_console_errors(page, resnet50_page, resnet50) -> None:
    _open(page, resnet50_page)
    assert page.problems == []
    assert page.requests == [resnet50_page.as_uri()]  # nothing else was asked for
    units = _units(page)
    # Folded: blocks and runs are boxes; their layers are not drawn.
    assert {"s:layer1.0", "r:layer3.1", "n:input", "n:fc"} <= units
    assert "n:layer2.0.conv2" not in units
    assert "\u00d75" in page.text_content('[data-unit="r:layer3.1"]')
    # Inserted projections stay visible, dashed, as in `archdsl graph --collapse`.
    assert "inserted" in page.get_attribute('[data-unit="n:layer2.0.residual.shortcut"]', "class")
    report = build_report(resnet50)
    assert format_count(report.params) in page.inner_text("#totals")
    assert "batch 8" in page.inner_text("#totals")


def test_expanding_a_block_shows_its_layers(page, resnet50_page, resnet50) -> None:
    _open(page, resnet50_page)
    page.click('[data-toggle="s:layer2.0"]')
    layers = {f"n:{name}" for name in resnet50.order() if name.startswith("layer2.0.")}
    assert len(layers) == 11
    assert layers <= _units(page)
    assert "s:layer2.0" not in _units(page)
    # A run opens into its blocks, each still folded.
    page.click('[data-toggle="r:layer3.1"]')
    assert {f"s:layer3.{i}" for i in range(1, 6)} <= _units(page)
    # Everything open: one box per layer, and a frame per block and stage.
    page.click("#expand-all")
    assert _units(page) == {f"n:{name}" for name in resnet50.order()}
    frames = page.eval_on_selector_all("#graph g.cluster", "els => els.map(e => e.dataset.scope)")
    assert {"s:layer2", "s:layer2.0", "s:layer4.2"} <= set(frames)
    assert page.problems == []


def test_clicking_a_layer_shows_shapes_params_and_source(page, resnet50_page, resnet50) -> None:
    _open(page, resnet50_page)
    page.click('[data-toggle="s:layer2.0"]')
    page.click('[data-unit="n:layer2.0.conv2"]')
    node = resnet50.node("layer2.0.conv2")
    row = next(r for r in build_report(resnet50).rows if r.name == "layer2.0.conv2")
    details = page.locator("#details")
    assert details.locator("h2").inner_text() == "layer2.0.conv2"
    assert details.locator("td.shape").inner_text() == "x".join(map(str, node.shape))
    assert details.locator("td.params").inner_text() == f"{format_count(row.params)} (trainable)"
    assert details.locator("td.macs").inner_text().startswith(format_count(row.macs))
    # The source excerpt names the line that made the layer, and highlights it.
    head = details.locator(".src-head").first.inner_text()
    assert head == f"{node.span.filename}:{node.span.line}:{node.span.column}"
    highlighted = details.locator("pre.src .hl").inner_text()
    assert highlighted.split()[0] == str(node.span.line)
    assert node.span.source.line(node.span.line).strip() in highlighted
    assert page.problems == []


def test_clicking_a_block_shows_its_totals_and_search_finds_a_layer(
    page, resnet50_page, resnet50
) -> None:
    _open(page, resnet50_page)
    page.click('[data-unit="s:layer2.0"] rect.box')
    report = {r.name: r for r in build_report(resnet50).rows}
    inside = [r for name, r in report.items() if name.startswith("layer2.0.")]
    details = page.locator("#details")
    assert details.locator("td.layers").inner_text() == str(len(inside))
    assert details.locator("td.params").inner_text() == format_count(sum(r.params for r in inside))
    page.fill("#search", "layer4.2.conv3")
    page.press("#search", "Enter")
    assert details.locator("h2").inner_text() == "layer4.2.conv3"
    assert "n:layer4.2.conv3" in _units(page)  # its run and block were opened to show it
    page.fill("#search", "no_such_layer")
    page.press("#search", "Enter")
    assert "no layer named" in page.inner_text("#status")
    assert page.problems == []


def test_served_page_shows_diagnostics_and_recovers(page, tmp_path: Path) -> None:
    from archdsl.tools.view.server import start

    shutil.copy(SPECS / "resnet18.arch", tmp_path)
    shutil.copy(SPECS / "resnet_blocks.arch", tmp_path)
    spec = tmp_path / "resnet18.arch"
    good = spec.read_text()
    server, stop = start(spec, port=0)
    try:
        host, port = server.server_address[:2]
        page.goto(f"http://{host}:{port}/")
        page.wait_for_selector('body[data-ready="1"][data-kind="graph"]')
        assert "s:layer2.0" in _units(page)

        bad = good.replace("basic_stage(128, 2, stride = 2)", "basic_stage(128, 2, strid = 2)")
        spec.write_text(bad)
        with pytest.raises(ArchError) as caught:
            build_graph(spec)
        span = caught.value.span
        page.wait_for_selector('body[data-kind="errors"]', timeout=15_000)
        assert page.is_hidden("#canvas")  # no stale graph beside the diagnostic
        where = page.locator("#errors .where").first.inner_text()
        assert where == f"{span.filename}:{span.line}:{span.column}"
        assert caught.value.message in page.inner_text("#errors")

        spec.write_text(good)
        page.wait_for_selector('body[data-kind="graph"]', timeout=15_000)
        assert "s:layer2.0" in _units(page)
        assert page.problems == []
    finally:
        stop()


def test_inception_branches_keep_the_specs_order_and_aux_heads_are_marked(
    page, tmp_path: Path
) -> None:
    out = tmp_path / "googlenet.html"
    assert main(["view", str(SPECS / "googlenet.arch"), "-o", str(out)]) == 0
    _open(page, out)
    assert "aux" in page.get_attribute('[data-unit="s:aux1#aux"]', "class")
    for block in ("inception3a", "inception4a", "inception4e", "inception5b"):
        page.click(f'[data-toggle="s:{block}"]')
        lefts = [
            page.eval_on_selector(
                f'[data-unit="n:{block}.concat.branch{k}.conv"] rect.box',
                "e => e.getBoundingClientRect().left",
            )
            for k in range(1, 5)
        ]
        assert lefts == sorted(lefts) and len(set(lefts)) == 4, block
        page.click(f'text[data-scope="s:{block}"]')  # fold it again
    assert page.problems == []
