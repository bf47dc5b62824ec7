"""Where files come from: the defaults shipped inside the package (``etl/defaults``), and the deployment's own
files that override them.

Standard library only: the DAG files import this at parse time. Works the same from a checkout, an editable
install and a wheel (the defaults are package data, found with :mod:`importlib.resources`).
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path
from typing import Final

#: Overrides the folder that relative query names (``users/users.sql``) are looked up in first.
SQL_DIR_ENV: Final = "WEBENGAGE_SQL_DIR"

DEFAULT_USERS_MAPPING: Final = "mappings/users.toml"
DEFAULT_EVENTS_MAPPING: Final = "mappings/events.toml"
DEFAULT_COHORTS_CONFIG: Final = "mappings/cohorts.toml"


def packaged(relative: str) -> Path:
    """A file or folder shipped in ``etl/defaults`` (e.g. ``sql/state``, ``mappings/users.toml``)."""
    root = files("etl.defaults")
    # Installed packages live on disk (wheel or checkout); a zipped install would need as_file(), and is not
    # how Airflow images install packages.
    if not isinstance(root, Path):
        raise RuntimeError(f"etl.defaults is not on a file system ({type(root).__name__}); install unzipped")
    return root / relative


def user_file(given: str | Path, default: str) -> Path:
    """A configuration file: the path the user gave (absolute, or relative to the working directory), a
    default's name given relative to the package (``mappings/users.toml``), or the packaged default itself
    when nothing was given. A path that exists nowhere is returned as given, so the error names it."""
    if not str(given):
        return packaged(default)
    path = Path(given)
    if path.is_absolute() or path.exists():
        return path
    shipped = packaged(str(given))
    return shipped if shipped.exists() else path


def sql_path(name_or_path: str | Path) -> Path:
    """A query file: an existing path as given; else a name relative to ``WEBENGAGE_SQL_DIR`` (when set and
    the file is there); else the packaged default of that name (``users/users.sql``). Returned even when
    missing, so the error names where it was expected."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    override = os.environ.get(SQL_DIR_ENV, "")
    if override and (Path(override) / path).is_file():
        return Path(override) / path
    return packaged("sql") / path


def state_ddl() -> list[Path]:
    """The state tables' DDL, in the order it runs (always the packaged files: never a user's override)."""
    return sorted(packaged("sql/state").glob("*.sql"))
