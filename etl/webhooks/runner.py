"""Ways to run the receiver: blocking (:func:`serve`, what ``webengage-sync webhooks serve`` runs), in a
thread (:class:`WebhookServer`, tests) or in a subprocess (:class:`WebhookProcess`, kill tests and the
benchmark). One process per landing directory's writer; uvicorn with httptools and uvloop when present."""

from __future__ import annotations

import importlib.util
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Self

import httpx
import uvicorn

from etl.webhooks.app import ReceiverState, create_app
from etl.webhooks.config import WebhookSettings
from etl.webhooks.landing import utcnow

START_TIMEOUT_S = 15.0
#: In-flight requests wait for at most a couple of fsyncs; give them this long to finish on SIGTERM.
GRACEFUL_SHUTDOWN_S = 10


def bind_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening socket; port 0 picks a free one with no window for another process to take it."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _config(app: Any, *, host: str, port: int, quiet: bool) -> uvicorn.Config:
    extra: dict[str, Any] = {"log_config": None} if quiet else {}
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http="httptools" if importlib.util.find_spec("httptools") else "h11",
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        lifespan="on",  # opens and drains the landing log
        access_log=False,  # access lines carry the query string, i.e. the secret
        log_level="warning",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        backlog=2048,
        **extra,
    )


def serve(settings: WebhookSettings, *, host: str = "127.0.0.1", port: int = 8766,
          sock: socket.socket | None = None) -> None:  # fmt: skip
    """Run in the foreground until SIGINT/SIGTERM; uvicorn finishes in-flight requests, then the lifespan
    writes and fsyncs every queued delivery before the process exits."""
    server = uvicorn.Server(_config(create_app(settings), host=host, port=port, quiet=False))
    if threading.current_thread() is threading.main_thread():
        # After draining, uvicorn re-raises the signal under the previous handlers; make that a plain exit 0.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _already_handled)
    server.run(sockets=[sock] if sock is not None else None)


def _already_handled(signum: int, frame: FrameType | None) -> None:
    """Signal handler for after uvicorn's graceful shutdown: nothing left to do."""


class WebhookServer:
    """The receiver on loopback in a background thread: ``with WebhookServer(settings) as s: s.url``."""

    def __init__(self, settings: WebhookSettings, *, host: str = "127.0.0.1", port: int = 0,
                 clock: Callable[[], datetime] = utcnow) -> None:  # fmt: skip
        self.app = create_app(settings, clock=clock)
        self.host = host
        self.port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    @property
    def state(self) -> ReceiverState:
        state: ReceiverState = self.app.state.receiver
        return state

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError("receiver already started")
        self._sock = bind_socket(self.host, self.port)
        self.port = self._sock.getsockname()[1]
        server = uvicorn.Server(_config(self.app, host=self.host, port=self.port, quiet=True))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [self._sock]}, name="webhook-receiver",
                                  daemon=True)  # fmt: skip
        self._server, self._thread = server, thread
        thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("webhook receiver did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        """Graceful stop (drains the landing queue); safe to call twice."""
        server, thread = self._server, self._thread
        if server is not None and thread is not None:
            server.should_exit = True
            thread.join(timeout=GRACEFUL_SHUTDOWN_S + 5)
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = self._sock = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        self.stop()


class WebhookProcess:
    """The receiver in a subprocess (``python -m etl.webhooks``). Settings travel in the environment, never
    on the command line (``ps`` shows arguments to every user)."""

    def __init__(self, env: Mapping[str, str], *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.env = dict(env)
        self.host = host
        self.port = port
        self.returncode: int | None = None
        self._proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> Self:
        """Spawn it and return once ``/healthz`` answers (the landing log is open by then)."""
        if self._proc is not None:
            raise RuntimeError("receiver already started")
        env = {**os.environ, **self.env}
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        cmd = [sys.executable, "-m", "etl.webhooks", "--host", self.host, "--port", str(self.port)]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)  # noqa: S603
        try:
            if self.port == 0:
                self.port = int(self._read_line(START_TIMEOUT_S))
            self._wait_healthy(time.monotonic() + START_TIMEOUT_S)
        except BaseException:
            self.kill()
            raise
        return self

    def _read_line(self, timeout_s: float) -> str:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            if not selector.select(timeout_s):
                raise RuntimeError("receiver process did not report its port")
        line = proc.stdout.readline().strip()
        if not line.isdigit():
            raise RuntimeError(f"receiver process exited early (code {proc.poll()})")
        return line

    def _wait_healthy(self, deadline: float) -> None:
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"receiver process exited with code {self._proc.returncode}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("receiver process did not become healthy")
            time.sleep(0.02)

    def stats(self) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/healthz", timeout=10.0)
        response.raise_for_status()
        stats: dict[str, Any] = response.json()
        return stats

    def stop(self) -> None:
        """SIGTERM (drains), then SIGKILL if it lingers; safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=GRACEFUL_SHUTDOWN_S + 5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._finish(proc)

    def kill(self) -> None:
        """``kill -9``: no draining, no cleanup (what a crash looks like)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        self._finish(proc)

    def _finish(self, proc: subprocess.Popen[str]) -> None:
        self.returncode = proc.returncode
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        self.stop()
