"""Messages as an Airflow user reads them: a fix that names an environment variable names the connection
field instead (the worker's ``WEBENGAGE_*`` credentials are not used under Airflow)."""

from __future__ import annotations

from typing import Final

_CONN = "the Airflow connection webengage_default"
#: Environment wording -> connection wording (longest first: the combined one before its parts).
_WORDING: Final = (
    ("WEBENGAGE_DATA_CENTER/WEBENGAGE_API_URL", f"the data centre / API URL of {_CONN}"),
    ("WEBENGAGE_API_KEY", f"the password (API key) of {_CONN}"),
    ("WEBENGAGE_LICENSE_CODE", f"the login (license code) of {_CONN}"),
    ("WEBENGAGE_DATA_CENTER", f"the data centre of {_CONN}"),
    ("WEBENGAGE_API_URL", f"the API URL of {_CONN}"),
)


def airflow_wording(message: str) -> str:
    for env, conn in _WORDING:
        message = message.replace(env, conn)
    return message
