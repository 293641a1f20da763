"""Draw a checked graph with Graphviz: DOT text built here, rendered by the `dot` binary.

Every layer is a box with its name, op and output shape, coloured by kind. Inserted
residual projections are dashed orange boxes, auxiliary heads sit in dashed purple
clusters, frozen layers are grey-blue and say `frozen`, and the shortcut operand of
each residual is a dashed edge. Block instances and repeated scopes (`layer2.1`) are
clusters; `collapse` draws each as one box, and a run of identical boxes in a row
(`layer3.1` to `layer3.5`) as one box marked `x5`.

Scopes come from the dotted names (see `lower.py`): the scopes of a node are the
prefixes of its name above the first prefix that names a layer, so `layer2.1.conv1`
is in `layer2` and `layer2.1`, while the branches of `inception3a.concat` and the
shortcut `layer2.0.residual.shortcut` stay in the scopes of the block that holds them.
"""

from __future__ import annotations

import html
import math
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Container, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from archdsl.errors import ArchError
from archdsl.graph import ops
from archdsl.graph.ir import Graph
from archdsl.lang.numbers import format_count, format_shape


class ArchDrawError(ArchError):
    """Graphviz is missing or failed, or the output format is unknown."""


FORMATS: Final = ("svg", "png", "pdf", "dot", "gv")
"""Output formats by file extension; `dot`/`gv` write the DOT text itself."""

MISSING_DOT: Final = (
    "install Graphviz (`apt-get install graphviz`, `brew install graphviz`, "
    "`conda install graphviz`), or write the DOT text with `-o net.dot` and render it "
    "elsewhere"
)

# A pale palette by op family, so that black text stays readable. Keyed by op class; a
# class without an entry takes its nearest base's (every activation, every merge).
FILLS: Final[dict[type[ops.Op], str]] = {
    ops.Input: "#e0e0e0",
    ops.Conv: "#cfe2f3",
    ops.Project: "#fce5cd",
    ops.ZeroPad: "#fce5cd",
    ops.MaxPool: "#d9ead3",
    ops.AvgPool: "#d9ead3",
    ops.GlobalAvgPool: "#d9ead3",
    ops.GlobalMaxPool: "#d9ead3",
    ops.Flatten: "#f3f3f3",
    ops.Dense: "#fff2cc",
    ops.BatchNorm: "#eeeeee",
    ops.LRN: "#eeeeee",
    ops.LayerNorm: "#eeeeee",
    ops.LayerScale: "#eeeeee",
    ops.Dropout: "#eeeeee",
    ops.DropPath: "#eeeeee",
    ops.Split: "#f3f3f3",
    ops.Shuffle: "#f3f3f3",
    ops.Residual: "#f4cccc",
    ops.Merge: "#f4cccc",
    ops.Activation: "#ffffff",
}


def fill_of(op_class: type[ops.Op]) -> str:
    """The box colour of an op class: its own entry in `FILLS`, else its nearest base's."""
    for cls in op_class.__mro__:
        if cls in FILLS:
            return FILLS[cls]
    raise KeyError(f"no drawing style for `{op_class.name}`: add it to `draw.FILLS`")


_FROZEN_FILL: Final = "#c9d6df"
_AUX_COLOUR: Final = "#8e44ad"
_AUX_FILL: Final = "#ead1dc"
_INSERTED_COLOUR: Final = "#e69138"
_SCOPE_FILL: Final = "#f8f9fb"
_GROUP_FILL: Final = "#dde8f3"
_MUTED: Final = "#555555"


@dataclass
class _Group:
    """Nodes drawn as one box: a scope, or a run of identical scopes."""

    key: str
    nodes: list[str] = field(default_factory=list)
    aux: str | None = None
    repeats: list[str] = field(default_factory=list)
    """The scopes of a merged run, in order; empty for a single scope."""


