"""The attribute kinds: how a spec writes an op's attribute, and what the op receives.

One table (`KINDS`) serves everything that needs to know a kind: `coerce` turns an
evaluated spec value into the op's value (the binder), `to_expr` writes an op's value
back as spec syntax (the generated specs of `archdsl.testing`, round-tripped by the
tests), and `written`/`receives` are the docs' table (docs/language.md). An op declares
an attribute's kind with `ops.attr("pair", ...)`; `enum:a|b|c` takes its choices after the
colon.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from archdsl.lang import syntax as s
from archdsl.lang.source import Source, Span
from archdsl.lang.values import Value, describe

_SPAN = Span(Source("<generated>", ""), 1, 1, 1, 2)


@dataclass(frozen=True)
class Kind:
    """One attribute kind."""

    name: str
    written: str
    """How a spec writes it (the docs' column)."""
    receives: str
    """What the op's field holds."""
    coerce: Callable[[Value, str, tuple[str, ...]], object]
    """`(value, what, choices) -> op value`; raises `ValueError` naming `what`."""
    to_expr: Callable[[Any, int], s.Expr]
    """`(op value, style) -> spec expression`; `style` picks between equivalent spellings."""


def _is_int(value: Value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int(value: int) -> s.Int:
    return s.Int(value=value, span=_SPAN)


def _size(value: tuple[int, ...]) -> s.Size:
    return s.Size(value=tuple(value), span=_SPAN)


def _word(text: str) -> s.Name:
    return s.Name(id=text, span=_SPAN)


def _coerce_int(value: Value, what: str, choices: tuple[str, ...]) -> object:
    if _is_int(value):
        return value
    raise ValueError(f"{what} must be an integer, got {describe(value)}")


def _coerce_pair(value: Value, what: str, choices: tuple[str, ...]) -> object:
    if _is_int(value):
        return (value, value)
    if isinstance(value, tuple) and len(value) == 2:
        return value
    raise ValueError(f"{what} must be an integer or a size like `3x3`, got {describe(value)}")


def _pair_expr(value: tuple[int, int], style: int) -> s.Expr:
    return _int(value[0]) if value[0] == value[1] and style % 2 else _size(value)


def _coerce_shape(value: Value, what: str, choices: tuple[str, ...]) -> object:
    if _is_int(value):
        return (value,)
    if isinstance(value, tuple):
        return value
    raise ValueError(f"{what} must be a shape like `28x28x3`, got {describe(value)}")


def _shape_expr(value: tuple[int, ...], style: int) -> s.Expr:
    return _size(value) if len(value) > 1 else _int(value[0])


def _coerce_padding(value: Value, what: str, choices: tuple[str, ...]) -> object:
    if value in ("same", "valid"):
        return str(value)
    if _is_int(value):
        return ((value, value), (value, value))
    if isinstance(value, tuple) and len(value) == 2:
        return ((value[0], value[0]), (value[1], value[1]))
    raise ValueError(f"{what} must be `same`, `valid` or an integer, got {describe(value)}")


def _padding_expr(value: Any, style: int) -> s.Expr:
    if isinstance(value, str):
        return _word(value)
    (top, _), (left, _) = value
    return _int(top) if top == left else _size((top, left))


def _coerce_bool(value: Value, what: str, choices: tuple[str, ...]) -> object:
    if isinstance(value, bool):
        return value
    raise ValueError(f"{what} must be `true` or `false`, got {describe(value)}")


def _coerce_float(value: Value, what: str, choices: tuple[str, ...]) -> object:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise ValueError(f"{what} must be a number, got {describe(value)}")


def _coerce_enum(value: Value, what: str, choices: tuple[str, ...]) -> object:
    if isinstance(value, str) and value in choices:
        return str(value)
    listed = ", ".join(f"`{c}`" for c in choices)
    raise ValueError(f"{what} must be one of {listed}, got {describe(value)}")


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind("int", "`64`", "an int", _coerce_int, lambda v, style: _int(v)),
        Kind("pair", "`3x3`, or `3` for `3x3`", "(int, int)", _coerce_pair, _pair_expr),
        Kind(
            "shape",
            "`28x28x3`, or `784` for a vector",
            "a tuple of ints",
            _coerce_shape,
            _shape_expr,
        ),
        Kind(
            "padding",
            "`same`, `valid`, `1` (every side) or `1x2` (rows x columns)",
            '"same", "valid" or ((top, bottom), (left, right))',
            _coerce_padding,
            _padding_expr,
        ),
        Kind(
            "bool",
            "`true`, `false`",
            "a bool",
            _coerce_bool,
            lambda v, style: _word("true" if v else "false"),
        ),
        Kind(
            "float",
            "`0.5`, `1e-5`, `2`",
            "a float",
            _coerce_float,
            lambda v, style: s.Float(value=float(v), span=_SPAN),
        ),
        Kind(
            "enum",
            "one of the listed words: `auto`",
            "a str",
            _coerce_enum,
            lambda v, style: _word(v),
        ),
    )
}


def parse_kind(spec: str) -> tuple[Kind, tuple[str, ...]]:
    """`"pair"` -> (the pair kind, ()); `"enum:a|b"` -> (the enum kind, ("a", "b"))."""
    name, _, choices = spec.partition(":")
    if name not in KINDS:
        raise KeyError(f"unknown attribute kind `{spec}`; the kinds are {', '.join(KINDS)}")
    return KINDS[name], tuple(choices.split("|")) if choices else ()


def coerce(spec: str, value: Value, what: str) -> object:
    """Convert a spec value to an attribute of kind `spec`; raise `ValueError` with a message."""
    kind, choices = parse_kind(spec)
    return kind.coerce(value, what, choices)


def to_expr(spec: str, value: Any, style: int = 0) -> s.Expr:
    """An op's attribute value written as spec syntax (`coerce` of its value gives it back)."""
    return parse_kind(spec)[0].to_expr(value, style)
