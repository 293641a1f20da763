"""The specs that ship with archdsl (the classic lineage and the zoo), found by name.

A wheel carries them as `archdsl/specs/` (pyproject's force-include); a source checkout
or an editable install finds the repository's `specs/`. `archdsl compile resnet50`,
`compile_file("mobilenet_v2")` and `import "resnet_blocks.arch"` in a user's spec all end
up here when no file of that name is where they looked first.
"""

from __future__ import annotations

import functools
from pathlib import Path

_CANDIDATES = (
    Path(__file__).resolve().parents[1] / "specs",  # installed wheel: archdsl/specs
    Path(__file__).resolve().parents[2] / "specs",  # source checkout, editable install
)


@functools.cache
def bundled_dir() -> Path | None:
    """The folder of bundled specs, or None if this installation has none."""
    for candidate in _CANDIDATES:
        if candidate.is_dir() and any(candidate.glob("*.arch")):
            return candidate
    return None


def bundled_specs() -> dict[str, Path]:
    """Every bundled spec by name (its file name without `.arch`), sorted."""
    folder = bundled_dir()
    if folder is None:
        return {}
    return {p.stem: p for p in sorted(folder.glob("*.arch"))}


def find_bundled(name: str) -> Path | None:
    """The bundled spec called `name` (`resnet50` or `resnet50.arch`), if there is one.

    Only a bare file name can name one: `specs/x.arch` or `../x.arch` is a path.
    """
    if not name or Path(name).name != name:
        return None
    stem = name.removesuffix(".arch")
    return bundled_specs().get(stem)