def scopes_of(name: str, names: Container[str]) -> list[str]:
    """The scopes `name` sits in, outermost first: dotted prefixes above the first layer name.

    >>> scopes_of("layer2.1.conv1", {"layer2.1.conv1"})
    ['layer2', 'layer2.1']
    """
    parts = name.split(".")
    out = []
    for i in range(1, len(parts)):
        prefix = ".".join(parts[:i])
        if prefix in names:
            break
        out.append(prefix)
    return out


def group_key(graph: Graph, name: str, depth: int | None) -> str | None:
    """The collapsed box that `name` belongs to, or None to draw the node itself.

    Inserted nodes stay visible on their own; an aux head is one box whatever `depth`.
    """
    node = graph.node(name)
    if node.synthetic:
        return None
    if node.aux is not None:
        return node.aux
    chain = scopes_of(name, graph)
    if not chain:
        return None
    return chain[-1] if depth is None else chain[min(depth, len(chain)) - 1]


def to_dot(
    graph: Graph,
    *,
    collapse: bool = False,
    depth: int | None = None,
    merge_repeats: bool = True,
    rankdir: str = "TB",
    title: bool = True,
) -> str:
    """The DOT text of a checked graph.

    Args:
        graph: the front end's output (shapes set).
        collapse: draw each scope (block instance, repeated scope) as one box.
        depth: with `collapse`, how many scope levels to keep (1: `layer2`,
            2: `layer2.1`); None keeps the innermost.
        merge_repeats: with `collapse`, draw a run of identical boxes in a row as one.
        rankdir: Graphviz's direction, `TB` (top to bottom) or `LR`.
        title: put the network's name and parameter count on top.

    Returns:
        A complete `digraph` for the `dot` layout.
    """
    lines = [
        f"digraph {_quote(graph.name or 'network')} {{",
        f"  graph [rankdir={rankdir}, fontname=Helvetica, fontsize=12, nodesep=0.3, "
        'ranksep=0.28, bgcolor="white", pad=0.2, newrank=true];',
        '  node [shape=box, style="rounded,filled", fontname=Helvetica, fontsize=10, '
        'margin="0.14,0.05", height=0.3, penwidth=1, color="#666666"];',
        '  edge [arrowsize=0.6, color="#555555", penwidth=1];',
    ]
    if title:
        params = sum(_param_count(graph, n) for n in graph.order())
        heading = (
            f"<<b>{_h(graph.name or 'network')}</b>"
            f"<font point-size='10' color='{_MUTED}'> · "
            f"{format_count(params)} parameters</font>>"
        )
        lines.append(f"  labelloc=t; fontsize=14; label={heading};")
    if collapse:
        lines += _collapsed_body(graph, depth, merge_repeats)
    else:
        lines += _full_body(graph)
    lines += _legend(graph)
    lines.append("}")
    return "\n".join(lines) + "\n"


