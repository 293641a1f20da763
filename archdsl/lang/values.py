"""Evaluate spec expressions: integer arithmetic, sizes, words; describe values in messages.

Turning a value into an op attribute is `kinds.coerce`."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import TypeAlias

from archdsl.errors import ArchNameError, ArchValueError
from archdsl.lang import syntax as s
from archdsl.lang.numbers import MAX_DIM, format_shape


class Word(str):
    """A bare word that names no parameter, such as `same` or `valid`."""

    __slots__ = ()


Value: TypeAlias = int | float | bool | str | Word | tuple[int, ...]


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """A `help` line naming the closest candidate, if any is close."""
    close = difflib.get_close_matches(word, sorted(set(candidates)), n=1, cutoff=0.6)
    return f"did you mean `{close[0]}`?" if close else None


def describe(value: Value) -> str:
    """A value as it would be written in a spec."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return format_shape(value)
    if isinstance(value, Word):
        return f"`{value}`"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


def evaluate(expr: s.Expr, env: Mapping[str, Value]) -> Value:
    """The value of an expression, names looked up in `env`.

    Raises:
        ArchValueError: arithmetic on the wrong kinds, division by zero, inexact `/`.
    """
    if isinstance(expr, s.Int):
        return _bounded(expr.value, expr)
    if isinstance(expr, s.Float):
        return expr.value
    if isinstance(expr, s.Size):
        return tuple(_bounded(v, expr) for v in expr.value)
    if isinstance(expr, s.Str):
        return expr.value
    if isinstance(expr, s.Name):
        if expr.id in env:
            return env[expr.id]
        if expr.id in ("true", "false"):
            return expr.id == "true"
        return Word(expr.id)
    if isinstance(expr, s.Neg):
        value = evaluate(expr.operand, env)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ArchValueError(f"cannot negate {describe(value)}", expr.span)
        return -value
    if isinstance(expr, s.Dims):
        dims: list[int] = []
        for part in expr.parts:
            value = evaluate(part, env)
            if isinstance(value, tuple):
                dims.extend(value)
            elif isinstance(value, int) and not isinstance(value, bool):
                dims.append(value)
            else:
                raise ArchValueError(
                    f"a shape is made of integers, got {describe(value)}",
                    part.span,
                    help=_unknown_help(part, env),
                )
        return tuple(dims)
    if isinstance(expr, s.BinOp):
        return _binop(expr, evaluate(expr.left, env), evaluate(expr.right, env), env)
    raise AssertionError(f"unknown expression {expr!r}")


def _unknown_help(expr: s.Expr, env: Mapping[str, Value]) -> str | None:
    if isinstance(expr, s.Name) and expr.id not in env:
        return did_you_mean(expr.id, env) or f"`{expr.id}` is not a parameter here"
    return None


def _bounded(value: int, expr: s.Expr) -> int:
    if value > MAX_DIM:
        raise ArchValueError(
            f"{value} is too large: sizes and counts are limited to {MAX_DIM:,}", expr.span
        )
    return value


def _binop(expr: s.BinOp, left: Value, right: Value, env: Mapping[str, Value]) -> Value:
    for side, value in ((expr.left, left), (expr.right, right)):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ArchValueError(
                f"`{expr.op}` needs numbers, got {describe(value)}",
                side.span,
                help=_unknown_help(side, env),
            )
    assert isinstance(left, int | float) and isinstance(right, int | float)
    if expr.op in ("/", "//", "%") and right == 0:
        raise ArchValueError("division by zero", expr.span)
    if expr.op == "+":
        result: int | float = left + right
    elif expr.op == "-":
        result = left - right
    elif expr.op == "*":
        result = left * right
    elif expr.op == "//":
        result = left // right
    elif expr.op == "%":
        result = left % right
    elif isinstance(left, int) and isinstance(right, int):
        if left % right:
            raise ArchValueError(
                f"{left} / {right} is not a whole number",
                expr.span,
                help=f"write `{left} // {right}` to round down",
            )
        result = left // right
    else:
        result = left / right
    if isinstance(result, int) and abs(result) > MAX_DIM:
        raise ArchValueError(
            f"{result} is too large: sizes and counts are limited to {MAX_DIM:,}", expr.span
        )
    return result


def unknown_name(word: str, span: s.Span, candidates: Iterable[str], what: str) -> ArchNameError:
    """An `ArchNameError` for an unknown name, with a did-you-mean."""
    return ArchNameError(f"unknown {what} `{word}`", span, help=did_you_mean(word, candidates))
