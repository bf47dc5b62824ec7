"""A local WebEngage stand-in: a real HTTP server on loopback that is strict where WebEngage is silent.

It serves ``/v1/accounts/{license}/users|events|bulk-users|bulk-events``, records every contract
violation, throttles per endpoint and injects faults on demand; ``/_sandbox/*`` exposes what it stored.
"""

from etl.sandbox.config import SandboxConfig
from etl.sandbox.runner import SandboxProcess, SandboxServer, serve
from etl.sandbox.server import create_app
from etl.sandbox.store import SandboxStore
from etl.sandbox.validation import Violation

__all__ = [
    "SandboxConfig",
    "SandboxProcess",
    "SandboxServer",
    "SandboxStore",
    "Violation",
    "create_app",
    "serve",
]
