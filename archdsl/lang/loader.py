"""Read `.arch` files and their imports into one table of blocks and networks."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from archdsl.errors import (
    ArchError,
    ArchImportError,
    ArchNameError,
    ArchSyntaxError,
    raise_all,
)
from archdsl.lang import syntax as s
from archdsl.lang.parser import MAX_SOURCE_BYTES, parse
from archdsl.lang.source import Source, Span

Definition = s.BlockDef | s.NetworkDef

SPEC_SUFFIX = ".arch"


@dataclass
class Program:
    """Every block and network visible from the main file, by name."""

    main: s.Spec
    definitions: dict[str, Definition] = field(default_factory=dict)

    @property
    def networks(self) -> list[s.NetworkDef]:
        """The main file's own networks, in order."""
        return [i for i in self.main.items if isinstance(i, s.NetworkDef)]


def read_source(path: Path, *, at: Span | None = None) -> str:
    """A file's text, with a positioned error for bytes that are not UTF-8."""
    try:
        if path.exists() and not path.is_file():
            kind = "a directory" if path.is_dir() else "not a regular file"
            raise ArchImportError(f"{path} is {kind}, not a .arch file", at)
        with path.open("rb") as stream:
            data = stream.read(MAX_SOURCE_BYTES + 1)
        if len(data) > MAX_SOURCE_BYTES:
            raise ArchImportError(
                f"{path} is larger than {MAX_SOURCE_BYTES:,} bytes; specs are small", at
            )
    except FileNotFoundError:
        raise ArchImportError(f"no such file: {path}", at) from None
    except IsADirectoryError:
        raise ArchImportError(f"{path} is a directory, not a .arch file", at) from None
    except OSError as error:
        raise ArchImportError(f"cannot read {path}: {error.strerror}", at) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        before = data[: error.start].decode("utf-8", errors="replace")
        line = before.count("\n") + 1
        column = len(before) - (before.rfind("\n") + 1) + 1
        source = Source(str(path), data.decode("utf-8", errors="replace"))
        raise ArchSyntaxError(
            f"byte 0x{data[error.start]:02x} is not UTF-8 text",
            Span.point(source, line, column),
            help="save the file as UTF-8",
        ) from None


def import_roots(
    spec: str | Path | None = None, import_path: Sequence[str | Path] = ()
) -> tuple[Path, ...]:
    """The folders imports may reach: the spec's own folder, then each `--import-path`.

    An import resolves (symlinks included) inside one of these or is refused, so a spec
    cannot make the compiler read, or quote in a diagnostic, a file outside its project.
    `spec` None means spec text with no file: the current folder is its folder.

    Raises:
        ArchImportError: an `--import-path` that is not a folder.
    """
    roots = [Path(os.path.realpath(Path(spec).parent if spec is not None else Path.cwd()))]
    for folder in import_path:
        real = Path(os.path.realpath(folder))
        if not real.is_dir():
            raise ArchImportError(f"--import-path {folder}: no such folder")
        roots.append(real)
    return tuple(dict.fromkeys(roots))


def load_file(path: str | Path, *, import_path: Sequence[str | Path] = ()) -> Program:
    """Parse `path` and every file it imports.

    Imports resolve inside the file's folder or a folder of `import_path` (`import_roots`).

    Raises:
        ArchError: syntax errors, missing, cyclic or confined imports, duplicate definitions.
    """
    path = Path(path)
    text = read_source(path)
    return _load(text, str(path), path.parent, import_roots(path, import_path))


def load_text(
    text: str,
    filename: str = "<string>",
    *,
    base: Path | None = None,
    import_path: Sequence[str | Path] = (),
) -> Program:
    """Parse spec text; imports resolve from `base` (default: the current folder).

    `base` is also the root folder that imports must stay inside, with `import_path`.
    """
    base = base or Path.cwd()
    return _load(text, filename, base, import_roots(base / "_", import_path))


def _load(text: str, filename: str, base: Path, roots: tuple[Path, ...]) -> Program:
    spec = parse(text, filename)
    walk = _Walk(Program(spec), roots)
    origin = Path(os.path.realpath(filename)) if Path(filename).is_file() else None
    walk.collect(spec, base, [origin] if origin else [])
    raise_all(walk.errors)
    return walk.program


