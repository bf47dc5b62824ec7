"""A local WebEngage stand-in: a real HTTP server on loopback that is strict where WebEngage is silent.

It serves ``/v1/accounts/{license}/users|events|bulk-users|bulk-events``, records every contract
violation, throttles per endpoint and injects faults on demand; ``/_sandbox/*`` exposes what it stored.
"""

from webengage_dev.sandbox.config import SandboxConfig
from webengage_dev.sandbox.runner import SandboxProcess, SandboxServer, serve
from webengage_dev.sandbox.server import create_app
from webengage_dev.sandbox.store import SandboxStore
from webengage_dev.sandbox.validation import Violation

__all__ = [
    "SandboxConfig",
    "SandboxProcess",
    "SandboxServer",
    "SandboxStore",
    "Violation",
    "create_app",
    "serve",
]
