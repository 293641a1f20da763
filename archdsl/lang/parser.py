"""Text to `syntax.Spec` (a Transformer run inside the LALR parser); Lark errors to `ArchSyntaxError`."""

from __future__ import annotations

import difflib
import functools
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lark import Lark, Token, Transformer, Tree
from lark.exceptions import (
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
)

from archdsl.errors import ArchSyntaxError, ArchValueError
from archdsl.lang import syntax as s
from archdsl.lang.grammar import build_lark, lark_parser, terminal_labels
from archdsl.lang.numbers import MAX_DIM
from archdsl.lang.source import Source, Span, split_lines

BOM = "\ufeff"

try:
    import lark_cython
except ImportError:  # the pure-Python parser reads the same language, about 2x slower
    lark_cython = None

USE_CYTHON = lark_cython is not None
"""Parse with Lark's Cython plugin (`lark-cython`) when it is installed."""
_TOKENS: tuple[type, ...] = (Token,) if lark_cython is None else (Token, lark_cython.Token)
"""Token classes the transformer may meet: lark-cython's are not `str`, so use `.value`."""

GRAMMAR: Path | None = None
"""The grammar to read: None for `grammar/archdsl.lark`, the only one the product uses
(tests set an older one to hold the two to the same trees and diagnostics)."""

MAX_SOURCE_BYTES = 8 * 1024 * 1024
"""Specs are small; a bigger file is refused before parsing."""


def parse(text: str, filename: str = "<string>") -> s.Spec:
    """Parse the text of a `.arch` file.

    Raises:
        ArchSyntaxError: the text does not follow the grammar.
    """
    if text.startswith(BOM):
        text = text[1:]  # a UTF-8 byte order mark, as some editors write: not part of line 1
    source = Source(filename, text)
    if len(text) > MAX_SOURCE_BYTES:
        raise ArchSyntaxError(
            f"the file is {len(text):,} characters; specs are limited to {MAX_SOURCE_BYTES:,}",
            Span.point(source, 1, 1),
        )
    if text.count("{") > MAX_NESTING and _nests_too_deep(text):
        too_deep = _scan_braces(source)[1]
        if too_deep is not None:
            raise ArchSyntaxError(
                f"braces nest deeper than {MAX_NESTING} levels",
                too_deep,
                help="split the network into blocks",
            )
    with _LOCK:
        _TRANSFORMER.source = source
        _TRANSFORMER.depths = {}
        try:
            items = _parse_items(text)
        except UnexpectedInput as error:
            raise _translate(error, source) from None
    lines = split_lines(text) or [""]
    span = Span(source, 1, 1, len(lines), len(lines[-1]) + 1)
    return s.Spec(items=items, source=source, span=span)


def _parse_items(text: str) -> Any:
    """Run the parser (and the transformer inside it); Lark's exceptions pass through."""
    if USE_CYTHON:
        try:
            return _syntax_parser(True, GRAMMAR).parse(text)
        except UnexpectedInput:
            # lark-cython's errors lack what the diagnostics read (the tokens the
            # parser would accept): the pure parser meets the same error and has it.
            _TRANSFORMER.depths = {}
    return _syntax_parser(False, GRAMMAR).parse(text)


def _describe_token(token: Token) -> str:
    if token.type == "_NL":
        return "end of line"
    text = str(token.value)
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
    labels = terminal_labels(GRAMMAR)
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
        misspelt = _misspelt_construct(error, source)
        if misspelt is not None:
            return misspelt
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
        help_ = _hint(token, set(error.accepts or error.expected), source)
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


_CONSTRUCTS = (
    "residual",
    "repeat",
    "branch",
    "aux",
    "frozen",
    "network",
    "block",
    "import",
    "use",
)


def _hint(token: Token, expected: set[str], source: Source) -> str | None:
    if token.type == "LBRACE":
        # `residul {`: the misspelt keyword was read as a layer name.
        before = source.line(token.line or 1)[: (token.column or 1) - 1].split()
        if before:
            word = before[-1].rstrip("(")
            close = difflib.get_close_matches(word, _CONSTRUCTS, n=1, cutoff=0.6)
            if close and close[0] != word:
                return f"did you mean `{close[0]}`?"
    if token.type == "NAME" and "_NL" in expected:
        return "one statement per line; chain steps on one line with `->`"
    if token.type == "RBRACE" and "LBRACE" not in expected:
        return "a `}` closes a `{` that is not open here"
    return None


