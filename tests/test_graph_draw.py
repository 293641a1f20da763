"""Drawing: the DOT text marks what matters, collapses scopes, and Graphviz renders it."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from archdsl.cli import main
from archdsl.frontend import build_graph, build_graph_text
from archdsl.tools.draw import ArchDrawError, group_key, render, scopes_of, to_dot

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "specs").glob("*.arch"))


REQUIRE_GRAPHVIZ = "ARCHDSL_REQUIRE_GRAPHVIZ"
"""Set by `.ci/run` (which installs Graphviz): there, a missing `dot` fails the tests."""


@pytest.fixture
def needs_dot() -> None:
    """Rendering needs Graphviz's `dot`. The DOT text is tested everywhere (below);
    rendering is tested where `dot` exists, and CI makes a missing `dot` a failure."""
    if shutil.which("dot") is None:
        if os.environ.get(REQUIRE_GRAPHVIZ):
            pytest.fail(f"{REQUIRE_GRAPHVIZ} is set but Graphviz `dot` is not installed")
        pytest.skip("Graphviz `dot` is not installed (apt-get install graphviz); DOT text tested")


def check_dot_syntax(text: str) -> None:
    """Balanced braces and brackets outside quoted strings and HTML labels, one digraph:
    the structure `dot` would reject, checked without Graphviz."""
    assert text.startswith("digraph ") and text.rstrip().endswith("}"), text[:80]
    stack: list[str] = []
    i = 0
    pairs = {"}": "{", "]": "["}
    while i < len(text):
        c = text[i]
        if c == '"':
            i += 1
            while text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif c == "<" and stack and stack[-1] == "[":
            depth = 1
            while depth:
                i += 1
                depth += {"<": 1, ">": -1}.get(text[i], 0)
        elif c in "{[":
            stack.append(c)
        elif c in "}]":
            assert stack and stack.pop() == pairs[c], f"unbalanced `{c}` at {i}"
            if not stack:
                assert not text[i + 1 :].strip(), "text after the digraph"
        i += 1
    assert not stack, f"unclosed {stack}"


@pytest.fixture(scope="module")
def resnet50():
    return build_graph(ROOT / "specs" / "resnet50.arch")


@pytest.fixture(scope="module")
def googlenet():
    return build_graph(ROOT / "specs" / "googlenet.arch")


def _node_line(dot: str, name: str) -> str:
    (line,) = [ln for ln in dot.splitlines() if ln.strip().startswith(f'"{name}" [')]
    return line


def test_scopes_come_from_dotted_names() -> None:
    names = {
        "layer2.1.conv1",
        "layer2.0.residual",
        "layer2.0.residual.shortcut",
        "inception3a.concat",
        "inception3a.concat.branch2.conv",
    }
    assert scopes_of("layer2.1.conv1", names) == ["layer2", "layer2.1"]
    # Below a layer's name (a shortcut, a concat's branches) there is no new scope.
    assert scopes_of("layer2.0.residual.shortcut", names) == ["layer2", "layer2.0"]
    assert scopes_of("inception3a.concat.branch2.conv", names) == ["inception3a"]
    assert scopes_of("conv1", names) == []


def test_every_layer_has_name_op_and_shape(resnet50) -> None:
    dot = to_dot(resnet50)
    line = _node_line(dot, "layer2.0.conv2")
    assert "<b>conv2</b>" in line  # inside the `layer2.0` cluster: relative to it
    assert "conv 128 3x3 /2 pad 1 no bias" in line and "28x28x128" in line
    assert 'subgraph "cluster_layer2.0"' in dot and 'label="0"' in dot
    assert "25,557,032 parameters" in dot
    out = _node_line(dot, "fc")
    assert "output" in out and 'penwidth="2.5"' in out


def test_inserted_projections_and_shortcuts_stand_out(resnet50) -> None:
    dot = to_dot(resnet50)
    projection = _node_line(dot, "layer2.0.residual.shortcut")
    assert "(inserted)" in projection and "dashed" in projection and "#e69138" in projection
    shortcut = [
        ln for ln in dot.splitlines() if '"layer2.0.residual.shortcut" -> "layer2.0.residual"' in ln
    ]
    assert shortcut and "style=dashed" in shortcut[0]
    identity = [ln for ln in dot.splitlines() if '"layer2.0.relu_2" -> "layer2.1.residual"' in ln]
    assert identity and "style=dashed" in identity[0]
    assert "inserted projection" in dot  # the key
    plain = to_dot(build_graph(ROOT / "specs" / "lenet5.arch"))
    assert "cluster_legend" not in plain


def test_aux_heads_are_dashed_clusters(googlenet) -> None:
    dot = to_dot(googlenet)
    assert 'subgraph "cluster_aux:aux1"' in dot and "loss weight 0.3" in dot
    cluster = dot[dot.index('subgraph "cluster_aux:aux1"') :]
    assert "dashed" in cluster.splitlines()[1]
    assert "<b>fc2</b>" in _node_line(dot, "aux1.fc2")
    edge = [ln for ln in dot.splitlines() if '-> "aux1.pool"' in ln]
    assert edge and "style=dashed" in edge[0]


def test_branches_keep_their_order(googlenet) -> None:
    dot = to_dot(googlenet)
    heads = [
        f'"inception3a.concat.branch{i}.{n}"'
        for i, n in ((1, "conv"), (2, "reduce"), (3, "reduce"), (4, "pool"))
    ]
    assert f"  {' -> '.join(heads)} [style=invis];" in dot
    assert f"  {{rank=same; {'; '.join(heads)};}}" in dot


def test_frozen_layers_are_marked() -> None:
    graph = build_graph(ROOT / "specs" / "transfer_resnet18.arch", network="TransferResNet18")
    dot = to_dot(graph)
    assert "frozen" in _node_line(dot, "layer1.0.conv1")
    assert "frozen" not in _node_line(dot, "fc")
    collapsed = to_dot(graph, collapse=True)
    assert "frozen" in _node_line(collapsed, "group:layer2.0")


def test_collapse_draws_each_block_as_one_box(resnet50) -> None:
    dot = to_dot(resnet50, collapse=True, merge_repeats=False)
    boxes = re.findall(r'^  "(group:[^"]+)" \[', dot, flags=re.M)
    assert boxes == [
        "group:stem",
        *(f"group:layer{s}.{i}" for s, n in ((1, 3), (2, 4), (3, 6), (4, 3)) for i in range(n)),
    ]
    assert '"layer2.0.conv1" [' not in dot  # inside its block's box
    box = _node_line(dot, "group:layer2.0")
    assert "3 conv, 3 batchnorm, 3 relu, residual" in box and "10 layers" in box
    assert "56x56x256 → 28x28x512" in box
    # Projections stay visible between the boxes.
    assert '"layer2.0.residual.shortcut" -> "group:layer2.0" [style=dashed' in dot


def test_collapse_merges_repeated_blocks(resnet50) -> None:
    dot = to_dot(resnet50, collapse=True)
    box = _node_line(dot, "group:layer3.1")
    assert "layer3.1 … layer3.5" in box and "&#215;5" in box
    assert "10 layers · 1,117,184 params each" in box
    assert '"group:layer3.2"' not in dot
    assert '"group:layer3.0" -> "group:layer3.1"' in dot


def test_collapse_depth(resnet50, googlenet) -> None:
    dot = to_dot(resnet50, collapse=True, depth=1)
    boxes = re.findall(r'^  "(group:[^"]+)" \[', dot, flags=re.M)
    assert boxes == ["group:stem", "group:layer1", "group:layer2", "group:layer3", "group:layer4"]
    assert group_key(resnet50, "layer2.1.conv1", 2) == "layer2.1"
    assert group_key(resnet50, "layer2.0.residual.shortcut", 1) is None  # inserted: own box
    inception = to_dot(googlenet, collapse=True)
    assert "6 conv, 6 relu, maxpool, concat" in _node_line(inception, "group:inception4a")
    aux = _node_line(inception, "group:aux1")
    assert "aux aux1" in aux and "dashed" in aux and "loss weight 0.3" in aux


def test_names_with_quotes_are_escaped() -> None:
    graph = build_graph_text("network N {\n input 8x8x1\n conv 2 3x3 as c\n}\n", "n.arch")
    graph.name = 'N "quoted" <b>'
    dot = to_dot(graph)
    assert 'digraph "N \\"quoted\\" <b>"' in dot
    assert '<b>N "quoted" &lt;b&gt;</b>' in dot  # an HTML-like label: < and > escaped


def _spec_graphs(spec: Path):
    from archdsl.lang.loader import load_file

    program = load_file(spec)
    for network in program.networks:
        if any(p.default is None for p in network.params):
            continue
        yield build_graph(spec, network=network.name.text)


@pytest.mark.parametrize("spec", SPECS, ids=[p.stem for p in SPECS])
def test_every_spec_gives_well_formed_dot(spec: Path) -> None:
    for graph in _spec_graphs(spec):
        for collapse in (False, True):
            text = to_dot(graph, collapse=collapse)
            check_dot_syntax(text)
            if not collapse:
                for name in graph.order():
                    assert f'"{name}" [' in text


def test_the_syntax_check_catches_broken_dot() -> None:
    check_dot_syntax('digraph "a" { "x" [label=<<b>{</b>>]; "y" -> "x"; }')
    for broken in ('digraph "a" { "x" [label="}"]', 'digraph "a" { "x" ] }', "graph {}"):
        with pytest.raises(AssertionError):
            check_dot_syntax(broken)


@pytest.mark.usefixtures("needs_dot")
@pytest.mark.parametrize("spec", SPECS, ids=[p.stem for p in SPECS])
def test_every_spec_renders(spec: Path, tmp_path: Path) -> None:
    for graph in _spec_graphs(spec):
        for collapse in (False, True):
            path = render(to_dot(graph, collapse=collapse), tmp_path / "net.svg")
            assert "<svg" in path.read_text()[:2000]


def test_missing_dot_is_a_clear_error(resnet50, tmp_path: Path) -> None:
    with pytest.raises(ArchDrawError, match="`no-such-dot` program was not found") as info:
        render(to_dot(resnet50), tmp_path / "net.svg", dot="no-such-dot")
    assert "apt-get install graphviz" in str(info.value)
    assert "-o net.dot" in str(info.value)
    render(to_dot(resnet50), tmp_path / "net.dot", dot="no-such-dot")  # DOT needs no dot
    assert (tmp_path / "net.dot").read_text().startswith('digraph "ResNet50"')


@pytest.mark.usefixtures("needs_dot")
def test_dot_failure_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ArchDrawError, match="failed"):
        render("digraph { this is not dot", tmp_path / "bad.svg")


def test_unknown_format(resnet50, tmp_path: Path) -> None:
    with pytest.raises(ArchDrawError, match="cannot tell the format"):
        render(to_dot(resnet50), tmp_path / "net.jpeg")


def test_graph_command(tmp_path: Path, capsys, monkeypatch) -> None:
    spec = str(ROOT / "specs" / "resnet50.arch")
    assert main(["graph", spec]) == 0
    assert capsys.readouterr().out.startswith('digraph "ResNet50"')
    out = tmp_path / "net.dot"
    assert main(["graph", spec, "-o", str(out), "--depth", "1"]) == 0
    assert '"group:layer3"' in out.read_text()
    assert main(["graph", spec, "-o", str(tmp_path / "net.bmp")]) == 1
    assert "cannot tell the format" in capsys.readouterr().err
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` on it
    assert main(["graph", spec, "-o", str(tmp_path / "net.svg")]) == 1
    err = capsys.readouterr().err
    assert "`dot` program was not found" in err and "Traceback" not in err


@pytest.mark.usefixtures("needs_dot")
def test_graph_command_renders_svg(tmp_path: Path, capsys) -> None:
    out = tmp_path / "googlenet.svg"
    spec = str(ROOT / "specs" / "googlenet.arch")
    assert main(["graph", spec, "-o", str(out), "--collapse"]) == 0
    assert "wrote" in capsys.readouterr().out
    text = out.read_text()
    assert "<svg" in text and "inception4a" in text
