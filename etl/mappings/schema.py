"""JSON Schemas of the three mapping files, generated from their models and committed as
``etl/defaults/mappings/schema/{users,events,cohorts}.schema.json`` (editors validate and complete with them:
a first line ``#:schema ./schema/users.schema.json`` in the TOML file, read by taplo / Even Better TOML).

    python -m etl.mappings.schema            # rewrite the committed schemas
    python -m etl.mappings.schema --check    # exit 1 when one differs from the models
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from etl.mappings.base import FileModel
from etl.mappings.cohorts import CohortsFile
from etl.mappings.events import EventsFile
from etl.mappings.users import UsersFile
from etl.resources import packaged

MODELS: Final[dict[str, type[FileModel]]] = {"users": UsersFile, "events": EventsFile, "cohorts": CohortsFile}
DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"


def schema_dir() -> Path:
    return packaged("mappings/schema")


def schema_of(name: str) -> dict[str, Any]:
    """The JSON Schema of ``mappings/<name>.toml``."""
    return {"$schema": DIALECT, **MODELS[name].model_json_schema(mode="validation")}


def render(name: str) -> str:
    return json.dumps(schema_of(name), indent=2, ensure_ascii=False) + "\n"


def stale(folder: Path | None = None) -> list[Path]:
    """The committed schema files that differ from the models (missing ones included)."""
    folder = folder or schema_dir()
    paths = {name: folder / f"{name}.schema.json" for name in MODELS}
    return [p for name, p in paths.items() if not p.is_file() or p.read_text(encoding="utf-8") != render(name)]


def write(folder: Path | None = None) -> list[Path]:
    """Write every schema; returns the files written."""
    folder = folder or schema_dir()
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in MODELS:
        path = folder / f"{name}.schema.json"
        path.write_text(render(name), encoding="utf-8")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--check"]:
        bad = stale()
        for path in bad:
            print(f"{path} is out of date: run python -m etl.mappings.schema", file=sys.stderr)
        return 1 if bad else 0
    if args:
        print("usage: python -m etl.mappings.schema [--check]", file=sys.stderr)
        return 2
    for path in write():
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