def _misspelt_construct(error: UnexpectedToken, source: Source) -> ArchSyntaxError | None:
    """`residul { relu }`: a misspelt construct reads as a merge named `residul` that lacks
    its first `branch`. Report the `{` after the name, with the construct it resembles,
    as if the name were a layer; a real merge missing its `branch` keeps the plain error.
    """
    if "BRANCH" not in set(error.accepts or error.expected):
        return None
    interactive = lark_parser(GRAMMAR).parse_interactive(source.text)
    seen: list[Token] = []
    accepts: set[str] = set()
    try:
        for token in interactive.iter_parse():
            if token.start_pos == error.token.start_pos:
                break
            if token.type == "LBRACE" and seen and seen[-1].type == "NAME":
                accepts = set(interactive.accepts())
            if token.type != "_NL":
                seen.append(token)
    except UnexpectedInput:  # the contextual lexer refuses the offending token itself
        pass
    if len(seen) < 2 or seen[-1].type != "LBRACE" or seen[-2].type != "NAME":
        return None
    word, brace = str(seen[-2]), seen[-1]
    close = difflib.get_close_matches(word, _CONSTRUCTS, n=1, cutoff=0.6)
    if not close or close[0] == word:
        return None
    expected = _expected(accepts - {"LBRACE"})
    return ArchSyntaxError(
        "unexpected `{`" + (f"; expected {expected}" if expected else ""),
        Span.from_token(source, brace),
        help=f"did you mean `{close[0]}`?",
    )


def _unclosed_brace(source: Source) -> Span | None:
    """The innermost `{` left open, ignoring comments and strings."""
    return _scan_braces(source)[0]


_BRACE_SCAN = re.compile(r'"[^"\n]*"?|#[^\n]*|[{}]')
"""What `_scan_braces` reads: a string (to its closing quote or the line's end), a
comment, or a brace."""


def _nests_too_deep(text: str) -> bool:
    """Whether `_scan_braces` would find a `{` nested deeper than `MAX_NESTING`.

    The same reading with the regex engine stepping over everything but strings,
    comments and braces: a long spec is checked without a Python step per character.
    """
    depth = 0
    for match in _BRACE_SCAN.finditer(text):
        brace = match.group()
        if brace == "{":
            depth += 1
            if depth > MAX_NESTING:
                return True
        elif brace == "}" and depth:
            depth -= 1
    return False


def _scan_braces(source: Source) -> tuple[Span | None, Span | None]:
    """(the innermost unclosed `{`, the first `{` nested deeper than `MAX_NESTING`)."""
    too_deep: Span | None = None
    stack: list[tuple[int, int]] = []
    for number, line in enumerate(split_lines(source.text), start=1):
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
                if len(stack) > MAX_NESTING and too_deep is None:
                    too_deep = Span.point(source, number, column)
            elif char == "}" and stack:
                stack.pop()
    return (Span.point(source, *stack[-1]) if stack else None), too_deep


def _end_span(source: Source) -> Span:
    lines = split_lines(source.text) or [""]
    return Span.point(source, len(lines), len(lines[-1].expandtabs(4)) + 1)


_MAX_LITERAL = 40
"""Digits in a literal; Python refuses `int()` past 4300, and nothing needs more than 10."""
MAX_NESTING = 64
"""Braces nested deeper than this are refused before parsing (lowering recurses per level)."""

_VALUE_TOKENS = frozenset({"NAME", "CALL_OPEN", "INT", "FLOAT", "SIZE", "STRING"})
_STEPS = (s.Call, s.Residual, s.Merge, s.Repeat, s.Group)
_STATEMENTS = (s.Chain, s.Aux, s.Use)


class _Inlined:
    """The children of an inlined helper rule, on their way into the parent's."""

    __slots__ = ("children",)

    def __init__(self, children: list[Any]) -> None:
        self.children = children


class _Seq(tuple):
    """Statements or branches with the span of their braces."""

    span: Span


@dataclass(frozen=True)
class _Marker:
    """A clause that its parent rule unpacks: `from X`, `: shape`, `in a..b`, `upto X`."""

    kind: str
    value: Any
    span: Span


def _start(children: list[Any]) -> tuple[int, int] | None:
    for child in children:
        if isinstance(child, _TOKENS):
            return child.line, child.column  # type: ignore[return-value]
        span = getattr(child, "span", None)
        if span is not None:
            return span.line, span.column
    return None


