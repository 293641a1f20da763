"""Bind arguments: a layer call's to its op's attributes, a block call's to its parameters,
`--arg` values to a network's parameters (with their ranges).

Split from the lowering so that it reads as what it is, argument checking, and so the
lowering only walks the syntax. Errors are collected per call (`BindError`) and the
lowering records them all.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Container, Mapping
from typing import Any

from archdsl.errors import ArchError, ArchNameError, ArchValueError
from archdsl.graph import ops
from archdsl.lang import syntax as s
from archdsl.lang.kinds import coerce
from archdsl.lang.values import Value, Word, describe, did_you_mean, evaluate, unknown_name


class BindError(Exception):
    """Every error of one call's arguments; the lowering records each and skips the call."""

    def __init__(self, errors: list[ArchError]) -> None:
        super().__init__(errors)
        self.errors = errors


def bind_network_arguments(
    definition: s.NetworkDef, arguments: Mapping[str, Value]
) -> dict[str, Value]:
    """The environment of a network: `arguments` (from `--arg`), else the defaults; ranges checked.

    Raises:
        ArchError: an unknown or missing argument, or a value outside its range.
    """
    known = {p.name.text for p in definition.params}
    for key in arguments:
        if key not in known:
            raise ArchNameError(
                f"network `{definition.name.text}` has no parameter `{key}`",
                definition.name.span,
                help=did_you_mean(key, known)
                or f"its parameters: {', '.join(sorted(known)) or 'none'}",
            )
    env: dict[str, Value] = {}
    for param in definition.params:
        key = param.name.text
        if key in arguments:
            env[key] = arguments[key]
            _check_range(definition, param, env)
        elif param.default is not None:
            env[key] = evaluate(param.default, env)
            _check_range(definition, param, env, default=True)
        else:
            raise ArchValueError(
                f"network `{definition.name.text}` needs a value for `{key}`",
                param.span,
                help=f"give it a default (`{key} = ...`) or pass `--arg {key}=...`",
            )
    return env


def _check_range(
    definition: s.NetworkDef,
    param: s.Param,
    env: dict[str, Value],
    *,
    default: bool = False,
) -> None:
    if param.low is None or param.high is None:
        return
    value = env[param.name.text]
    low, high = evaluate(param.low, env), evaluate(param.high, env)
    for bound, expr in ((low, param.low), (high, param.high)):
        if isinstance(bound, bool) or not isinstance(bound, int | float):
            raise ArchValueError(f"a range is two numbers, got {describe(bound)}", expr.span)
    assert isinstance(low, int | float) and isinstance(high, int | float)
    if low > high:
        raise ArchValueError(
            f"the range {describe(low)}..{describe(high)} of `{param.name.text}` is empty",
            param.span,
        )
    inside = (
        isinstance(value, int | float) and not isinstance(value, bool) and (low <= value <= high)
    )
    if not inside:
        what = "its default is" if default else "got"
        raise ArchValueError(
            f"network `{definition.name.text}` takes `{param.name.text}` in "
            f"{describe(low)}..{describe(high)}, {what} {describe(value)}",
            param.span,
        )


