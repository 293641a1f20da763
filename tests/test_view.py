"""`archdsl view` without a browser: the page data, the self-contained page, the CLI, the server."""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from archdsl.cli import main
from archdsl.errors import ArchError
from archdsl.frontend import build_graph
from archdsl.graph.report import build_report
from archdsl.tools.draw import to_dot
from archdsl.tools.view.data import error_payload, graph_payload
from archdsl.tools.view.page import render_page, script_json
from archdsl.tools.view.server import LOOPBACK, start

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"


@pytest.fixture(scope="module")
def resnet50():
    return build_graph(SPECS / "resnet50.arch")


def _data(page: str) -> dict:
    (text,) = re.findall(
        r'<script id="archdsl-data" type="application/json">(.*?)</script>', page, re.S
    )
    return json.loads(text)


def test_payload_figures_are_the_report(resnet50) -> None:
    payload = graph_payload(resnet50, spec="resnet50.arch")
    report = build_report(resnet50)
    assert [n["name"] for n in payload["nodes"]] == [r.name for r in report.rows]
    for node, row in zip(payload["nodes"], report.rows, strict=True):
        assert (node["params"], node["macs"], node["state"]) == (row.params, row.macs, row.state)
    assert payload["totals"]["params"] == report.params == 25_557_032
    assert payload["totals"]["macs"] == report.macs
    # Operands are indices into the node list, in operand order.
    residual = next(n for n in payload["nodes"] if n["name"] == "layer2.0.residual")
    names = [payload["nodes"][i]["name"] for i in residual["inputs"]]
    assert names == list(resnet50.node("layer2.0.residual").inputs)


def test_spans_point_into_the_files_shipped_with_the_page(resnet50) -> None:
    payload = graph_payload(resnet50, spec="resnet50.arch")
    node = next(n for n in payload["nodes"] if n["name"] == "layer2.0.conv2")
    file, line, column, _, _ = node["span"]
    text = payload["files"][file]["text"].splitlines()[line - 1]
    assert payload["files"][file]["name"].endswith("resnet_blocks.arch")
    assert text[column - 1 :].startswith("conv c 3x3")
    # The outermost call site is the stage in resnet50.arch that made `layer2`.
    file, line, *_ = node["trace"][-1]
    assert "as layer2" in payload["files"][file]["text"].splitlines()[line - 1]


def test_scopes_and_runs_fold_as_graph_collapse_does(resnet50) -> None:
    payload = graph_payload(resnet50, spec="resnet50.arch")
    scopes = payload["scopes"]
    runs = [[scopes[s]["name"] for s in run["scopes"]] for run in payload["runs"]]
    assert runs[2] == [f"layer3.{i}" for i in range(1, 6)]
    dot = to_dot(resnet50, collapse=True)
    assert sorted(len(r) for r in runs) == sorted(int(n) for n in re.findall(r"&#215;(\d+)", dot))
    layer2_0 = next(s for s in scopes if s["name"] == "layer2.0")
    assert scopes[layer2_0["parent"]]["name"] == "layer2"


def test_aux_heads_are_their_own_scopes() -> None:
    graph = build_graph(SPECS / "googlenet.arch")
    payload = graph_payload(graph, spec="googlenet.arch")
    aux = [s for s in payload["scopes"] if s["aux"]]
    assert sorted(s["name"] for s in aux) == sorted(graph.aux)
    assert {s["weight"] for s in aux} == {h.weight for h in graph.aux.values()}
    assert payload["totals"]["inference_params"] < payload["totals"]["params"]


def test_batch_figures_scale_with_the_batch(resnet50) -> None:
    one = graph_payload(resnet50, spec="r", batch=1)["batch"]
    eight = graph_payload(resnet50, spec="r", batch=8)["batch"]
    assert eight["batch"] == 8
    macs = build_report(resnet50).macs
    assert eight["inference"]["flops"] == 8 * one["inference"]["flops"] == 16 * macs
    weights = 4 * 25_557_032  # float32 parameters alone
    assert weights < one["inference"]["peak_bytes"] < eight["inference"]["peak_bytes"]
    if eight["training"] is not None:  # from archdsl.graph.cost
        assert eight["training"]["flops"] > eight["inference"]["flops"]
        assert eight["training"]["peak_bytes"] > eight["inference"]["peak_bytes"]


def test_page_is_self_contained(resnet50) -> None:
    page = render_page(graph_payload(resnet50, spec="resnet50.arch"))
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', page)
    assert csp is not None and "default-src 'none'" in csp.group(1)
    assert "connect-src" not in csp.group(1)  # a file from disk may fetch nothing at all
    # No element loads anything; `url(#arrow)` names a marker inside the page.
    assert not re.search(r"<(link|img|iframe)\b|\ssrc=|@import|url\((?!#)", page)
    assert "sourceMappingURL" not in page
    assert not re.search(r"\{\{[A-Z]+\}\}", page)  # every placeholder filled
    assert _data(page)["payload"]["network"] == "ResNet50"