def _end(children: list[Any]) -> tuple[int, int] | None:
    for child in reversed(children):
        if isinstance(child, _TOKENS):
            return child.end_line, child.end_column  # type: ignore[return-value]
        span = getattr(child, "span", None)
        if span is not None:
            return span.end_line, span.end_column
    return None


class _InlineSyntax(Transformer):
    """Builds `syntax` nodes while the LALR parser reduces: no parse tree is built.

    The parser keeps every token (`keep_all_tokens`), so a rule's span runs from
    its first token (`residual`, `{`) to its last; callbacks pick their children
    by type. `source` is set by `parse` for each text (under `_LOCK`).
    """

    source: Source
    depths: dict[int, int]
    """Operator depth of the expressions built so far in this parse, by `id`."""

    def _span(self, children: list[Any]) -> Span:
        """From the first child's start to the last child's end.

        A token and a `Span` both carry `line`, `column`, `end_line` and `end_column`,
        so the first and last child serve directly when they are either (nearly
        always); placeholders (`None`) and bare tuples send it to the slower scan.
        """
        first, last = children[0], children[-1]
        if not isinstance(first, _TOKENS):
            first = getattr(first, "span", None)
        if not isinstance(last, _TOKENS):
            last = getattr(last, "span", None)
        if first is None or last is None:
            start = _start(children) or (1, 1)
            end = _end(children) or (start[0], start[1] + 1)
            return Span(self.source, start[0], start[1], end[0], end[1])
        return Span(self.source, first.line, first.column, last.end_line, last.end_column)

    def _token_span(self, token: Token) -> Span:
        return Span(self.source, token.line, token.column, token.end_line, token.end_column)  # type: ignore[arg-type]

    def _ident(self, token: Token) -> s.Ident:
        text = token.value
        end_column = token.end_column
        if text.endswith("("):
            text = text[:-1]
            end_column = (end_column or 2) - 1
        span = Span(self.source, token.line, token.column, token.end_line, end_column)  # type: ignore[arg-type]
        return s.Ident(text=text, span=span)

    def _names(self, children: list[Any]) -> list[Token]:
        return [c for c in children if isinstance(c, _TOKENS) and c.type in _VALUE_TOKENS]

    def _nodes(self, children: list[Any], kind: type | tuple[type, ...]) -> list[Any]:
        return [c for c in children if isinstance(c, kind)]

    def _marker(self, children: list[Any], kind: str) -> Any:
        for child in children:
            if isinstance(child, _Marker) and child.kind == kind:
                return child.value
        return None

    # expressions
    def _too_long(self, children: list[Token]) -> None:
        if len(children[0].value) > _MAX_LITERAL:
            raise ArchValueError(
                f"a number of {len(children[0].value)} digits is too large: sizes and counts are "
                f"limited to {MAX_DIM:,}",
                self._span(children),
            )

    def int_(self, children: list[Token]) -> s.Int:
        token = children[0]
        if len(token.value) > _MAX_LITERAL:
            self._too_long(children)
        return s.Int(value=int(token.value), span=self._token_span(token))

    def float_(self, children: list[Token]) -> s.Float:
        self._too_long(children)
        return s.Float(value=float(children[0].value), span=self._token_span(children[0]))

    def size(self, children: list[Token]) -> s.Size:
        if len(children[0].value) > _MAX_LITERAL and any(
            len(part) > _MAX_LITERAL for part in children[0].value.split("x")
        ):
            raise ArchValueError(
                f"a size with a part of more than {_MAX_LITERAL} digits is too large: sizes are "
                f"limited to {MAX_DIM:,}",
                self._span(children),
            )
        value = tuple(map(int, children[0].value.split("x")))
        return s.Size(value=value, span=self._token_span(children[0]))

    def string(self, children: list[Token]) -> s.Str:
        return s.Str(value=children[0].value[1:-1], span=self._token_span(children[0]))

    def name(self, children: list[Token]) -> s.Name:
        return s.Name(id=children[0].value, span=self._token_span(children[0]))

    def atom(self, children: list[Any]) -> s.Expr:
        return children[1]  # "(" expr ")"

    def _nest(self, node: s.Expr, *operands: s.Expr) -> s.Expr:
        """Record the operator depth of `node`; refuse expressions deeper than `MAX_NESTING`."""
        depth = 1 + max(self.depths.get(id(o), 0) for o in operands)
        if depth > MAX_NESTING:
            raise ArchSyntaxError(
                f"the expression nests more than {MAX_NESTING} operators deep",
                node.span,
                help="give a value a name with a block or network parameter",
            )
        self.depths[id(node)] = depth
        return node

    def _binop(self, children: list[Any]) -> s.Expr:
        left, op, right = children
        node = s.BinOp(op=op.value, left=left, right=right, span=self._span(children))
        return self._nest(node, left, right)

    plus = minus = times = divide = floordiv = modulo = _binop

    def neg(self, children: list[Any]) -> s.Expr:
        node = s.Neg(operand=children[-1], span=self._span(children))
        return self._nest(node, children[-1])

    def input_dim(self, children: list[Any]) -> s.InputDim:
        return s.InputDim(dim=self._ident(children[-1]), span=self._span(children))

    def func(self, children: list[Any]) -> s.Expr:
        name = self._ident(children[0])
        args = tuple(c for c in children[1:] if c is not None and not isinstance(c, _TOKENS))
        node = s.Func(name=name, args=args, span=self._span(children))
        return self._nest(node, *args) if args else node

    def dims(self, children: list[Any]) -> s.Dims:
        parts = tuple(c for c in children if not isinstance(c, _TOKENS))
        return s.Dims(parts=parts, span=self._span(children))

    def kwarg(self, children: list[Any]) -> s.Kwarg:
        return s.Kwarg(name=self._ident(children[0]), value=children[-1], span=self._span(children))

    kwarg_item = kwarg

    def dotted(self, children: list[Token]) -> s.Ident:
        parts = self._names(children)
        return s.Ident(text=".".join(c.value for c in parts), span=self._span(children))

    # steps
    def _args(self, children: list[Any]) -> tuple[tuple[s.Expr, ...], tuple[s.Kwarg, ...]]:
        """The expressions and keyword arguments after the head (punctuation skipped)."""
        args: list[s.Expr] = []
        kwargs: list[s.Kwarg] = []
        for child in children[1:]:
            if child is None or isinstance(child, _TOKENS):
                continue
            (kwargs if isinstance(child, s.Kwarg) else args).append(child)
        return tuple(args), tuple(kwargs)

    def call(self, children: list[Any]) -> s.Call:
        args, kwargs = self._args(children)
        return s.Call(
            op=self._ident(children[0]), args=args, kwargs=kwargs, span=self._span(children)
        )

    def body(self, children: list[Any]) -> _Seq:
        seq = _Seq(c for c in children if isinstance(c, _STATEMENTS))
        seq.span = self._span(children)
        return seq

    def branches(self, children: list[Any]) -> _Seq:
        seq = _Seq(c for c in children if isinstance(c, s.Branch))
        seq.span = self._span(children)
        return seq

    def residual(self, children: list[Any]) -> s.Residual:
        return s.Residual(
            kwargs=tuple(self._nodes(children, s.Kwarg)),
            body=tuple(children[-1]),
            span=self._span(children),
        )

    def branch(self, children: list[Any]) -> s.Branch:
        names = self._names(children)
        alias = self._ident(names[0]) if names else None
        return s.Branch(body=tuple(children[-1]), alias=alias, span=self._span(children))

    def merge(self, children: list[Any]) -> s.Merge:
        branches = tuple(c for c in children[-1] if isinstance(c, s.Branch))
        return s.Merge(kind=str(children[0]), branches=branches, span=self._span(children))

    def repeat(self, children: list[Any]) -> s.Repeat:
        alias = children[-2] if isinstance(children[-2], _TOKENS) else None
        return s.Repeat(
            count=children[1],
            body=tuple(children[-1]),
            alias=self._ident(alias) if alias is not None else None,
            span=self._span(children),
        )

    def group(self, children: list[Any]) -> s.Group:
        return s.Group(body=tuple(children[0]), span=self._span(children))

    def step(self, children: list[Any]) -> s.Step:
        inner = children[0]
        alias = children[-1]
        if not isinstance(alias, _TOKENS) or alias.type != "NAME":
            return inner
        return type(inner)(
            **{**_fields(inner), "alias": self._ident(alias), "span": self._span(children)}
        )

    # statements
    def from_(self, children: list[Any]) -> _Marker:
        return _Marker("from", children[-1], self._span(children))

    def check(self, children: list[Any]) -> _Marker:
        return _Marker("check", children[-1], self._span(children))

    def chain(self, children: list[Any]) -> s.Chain:
        steps = []
        source = check = None
        for child in children:
            if isinstance(child, _STEPS):
                steps.append(child)
            elif isinstance(child, _Marker):
                if child.kind == "from":
                    source = child.value
                elif child.kind == "check":
                    check = child.value
        return s.Chain(source=source, steps=tuple(steps), check=check, span=self._span(children))

    def frozen_stmt(self, children: list[Any]) -> s.Chain:
        chain: s.Chain = children[-1]
        return s.Chain(
            source=chain.source,
            steps=chain.steps,
            check=chain.check,
            frozen=True,
            span=self._span(children),
        )

    def aux_stmt(self, children: list[Any]) -> s.Aux:
        return s.Aux(
            name=self._ident(children[1]),
            kwargs=tuple(self._nodes(children, s.Kwarg)),
            body=tuple(children[-1]),
            span=self._span(children),
        )

    def upto(self, children: list[Any]) -> _Marker:
        return _Marker("upto", children[-1], self._span(children))

    def use_frozen(self, children: list[Any]) -> _Marker:
        return _Marker("frozen", self._marker(children, "upto"), self._span(children))

    def use_stmt(self, children: list[Any]) -> s.Use:
        args, kwargs = self._args([c for c in children if not isinstance(c, _Marker)][1:])
        frozen = next((c for c in children if isinstance(c, _Marker) and c.kind == "frozen"), None)
        return s.Use(
            network=self._ident(children[1]),
            args=args,
            kwargs=kwargs,
            upto=self._marker(children, "upto"),
            frozen=frozen is not None,
            frozen_upto=frozen.value if frozen is not None else None,
            span=self._span(children),
        )

    # definitions
    def range_(self, children: list[Any]) -> _Marker:
        low, high = [c for c in children if not isinstance(c, _TOKENS)]
        return _Marker("range", (low, high), self._span(children))

    def param(self, children: list[Any]) -> s.Param:
        bounds = self._marker(children, "range")
        default = next(
            (c for c in children[1:] if c is not None and not isinstance(c, (*_TOKENS, _Marker))),
            None,
        )
        low, high = bounds if bounds is not None else (None, None)
        return s.Param(
            name=self._ident(children[0]),
            default=default,
            low=low,
            high=high,
            span=self._span(children),
        )

    def param_list(self, children: list[Any]) -> tuple[s.Param, ...]:
        return tuple(self._nodes(children, s.Param))

    def _definition(self, cls: type, children: list[Any]) -> Any:
        params = next((c for c in children if isinstance(c, tuple) and not isinstance(c, _Seq)), ())
        return cls(
            name=self._ident(children[1]),
            params=params,
            body=tuple(children[-1]),
            span=self._span(children),
        )

    def block_def(self, children: list[Any]) -> s.BlockDef:
        return self._definition(s.BlockDef, children)

    def network_def(self, children: list[Any]) -> s.NetworkDef:
        return self._definition(s.NetworkDef, children)

    def import_decl(self, children: list[Token]) -> s.Import:
        return s.Import(path=children[-1].value[1:-1], span=self._span(children))

    def spec(self, children: list[Any]) -> tuple[Any, ...]:
        return tuple(self._nodes(children, s.Import | s.BlockDef | s.NetworkDef))

    def __default__(self, data: Any, children: list[Any], meta: Any) -> Any:
        if data.startswith("_"):
            # A helper rule Lark inlines into its parent (`arg*`, `_stmt`): the parent
            # reads only `.children`, so skip building a `Tree` (a third of parse time).
            return _Inlined(children)
        return Tree(data, children, meta)


_TRANSFORMER = _InlineSyntax()
_LOCK = threading.Lock()


@functools.cache
def _syntax_parser(cython: bool, grammar: Path | None = None) -> Lark:
    """The LALR parser that builds `syntax` nodes directly (built once per process)."""
    plugins = {"_plugins": lark_cython.plugins} if cython and lark_cython is not None else {}
    return build_lark("syntax", grammar, keep_all_tokens=True, transformer=_TRANSFORMER, **plugins)


def _fields(node: Any) -> dict[str, Any]:
    return {name: getattr(node, name) for name in node.__dataclass_fields__}
