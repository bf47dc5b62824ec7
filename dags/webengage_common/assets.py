"""The Assets the WebEngage DAGs publish, defined once. Schedule your own DAGs on them, e.g.
``schedule=[USERS_ASSET]`` to run after every profile sync.

A task's Asset outlets emit an event whenever the task succeeds, dry runs included (Airflow has no way for a
task to withhold a plain outlet's event); the per-cohort assets go through ``COHORT_ALIAS`` and are only
published by exports that sent."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow.sdk import Asset, AssetAlias

#: Profiles sent by ``webengage_users_sync``.
USERS_ASSET = Asset("webengage://users")
#: GDPR erasure requests of deleted users, sent by ``webengage_users_sync`` (task ``erase_deleted_users``).
ERASURES_ASSET = Asset("webengage://erasures")
#: Warehouse events sent by ``webengage_events_sync``.
EVENTS_ASSET = Asset("webengage://events")
#: Cohort attributes set by ``webengage_cohort_export`` and ``webengage_cohorts_sync``.
COHORTS_ASSET = Asset("webengage://cohorts")
#: Each export that sent also publishes ``webengage://cohorts/<name>`` through this alias.
COHORT_ALIAS = AssetAlias("webengage-cohort")
#: The other direction: WebEngage's webhook deliveries loaded into the warehouse table ``webengage_events``
#: by ``webengage_webhooks_load``.
WEBHOOKS_ASSET = Asset("webengage://webhooks")


def cohort_asset(name: str) -> Asset:
    """The asset of one cohort, published through :data:`COHORT_ALIAS`."""
    return Asset(f"webengage://cohorts/{name}")


def counts_extra(summary: Mapping[str, Any]) -> dict[str, Any]:
    """What an asset event carries in ``extra``: the run's scalar counts and ids (never rows or messages),
    shown in the Airflow UI's asset events and readable by the DAGs scheduled on the asset."""
    return {k: v for k, v in summary.items() if isinstance(v, int | float | str | bool) and k != "message"}
