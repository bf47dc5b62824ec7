"""Runs that must end failed because WebEngage accepted nothing (or too little) of what they sent."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from etl.errors import DeliveryError


def failed_delivery(run: Callable[..., dict[str, Any]], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Call a sync that must raise DeliveryError (a red run); return the summary it stored."""
    with pytest.raises(DeliveryError) as err:
        run(*args, **kwargs)
    summary = err.value.summary
    assert summary["status"] == "failed" and summary["message"].startswith("DeliveryError"), summary
    return summary
