"""The WebEngage page as a FastAPI app (mounted by the Airflow plugin in ``etl/ui/plugin.py``): runs, one run,
a DAG run's report, cohorts and the budget, read from the state database. Read-only: every route is a GET.

Authentication is the caller's: ``dependencies`` run before every route (the plugin passes Airflow's own).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.params import Depends
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.engine import Engine

from etl.config import Settings
from etl.errors import WebEngageSyncError
from etl.state.store import StateStore
from etl.ui import views
from etl.ui.html import esc, page
from etl.warehouse.engine import DatabaseLockedError, make_engine

log = logging.getLogger(__name__)

#: A page waits at most this long for the DuckDB state file (a running sync holds it for its whole run).
LOCK_WAIT_S = 3.0
#: The navigation icon: an arrow from a cylinder (the warehouse) out to the right (WebEngage).
ICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" fill="none" stroke="currentColor" '
    'stroke-width="2" stroke-linecap="round" stroke-linejoin="round"><ellipse cx="7" cy="5" rx="5" ry="2"/>'
    '<path d="M2 5v14c0 1.1 2.2 2 5 2s5-.9 5-2V5"/><path d="M14 12h8m-3-3 3 3-3 3"/></svg>'
)
SettingsFactory = Callable[[], Settings]
LoginUrl = Callable[[Request], str]
Clock = Callable[[], datetime]


def _system_now() -> datetime:
    return datetime.now(UTC)


class _Engines:
    """One engine per state URL, kept across requests (a PostgreSQL pool is not rebuilt per page)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._engines: dict[str, Engine] = {}

    def get(self, url: str) -> Engine:
        with self._lock:
            if url not in self._engines:
                self._engines[url] = make_engine(url, setting="state_url", lock_timeout_s=LOCK_WAIT_S)
            return self._engines[url]


def create_app(
    settings: SettingsFactory,
    *,
    dependencies: Sequence[Depends] = (),
    login_url: LoginUrl | None = None,
    clock: Clock = _system_now,
) -> FastAPI:
    """The app. ``settings`` is called per request (the connection may change); ``dependencies`` guard every
    route; ``login_url`` sends a browser without a session to the login page instead of a bare 401."""
    app = FastAPI(
        title="WebEngage",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        dependencies=list(dependencies),
    )
    engines = _Engines()

    @contextmanager
    def store() -> Iterator[tuple[Settings, StateStore]]:
        current = settings().replace(lock_timeout_s=LOCK_WAIT_S)
        with StateStore(engines.get(current.effective_state_url), create_schema=False) as opened:
            yield current, opened

    @app.exception_handler(HTTPException)
    async def _refused(request: Request, exc: HTTPException) -> Response:
        browser = "text/html" in request.headers.get("accept", "")
        if exc.status_code == 401 and browser and login_url is not None:
            return RedirectResponse(login_url(request), status_code=303)
        return HTMLResponse(
            page(f"{exc.status_code}", f"<p>{esc(exc.detail)}</p>"), status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(DatabaseLockedError)
    async def _busy(_request: Request, _exc: DatabaseLockedError) -> Response:
        body = (
            "<p>The state database is busy: a sync is running, and a DuckDB file admits one process at a time. "
            "Reload when it has finished, or keep the state in PostgreSQL (<code>STATE_URL</code>) to watch runs "
            "while they run.</p>"
        )
        return HTMLResponse(page("Busy", body), status_code=503, headers={"Retry-After": "10"})

    @app.exception_handler(WebEngageSyncError)
    async def _config(_request: Request, exc: WebEngageSyncError) -> Response:
        return HTMLResponse(page("Configuration error", f'<p class="warn">{esc(exc)}</p>'), status_code=500)

    @app.get("/icon.svg")
    def icon() -> Response:
        return Response(ICON, media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"})

    @app.get("/", response_class=HTMLResponse)
    def runs(
        pipeline: str = Query("", max_length=200),
        last: int = Query(200, ge=1, le=5000),
    ) -> str:
        with store() as (_, opened):
            return views.runs_page(opened, pipeline=pipeline, last=last)

    @app.get("/run", response_class=HTMLResponse)
    def run(pipeline: str = Query(..., max_length=200), run_id: str = Query(..., max_length=250)) -> str:
        with store() as (_, opened):
            html = views.run_page(opened, pipeline=pipeline, run_id=run_id)
        if html is None:
            raise HTTPException(404, f"no {pipeline} run {run_id}")
        return html

    @app.get("/dag-run", response_class=HTMLResponse)
    def dag_run(dag_id: str = Query(..., max_length=250), run_id: str = Query(..., max_length=250)) -> str:
        with store() as (_, opened):
            return views.dag_run_page(opened, dag_id=dag_id, run_id=run_id)

    @app.get("/cohorts", response_class=HTMLResponse)
    def cohorts() -> str:
        with store() as (current, opened):
            return views.cohorts_page(current, opened)

    @app.get("/budget", response_class=HTMLResponse)
    def budget(plan: bool = False) -> str:
        lines, error = None, None
        if plan:
            lines, error = _plan(settings().replace(lock_timeout_s=LOCK_WAIT_S), clock())
        with store() as (current, opened):
            return views.budget_page(current, opened, plan=lines, plan_error=error)

    return app


def _plan(settings: Settings, now: datetime) -> tuple[Any, str | None]:
    """Dry runs of every pipeline (nothing sent), or why they could not run."""
    from etl.plan import plan

    try:
        return plan(settings, as_of=now, events_window=views.events_window(now)), None
    except WebEngageSyncError as exc:
        return None, str(exc)
