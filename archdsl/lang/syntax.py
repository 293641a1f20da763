"""The AST of a `.arch` file: frozen dataclasses only, no logic.

Spans are metadata: excluded from `==`, so tests can build expected trees by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeAlias

from archdsl.lang.source import Source, Span


@dataclass(frozen=True, kw_only=True)
class Syntax:
    """Base of every AST node: where it is in the source."""

    span: Span = field(compare=False, repr=False)


@dataclass(frozen=True, kw_only=True)
class Ident(Syntax):
    """A name as written, with its position (for did-you-mean diagnostics)."""

    text: str


# Expressions -------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Int(Syntax):
    """An integer literal."""

    value: int


@dataclass(frozen=True, kw_only=True)
class Float(Syntax):
    """A decimal literal: `0.5`, `1e-4`."""

    value: float


@dataclass(frozen=True, kw_only=True)
class Size(Syntax):
    """A literal size or shape: `5x5`, `28x28x192`."""

    value: tuple[int, ...]


@dataclass(frozen=True, kw_only=True)
class Str(Syntax):
    """A string literal, quotes removed."""

    value: str


@dataclass(frozen=True, kw_only=True)
class Name(Syntax):
    """A bare word: a parameter reference or a word like `same`, `true`."""

    id: str


@dataclass(frozen=True, kw_only=True)
class BinOp(Syntax):
    """Integer arithmetic: `c * 4`, `c / 2`, `n - 1`."""

    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True, kw_only=True)
class Neg(Syntax):
    """`-x`."""

    operand: Expr


@dataclass(frozen=True, kw_only=True)
class Dims(Syntax):
    """A shape built from expressions: `size x size x 3`."""

    parts: tuple[Expr, ...]


@dataclass(frozen=True, kw_only=True)
class InputDim(Syntax):
    """`in.c`, `in.h`, `in.w`: a size of the input of the block being called."""

    dim: Ident


@dataclass(frozen=True, kw_only=True)
class Func(Syntax):
    """A built-in function of numbers: `make_divisible(c * 0.75, 8)`."""

    name: Ident
    args: tuple[Expr, ...]


Expr: TypeAlias = Int | Float | Size | Str | Name | BinOp | Neg | Dims | InputDim | Func


@dataclass(frozen=True, kw_only=True)
class Kwarg(Syntax):
    """`name = value`."""

    name: Ident
    value: Expr


# Steps: the things chained with `->` ---------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Call(Syntax):
    """A layer or a block: `conv 64 3x3 stride 2` or `basic(64, stride = 2)`."""

    op: Ident
    args: tuple[Expr, ...]
    kwargs: tuple[Kwarg, ...]
    alias: Ident | None = None


@dataclass(frozen=True, kw_only=True)
class Residual(Syntax):
    """`residual [shortcut = mode] { body }`: body output plus the input."""

    kwargs: tuple[Kwarg, ...]
    body: tuple[Stmt, ...]
    alias: Ident | None = None


@dataclass(frozen=True, kw_only=True)
class Branch(Syntax):
    """One `branch [as NAME] { ... }` of a `concat` or `add`."""

    body: tuple[Stmt, ...]
    alias: Ident | None = None


@dataclass(frozen=True, kw_only=True)
class Merge(Syntax):
    """`concat { branch ... }` or `add { branch ... }`: parallel paths on one input."""

    kind: str
    branches: tuple[Branch, ...]
    alias: Ident | None = None


@dataclass(frozen=True, kw_only=True)
class Repeat(Syntax):
    """`repeat N { body }`: the body N times in sequence."""

    count: Expr
    body: tuple[Stmt, ...]
    alias: Ident | None = None


@dataclass(frozen=True, kw_only=True)
class Group(Syntax):
    """`{ body }` used as one step (for `frozen { ... }`)."""

    body: tuple[Stmt, ...]
    alias: Ident | None = None


Step: TypeAlias = Call | Residual | Merge | Repeat | Group


# Statements -----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Chain(Syntax):
    """`[from TAP | step] -> step -> ... [: shape]`."""

    source: Ident | None
    """The tap after `from`, dotted (`layer3.1`); None to continue from the last point."""
    steps: tuple[Step, ...]
    check: Expr | None = None
    frozen: bool = False


@dataclass(frozen=True, kw_only=True)
class Aux(Syntax):
    """`aux NAME [weight = w] { head }`: an auxiliary classifier off the current point."""

    name: Ident
    kwargs: tuple[Kwarg, ...]
    body: tuple[Stmt, ...]


@dataclass(frozen=True, kw_only=True)
class Use(Syntax):
    """`use Base(args) [upto NAME] [frozen [upto NAME]]`: another network's layers."""

    network: Ident
    args: tuple[Expr, ...]
    kwargs: tuple[Kwarg, ...]
    upto: Ident | None = None
    frozen: bool = False
    frozen_upto: Ident | None = None


Stmt: TypeAlias = Chain | Aux | Use


# Definitions ------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Param(Syntax):
    """A block or network parameter: `name [= default] [in low..high]`."""

    name: Ident
    default: Expr | None = None
    low: Expr | None = None
    high: Expr | None = None


@dataclass(frozen=True, kw_only=True)
class BlockDef(Syntax):
    """`block NAME(params) { body }`: a reusable, parametrised piece."""

    name: Ident
    params: tuple[Param, ...]
    body: tuple[Stmt, ...]


@dataclass(frozen=True, kw_only=True)
class NetworkDef(Syntax):
    """`network NAME(params) { body }`: a model with an `input`."""

    name: Ident
    params: tuple[Param, ...]
    body: tuple[Stmt, ...]


@dataclass(frozen=True, kw_only=True)
class Import(Syntax):
    """`import "path.arch"`, relative to the importing file."""

    path: str


Item: TypeAlias = Import | BlockDef | NetworkDef


@dataclass(frozen=True, kw_only=True)
class Spec(Syntax):
    """A whole `.arch` file."""

    items: tuple[Item, ...]
    source: Source = field(compare=False, repr=False)
