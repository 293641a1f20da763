"""Hover text: a layer's shapes and figures, a block call's signature and instance shapes."""

from __future__ import annotations

from lsprotocol import types

from archdsl.graph.ops import OPS
from archdsl.graph.shapes import Shape
from archdsl.lang import syntax as s
from archdsl.lang.numbers import format_count
from archdsl.tools.fmt import format_expr
from archdsl.tools.lsp.analysis import Analysis, NodeRef, span_key
from archdsl.tools.lsp.locate import path_at, to_range, walk

MAX_ROWS = 8
"""Instances listed in one hover; the rest are counted."""


def hover(analysis: Analysis, line: int, character: int) -> types.Hover | None:
    """The hover at a 0-based editor position, or None where there is nothing to say."""
    if analysis.spec is None:
        return None
    path = path_at(analysis.spec, line + 1, character + 1)
    for node in reversed(path):
        text = _describe(analysis, node, path)
        if text is not None:
            return types.Hover(
                contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=text),
                range=to_range(node.span),
            )
    return None


def _describe(analysis: Analysis, node: s.Syntax, path: list[s.Syntax]) -> str | None:
    if isinstance(node, s.Call):
        definition = _definition(analysis, node.op.text)
        if isinstance(definition, s.BlockDef):
            return _block_call(analysis, node, definition)
        if node.op.text in OPS:
            return _layer(analysis, node)
        return None
    if isinstance(node, s.Residual | s.Merge | s.Repeat):
        return _construct(analysis, node)
    if isinstance(node, s.Chain) and node.source is not None:
        return _tap(analysis, node)
    if isinstance(node, s.Ident):
        parent = path[path.index(node) - 1] if path.index(node) > 0 else None
        if isinstance(parent, s.BlockDef):
            return _block_def(analysis, parent)
        if isinstance(parent, s.NetworkDef):
            return _network(analysis, parent)
        if isinstance(parent, s.Use):
            found = _definition(analysis, parent.network.text)
            if isinstance(found, s.NetworkDef) and node is parent.network:
                return _network(analysis, found)
    return None


def _definition(analysis: Analysis, name: str) -> s.BlockDef | s.NetworkDef | None:
    if analysis.program is not None:
        return analysis.program.definitions.get(name)
    if analysis.spec is not None:
        for item in analysis.spec.items:
            if isinstance(item, s.BlockDef | s.NetworkDef) and item.name.text == name:
                return item
    return None


def signature(definition: s.BlockDef | s.NetworkDef) -> str:
    """`block bottleneck(c, stride = 1)`."""
    kind = "block" if isinstance(definition, s.BlockDef) else "network"
    params = []
    for param in definition.params:
        text = param.name.text
        if param.default is not None:
            text += f" = {format_expr(param.default)}"
        if param.low is not None and param.high is not None:
            text += f" in {format_expr(param.low)}..{format_expr(param.high)}"
        params.append(text)
    return f"{kind} {definition.name.text}({', '.join(params)})"


def _shape(shape: Shape | None) -> str:
    return "x".join(map(str, shape)) if shape is not None else "?"


def _layer(analysis: Analysis, call: s.Call) -> str:
    refs = analysis.layers.get(span_key(call.span), [])
    head = f"**{call.op.text}**"
    if not refs:
        return f"{head}\n\n{_not_built(analysis)}"
    first = analysis.rows.get(refs[0])
    attrs = first.attrs if first is not None else ""
    lines = [f"{head} `{attrs}`" if attrs else head, ""]
    lines += ["| layer | input | output | params | MACs |", "|---|---|---|--:|--:|"]
    for ref in refs[:MAX_ROWS]:
        lines.append(_node_line(analysis, ref))
    lines += _more(len(refs))
    return "\n".join(lines)


def _not_built(analysis: Analysis) -> str:
    if not analysis.graphs:
        return "no network in this file builds it: its shapes show in a file whose network calls it"
    return "not built: no network here reaches it without an error (see the diagnostics)"


def _node_line(analysis: Analysis, ref: NodeRef) -> str:
    network, name = ref
    graph = analysis.graphs[network]
    node = graph.node(name)
    inputs = ", ".join(_shape(graph.node(i).shape) for i in node.inputs) or "-"
    row = analysis.rows.get(ref)
    params = format_count(row.params) if row is not None else "?"
    macs = format_count(row.macs) if row is not None else "?"
    label = name if len(analysis.graphs) == 1 else f"{network}: {name}"
    return f"| `{label}` | {inputs} | {_shape(node.shape)} | {params} | {macs} |"


def _more(count: int) -> list[str]:
    return [f"\n... and {count - MAX_ROWS} more"] if count > MAX_ROWS else []


