"""Results of pure functions of (op, input shapes), each worked out once per pass."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from archdsl.graph.ops import Op
from archdsl.graph.shapes import Shape

T = TypeVar("T")


class PerOp(Generic[T]):
    """A cache keyed by an op and its input shapes.

    A repeated layer (an equal op on equal shapes, as `repeat` makes) gives the result
    found before, so a pass costs the distinct layers, not all of them. Nothing is kept
    when `compute` raises, so a failing rule runs, and reports, at every node; an op with
    an unhashable attribute is not kept either.
    """

    def __init__(self) -> None:
        self._known: dict[tuple[object, ...], T] = {}

    def get(self, op: Op, in_shapes: list[Shape], compute: Callable[[], T]) -> T:
        """The result for `op` on `in_shapes`, from `compute` the first time.

        `compute` runs before `get` returns, so a lambda over a loop's variables is safe.
        """
        key: tuple[object, ...] | None = (op, *in_shapes)
        try:
            found = self._known.get(key)  # type: ignore[arg-type]
        except TypeError:  # an op with an unhashable attribute
            found = key = None
        if found is None:
            found = compute()
            if key is not None:
                self._known[key] = found
        return found
