"""Text to `syntax.Spec`: a Lark Transformer, and Lark's errors turned into `ArchSyntaxError`."""

from __future__ import annotations

from typing import Any

from lark import Token, Transformer, Tree, v_args
from lark.exceptions import (
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
    VisitError,
)

from archdsl import syntax as s
from archdsl.errors import ArchError, ArchSyntaxError
from archdsl.grammar import lark_parser, terminal_labels
from archdsl.source import Source, Span

MAX_SOURCE_BYTES = 8 * 1024 * 1024
"""Specs are small; a bigger file is refused before parsing."""


def parse(text: str, filename: str = "<string>") -> s.Spec:
    """Parse the text of a `.arch` file.

    Raises:
        ArchSyntaxError: the text does not follow the grammar.
    """
    source = Source(filename, text)
    if len(text) > MAX_SOURCE_BYTES:
        raise ArchSyntaxError(
            f"the file is {len(text):,} characters; specs are limited to {MAX_SOURCE_BYTES:,}",
            Span.point(source, 1, 1),
        )
    try:
        tree = lark_parser().parse(text)
    except UnexpectedInput as error:
        raise _translate(error, source) from None
    try:
        return _ToSyntax(source).transform(tree)
    except VisitError as error:
        if isinstance(error.orig_exc, ArchError):
            raise error.orig_exc from None
        raise


def _describe_token(token: Token) -> str:
    if token.type == "_NL":
        return "end of line"
    text = str(token)
    return f"`{text[:40]}`"


_OPERATORS = frozenset(
    [
        "`%`",
        "`*`",
        "`+`",
        "`-`",
        "`/`",
        "`//`",
        "`x`",
        "`(`",
        "`..`",
        "`.`",
        "`->`",
        "a newline",
        "`:`",
        "`as`",
    ]
)
"""Tokens that may follow almost anything: listing them buries what was expected."""


def _expected(names: set[str]) -> str:
    labels = terminal_labels()
    words = sorted({labels.get(n, n.lower()) for n in names})
    shown = [w for w in words if w not in _OPERATORS] or words
    if not shown:
        return ""
    if len(shown) > 8:
        shown = [*shown[:8], "..."]
    if len(shown) == 1:
        return shown[0]
    return ", ".join(shown[:-1]) + " or " + shown[-1]


def _translate(error: UnexpectedInput, source: Source) -> ArchSyntaxError:
    if isinstance(error, UnexpectedToken):
        token = error.token
        expected = _expected(set(error.accepts or error.expected))
        if token.type == "$END":
            span = _end_span(source)
            message = "unexpected end of file"
            unclosed = _unclosed_brace(source)
            if unclosed is not None:
                return ArchSyntaxError(
                    f"unexpected end of file: the `{{` on line {unclosed.line} is not closed",
                    span,
                    notes=[f"the `{{` is at {unclosed}"],
                    help="add the missing `}`",
                )
        else:
            span = Span.from_token(source, token)
            message = f"unexpected {_describe_token(token)}"
        help_ = _hint(token, set(error.accepts or error.expected))
        if expected:
            message += f"; expected {expected}"
        return ArchSyntaxError(message, span, help=help_)
    if isinstance(error, UnexpectedCharacters):
        char = source.text[error.pos_in_stream] if error.pos_in_stream < len(source.text) else ""
        span = Span.point(source, error.line, error.column)
        return ArchSyntaxError(
            f"unexpected character `{char}`",
            span,
            help="specs use names, numbers, sizes like `3x3`, `->`, `:`, `=`, `{ }` and `#` comments",
        )
    if isinstance(error, UnexpectedEOF):
        return ArchSyntaxError("unexpected end of file", _end_span(source))
    return ArchSyntaxError(str(error), Span.point(source, 1, 1))


def _hint(token: Token, expected: set[str]) -> str | None:
    if token.type == "NAME" and "_NL" in expected:
        return "one statement per line; chain steps on one line with `->`"
    if token.type == "RBRACE" and "LBRACE" not in expected:
        return "a `}` closes a `{` that is not open here"
    return None


def _unclosed_brace(source: Source) -> Span | None:
    """The innermost `{` left open, ignoring comments and strings."""
    stack: list[tuple[int, int]] = []
    for number, line in enumerate(source.text.splitlines(), start=1):
        in_string = False
        for column, char in enumerate(line.expandtabs(4), start=1):
            if char == '"':
                in_string = not in_string
            elif in_string:
                continue
            elif char == "#":
                break
            elif char == "{":
                stack.append((number, column))
            elif char == "}" and stack:
                stack.pop()
    return Span.point(source, *stack[-1]) if stack else None


