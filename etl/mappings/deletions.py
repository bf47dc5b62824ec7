"""``[deletions]`` of the users mapping: what happens to users deleted in the warehouse, and how a deletion
is detected. Off by default (``ignore``): WebEngage keeps every profile, as before.

    deletions = "erase"            # shorthand: erase users that the source query no longer returns

    [deletions]
    mode = "erase"                 # ignore (default) | erase: one GDPR erasure request per deleted user
    absent = true                  # users synced before that the source query no longer returns
    column = "is_deleted"          # a boolean column of the users query: true = deleted
    table = "deleted_users"        # and/or a table (schema.table) listing deleted users ...
    query = "users/deleted.sql"    # ... or a query file returning them (bound :params only)
    user_id = "user_id"            # ... in this column

Without ``absent``, ``column``, ``table`` or ``query`` a mode of ``erase`` means ``absent = true``; once one
of ``column``/``table``/``query`` is given, ``absent`` is off unless set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

from pydantic import Field, field_validator, model_validator

from etl.mappings.base import FileModel

DeletionMode = Literal["ignore", "erase"]
#: A plain or schema-qualified table name (quoted by the dialect when used, never spliced).
_TABLE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?")


@dataclass(frozen=True, kw_only=True)
class DeletionRules:
    """How deleted users are found (the loaded ``[deletions]`` table)."""

    mode: DeletionMode = "ignore"
    absent: bool = False
    column: str | None = None
    table: str | None = None
    query: str | None = None
    user_id: str = "user_id"

    @property
    def erase(self) -> bool:
        return self.mode == "erase"

    @property
    def sources(self) -> tuple[str, ...]:
        """The detection rules in use, for reports: ``absent``, ``column:is_deleted``, ``table:deleted_users``."""
        found = ["absent"] if self.absent else []
        found += [f"{kind}:{value}" for kind, value in (("column", self.column), ("table", self.table)) if value]
        if self.query:
            found.append(f"query:{self.query}")
        return tuple(found)


class Deletions(FileModel):
    """``[deletions]``: users deleted in the warehouse -> WebEngage erasure requests (opt-in)."""

    mode: DeletionMode = Field(
        default="ignore", description="ignore: WebEngage keeps deleted users; erase: one GDPR erasure request each"
    )
    absent: bool | None = Field(
        default=None,
        description="users synced before that the source query no longer returns are deleted (default: true "
        "unless column, table or query is given)",
    )
    column: str | None = Field(default=None, description="a boolean column of the users query: true = deleted")
    table: str | None = Field(default=None, description="a table (schema.table) listing deleted users")
    query: str | None = Field(default=None, description="a query file (under sql/, or a path) returning deleted users")
    user_id: str = Field(default="user_id", description="the id column of table/query")

    @field_validator("table")
    @classmethod
    def _table_name(cls, value: str | None) -> str | None:
        if value is not None and not _TABLE.fullmatch(value):
            raise ValueError("a table name (letters, digits, _; optionally schema.table)")
        return value

    @model_validator(mode="after")
    def _one_list(self) -> Deletions:
        if self.table and self.query:
            raise ValueError("give table or query, not both")
        return self

    def rules(self) -> DeletionRules:
        listed = bool(self.column or self.table or self.query)
        absent = self.absent if self.absent is not None else not listed
        return DeletionRules(
            mode=self.mode,
            absent=absent,
            column=self.column,
            table=self.table,
            query=self.query,
            user_id=self.user_id,
        )


def rules_of(value: DeletionMode | Deletions) -> DeletionRules:
    """The rules of ``deletions = "erase"`` (shorthand) or of a ``[deletions]`` table."""
    return Deletions(mode=value).rules() if isinstance(value, str) else value.rules()
