"""The analysed parser is cached on disk, and a bad cache file is never used."""

from __future__ import annotations

from pathlib import Path

import pytest

from archdsl.lang import grammar

TEXT = "network N {\n    input 8x8x3\n    conv 4 3x3 same -> relu\n}\n"


def _tree(parser: object) -> str:
    return parser.parse(TEXT).pretty()  # type: ignore[attr-defined]


def test_a_second_build_loads_the_cached_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARCHDSL_CACHE", str(tmp_path))
    fresh = grammar.build_lark("tree", propagate_positions=True)
    cached = tmp_path / "tree.lark-cache"
    assert cached.is_file() and cached.stat().st_size > 1000
    written = cached.stat().st_mtime_ns
    loaded = grammar.build_lark("tree", propagate_positions=True)
    assert cached.stat().st_mtime_ns == written  # read, not rebuilt and rewritten
    assert loaded.source_path == "<deserialized>" and fresh.source_path != "<deserialized>"
    assert _tree(loaded) == _tree(fresh) and "conv" in _tree(loaded)


@pytest.mark.parametrize("garbage", [b"", b"not a hash\n", b"0" * 64 + b"\n\x80\x05junk"])
def test_a_broken_cache_file_is_rebuilt(
    garbage: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARCHDSL_CACHE", str(tmp_path))
    reference = _tree(grammar.build_lark("tree", propagate_positions=True))
    cached = tmp_path / "tree.lark-cache"
    cached.write_bytes(garbage)
    rebuilt = grammar.build_lark("tree", propagate_positions=True)
    assert rebuilt.source_path != "<deserialized>"
    assert _tree(rebuilt) == reference
    assert cached.read_bytes() != garbage  # rewritten for the next run


def test_a_half_written_cache_file_is_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process still writing it: the hash line matches, the pickle ends early."""
    monkeypatch.setenv("ARCHDSL_CACHE", str(tmp_path))
    reference = _tree(grammar.build_lark("tree", propagate_positions=True))
    cached = tmp_path / "tree.lark-cache"
    whole = cached.read_bytes()
    cached.write_bytes(whole[: len(whole) // 2])
    rebuilt = grammar.build_lark("tree", propagate_positions=True)
    assert rebuilt.source_path != "<deserialized>" and _tree(rebuilt) == reference
    again = grammar.build_lark("tree", propagate_positions=True)  # rewritten whole
    assert again.source_path == "<deserialized>" and _tree(again) == reference


def test_an_empty_setting_turns_the_cache_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARCHDSL_CACHE", "")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert grammar.cache_folder() is None
    grammar.build_lark("tree", propagate_positions=True)
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_cache_folder_is_no_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("ARCHDSL_CACHE", str(blocker / "below"))  # under a file: cannot exist
    assert grammar.cache_folder() is None
    assert "conv" in _tree(grammar.build_lark("tree", propagate_positions=True))


def test_the_default_folder_is_the_users_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ARCHDSL_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert grammar.cache_folder() == tmp_path / "archdsl"
    assert (tmp_path / "archdsl").stat().st_mode & 0o077 == 0


def test_no_home_folder_is_no_cache_and_no_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def nowhere() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.delenv("ARCHDSL_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr(Path, "home", staticmethod(nowhere))
    assert grammar.cache_folder() is None
    assert "conv" in _tree(grammar.build_lark("tree", propagate_positions=True))
