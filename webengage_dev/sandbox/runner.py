"""Ways to run the sandbox: blocking (:func:`serve`), in a thread, or in a subprocess."""

from __future__ import annotations

import json
import socket
from typing import Any

from etl.serving import ServerProcess, ThreadedServer, bind_socket, run_foreground, uvicorn_config
from webengage_dev.sandbox.config import SandboxConfig
from webengage_dev.sandbox.server import SandboxState, create_app
from webengage_dev.sandbox.store import SandboxStore

__all__ = ["SandboxProcess", "SandboxServer", "bind_socket", "serve"]

# In-flight requests may be sleeping through a simulated timeout; do not wait for them on shutdown.
GRACEFUL_SHUTDOWN_S = 1.0


def serve(
    config: SandboxConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 8765,
    *,
    sock: socket.socket | None = None,
) -> None:
    """Run the sandbox in the foreground until SIGINT/SIGTERM (uvicorn handles both and drains)."""
    app = create_app(config or SandboxConfig())
    run_foreground(
        uvicorn_config(app, host=host, port=port, quiet=False, lifespan="off", graceful_s=GRACEFUL_SHUTDOWN_S), sock
    )


class SandboxServer(ThreadedServer):
    """The sandbox on loopback in a background thread, for tests: ``with SandboxServer() as sb: sb.url``."""

    name = "sandbox-server"
    graceful_s = GRACEFUL_SHUTDOWN_S

    def __init__(self, config: SandboxConfig | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.store = SandboxStore()
        super().__init__(create_app(config or SandboxConfig(), self.store), host=host, port=port)

    @property
    def state(self) -> SandboxState:
        state: SandboxState = self.app.state.sandbox
        return state

    @property
    def config(self) -> SandboxConfig:
        return self.state.config

    def stats(self) -> dict[str, Any]:
        return self.store.stats()

    def update_config(self, **changes: Any) -> SandboxConfig:
        """Change limits, faults or latency while running (same as ``POST /_sandbox/config``)."""
        return self.state.update(changes)

    def reset(self) -> None:
        self.store.reset()
        self.state.limiter.reset()


class SandboxProcess(ServerProcess):
    """The sandbox in a subprocess, so a benchmark's client does not share the GIL with the server."""

    name = "sandbox"
    module = "webengage_dev.sandbox"
    health_path = "/_sandbox/health"
    stats_path = "/_sandbox/stats"
    graceful_s = GRACEFUL_SHUTDOWN_S

    def __init__(self, config: SandboxConfig | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config or SandboxConfig()
        super().__init__(host=host, port=port, args=["--config-json", json.dumps(self.config.to_dict())])
