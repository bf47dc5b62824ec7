"""Optional parts and the extra that installs each: the core install (what goes into an Airflow image) has no
web server stack; the webhook receiver and the sandbox/demo bring theirs."""

from __future__ import annotations

import importlib.util
from typing import Final

from etl.errors import ConfigError

#: extra -> modules it provides.
EXTRAS: Final[dict[str, tuple[str, ...]]] = {
    "webhooks": ("starlette", "uvicorn"),
    "sandbox": ("starlette", "uvicorn"),
}


def require(extra: str, feature: str) -> None:
    """Raise :class:`ConfigError` with the install command when ``extra`` is not installed."""
    missing = [m for m in EXTRAS[extra] if not _installed(m)]
    if missing:
        raise ConfigError(
            feature,
            f"needs the {extra!r} extra ({', '.join(missing)} not installed): pip install 'webengage-sync[{extra}]'",
        )


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a parent package or an import hook refused it
        return False