@dataclass
class _Walk:
    """One load: the program being filled, errors so far, where imports may resolve."""

    program: Program
    roots: tuple[Path, ...]
    errors: list[ArchError] = field(default_factory=list)
    seen: set[Path] = field(default_factory=set)

    def collect(self, spec: s.Spec, base: Path, stack: list[Path]) -> None:
        for item in spec.items:
            if isinstance(item, s.Import):
                try:
                    self.follow(item, base, stack)
                except ArchError as error:
                    self.errors.append(error)
        for item in spec.items:
            if isinstance(item, s.BlockDef | s.NetworkDef):
                _define(item, self.program, self.errors)

    def follow(self, item: s.Import, base: Path, stack: list[Path]) -> None:
        shown, target = resolve_import(item, base, self.roots)
        if target in stack:
            cycle = " -> ".join(p.name for p in [*stack[stack.index(target) :], target])
            raise ArchImportError(
                f"import cycle: {cycle}",
                item.span,
                help="move the shared blocks into a file that both import",
            )
        if target in self.seen:
            return
        self.seen.add(target)
        try:
            text = read_source(target, at=item.span)
        except ArchImportError as error:
            if error.span is item.span:
                error.message = f"cannot import `{item.path}`: {error.message}"
            raise
        imported = parse(text, str(shown))
        self.collect(imported, target.parent, [*stack, target])


def resolve_import(item: s.Import, base: Path, roots: Sequence[Path]) -> tuple[Path, Path]:
    """(the path to show, the real file) that `import "..."` names.

    Looks in the importing file's folder `base`, then in each root; the first existing
    file wins and must lie, symlinks resolved, inside a root and be a `.arch` file.

    Raises:
        ArchImportError: the import is absolute, a URL, not a `.arch` name, missing, or
            resolves outside every root. The message never quotes the file.
    """
    path = item.path
    if "://" in path:
        raise ArchImportError(
            f"imports are files, not URLs: `{path}`",
            item.span,
            help="download the file and import it by a relative path",
        )
    if "\0" in path:
        raise ArchImportError("an import path cannot contain a NUL character", item.span)
    if Path(path).is_absolute():
        raise ArchImportError(
            f"imports are relative to the importing file, not absolute: `{path}`",
            item.span,
            help="copy the file beside the spec, or import it by a relative path",
        )
    if not path.endswith(SPEC_SUFFIX):
        raise ArchImportError(
            f"an import names a `{SPEC_SUFFIX}` file, got `{path}`",
            item.span,
            help=f'write `import "blocks{SPEC_SUFFIX}"`',
        )
    folders = list(dict.fromkeys([base, *roots]))
    for folder in folders:
        shown = folder / path
        try:
            real = Path(os.path.realpath(shown))
            exists = real.exists()
        except (OSError, ValueError) as error:
            raise ArchImportError(f"cannot import `{path}`: {error}", item.span) from None
        if not exists:
            continue
        if not any(real.is_relative_to(root) for root in roots):
            raise ArchImportError(
                f"cannot import `{path}`: it resolves outside the folders imports may read",
                item.span,
                notes=[f"imports may read {_describe_roots(roots)}"],
                help="copy the file into the project, or name its folder with `--import-path`",
            )
        if real.suffix != SPEC_SUFFIX:
            raise ArchImportError(
                f"cannot import `{path}`: it links to a file that is not a `{SPEC_SUFFIX}` file",
                item.span,
            )
        return shown, real
    raise ArchImportError(
        f"cannot import `{path}`: no such file",
        item.span,
        notes=[f"looked in {_describe_roots(folders)}"],
        help="name the folder that holds it with `--import-path DIR`" if len(roots) == 1 else None,
    )


def _describe_roots(folders: Sequence[Path]) -> str:
    """Folders as the user would type them: relative to the current folder when inside it."""
    here = Path.cwd().resolve()
    shown = []
    for folder in folders:
        resolved = Path(os.path.realpath(folder))
        if resolved.is_relative_to(here):
            text = str(resolved.relative_to(here)) or "."
        else:
            text = str(folder)
        shown.append(f"`{text}`")
    return ", ".join(dict.fromkeys(shown))


def _define(item: Definition, program: Program, errors: list[ArchError]) -> None:
    name = item.name.text
    first: dict[str, s.Param] = {}
    for param in item.params:
        earlier = first.setdefault(param.name.text, param)
        if earlier is not param:
            errors.append(
                ArchNameError(
                    f"`{name}` has two parameters named `{param.name.text}`",
                    param.name.span,
                    notes=[f"the first is at {earlier.name.span}"],
                )
            )
    previous = program.definitions.get(name)
    if previous is not None:
        errors.append(
            ArchNameError(
                f"`{name}` is defined twice",
                item.name.span,
                notes=[f"first defined at {previous.name.span}"],
            )
        )
        return
    program.definitions[name] = item
