"""The front end in one call: file -> checked graph (parse, imports, lower, passes)."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from archdsl.errors import ArchError
from archdsl.graph.ir import Graph
from archdsl.graph.lower import lower
from archdsl.graph.passes import run_pipeline
from archdsl.lang.loader import Program, load_file, load_text
from archdsl.lang.source import Source, Span
from archdsl.lang.values import Value


def build_graph(
    path: str | Path,
    *,
    network: str | None = None,
    import_path: Sequence[str | Path] = (),
    **arguments: Value,
) -> Graph:
    """The checked graph of a network in a `.arch` file (the file's last by default).

    Imports resolve inside the file's folder or a folder of `import_path`.

    Raises:
        ArchError: anything wrong with the spec, with its position.
    """
    with paused_gc(), _too_deep(str(path)):
        return build_program_graph(load_file(path, import_path=import_path), network, arguments)


def build_graph_text(
    text: str,
    filename: str = "<string>",
    *,
    network: str | None = None,
    import_path: Sequence[str | Path] = (),
    **arguments: Value,
) -> Graph:
    """`build_graph` for spec text; imports resolve inside the current folder."""
    with paused_gc(), _too_deep(filename):
        program = load_text(text, filename, base=Path.cwd(), import_path=import_path)
        return build_program_graph(program, network, arguments)


def build_program_graph(
    program: Program, network: str | None, arguments: Mapping[str, Value]
) -> Graph:
    """Lower a loaded program's network and run the default pipeline."""
    return run_pipeline(lower(program, network, arguments))


@contextlib.contextmanager
def _too_deep(filename: str) -> Iterator[None]:
    """A last guard: Python's recursion limit becomes an `ArchError`, never a RecursionError.

    The front end bounds nesting itself (braces, expressions, blocks, `use`); this
    catches any path it missed, so the API raises only archdsl's errors.
    """
    try:
        yield
    except RecursionError:
        raise ArchError(
            "the spec nests too deeply to compile",
            Span.point(Source(filename, ""), 1, 1),
            help="split deep nesting into blocks",
        ) from None


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while the front end allocates.

    Parsing and lowering make hundreds of thousands of small acyclic objects; each
    collection would walk them all again (a third of the time at 10,000 layers).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
