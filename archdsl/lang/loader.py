"""Read `.arch` files and their imports into one table of blocks and networks."""

from __future__ import annotations

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
from archdsl.lang.bundled import bundled_dir, bundled_specs, find_bundled
from archdsl.lang.parser import MAX_SOURCE_BYTES, parse
from archdsl.lang.source import Source, Span
from archdsl.lang.values import did_you_mean

Definition = s.BlockDef | s.NetworkDef


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


def load_file(path: str | Path) -> Program:
    """Parse `path` and every file it imports.

    A bare name that is no file here names a bundled spec: `resnet50` or `resnet50.arch`.

    Raises:
        ArchError: syntax errors, missing or cyclic imports, duplicate definitions.
    """
    path = resolve_spec(path)
    text = read_source(path)
    return load_text(text, str(path), base=path.parent)


def resolve_spec(path: str | Path) -> Path:
    """The file to read for `path`: itself if it exists, else the bundled spec it names.

    Raises:
        ArchImportError: neither a file nor a bundled spec, with the closest bundled names.
    """
    given = Path(path)
    if given.exists():
        return given
    bundled = find_bundled(str(path))
    if bundled is not None:
        return bundled
    if given.name == str(path):
        stem = given.name.removesuffix(".arch")
        raise ArchImportError(
            f"no such file: {path}, and no bundled spec `{stem}`",
            help=did_you_mean(stem, bundled_specs()) or "`archdsl zoo` lists the bundled specs",
        )
    return given


def load_text(text: str, filename: str = "<string>", *, base: Path | None = None) -> Program:
    """Parse spec text; imports are resolved relative to `base` (the file's folder)."""
    spec = parse(text, filename)
    program = Program(spec)
    errors: list[ArchError] = []
    origin = Path(filename).resolve() if base is not None else None
    _collect(spec, base or Path.cwd(), program, errors, [origin] if origin else [], set())
    raise_all(errors)
    return program


def _collect(
    spec: s.Spec,
    base: Path,
    program: Program,
    errors: list[ArchError],
    stack: list[Path],
    seen: set[Path],
) -> None:
    for item in spec.items:
        if isinstance(item, s.Import):
            _follow(item, base, program, errors, stack, seen)
    for item in spec.items:
        if isinstance(item, s.BlockDef | s.NetworkDef):
            _define(item, program, errors)


def _follow(
    item: s.Import,
    base: Path,
    program: Program,
    errors: list[ArchError],
    stack: list[Path],
    seen: set[Path],
) -> None:
    if Path(item.path).is_absolute():
        errors.append(
            ArchImportError(
                f"imports are relative to the importing file, not absolute: `{item.path}`",
                item.span,
                help="copy the file beside the spec, or import it by a relative path",
            )
        )
        return
    if "://" in item.path:
        errors.append(
            ArchImportError(
                f"imports are files, not URLs: `{item.path}`",
                item.span,
                help="download the file and import it by a relative path",
            )
        )
        return
    if "\0" in item.path:
        errors.append(ArchImportError("an import path cannot contain a NUL character", item.span))
        return
    try:
        base = _import_base(base, item.path)
        target = (base / item.path).resolve()
    except (OSError, ValueError, RuntimeError) as error:
        errors.append(ArchImportError(f"cannot import `{item.path}`: {error}", item.span))
        return
    if target in stack:
        cycle = " -> ".join(p.name for p in [*stack[stack.index(target) :], target])
        errors.append(
            ArchImportError(
                f"import cycle: {cycle}",
                item.span,
                help="move the shared blocks into a file that both import",
            )
        )
        return
    if target in seen:
        return
    seen.add(target)
    try:
        text = read_source(base / item.path, at=item.span)
        imported = parse(text, str(base / item.path))
    except ArchError as error:
        if isinstance(error, ArchImportError) and error.span is item.span:
            error.message = f"cannot import `{item.path}`: {error.message}"
        errors.append(error)
        return
    _collect(imported, target.parent, program, errors, [*stack, target], seen)


def _import_base(base: Path, path: str) -> Path:
    """Where `import path` resolves: beside the importing file, else the bundled specs.

    The bundled folder is the one place outside the importing file's folder an import
    may reach, and only for a file that is not beside it (a local file wins).
    """
    bundled = bundled_dir()
    if bundled is None or (base / path).exists():
        return base
    if (bundled / path).resolve().parent == bundled.resolve() and (bundled / path).is_file():
        return bundled
    return base


def _define(item: Definition, program: Program, errors: list[ArchError]) -> None:
    name = item.name.text
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