def bind_op(
    op_class: type[ops.Op], call: s.Call, env: Mapping[str, Value], names: Container[str]
) -> ops.Op:
    """Build the op a call writes: positional, keyword (`stride 2`), flag (`same`) and
    `name = value` arguments, each coerced to its attribute's kind.

    `names` are the other names in scope (ops, blocks), for the hint when a second
    statement was written on the line.

    Raises:
        BindError: every argument error of the call.
    """
    fields = _fields_of(op_class)
    given: dict[str, tuple[Value, s.Syntax]] = {}
    positional = list(op_class.positional)
    errors: list[ArchError] = []
    spelling = op_class.name

    def put(key: str, value: Value, where: s.Syntax) -> None:
        if key in given:
            errors.append(ArchValueError(f"`{spelling}` got `{key}` twice", where.span))
        given[key] = (value, where)

    args = list(call.args)
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        if isinstance(arg, s.Name) and arg.id in op_class.keywords:
            if index >= len(args):
                errors.append(
                    ArchValueError(
                        f"`{arg.id}` needs a value after it",
                        arg.span,
                        help=f"write `{arg.id} 2`, or `{arg.id} = 2`",
                    )
                )
                break
            put(arg.id, evaluate(args[index], env), args[index])
            index += 1
            continue
        value = evaluate(arg, env)
        if isinstance(value, str) and value in op_class.flags:
            key, flag_value = op_class.flags[value]
            put(key, flag_value, arg)
            continue
        if not positional:
            taken = ", ".join(f"`{p}`" for p in op_class.positional) or "none"
            help_ = None
            if isinstance(value, Word):
                help_ = did_you_mean(value, [*fields, *op_class.flags, *env])
            if isinstance(value, Word) and (value in names):
                help_ = f"one statement per line, or chain them: `... -> {value} ...`"
            errors.append(
                ArchValueError(
                    f"`{spelling}` takes no more positional arguments "
                    f"(it takes {taken}); got {describe(value)}",
                    arg.span,
                    help=help_ or _usage(op_class),
                )
            )
            break
        put(positional.pop(0), value, arg)
    for kwarg in call.kwargs:
        key = kwarg.name.text
        if key not in fields:
            errors.append(unknown_name(key, kwarg.name.span, fields, f"`{spelling}` argument"))
            continue
        put(key, evaluate(kwarg.value, env), kwarg.value)
    attrs: dict[str, object] = {}
    for key, (value, where) in given.items():
        try:
            attrs[key] = coerce(fields[key].metadata["kind"], value, f"`{spelling}` {key}")
        except ValueError as error:
            help_ = None
            if isinstance(value, Word):
                help_ = did_you_mean(value, env)
            errors.append(ArchValueError(str(error), where.span, help=help_))
    missing = [
        key for key, f in fields.items() if f.default is dataclasses.MISSING and key not in given
    ]
    if missing and not errors:
        errors.append(
            ArchValueError(
                f"`{spelling}` needs {', '.join(f'`{m}`' for m in missing)}",
                call.span,
                help=_usage(op_class),
            )
        )
    if errors:
        raise BindError(errors)
    try:
        return op_class(**attrs)
    except ops.AttributeRuleError as error:
        raise BindError([ArchValueError(str(error), call.span)]) from None


def bind_block_arguments(
    block: s.BlockDef | s.NetworkDef, call: s.Call | s.Use, env: Mapping[str, Value]
) -> dict[str, Value]:
    """The environment inside a block (or a `use`d network): the call's arguments, evaluated
    in the caller's `env`, else the parameters' defaults.

    Raises:
        BindError: every argument error of the call.
    """
    params = [p.name.text for p in block.params]
    kind = "block" if isinstance(block, s.BlockDef) else "network"
    name = block.name.text
    bound: dict[str, Value] = {}
    errors: list[ArchError] = []
    for index, arg in enumerate(call.args):
        if index >= len(params):
            errors.append(
                ArchValueError(
                    f"{kind} `{name}` takes {len(params)} arguments, got {len(call.args)}",
                    arg.span,
                    help=f"its parameters: {', '.join(params) or 'none'}",
                )
            )
            break
        bound[params[index]] = evaluate(arg, env)
    for kwarg in call.kwargs:
        key = kwarg.name.text
        if key not in params:
            errors.append(
                unknown_name(key, kwarg.name.span, params, f"argument of {kind} `{name}`:")
            )
            continue
        if key in bound:
            errors.append(ArchValueError(f"`{key}` is given twice", kwarg.span))
        bound[key] = evaluate(kwarg.value, env)
    env: dict[str, Value] = {}
    for param in block.params:
        key = param.name.text
        if key in bound:
            env[key] = bound[key]
        elif param.default is not None:
            env[key] = evaluate(param.default, env)
        elif not errors:
            errors.append(
                ArchValueError(
                    f"{kind} `{name}` needs `{key}`",
                    call.span,
                    notes=[f"`{name}` is defined at {block.name.span}"],
                )
            )
    if errors:
        raise BindError(errors)
    return env


@functools.cache
def _fields_of(op_class: type[ops.Op]) -> dict[str, dataclasses.Field[Any]]:
    return {f.name: f for f in dataclasses.fields(op_class)}


def _usage(op_class: type[ops.Op]) -> str:
    parts = [op_class.name, *(f"<{p}>" for p in op_class.positional)]
    extras = [f"{k} <value>" for k in op_class.keywords]
    extras += [f for f in op_class.flags]
    return "usage: `" + " ".join(parts) + (" [" + "] [".join(extras) + "]" if extras else "") + "`"
