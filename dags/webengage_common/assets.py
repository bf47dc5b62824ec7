"""The Assets the WebEngage DAGs publish, defined once. Schedule your own DAGs on them, e.g.
``schedule=[USERS_ASSET]`` to run after every profile sync.

The syncs publish through an :class:`AssetAlias` outlet each (``*_ALIAS``), not a plain Asset outlet: a plain
outlet emits an event whenever the task succeeds, dry runs included, and a task cannot withhold it. Through the
alias the task adds the event itself (:func:`webengage_common.results.finish`) after a run that could send,
with the run's counts in ``extra``; a dry run adds none. The webhook loader has no dry run: a plain outlet.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow.sdk import Asset, AssetAlias

#: Profiles sent by ``webengage_users_sync``.
USERS_ASSET = Asset("webengage://users")
USERS_ALIAS = AssetAlias("webengage-users")
#: GDPR erasure requests of deleted users, sent by ``webengage_users_sync`` (task ``erase_deleted_users``).
ERASURES_ASSET = Asset("webengage://erasures")
ERASURES_ALIAS = AssetAlias("webengage-erasures")
#: Warehouse events sent by ``webengage_events_sync``.
EVENTS_ASSET = Asset("webengage://events")
EVENTS_ALIAS = AssetAlias("webengage-events")
#: Cohort attributes set by ``webengage_cohort_export`` and ``webengage_cohorts_sync`` (any cohort); each
#: export also publishes ``webengage://cohorts/<name>``. Both through this alias.
COHORTS_ASSET = Asset("webengage://cohorts")
COHORT_ALIAS = AssetAlias("webengage-cohort")
#: The other direction: WebEngage's webhook deliveries loaded into the warehouse table ``webengage_events``
#: by ``webengage_webhooks_load``.
WEBHOOKS_ASSET = Asset("webengage://webhooks")

#: Free text, not counts: kept out of an event's extra.
_TEXT = frozenset({"message", "notes"})


def cohort_asset(name: str) -> Asset:
    """The asset of one cohort, published through :data:`COHORT_ALIAS`."""
    return Asset(f"webengage://cohorts/{name}")


def counts_extra(summary: Mapping[str, Any]) -> dict[str, Any]:
    """What an asset event carries in ``extra``: the run's scalar counts and ids (never rows or messages),
    shown in the Airflow UI's asset events and readable by the DAGs scheduled on the asset."""
    return {k: v for k, v in summary.items() if isinstance(v, int | float | str | bool) and k not in _TEXT}
