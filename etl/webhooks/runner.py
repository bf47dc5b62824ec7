"""Ways to run the receiver: blocking (:func:`serve`, what ``webengage-sync webhooks serve`` runs), in a
thread (:class:`WebhookServer`, tests) or in a subprocess (:class:`WebhookProcess`, kill tests and the
benchmark). One process per landing directory's writer; uvicorn with httptools and uvloop when present."""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from datetime import datetime

from etl.serving import ServerProcess, ThreadedServer, bind_socket, run_foreground, uvicorn_config
from etl.webhooks.app import ReceiverState, create_app
from etl.webhooks.config import WebhookSettings
from etl.webhooks.landing import utcnow

__all__ = ["WebhookProcess", "WebhookServer", "bind_socket", "serve"]

#: In-flight requests wait for at most a couple of fsyncs; give them this long to finish on SIGTERM.
GRACEFUL_SHUTDOWN_S = 10.0
#: A connection must have sent a complete request head within this many seconds (a slow or stuck client
#: must not hold a socket of the receiver for ever); WebEngage sends its requests in one go.
HEADER_TIMEOUT_S = 10.0


def serve(
    settings: WebhookSettings, *, host: str = "127.0.0.1", port: int = 8766, sock: socket.socket | None = None
) -> None:
    """Run in the foreground until SIGINT/SIGTERM; uvicorn finishes in-flight requests, then the lifespan
    writes and fsyncs every queued delivery before the process exits."""
    config = uvicorn_config(
        create_app(settings),
        host=host,
        port=port,
        quiet=False,
        lifespan="on",
        graceful_s=GRACEFUL_SHUTDOWN_S,
        header_timeout_s=HEADER_TIMEOUT_S,
    )
    run_foreground(config, sock)


class WebhookServer(ThreadedServer):
    """The receiver on loopback in a background thread: ``with WebhookServer(settings) as s: s.url``."""

    name = "webhook-receiver"
    lifespan = "on"  # opens and drains the landing log
    graceful_s = GRACEFUL_SHUTDOWN_S
    header_timeout_s: float | None = HEADER_TIMEOUT_S

    def __init__(
        self,
        settings: WebhookSettings,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        super().__init__(create_app(settings, clock=clock), host=host, port=port)

    @property
    def state(self) -> ReceiverState:
        state: ReceiverState = self.app.state.receiver
        return state


class WebhookProcess(ServerProcess):
    """The receiver in a subprocess (``python -m etl.webhooks``). Settings travel in the environment, never
    on the command line (``ps`` shows arguments to every user)."""

    name = "receiver"
    module = "etl.webhooks"
    health_path = "/healthz"
    stats_path = "/healthz"
    graceful_s = GRACEFUL_SHUTDOWN_S

    def __init__(self, env: Mapping[str, str], *, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host=host, port=port, env=env)
