"""Running our two HTTP servers (the WebEngage sandbox, the webhook receiver) on uvicorn: in the foreground,
in a background thread (tests), or in a subprocess (benchmarks and kill tests: no shared GIL, real kill -9)."""

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
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Literal, Self

import httpx
import uvicorn

START_TIMEOUT_S = 15.0


def bind_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening TCP socket; port 0 picks a free port with no window for another process to take it."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class _HeaderDeadline:
    """Mixed into uvicorn's HTTP protocols: a connection that has not sent a complete request head within
    ``header_timeout_s`` (after connecting, or after its previous response) is closed. uvicorn has no such
    timeout: a client that trickles its headers (slowloris) would hold a socket for ever."""

    header_timeout_s: float = 10.0
    cycle: Any
    loop: Any
    transport: Any

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]

    def _arm(self) -> None:
        self._disarm()
        waiting_for = self.cycle  # a new request head replaces it

        def expire() -> None:
            if self.cycle is waiting_for and not self.transport.is_closing():
                self.transport.close()

        self._deadline = self.loop.call_later(self.header_timeout_s, expire)

    def _disarm(self) -> None:
        deadline = getattr(self, "_deadline", None)
        if deadline is not None:
            deadline.cancel()


def _http_protocol(header_timeout_s: float | None) -> Any:
    """httptools when installed, else h11; with a header deadline when ``header_timeout_s`` is given."""
    fast = importlib.util.find_spec("httptools") is not None
    if header_timeout_s is None:
        return "httptools" if fast else "h11"
    if fast:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base
    else:
        from uvicorn.protocols.http.h11_impl import H11Protocol as base  # type: ignore[assignment]
    return type(f"HeaderDeadline{base.__name__}", (_HeaderDeadline, base), {"header_timeout_s": header_timeout_s})


def uvicorn_config(
    app: Any,
    *,
    host: str,
    port: int,
    quiet: bool,
    lifespan: Literal["on", "off"],
    graceful_s: float,
    header_timeout_s: float | None = None,
) -> uvicorn.Config:
    """httptools + uvloop when installed; no access log (it would carry ids, query strings and secrets)."""
    extra: dict[str, Any] = {"log_config": None} if quiet else {}
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=_http_protocol(header_timeout_s),
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        lifespan=lifespan,
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=int(graceful_s),
        backlog=2048,
        **extra,
    )


def run_foreground(config: uvicorn.Config, sock: socket.socket | None = None) -> None:
    """Serve until SIGINT/SIGTERM; uvicorn drains, and the process then exits 0."""
    server = uvicorn.Server(config)
    if threading.current_thread() is threading.main_thread():
        # After draining, uvicorn re-raises the signal under the previous handlers; these make that a plain
        # return (exit 0) instead of a KeyboardInterrupt traceback or death by signal.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _already_handled)
    server.run(sockets=[sock] if sock is not None else None)


def _already_handled(signum: int, frame: FrameType | None) -> None:
    """Signal handler for after uvicorn's graceful shutdown: nothing left to do."""


def wait_healthy(url: str, proc: subprocess.Popen[Any], *, deadline: float, name: str, every_s: float = 0.5) -> None:
    """Poll ``url`` until it answers 200; raise if the process exits or ``deadline`` (monotonic) passes."""
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} process exited with code {proc.returncode}; see its log")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} did not become healthy in time")
        time.sleep(every_s)


class _Started:
    """``with server:`` starts it and stops it, whatever happens inside."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class ThreadedServer(_Started):
    """An ASGI app on loopback in a background thread: ``with Server(...) as s: s.url``."""

    name = "server"
    lifespan: Literal["on", "off"] = "off"
    graceful_s = 1.0
    header_timeout_s: float | None = None

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        """Start serving; returns once the server accepts connections."""
        if self._thread is not None:
            raise RuntimeError(f"{self.name} already started")
        self._sock = bind_socket(self.host, self.port)
        self.port = self._sock.getsockname()[1]
        config = uvicorn_config(
            self.app,
            host=self.host,
            port=self.port,
            quiet=True,
            lifespan=self.lifespan,
            header_timeout_s=self.header_timeout_s,
            graceful_s=self.graceful_s,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [self._sock]}, name=self.name, daemon=True)
        self._server, self._thread = server, thread
        thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        """Graceful stop, then force; waits for the thread; safe to call twice."""
        server, thread = self._server, self._thread
        if server is not None and thread is not None:
            server.should_exit = True
            thread.join(timeout=self.graceful_s + 5)
            if thread.is_alive():
                server.force_exit = True
                thread.join(timeout=5)
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = self._sock = None


class ServerProcess(_Started):
    """``python -m <module> --host H --port P [args]`` in a subprocess. With port 0 the child prints the port
    it bound on its first stdout line; ready once ``health_path`` answers 200."""

    name = "server"
    module = ""
    health_path = "/"
    stats_path = "/"
    graceful_s = 1.0

    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 0, args: Sequence[str] = (), env: Mapping[str, str] = {}
    ) -> None:
        self.host = host
        self.port = port
        self.args = list(args)
        self.env = dict(env)
        self.returncode: int | None = None  # exit code once stopped; 0 after a clean shutdown
        self._proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> Self:
        """Spawn it and return once it answers its health check."""
        if self._proc is not None:
            raise RuntimeError(f"{self.name} already started")
        env = {**os.environ, **self.env}
        # Importable even when the project is not installed in the interpreter's environment.
        root = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        cmd = [sys.executable, "-m", self.module, "--host", self.host, "--port", str(self.port), *self.args]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)  # noqa: S603
        try:
            if self.port == 0:
                self.port = int(self._read_port(START_TIMEOUT_S))
            self._wait_healthy(time.monotonic() + START_TIMEOUT_S)
        except BaseException:
            self.kill()
            raise
        return self

    def _read_port(self, timeout_s: float) -> str:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            if not selector.select(timeout_s):
                raise RuntimeError(f"{self.name} process did not report its port")
        line = proc.stdout.readline().strip()
        if not line.isdigit():
            raise RuntimeError(f"{self.name} process exited early (code {proc.poll()})")
        return line

    def _wait_healthy(self, deadline: float) -> None:
        assert self._proc is not None
        wait_healthy(f"{self.url}{self.health_path}", self._proc, deadline=deadline, name=self.name, every_s=0.02)

    def stats(self) -> dict[str, Any]:
        response = httpx.get(f"{self.url}{self.stats_path}", timeout=10.0)
        response.raise_for_status()
        stats: dict[str, Any] = response.json()
        return stats

    def stop(self) -> None:
        """SIGTERM (uvicorn drains), then SIGKILL if it lingers; safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=self.graceful_s + 5)
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
