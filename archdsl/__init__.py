"""archdsl: a declarative language for neural-network architectures, compiled to JAX."""

import importlib
from typing import Any

from archdsl.errors import (
    ArchError,
    ArchErrors,
    ArchImportError,
    ArchNameError,
    ArchShapeError,
    ArchSyntaxError,
    ArchValueError,
)
from archdsl.frontend import build_graph, build_graph_text
from archdsl.graph.ir import Graph, Node, format_graph
from archdsl.graph.report import Report, build_report
from archdsl.graph.shapes import Shape, format_shape
from archdsl.lang.parser import parse

_LAZY = {
    "compile_file": "archdsl.compiler",
    "compile_graph_model": "archdsl.compiler",
    "compile_spec": "archdsl.compiler",
    "CompiledModel": "archdsl.backend.model",
    "compile_graph": "archdsl.backend.model",
    "check_weights": "archdsl.backend.weights",
    "import_weights": "archdsl.backend.importer",
    "export_onnx": "archdsl.backend.onnx_export",
    "load_weights": "archdsl.backend.weights",
    "save_weights": "archdsl.backend.weights",
}
"""Backend names, imported on first use so the front end and CLI start without JAX."""


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'archdsl' has no attribute {name!r}")


__all__ = [
    "ArchError",
    "ArchErrors",
    "ArchImportError",
    "ArchNameError",
    "ArchShapeError",
    "ArchSyntaxError",
    "ArchValueError",
    "CompiledModel",
    "Graph",
    "Node",
    "Report",
    "Shape",
    "build_graph",
    "build_graph_text",
    "build_report",
    "check_weights",
    "compile_file",
    "compile_graph",
    "compile_graph_model",
    "compile_spec",
    "export_onnx",
    "format_graph",
    "format_shape",
    "import_weights",
    "load_weights",
    "parse",
    "save_weights",
]
