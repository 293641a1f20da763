"""The whole pipeline in one call: spec file or text -> checked graph -> `CompiledModel`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from archdsl.backend.model import CompiledModel, compile_graph
from archdsl.frontend import build_graph, build_graph_text
from archdsl.graph.ir import Graph
from archdsl.graph.memory import check_fits
from archdsl.lang.values import Value


def compile_file(
    path: str | Path,
    *,
    dtype: str = "float32",
    network: str | None = None,
    import_path: Sequence[str | Path] = (),
    **arguments: Value,
) -> CompiledModel:
    """Compile a network of a `.arch` file (its last one unless `network` names one).

    Network arguments are keywords: `compile_file("specs/lenet5.arch", classes=10)`.

    Raises:
        ArchError: anything wrong with the spec, with its position.
    """
    graph = build_graph(path, network=network, import_path=import_path, **arguments)
    return compile_graph_model(graph, dtype=dtype)


def compile_spec(
    text: str,
    filename: str = "<string>",
    *,
    dtype: str = "float32",
    network: str | None = None,
    import_path: Sequence[str | Path] = (),
    **arguments: Value,
) -> CompiledModel:
    """`compile_file` for spec text; imports resolve inside the current folder."""
    graph = build_graph_text(text, filename, network=network, import_path=import_path, **arguments)
    return compile_graph_model(graph, dtype=dtype)


def compile_graph_model(graph: Graph, *, dtype: str = "float32") -> CompiledModel:
    """The last stage alone, for a graph the front end already built (`archdsl compile`).

    Raises:
        ArchValueError: the parameters do not fit in this machine's free memory.
    """
    check_fits(graph)
    return compile_graph(graph, dtype=dtype)
