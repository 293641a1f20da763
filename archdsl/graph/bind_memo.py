"""Bind each distinct layer call once: `conv 64 3x3 same` written 10,000 times is one op.

`bind.bind_op` is half of lowering's time, and a network repeats a few calls many
times (every `repeat`, every instantiation of a block, every generated line). An op
is a function of the call's expressions (spans aside) and of the values its names
have in the environment, so a bound op is kept under exactly that key. A call that
reads `in.c` is bound every time; a call that
fails is bound (and reports its errors, with its own spans) every time.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from typing import Any

from archdsl.graph import ops
from archdsl.graph.bind import bind_op
from archdsl.lang import syntax as s
from archdsl.lang.values import Value

_ABSENT = object()
"""A name not in the environment: it reads as a word (`same`) or `true`/`false`."""


class BindMemo:
    """`bind_op` with the ops of value-equal calls in equal environments kept."""

    def __init__(self) -> None:
        self._calls: dict[int, tuple[s.Call, int, tuple[str, ...]] | None] = {}
        """By `id(call)`: the call (kept alive, so the id stays its own), the number of
        its value-equal class, the names it reads; None if it must be bound each time."""
        self._classes: dict[tuple[Any, ...], int] = {}
        self._ops: dict[tuple[Any, ...], ops.Op] = {}

    def bind(
        self,
        op_class: type[ops.Op],
        call: s.Call,
        env: Mapping[str, Value],
        names: Container[str],
    ) -> ops.Op:
        """`bind_op(op_class, call, env, names)`, from the memo when it has it.

        Raises:
            BindError: every argument error of the call (never memoised).
        """
        entry = self._calls.get(id(call), _ABSENT)
        if entry is _ABSENT or (entry is not None and entry[0] is not call):  # type: ignore[index]
            entry = self._entry(op_class, call)
        if entry is None:
            return bind_op(op_class, call, env, names)
        _, number, reads = entry  # type: ignore[misc]
        key = (number, *[_value_key(env.get(n, _ABSENT)) for n in reads])
        op = self._ops.get(key)
        if op is None:
            op = self._ops[key] = bind_op(op_class, call, env, names)
        return op

    def _entry(
        self, op_class: type[ops.Op], call: s.Call
    ) -> tuple[s.Call, int, tuple[str, ...]] | None:
        reads: dict[str, None] = {}
        if not _names(call.args, reads) or not _names([k.value for k in call.kwargs], reads):
            self._calls[id(call)] = None
            return None
        value_class = (op_class, call.op.text, call.args, call.kwargs)
        number = self._classes.setdefault(value_class, len(self._classes))
        entry = (call, number, tuple(reads))
        self._calls[id(call)] = entry
        return entry


def _value_key(value: object) -> object:
    """Type and repr: `1`, `1.0` and `true` (and `0.0` and `-0.0`) are equal to Python,
    not to a layer; a repr also keys a value that is not hashable."""
    if value is _ABSENT:
        return value
    return (type(value), repr(value))


def _names(exprs: Any, reads: dict[str, None]) -> bool:
    """Add the names `exprs` read to `reads`; False if one reads the block's input."""
    stack = list(exprs)
    while stack:
        expr = stack.pop()
        if isinstance(expr, s.Name):
            reads[expr.id] = None
        elif isinstance(expr, s.InputDim):
            return False
        elif isinstance(expr, s.BinOp):
            stack += (expr.left, expr.right)
        elif isinstance(expr, s.Neg):
            stack.append(expr.operand)
        elif isinstance(expr, s.Dims):
            stack += expr.parts
        elif isinstance(expr, s.Func):
            stack += expr.args
    return True
