"""Built-in sources for warehouses written by Segment or RudderStack: no SQL to write.

Segment flattens traits into snake_case columns (``firstName`` and ``first_name`` both land in
``first_name``; ``address.city`` in ``address_city``; ``company.name`` in ``company_name``). The user
preset maps those usual trait columns to WebEngage system fields and every other non-bookkeeping
column to a custom attribute. Identifiers are quoted by SQLAlchemy, never spliced as text.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from etl.errors import ConfigError
from etl.warehouse.engine import connect_with_retry

#: Trait column -> WebEngage system field (first match wins per field).
SEGMENT_TRAITS: Final[dict[str, str]] = {
    "first_name": "firstName",
    "firstname": "firstName",
    "last_name": "lastName",
    "lastname": "lastName",
    "email": "email",
    "phone": "phone",
    "phone_number": "phone",
    "birthday": "birthDate",
    "birth_date": "birthDate",
    "date_of_birth": "birthDate",
    "gender": "gender",
    "company_name": "company",
    "company": "company",
    "address_city": "city",
    "city": "city",
    "address_country": "country",
    "country": "country",
    "region": "region",
    "state": "region",
    "address_state": "region",
    "address_region": "region",
    "locality": "locality",
    "address_locality": "locality",
    "postal_code": "postalCode",
    "postalcode": "postalCode",
    "zip": "postalCode",
    "zip_code": "postalCode",
    "address_postal_code": "postalCode",
    "address_postalcode": "postalCode",
    "address_zip": "postalCode",
    "email_opt_in": "emailOptIn",
    "sms_opt_in": "smsOptIn",
    "whatsapp_opt_in": "whatsappOptIn",
}
#: Columns Segment/RudderStack write for their own bookkeeping; never user attributes.
SEGMENT_BOOKKEEPING: Final = frozenset(
    {
        "id",
        "user_id",
        "anonymous_id",
        "received_at",
        "uuid_ts",
        "loaded_at",
        "sent_at",
        "timestamp",
        "original_timestamp",
        "context_library_name",
        "context_library_version",
        "context_ip",
        "rn",
        "event",
        "event_text",
        "channel",
        "context_user_agent",
        "context_locale",
    }
)


def segment_users_source(*, schema: str, table: Literal["users", "identifies"]) -> tuple[sa.Select[Any], str, str]:
    """(statement, user id column, updated-at column) for Segment's users table or latest identifies.

    The statement is already ordered by the user id (chunked reads need all rows of an id together):
    it selects ``*``, so a generic wrapper cannot see the key column to order by."""
    if table == "users":
        users = sa.table("users", sa.column("id"), schema=schema)
        return sa.select(sa.literal_column("*")).select_from(users).order_by(users.c.id), "id", "received_at"
    if table != "identifies":
        raise ConfigError("source.segment_table", "expected users or identifies")
    ident = sa.table(
        "identifies", sa.column("user_id"), sa.column("timestamp"), sa.column("received_at"), schema=schema
    )
    ranked = (
        sa.select(
            sa.literal_column("*"),
            sa.func.row_number()
            .over(partition_by=ident.c.user_id, order_by=(ident.c.timestamp.desc(), ident.c.received_at.desc()))
            .label("we_rank"),
        )
        .select_from(ident)
        .where(ident.c.user_id.is_not(None))
        .subquery("latest")
    )
    stmt: sa.Select[Any] = (
        sa.select(sa.literal_column("*"))
        .select_from(ranked)
        .where(sa.column("we_rank") == 1)
        .order_by(sa.column("user_id"))
    )
    return stmt, "user_id", "timestamp"


def source_columns(engine: Engine, stmt: sa.Select[Any]) -> list[str]:
    """Column names of a statement's result, without reading rows."""
    with connect_with_retry(engine) as conn:
        result = conn.execute(stmt.limit(0))
        return list(result.keys())


#: Sources that send traits on the context store them as ``context_traits_<trait>`` columns.
CONTEXT_TRAITS: Final = "context_traits_"


def segment_user_fields(columns: list[str], key: str) -> tuple[dict[str, str], dict[str, str]]:
    """(system field -> column, attribute name -> column) for the columns a Segment table has.

    A trait missing as a top-level column is taken from ``context_traits_<trait>`` when present (sources
    that put traits on the context); the top-level column wins when both exist."""
    system: dict[str, str] = {}
    attributes: dict[str, str] = {}
    lowered = {c.lower(): c for c in columns}
    for prefix in ("", CONTEXT_TRAITS):
        for trait, target in SEGMENT_TRAITS.items():
            if prefix + trait in lowered and target not in system:
                system[target] = lowered[prefix + trait]
    used = set(system.values()) | {key}
    for column in columns:
        low = column.lower()
        name = low.removeprefix(CONTEXT_TRAITS)
        if column in used or name in SEGMENT_BOOKKEEPING or low == "we_rank" or name in attributes:
            continue
        if name in SEGMENT_TRAITS:
            continue  # another spelling of a system field already taken (address_state beside region)
        if low.startswith(CONTEXT_TRAITS) and name in lowered:
            continue  # the top-level column has it
        if low.startswith("context_") and not low.startswith(CONTEXT_TRAITS):
            continue  # library, IP, user agent...: about the call, not the user
        attributes[name] = column
    return system, attributes
