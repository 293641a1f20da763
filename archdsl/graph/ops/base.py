"""The op base class, the op table `OPS`, attribute declaration and the shared shape helpers.

An op is a frozen dataclass: its fields are the attributes a spec sets, and its
methods give the shape rule, the parameter and state shapes and the cost. Shape rules
are backend-free (JAX keeps `shape_rule` apart from lowering): the backend reads
`param_shapes`/`state_shapes` from here and never re-derives a shape. Each family of
ops lives in its own module of this package and adds itself to `OPS` with `register`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from archdsl.graph.shapes import Padding, Shape, format_shape, resolve_padding, window_out
from archdsl.lang.kinds import parse_kind


class ShapeRuleError(Exception):
    """Raised by `Op.infer` with a message only; the pass adds the span."""


class AttributeRuleError(Exception):
    """Raised when an op is built with attribute values it cannot take."""


def attr(kind: str, default: Any = dataclasses.MISSING, doc: str = "") -> Any:
    """Declare an op attribute; `kind` (a name in `lang.kinds.KINDS`, `enum:a|b|c` for
    words) tells the binder how to read the spec's value and the docs how to write it.
    """
    parse_kind(kind)  # an unknown kind fails when the op is defined, not when it is used
    return field(default=default, metadata={"kind": kind, "doc": doc})


@dataclass(frozen=True)
class Op:
    """A layer. Attributes are dataclass fields; every subclass states its shape rule."""

    name: ClassVar[str]
    arity: ClassVar[int | None] = 1
    """How many inputs it takes; None for any number (at least one)."""
    user_visible: ClassVar[bool] = True
    """False for nodes that only constructs or passes create (add, concat, project)."""
    positional: ClassVar[tuple[str, ...]] = ()
    """Attributes that may be given by position, in order."""
    keywords: ClassVar[tuple[str, ...]] = ()
    """Attributes that may be written `word value` (`stride 2`) as well as `word = value`."""
    flags: ClassVar[Mapping[str, tuple[str, Any]]] = {}
    """Bare words that set an attribute: `same` -> `padding = "same"`."""
    signature: ClassVar[str] = "unchanged"
    """The shape rule in words, for the docs' layers table: `(H, W, C) -> (C,)`."""

    def infer(self, *inputs: Shape) -> Shape:
        """The per-example output shape for these input shapes."""
        raise NotImplementedError

    def param_shapes(self, *inputs: Shape) -> dict[str, Shape]:
        """Learned tensors by leaf name; the backend initialises exactly these."""
        return {}

    def state_shapes(self, *inputs: Shape) -> dict[str, Shape]:
        """Non-learned tensors carried between steps (batch-norm running statistics)."""
        return {}

    def macs(self, output: Shape, *inputs: Shape) -> int:
        """Multiply-accumulates per example, counted as torchvision does: conv and dense."""
        return 0

    def describe(self) -> str:
        """A short rendering of the attributes for reports: `64 3x3 /2 same`."""
        parts = [
            f"{f.name}={getattr(self, f.name)}"
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != f.default
        ]
        return " ".join(parts)


OpT = TypeVar("OpT", bound=type[Op])
OPS: dict[str, type[Op]] = {}


def register(cls: OpT) -> OpT:
    """Add an op class to `OPS` under its spec spelling."""
    OPS[cls.name] = cls
    return cls


def pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else value


def fmt_pair(value: tuple[int, int]) -> str:
    return f"{value[0]}x{value[1]}"


def fmt_padding(padding: Padding) -> str:
    if isinstance(padding, str):
        return padding
    (t, b), (left, r) = padding
    return f"pad {t}" if t == b == left == r else f"pad {padding}"


def rank3(op: str, x: Shape) -> tuple[int, int, int]:
    if len(x) != 3:
        raise ShapeRuleError(
            f"expected an input of rank 3 (HxWxC), got {format_shape(x)} (rank {len(x)})"
        )
    return x[0], x[1], x[2]


def positive(owner: str, **values: int | tuple[int, ...] | None) -> None:
    for key, value in values.items():
        items = value if isinstance(value, tuple) else (value,)
        if any(v is not None and v < 1 for v in items):
            raise AttributeRuleError(f"`{owner}` {key} must be positive, got {value}")


def check_padding(owner: str, padding: Padding) -> None:
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise AttributeRuleError(
                f"`{owner}` padding must be `same`, `valid` or an integer, got `{padding}`"
            )
    elif any(p < 0 for pair in padding for p in pair):
        raise AttributeRuleError(f"`{owner}` padding must not be negative")


def windowed(
    owner: str,
    x: Shape,
    window: tuple[int, int],
    stride: tuple[int, int],
    padding: Padding,
    dilation: tuple[int, int] = (1, 1),
    ceil_mode: bool = False,
) -> tuple[int, int]:
    h, w, _ = rank3(owner, x)
    pads = resolve_padding(padding, (h, w), window, stride, dilation)
    span = tuple(d * (k - 1) + 1 for k, d in zip(window, dilation, strict=True))
    padded = (h + sum(pads[0]), w + sum(pads[1]))
    if span[0] > padded[0] or span[1] > padded[1]:
        raise ShapeRuleError(
            f"the {fmt_pair(window)} window is larger than its "
            f"{padded[0]}x{padded[1]} input (after padding)"
        )
    out = tuple(
        window_out(size, k, s, p, dilation=d, ceil_mode=ceil_mode)
        for size, k, s, p, d in zip((h, w), window, stride, pads, dilation, strict=True)
    )
    if min(out) < 1:
        raise ShapeRuleError(f"the output would be {out[0]}x{out[1]}: a size went to zero")
    return out[0], out[1]


def padding_attr() -> Any:
    return attr("padding", "valid", "`same`, `valid`, or an integer pad on every side")