# the full view ----------------------------------------------------------------------------
def _full_body(graph: Graph) -> list[str]:
    # A tree of clusters: scopes nest, aux heads are their own (styled) clusters.
    tree: dict[str, list[str]] = {"": []}
    members: dict[str, list[str]] = {"": []}
    for name, node in graph.items():
        chain = scopes_of(name, graph)
        if node.aux is not None:
            chain = [*scopes_of(node.aux, graph), f"aux:{node.aux}"]
        parent = ""
        for scope in chain:
            if scope not in tree:
                tree[scope] = []
                members[scope] = []
                tree[parent].append(scope)
            parent = scope
        members[parent].append(name)

    lines: list[str] = []

    def emit(scope: str, indent: str) -> None:
        for child in tree[scope]:
            lines.append(f"{indent}subgraph {_quote('cluster_' + child)} {{")
            if child.startswith("aux:"):
                head = graph.aux[child[4:]]
                label = f"<<b>aux {_h(child[4:])}</b> · loss weight {head.weight:g}>"
                lines.append(
                    # Label at the bottom: the edge into the head arrives at the top.
                    f"{indent}  label={label}; labeljust=l; labelloc=b; "
                    'style="dashed,rounded,filled"; '
                    f'color="{_AUX_COLOUR}"; fillcolor="#fbf5fb"; fontcolor="{_AUX_COLOUR}"; '
                    "penwidth=1.5; fontsize=11;"
                )
            else:
                text = child[len(scope) + 1 :] if scope and not scope.startswith("aux:") else child
                lines.append(
                    f"{indent}  label={_quote(text)}; labeljust=l; "
                    f'style="rounded,filled"; color="#b7c3cf"; fillcolor="{_SCOPE_FILL}"; '
                    'fontcolor="#40566b"; fontsize=10;'
                )
            emit(child, indent + "  ")
            lines.append(f"{indent}}}")
        for name in members[scope]:
            scope_name = scope[4:] if scope.startswith("aux:") else scope
            lines.append(f"{indent}{_quote(name)} [{_node_attrs(graph, name, scope_name)}];")

    emit("", "  ")
    lines += _branch_order(graph)
    for name, node in graph.items():
        for index, source in enumerate(node.inputs):
            lines.append(f"  {_quote(source)} -> {_quote(name)}{_edge_attrs(graph, name, index)};")
    return lines


def _branch_order(graph: Graph) -> list[str]:
    """Keep the branches of each `concat`/`add` left to right in the spec's order.

    Graphviz orders nodes to cut crossings and ignores `ordering` inside clusters, so
    the first layers of the branches go on one rank, chained left to right by invisible
    edges. (This works while branches are not clusters themselves, so they are not.)
    """
    lines = []
    order = {name: i for i, name in enumerate(graph.order())}
    for name, node in graph.items():
        if not isinstance(node.op, ops.Merge) or len(node.inputs) < 2:
            continue
        heads = []
        for source in node.inputs:
            if not source.startswith(name + "."):
                continue
            branch = name + "." + source[len(name) + 1 :].split(".")[0]
            members = [n for n in graph.order() if n.startswith(branch + ".")]
            heads.append(min(members, key=order.__getitem__))
        heads = list(dict.fromkeys(heads))
        if len(heads) > 1:
            quoted = "; ".join(_quote(h) for h in heads)
            lines.append(f"  {{rank=same; {quoted};}}")
            lines.append(f"  {' -> '.join(_quote(h) for h in heads)} [style=invis];")
    return lines


def _node_attrs(graph: Graph, name: str, scope: str = "") -> str:
    """A layer's box; inside the cluster of `scope` its name is written relative to it."""
    node = graph.node(name)
    op = node.op.name
    assert node.shape is not None
    shape = format_shape(node.shape)
    detail = node.op.describe()
    what = op if detail in ("", shape) else f"{op} {detail}"
    short = name[len(scope) + 1 :] if scope and name.startswith(scope + ".") else name
    rows = [f"<b>{_h(short)}</b>"]
    if what != op or not re.fullmatch(rf"{re.escape(op)}(_\d+)?", name.rpartition(".")[2]):
        rows.append(_h(what))  # an automatic name like `relu_1` already says the op
    fill = fill_of(type(node.op))
    attrs: dict[str, str] = {}
    style = ["rounded", "filled"]
    if node.synthetic:
        rows[-1] += " <i>(inserted)</i>"
        style.append("dashed")
        attrs.update(color=_INSERTED_COLOUR, penwidth="2", fontcolor="#783f04")
    if node.aux is not None:
        fill = _AUX_FILL
        attrs["color"] = _AUX_COLOUR
    tags = []
    if node.frozen:
        fill = _FROZEN_FILL
        tags.append("frozen")
    if name == graph.output:
        attrs.update(penwidth="2.5", color="#222222")
        tags.append("output")
    rows.append(
        f"<font color='{_MUTED}'>{_h(shape)}"
        + (f" · {', '.join(tags)}" if tags else "")
        + "</font>"
    )
    if isinstance(node.op, ops.Input):
        style.remove("rounded")
    if isinstance(node.op, ops.Merge):
        attrs["ordering"] = "in"  # branches left to right, in the spec's order
    if (
        not node.synthetic
        and node.aux is None
        and len(scopes_of(name, graph)) == len(name.split(".")) - 1
    ):
        # Not inside a branch: keep the trunk in one straight column.
        attrs["group"] = "trunk"
    attrs["style"] = ",".join(style)
    attrs["fillcolor"] = fill
    return _attrs("<" + "<br/>".join(rows) + ">", attrs)