def _end_span(source: Source) -> Span:
    lines = source.text.splitlines() or [""]
    return Span.point(source, len(lines), len(lines[-1].expandtabs(4)) + 1)


def _first(children: list[Any], kind: type) -> Any:
    return next((c for c in children if isinstance(c, kind)), None)


@v_args(meta=True)
class _ToSyntax(Transformer):
    """Builds `syntax` nodes bottom-up; every node gets the span of its text."""

    def __init__(self, source: Source) -> None:
        super().__init__(visit_tokens=False)
        self.source = source

    def _span(self, meta: Any) -> Span:
        return Span.from_meta(self.source, meta)

    def _ident(self, token: Token) -> s.Ident:
        text = str(token)
        if text.endswith("("):
            text = text[:-1]
            token = Token(
                token.type,
                text,
                token.start_pos,
                token.line,
                token.column,
                token.end_line,
                (token.end_column or 2) - 1,
                token.end_pos,
            )
        return s.Ident(text=text, span=Span.from_token(self.source, token))

    # expressions
    def int_(self, meta: Any, children: list[Token]) -> s.Int:
        return s.Int(value=int(children[0]), span=self._span(meta))

    def float_(self, meta: Any, children: list[Token]) -> s.Float:
        return s.Float(value=float(children[0]), span=self._span(meta))

    def size(self, meta: Any, children: list[Token]) -> s.Size:
        value = tuple(int(p) for p in str(children[0]).split("x"))
        return s.Size(value=value, span=self._span(meta))

    def string(self, meta: Any, children: list[Token]) -> s.Str:
        return s.Str(value=str(children[0])[1:-1], span=self._span(meta))

    def name(self, meta: Any, children: list[Token]) -> s.Name:
        return s.Name(id=str(children[0]), span=self._span(meta))

    def _binop(self, op: str, meta: Any, children: list[s.Expr]) -> s.BinOp:
        return s.BinOp(op=op, left=children[0], right=children[1], span=self._span(meta))

    def plus(self, meta: Any, children: list[s.Expr]) -> s.BinOp:
        return self._binop("+", meta, children)

    def minus(self, meta: Any, children: list[s.Expr]) -> s.BinOp:
        return self._binop("-", meta, children)

    def times(self, meta: Any, children: list[s.Expr]) -> s.BinOp:
        return self._binop("*", meta, children)

    def divide(self, meta: Any, children: list[s.Expr]) -> s.BinOp:
        return self._binop("/", meta, children)

    def floordiv(self, meta: Any, children: list[s.Expr]) -> s.BinOp:
        return self._binop("//", meta, children)

    def modulo(self, meta: Any, children: list[s.Expr]) -> s.BinOp:
        return self._binop("%", meta, children)

    def neg(self, meta: Any, children: list[s.Expr]) -> s.Neg:
        return s.Neg(operand=children[0], span=self._span(meta))

    def dims(self, meta: Any, children: list[s.Expr]) -> s.Dims:
        return s.Dims(parts=tuple(children), span=self._span(meta))

    def kwarg(self, meta: Any, children: list[Any]) -> s.Kwarg:
        return s.Kwarg(name=self._ident(children[0]), value=children[1], span=self._span(meta))

    kwarg_item = kwarg

    def dotted(self, meta: Any, children: list[Token]) -> s.Ident:
        return s.Ident(text=".".join(str(c) for c in children), span=self._span(meta))

    # steps
    def _split_args(self, items: list[Any]) -> tuple[tuple[s.Expr, ...], tuple[s.Kwarg, ...]]:
        args = tuple(a for a in items if a is not None and not isinstance(a, s.Kwarg))
        kwargs = tuple(a for a in items if isinstance(a, s.Kwarg))
        return args, kwargs

    def call(self, meta: Any, children: list[Any]) -> s.Call:
        args, kwargs = self._split_args(children[1:])
        return s.Call(op=self._ident(children[0]), args=args, kwargs=kwargs, span=self._span(meta))

    def body(self, meta: Any, children: list[Any]) -> tuple[s.Stmt, ...]:
        return tuple(c for c in children if c is not None)

    def residual(self, meta: Any, children: list[Any]) -> s.Residual:
        return s.Residual(kwargs=tuple(children[:-1]), body=children[-1], span=self._span(meta))

    def branch(self, meta: Any, children: list[Any]) -> s.Branch:
        alias = self._ident(children[0]) if children[0] is not None else None
        return s.Branch(body=children[1], alias=alias, span=self._span(meta))

    def branches(self, meta: Any, children: list[Any]) -> tuple[s.Branch, ...]:
        return tuple(c for c in children if c is not None)

    def concat(self, meta: Any, children: list[Any]) -> s.Merge:
        return s.Merge(kind="concat", branches=children[0], span=self._span(meta))

    def add(self, meta: Any, children: list[Any]) -> s.Merge:
        return s.Merge(kind="add", branches=children[0], span=self._span(meta))

    def repeat(self, meta: Any, children: list[Any]) -> s.Repeat:
        count, alias, body = children
        return s.Repeat(
            count=count,
            body=body,
            alias=self._ident(alias) if alias is not None else None,
            span=self._span(meta),
        )

    def group(self, meta: Any, children: list[Any]) -> s.Group:
        return s.Group(body=children[0], span=self._span(meta))

    def step(self, meta: Any, children: list[Any]) -> s.Step:
        inner, alias = children
        if alias is None:
            return inner
        return type(inner)(**{**_fields(inner), "alias": self._ident(alias)})

    # statements
    def from_(self, meta: Any, children: list[Any]) -> s.Ident:
        return children[0]

    def check(self, meta: Any, children: list[Any]) -> s.Expr:
        return children[0]

    def chain(self, meta: Any, children: list[Any]) -> s.Chain:
        check = children[-1]
        first, rest = children[0], children[1:-1]
        source = first if isinstance(first, s.Ident) else None
        steps = tuple(rest) if source is not None else (first, *rest)
        return s.Chain(source=source, steps=steps, check=check, span=self._span(meta))

    def frozen_stmt(self, meta: Any, children: list[Any]) -> s.Chain:
        chain: s.Chain = children[0]
        return s.Chain(
            source=chain.source,
            steps=chain.steps,
            check=chain.check,
            frozen=True,
            span=self._span(meta),
        )

    def aux_stmt(self, meta: Any, children: list[Any]) -> s.Aux:
        return s.Aux(
            name=self._ident(children[0]),
            kwargs=tuple(children[1:-1]),
            body=children[-1],
            span=self._span(meta),
        )

    def upto(self, meta: Any, children: list[Any]) -> s.Ident:
        return children[0]

    def use_frozen(self, meta: Any, children: list[Any]) -> tuple[str, s.Ident | None]:
        return ("frozen", children[0])

    def use_stmt(self, meta: Any, children: list[Any]) -> s.Use:
        *head, upto, frozen = children
        args, kwargs = self._split_args(head[1:])
        return s.Use(
            network=self._ident(head[0]),
            args=args,
            kwargs=kwargs,
            upto=upto,
            frozen=frozen is not None,
            frozen_upto=frozen[1] if frozen is not None else None,
            span=self._span(meta),
        )

    # definitions
    def range_(self, meta: Any, children: list[Any]) -> tuple[s.Expr, s.Expr]:
        return (children[0], children[1])

    def param(self, meta: Any, children: list[Any]) -> s.Param:
        name, default, bounds = children
        low, high = bounds if bounds is not None else (None, None)
        return s.Param(
            name=self._ident(name),
            default=default,
            low=low,
            high=high,
            span=self._span(meta),
        )

    def param_list(self, meta: Any, children: list[Any]) -> tuple[s.Param, ...]:
        return tuple(children)

    def block_def(self, meta: Any, children: list[Any]) -> s.BlockDef:
        name, params, body = children
        return s.BlockDef(
            name=self._ident(name), params=params or (), body=body, span=self._span(meta)
        )

    def network_def(self, meta: Any, children: list[Any]) -> s.NetworkDef:
        name, params, body = children
        return s.NetworkDef(
            name=self._ident(name), params=params or (), body=body, span=self._span(meta)
        )

    def import_decl(self, meta: Any, children: list[Token]) -> s.Import:
        return s.Import(path=str(children[0])[1:-1], span=self._span(meta))

    def spec(self, meta: Any, children: list[Any]) -> s.Spec:
        return s.Spec(items=tuple(children), source=self.source, span=self._span(meta))

    def __default__(self, data: Any, children: list[Any], meta: Any) -> Any:
        return Tree(data, children, meta)


def _fields(node: Any) -> dict[str, Any]:
    return {name: getattr(node, name) for name in node.__dataclass_fields__}
