"""Reading what Airflow recorded (import Airflow lazily: conftest sets its environment first)."""

from __future__ import annotations

from typing import Any


def asset_events(run_id: str, uri: str) -> list[dict[str, Any]]:
    """The asset events Airflow recorded for ``uri`` from DAG run ``run_id`` (their extra)."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        events = session.scalars(
            select(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.uri == uri, AssetEvent.source_run_id == run_id)
        ).all()
        return [dict(e.extra or {}) for e in events]