def _edge_attrs(graph: Graph, name: str, index: int) -> str:
    node = graph.node(name)
    source = graph.node(node.inputs[index])
    if node.op.name == "residual" and index == 1:
        colour = _INSERTED_COLOUR if source.synthetic else "#888888"
        return f' [style=dashed, color="{colour}"]'
    if node.aux is not None and source.aux is None:
        return f' [style=dashed, color="{_AUX_COLOUR}"]'
    return ""


# the collapsed view -----------------------------------------------------------------------
def _collapsed_body(graph: Graph, depth: int | None, merge_repeats: bool) -> list[str]:
    groups: dict[str, _Group] = {}
    box: dict[str, str] = {}
    for name, node in graph.items():
        key = group_key(graph, name, depth)
        if key is None:
            box[name] = name
            continue
        group = groups.setdefault(key, _Group(key, aux=node.aux))
        group.nodes.append(name)
        box[name] = "group:" + key
    for key, group in list(groups.items()):
        if len(group.nodes) == 1 and group.aux is None:
            box[group.nodes[0]] = group.nodes[0]  # a one-layer scope is just that layer
            del groups[key]
    if merge_repeats:
        _merge_runs(graph, groups, box)

    lines: list[str] = []
    drawn: set[str] = set()
    for name in graph.order():
        target = box[name]
        if target in drawn:
            continue
        drawn.add(target)
        if target.startswith("group:"):
            lines.append(f"  {_quote(target)} [{_group_attrs(graph, groups[target[6:]])}];")
        else:
            lines.append(f"  {_quote(name)} [{_node_attrs(graph, name)}];")
    seen: set[tuple[str, str]] = set()
    for name, node in graph.items():
        for index, source in enumerate(node.inputs):
            edge = (box[source], box[name])
            if edge[0] == edge[1] or edge in seen:
                continue
            seen.add(edge)
            attrs = _edge_attrs(graph, name, index)
            if graph.node(source).synthetic:
                attrs = f' [style=dashed, color="{_INSERTED_COLOUR}"]'
            lines.append(f"  {_quote(edge[0])} -> {_quote(edge[1])}{attrs};")
    return lines


def _signature(graph: Graph, group: _Group) -> tuple[object, ...]:
    """What makes two boxes the same block: ops, attributes and shapes, in order."""
    layers = tuple(
        (graph.node(n).op, graph.node(n).shape, graph.node(n).frozen) for n in group.nodes
    )
    parent = group.key.rpartition(".")[0]
    return (parent, group.aux, layers)


def _merge_runs(graph: Graph, groups: dict[str, _Group], box: dict[str, str]) -> None:
    """Fold each chain of identical groups (one feeding only the next) into its first."""
    ordered = list(dict.fromkeys(box[n] for n in graph.order()))
    run: _Group | None = None
    last: _Group | None = None  # the previous box as it was before any merging
    for target in ordered:
        group = groups.get(target[6:]) if target.startswith("group:") else None
        if group is None:
            run = last = None
            continue
        snapshot = _Group(group.key, list(group.nodes), group.aux)
        if (
            run is not None
            and last is not None
            and _follows(graph, last, group)
            and _signature(graph, group) == _signature(graph, last)
        ):
            if not run.repeats:
                run.repeats.append(run.key)
            run.repeats.append(group.key)
            run.nodes.extend(group.nodes)
            for name in group.nodes:
                box[name] = "group:" + run.key
            del groups[group.key]
        else:
            run = group
        last = snapshot


