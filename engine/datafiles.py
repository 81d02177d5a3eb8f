"""JSONL data files (probe sets, eval suites): one pydantic model per line, errors that name the file,
the line and the field, and ids that must be unique within the file."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def read_jsonl(path: Path, model: type[M], error: type[Exception], what: str) -> list[M]:
    """Every non-blank line of `path` as a `model`; `error` (a ValueError subclass) names file:line and field.
    `what` names the records in messages ("probes", "items")."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    records: list[M] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = model.model_validate_json(line)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"]) or "(the line)"
            raise error(f"{path}:{number}: field {field}: {err['msg']}") from None
        key: str = getattr(record, "id", "")
        if key in seen:
            raise error(f"{path}:{number}: field id: {key!r} is already used on line {seen[key]}")
        seen[key] = number
        records.append(record)
    if not records:
        raise error(f"{path}: no {what} in the file")
    return records


def resolve(name: str, directory: Path, error: type[Exception], what: str) -> Path:
    """A built-in file by name (`<directory>/<name>.jsonl`) or a path to a .jsonl file of your own."""
    path = Path(name) if name.endswith(".jsonl") else directory / f"{name}.jsonl"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in directory.glob("*.jsonl")))
        raise error(f"{what} {name!r}: no file {path}; built-in {what}s are {known}")
    return path
