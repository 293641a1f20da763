"""The quick brace-depth check agrees with the precise scan it stands in front of."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from archdsl.lang.parser import MAX_NESTING, _nests_too_deep, _scan_braces
from archdsl.lang.source import Source

PIECES = ["{" * 16, "{", "}", "}" * 8, '"', "#", "\n", "\r\n", "\t", "x", '"{{{{{{{{"', "# {{{{\n"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=40))
def test_the_quick_check_finds_what_the_scan_finds(pieces: list[str]) -> None:
    text = "".join(pieces)
    assert _nests_too_deep(text) == (_scan_braces(Source("x.arch", text))[1] is not None)


def test_braces_in_strings_and_comments_do_not_count() -> None:
    deep = "{" * (MAX_NESTING + 1)
    assert _nests_too_deep(deep)
    assert not _nests_too_deep(f'"{deep}"')
    assert not _nests_too_deep(f"# {deep}\n")
    assert _nests_too_deep(f'"unclosed\n{deep}')  # a string ends at its line's end
    assert not _nests_too_deep("{}" * 1000)
