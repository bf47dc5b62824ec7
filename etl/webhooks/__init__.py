"""WebEngage webhooks back into the warehouse: a receiver that lands every delivery durably before its 200
(:mod:`etl.webhooks.app`, :mod:`etl.webhooks.landing`) and a loader that moves landed deliveries into
``webengage_events`` exactly once (:mod:`etl.webhooks.loader`). ``replay`` lands a JSON-lines file the
same way. Imports stay lazy: the loader (Airflow) never needs the web stack."""

from __future__ import annotations

from etl.webhooks.config import WebhookSettings

__all__ = ["WebhookSettings"]