def _follows(graph: Graph, first: _Group, second: _Group) -> bool:
    """`second` takes input only from `first`, and `first` feeds only `second`."""
    inside_first = set(first.nodes)
    inside_second = set(second.nodes)
    sources = {i for n in second.nodes for i in graph.node(n).inputs} - inside_second
    users = {u for n in first.nodes for u in graph.users(n)} - inside_first
    return bool(sources) and sources <= inside_first and users <= inside_second


def _group_attrs(graph: Graph, group: _Group) -> str:
    inside = set(group.nodes)
    sources = [i for n in group.nodes for i in graph.node(n).inputs if i not in inside]
    exits = [n for n in group.nodes if any(u not in inside for u in graph.users(n))]
    last = exits[-1] if exits else group.nodes[-1]
    out_shape = graph.node(last).shape
    assert out_shape is not None
    count = max(1, len(group.repeats))
    per_block = group.nodes[: len(group.nodes) // count]
    params = sum(_param_count(graph, n) for n in group.nodes)
    ops = Counter(graph.node(n).op.name for n in per_block)
    summary = ", ".join(f"{n} {op}" if n > 1 else op for op, n in ops.items())
    if group.repeats:
        title = (
            f"<b>{_h(group.repeats[0])} … {_h(group.repeats[-1])}</b>"
            f" <font color='#1f4e79'><b>&#215;{count}</b></font>"
        )
    else:
        title = f"<b>{_h(group.key if group.aux is None else 'aux ' + group.key)}</b>"
    rows = [title, *map(_h, _wrap(summary, 40))]
    figures = f"{len(per_block)} layers"
    if params:
        figures += f" · {format_count(params // count)} params"
    if count > 1:
        figures += " each"
    rows.append(_h(figures))
    in_shape = graph.node(sources[0]).shape if sources else None
    shapes = (
        f"{format_shape(in_shape)} → {format_shape(out_shape)}"
        if in_shape is not None and in_shape != out_shape
        else format_shape(out_shape)
    )
    tags = []
    attrs = {"fillcolor": _GROUP_FILL, "style": "rounded,filled", "penwidth": "1.2"}
    frozen = [graph.node(n).frozen for n in group.nodes]
    if all(frozen):
        attrs["fillcolor"] = _FROZEN_FILL
        tags.append("frozen")
    elif any(frozen):
        tags.append("partly frozen")
    if group.aux is not None:
        tags.append(f"loss weight {graph.aux[group.aux].weight:g}")
        attrs.update(
            fillcolor=_AUX_FILL,
            color=_AUX_COLOUR,
            style="rounded,filled,dashed",
            fontcolor="#4a235a",
            penwidth="1.5",
        )
    else:
        attrs["group"] = "trunk"
    if graph.output in inside:
        attrs.update(penwidth="2.5", color="#222222")
        tags.append("output")
    rows.append(
        f"<font color='{_MUTED}'>{_h(shapes)}"
        + (f" · {', '.join(tags)}" if tags else "")
        + "</font>"
    )
    return _attrs("<" + "<br/>".join(rows) + ">", attrs)


def _wrap(text: str, width: int) -> list[str]:
    lines: list[str] = []
    current = ""
    for word in text.split(", "):
        candidate = f"{current}, {word}" if current else word
        if current and len(candidate) > width:
            lines.append(current + ",")
            current = word
        else:
            current = candidate
    return [*lines, current] if current else lines


def _param_count(graph: Graph, name: str) -> int:
    node = graph.node(name)
    shapes = [graph.node(i).shape for i in node.inputs]
    return sum(math.prod(s) for s in node.op.param_shapes(*shapes).values())  # type: ignore[arg-type]


def _legend(graph: Graph) -> list[str]:
    """A key, drawn only for the marks that the graph uses."""
    nodes = [graph.node(n) for n in graph.order()]
    entries = []
    if any(n.synthetic for n in nodes):
        entries.append(
            (
                "inserted projection",
                FILLS[ops.Project],
                f'style="rounded,filled,dashed", color="{_INSERTED_COLOUR}", penwidth=2',
            )
        )
    if graph.aux:
        entries.append(
            (
                "aux head (training only)",
                _AUX_FILL,
                f'style="rounded,filled,dashed", color="{_AUX_COLOUR}"',
            )
        )
    if any(n.frozen for n in nodes):
        entries.append(("frozen", _FROZEN_FILL, 'style="rounded,filled"'))
    if not entries:
        return []
    lines = [
        "  subgraph cluster_legend {",
        '    label="key"; fontsize=9; style="rounded"; color="#cccccc"; '
        'fontcolor="#888888"; labeljust=l;',
    ]
    for index, (text, fill, style) in enumerate(entries):
        lines.append(
            f'    "legend:{index}" [label={_quote(text)}, fillcolor="{fill}", {style}, fontsize=9];'
        )
    lines.append("  }")
    return lines


# quoting ----------------------------------------------------------------------------------
def _h(text: str) -> str:
    """Text for a Graphviz HTML-like label."""
    return html.escape(text, quote=False)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _attrs(label: str, attrs: dict[str, str]) -> str:
    return ", ".join([f"label={label}", *(f"{k}={_quote(v)}" for k, v in attrs.items())])


# rendering --------------------------------------------------------------------------------
def output_format(path: str | Path) -> str:
    """The format a path asks for, from its extension.

    Raises:
        ArchDrawError: an extension not in `FORMATS`.
    """
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise ArchDrawError(
            f"cannot tell the format of `{path}` from its extension",
            help=f"use one of {', '.join('.' + f for f in FORMATS)}",
        )
    return suffix


def render(
    dot_text: str,
    path: str | Path,
    *,
    dot: str = "dot",
    timeout: float = 300,
    extra: Sequence[str] = (),
) -> Path:
    """Write `dot_text` to `path`: as text for `.dot`/`.gv`, else rendered by Graphviz.

    Args:
        dot_text: a `digraph`, from `to_dot`.
        path: where to write; the extension picks the format.
        dot: the Graphviz program to run.
        timeout: seconds before the layout is abandoned.
        extra: more command-line arguments for `dot` (`-Gdpi=72`).

    Raises:
        ArchDrawError: `dot` is not installed or fails, or the format is unknown.
    """
    from archdsl.io import atomic_path, check_output, write_text

    path = Path(path)
    fmt = output_format(path)
    check_output(path, "drawing")
    if fmt in ("dot", "gv"):
        write_text(path, dot_text, "drawing")
        return path
    executable = shutil.which(dot)
    if executable is None:
        raise ArchDrawError(f"Graphviz's `{dot}` program was not found on PATH", help=MISSING_DOT)
    with atomic_path(path, what="drawing") as temp:
        _run_dot(executable, fmt, dot_text, temp, path, dot=dot, timeout=timeout, extra=extra)
    return path


def _run_dot(
    executable: str,
    fmt: str,
    dot_text: str,
    temp: Path,
    path: Path,
    *,
    dot: str,
    timeout: float,
    extra: Sequence[str],
) -> None:
    """Run Graphviz, writing to `temp` (renamed over `path` by the caller)."""
    try:
        done = subprocess.run(
            [executable, f"-T{fmt}", *extra, "-o", str(temp)],
            input=dot_text.encode("utf-8"),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ArchDrawError(
            f"Graphviz took longer than {timeout:g}s to lay out the graph",
            help="try `--collapse` for a smaller drawing",
        ) from None
    except OSError as error:
        raise ArchDrawError(
            f"could not run Graphviz's `{dot}`: {error}", help=MISSING_DOT
        ) from None
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip() or "no message"
        raise ArchDrawError(
            f"Graphviz's `{dot}` failed (exit {done.returncode}) on {path}: {message}"
        )
