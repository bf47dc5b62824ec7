"""Ways to run the sandbox: blocking (:func:`serve`), in a thread, or in a subprocess."""

from __future__ import annotations

import importlib.util
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Self

import httpx
import uvicorn

from etl.sandbox.config import SandboxConfig
from etl.sandbox.server import SandboxState, create_app
from etl.sandbox.store import SandboxStore

START_TIMEOUT_S = 15.0
# In-flight requests may be sleeping through a simulated timeout; do not wait for them on shutdown.
GRACEFUL_SHUTDOWN_S = 1


def bind_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening TCP socket; port 0 picks a free port with no window for another process to take it."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _uvicorn_config(app: Any, *, host: str, port: int, quiet_host_logging: bool) -> uvicorn.Config:
    extra: dict[str, Any] = {"log_config": None} if quiet_host_logging else {}
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http="httptools" if importlib.util.find_spec("httptools") else "h11",
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        lifespan="off",
        access_log=False,  # no per-request logs: bodies and ids are personal data
        log_level="warning",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        **extra,
    )


def serve(
    config: SandboxConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 8765,
    *,
    sock: socket.socket | None = None,
) -> None:
    """Run the sandbox in the foreground until SIGINT/SIGTERM (uvicorn handles both and drains)."""
    app = create_app(config or SandboxConfig())
    server = uvicorn.Server(_uvicorn_config(app, host=host, port=port, quiet_host_logging=False))
    if threading.current_thread() is threading.main_thread():
        # After draining, uvicorn re-raises the signal under the previous handlers; these make that a
        # plain return (exit 0) instead of a KeyboardInterrupt traceback or death by signal.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _already_handled)
    server.run(sockets=[sock] if sock is not None else None)


def _already_handled(signum: int, frame: FrameType | None) -> None:
    """Signal handler for after uvicorn's graceful shutdown: nothing left to do."""


class SandboxServer:
    """The sandbox on loopback in a background thread, for tests: ``with SandboxServer() as sb: sb.url``."""

    def __init__(self, config: SandboxConfig | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.store = SandboxStore()
        self.app = create_app(config or SandboxConfig(), self.store)
        self.host = host
        self.port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    @property
    def state(self) -> SandboxState:
        state: SandboxState = self.app.state.sandbox
        return state

    @property
    def config(self) -> SandboxConfig:
        return self.state.config

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        """Start serving; returns once the server accepts connections."""
        if self._thread is not None:
            raise RuntimeError("sandbox already started")
        self._sock = bind_socket(self.host, self.port)
        self.port = self._sock.getsockname()[1]
        server = uvicorn.Server(_uvicorn_config(self.app, host=self.host, port=self.port, quiet_host_logging=True))
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [self._sock]}, name="sandbox-server", daemon=True
        )
        self._server, self._thread = server, thread
        thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("sandbox server did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread; safe to call twice."""
        server, thread = self._server, self._thread
        if server is not None and thread is not None:
            server.should_exit = True
            thread.join(timeout=GRACEFUL_SHUTDOWN_S + 5)
            if thread.is_alive():
                server.force_exit = True
                thread.join(timeout=5)
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = self._sock = None

    def stats(self) -> dict[str, Any]:
        return self.store.stats()

    def update_config(self, **changes: Any) -> SandboxConfig:
        """Change limits, faults or latency while running (same as ``POST /_sandbox/config``)."""
        return self.state.update(changes)

    def reset(self) -> None:
        self.store.reset()
        self.state.limiter.reset()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class SandboxProcess:
    """The sandbox in a subprocess, so a benchmark's client does not share the GIL with the server."""

    def __init__(self, config: SandboxConfig | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config or SandboxConfig()
        self.host = host
        self.port = port
        self.returncode: int | None = None  # exit code once stopped; 0 after a clean shutdown
        self._proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> Self:
        """Spawn ``python -m etl.sandbox`` and return once it answers its health check."""
        if self._proc is not None:
            raise RuntimeError("sandbox already started")
        cmd = [
            sys.executable,
            "-m",
            "etl.sandbox",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--config-json",
            json.dumps(self.config.to_dict()),
        ]
        env = dict(os.environ)
        # Importable even when the project is not installed in the interpreter's environment.
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)  # noqa: S603
        try:
            if self.port == 0:
                self.port = int(self._read_line(START_TIMEOUT_S))
            self._wait_healthy(time.monotonic() + START_TIMEOUT_S)
        except BaseException:
            self.stop()
            raise
        return self

    def _read_line(self, timeout_s: float) -> str:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            if not selector.select(timeout_s):
                raise RuntimeError("sandbox process did not report its port")
        line = proc.stdout.readline().strip()
        if not line.isdigit():
            raise RuntimeError(f"sandbox process exited early (code {proc.poll()})")
        return line

    def _wait_healthy(self, deadline: float) -> None:
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"sandbox process exited with code {self._proc.returncode}")
            try:
                if httpx.get(f"{self.url}/_sandbox/health", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("sandbox process did not become healthy")
            time.sleep(0.02)

    def stats(self) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/_sandbox/stats", timeout=10.0)
        response.raise_for_status()
        stats: dict[str, Any] = response.json()
        return stats

    def stop(self) -> None:
        """SIGTERM (uvicorn shuts down cleanly), then SIGKILL if it lingers; safe to call twice."""
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
        self.returncode = proc.returncode
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