def _block_call(analysis: Analysis, call: s.Call, block: s.BlockDef) -> str:
    lines = [f"```arch\n{signature(block)}\n```", ""]
    instances = list(analysis.instances.get(span_key(call.span), {}).values())
    if not instances:
        lines.append(_not_built(analysis))
        return "\n".join(lines)
    lines += ["| instance | input | output | params | MACs |", "|---|---|---|--:|--:|"]
    for refs in instances[:MAX_ROWS]:
        lines.append(_instance_line(analysis, refs))
    lines += _more(len(instances))
    return "\n".join(lines)


def _instance_line(analysis: Analysis, refs: list[NodeRef]) -> str:
    """One instance: its scope, the shape coming in, the shape going out, its totals."""
    network = refs[0][0]
    graph = analysis.graphs[network]
    names = [name for _, name in refs]
    inside = set(names)
    incoming = next((i for name in names for i in graph.node(name).inputs if i not in inside), None)
    main = [name for name in names if graph.node(name).aux is None] or names
    outgoing = main[-1]
    rows = [analysis.rows.get(ref) for ref in refs]
    params = sum(r.params for r in rows if r is not None)
    macs = sum(r.macs for r in rows if r is not None)
    scope = _common_prefix(names)
    label = scope if len(analysis.graphs) == 1 else f"{network}: {scope}"
    shape_in = _shape(graph.node(incoming).shape) if incoming is not None else "-"
    shape_out = _shape(graph.node(outgoing).shape)
    return (
        f"| `{label}` | {shape_in} | {shape_out} | {format_count(params)} | {format_count(macs)} |"
    )


def _common_prefix(names: list[str]) -> str:
    parts = [name.split(".") for name in names]
    common: list[str] = []
    for column in zip(*parts, strict=False):
        if len(set(column)) != 1:
            break
        common.append(column[0])
    if len(names) == 1 and common:
        common = common[:-1] or common
    return ".".join(common) or names[0]


def _construct(analysis: Analysis, node: s.Residual | s.Merge | s.Repeat) -> str | None:
    refs = analysis.layers.get(span_key(node.span), [])
    if not refs:
        return None
    word = {s.Residual: "residual", s.Repeat: "repeat"}.get(type(node))
    word = word or (node.kind if isinstance(node, s.Merge) else "construct")
    lines = [f"**{word}**", ""]
    lines += ["| node | input | output | params | MACs |", "|---|---|---|--:|--:|"]
    lines += [_node_line(analysis, ref) for ref in refs[:MAX_ROWS]]
    lines += _more(len(refs))
    return "\n".join(lines)


def _tap(analysis: Analysis, chain: s.Chain) -> str | None:
    """`from NAME`: the point it starts from, read off the first step's input."""
    assert chain.source is not None
    if not chain.steps:
        return None
    first = chain.steps[0]
    key = span_key(first.span)
    refs = analysis.layers.get(key) or [
        ref for refs in analysis.instances.get(key, {}).values() for ref in refs[:1]
    ]
    lines = [f"**from** `{chain.source.text}`", ""]
    seen = []
    for network, name in refs[:MAX_ROWS]:
        graph = analysis.graphs[network]
        for i in graph.node(name).inputs:
            if (network, i) not in seen:
                seen.append((network, i))
    if not seen:
        return None
    lines += [f"- `{name}`: {_shape(analysis.graphs[net].node(name).shape)}" for net, name in seen]
    return "\n".join(lines)


def _block_def(analysis: Analysis, block: s.BlockDef) -> str:
    """A block's signature and how many times this file's networks build it."""
    count = 0
    if analysis.spec is not None:
        for node in walk(analysis.spec):
            if isinstance(node, s.Call) and node.op.text == block.name.text:
                count += len(analysis.instances.get(span_key(node.span), {}))
    return f"```arch\n{signature(block)}\n```\n\nbuilt {count} time(s) by this file"


def _network(analysis: Analysis, network: s.NetworkDef) -> str:
    lines = [f"```arch\n{signature(network)}\n```", ""]
    graph = analysis.graphs.get(network.name.text)
    if graph is None:
        lines.append("not built (see the diagnostics)")
        return "\n".join(lines)
    rows = [r for (net, _), r in analysis.rows.items() if net == network.name.text]
    params = sum(r.params for r in rows)
    macs = sum(r.macs for r in rows if r.aux is None)
    output = graph.node(graph.outputs[0]).shape if graph.outputs else None
    lines.append(f"{len(graph)} layers, output {_shape(output)}")
    lines.append(f"params {format_count(params)}, MACs {format_count(macs)} per example")
    return "\n".join(lines)
