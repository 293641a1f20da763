"""How the language bounds and writes numbers: `MAX_DIM`, shapes (`28x28x3`), counts (`25,557,032`).

At the bottom of the package so that every part (the parser, the graph, the tools, the
training loop) writes a shape or a count the same way without importing each other.
"""

from __future__ import annotations

MAX_DIM = 2**31 - 1
"""No tensor axis, filter count or repeat count may exceed this: nothing holds it."""


def format_shape(shape: tuple[int, ...]) -> str:
    """Write a shape as the lecture slides do: `28x28x192`."""
    return "x".join(str(d) for d in shape)


def format_count(n: int) -> str:
    """`25,557,032`."""
    return f"{n:,}"