def test_source_text_cannot_close_the_data_script(tmp_path: Path) -> None:
    spec = tmp_path / "evil.arch"
    spec.write_text(
        "# </script><script>alert(1)</script> <!--\nnetwork N {\n    input 4\n    dense 2\n}\n"
    )
    page = render_page(graph_payload(build_graph(spec), spec=str(spec)))
    data = page.split('type="application/json">', 1)[1].split("</script>", 1)[0]
    assert "<" not in data
    assert "</script><script>alert(1)" in _data(page)["payload"]["files"][0]["text"]
    assert script_json("\u2028") == '"\\u2028"'


def test_cli_writes_the_page(tmp_path: Path, capsys) -> None:
    out = tmp_path / "net.html"
    assert main(["view", str(SPECS / "lenet5.arch"), "-o", str(out), "--batch", "4"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    payload = _data(out.read_text())["payload"]
    assert payload["network"] == "LeNet5" and payload["batch"]["batch"] == 4


def test_cli_reports_spec_errors_and_writes_nothing(tmp_path: Path, capsys) -> None:
    spec = tmp_path / "bad.arch"
    spec.write_text("network N {\n    input 8x8x3\n    conv 4 9x9\n}\n")
    out = tmp_path / "bad.html"
    assert main(["view", str(spec), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{spec}:3:") and "Traceback" not in err
    assert not out.exists()
    assert main(["view", str(spec), "--batch", "0"]) == 1
    assert "`--batch` must be at least 1" in capsys.readouterr().err
    assert main(["view", str(spec), "--serve", "--port", "70000"]) == 1
    assert "`--port` must be 0 to 65535" in capsys.readouterr().err
    lenet = str(SPECS / "lenet5.arch")
    assert main(["view", lenet, "-o", str(tmp_path / "no" / "such" / "dir.html")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot write {tmp_path / 'no'}") and "Traceback" not in err


def test_error_payload_lists_every_error(tmp_path: Path) -> None:
    spec = tmp_path / "bad.arch"
    spec.write_text(
        "network N {\n    input 8x8x3\n    conv 4 3x3 as a\n    relu as a\n    pool\n}\n"
    )
    with pytest.raises(ArchError) as caught:
        build_graph(spec)
    payload = error_payload(caught.value, spec=str(spec))
    assert payload["kind"] == "errors" and payload["errors"]
    first = payload["errors"][0]
    assert (first["file"], first["line"]) == (str(spec), caught.value.span.line)
    assert first["text"].startswith(f"{spec}:{first['line']}:{first['column']}: error:")


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


def test_server_follows_the_spec_and_its_imports(tmp_path: Path) -> None:
    shutil.copy(SPECS / "resnet18.arch", tmp_path)
    shutil.copy(SPECS / "resnet_blocks.arch", tmp_path)
    spec = tmp_path / "resnet18.arch"
    server, stop = start(spec, port=0)
    try:
        host, port = server.server_address[:2]
        assert host == LOOPBACK
        base = f"http://{host}:{port}"
        page = _get(base + "/").decode()
        assert "connect-src 'self'" in page and 'data-live="1"' in page
        first = json.loads(_get(base + "/state?since=0"))
        assert first["payload"]["kind"] == "graph"
        version = first["version"]

        # Break the imported file: the next state is its diagnostic.
        blocks = tmp_path / "resnet_blocks.arch"
        good = blocks.read_text()
        threading.Timer(
            0.3, lambda: blocks.write_text(good.replace("block stem", "block stem("))
        ).start()
        broken = json.loads(_get(f"{base}/state?since={version}"))
        assert broken["version"] > version
        assert broken["payload"]["kind"] == "errors"
        assert broken["payload"]["errors"][0]["file"] == str(blocks)

        time.sleep(0.05)
        blocks.write_text(good)
        fixed = json.loads(_get(f"{base}/state?since={broken['version']}"))
        assert fixed["payload"]["kind"] == "graph"
        assert fixed["payload"]["totals"]["params"] == 11_689_512
    finally:
        stop()


def test_resnet152_page_stays_small() -> None:
    page = render_page(graph_payload(build_graph(SPECS / "resnet152.arch"), spec="r"))
    assert len(page.encode()) < 2_000_000


def test_serve_on_a_busy_port_is_a_clear_error(capsys) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind((LOOPBACK, 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["view", str(SPECS / "lenet5.arch"), "--serve", "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot serve on {LOOPBACK}:{port}") and "--port" in err


def test_a_browser_that_goes_away_is_no_traceback(capsys) -> None:
    server, stop = start(SPECS / "lenet5.arch", port=0)
    try:
        for gone in (BrokenPipeError(32, "Broken pipe"), ConnectionResetError(104, "reset")):
            try:
                raise gone
            except ConnectionError:
                server.handle_error(None, ("127.0.0.1", 1))
        assert capsys.readouterr().err == ""
        try:  # anything else is a bug, and still shows
            raise ValueError("a real fault")
        except ValueError:
            server.handle_error(None, ("127.0.0.1", 1))
        assert "ValueError: a real fault" in capsys.readouterr().err
    finally:
        stop()
