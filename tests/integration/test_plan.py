"""`plan` figures equal what a real run then sends (± 0)."""

from __future__ import annotations

from pathlib import Path

from etl.config import Settings
from etl.pipelines import cohorts, users
from etl.plan import effective_rpm, plan, render_plan, total_minutes
from tests.helpers.sandbox import sandbox_server, sandbox_settings
from tests.helpers.warehouse import AS_OF, DemoTemplates
from webengage_dev.demo.mutate import change_users

KEY = "plan-test-key-123456"


def test_plan_matches_the_real_runs(demo_templates: DemoTemplates, tmp_path: Path) -> None:
    path = demo_templates.copy(tmp_path, users=800)
    with sandbox_server(KEY, bulk_users_rpm=60_000) as sandbox:
        settings = sandbox_settings(sandbox, path, KEY, bulk_users_rpm=60_000, expected_latency_s=0.05)
        for step in ("first", "after a change"):
            if step == "after a change":
                change_users(path, share=0.05, seed=5, as_of=AS_OF)
            lines = {line.pipeline: line for line in plan(settings, as_of=AS_OF, clock=lambda: AS_OF)}
            before = sandbox.stats()["requests"].get("bulk-users", 0)
            real_users = users.run(settings, clock=lambda: AS_OF)
            assert lines["users"].requests == real_users["requests"] > 0, step
            assert lines["users"].rows == real_users["accepted"], step
            for name in [p.split(":", 1)[1] for p in lines if p.startswith("cohort:")]:
                real = cohorts.export(settings, cohort=name, as_of=AS_OF, clock=lambda: AS_OF)
                assert lines[f"cohort:{name}"].requests == real["requests"], (step, name)
            sent = sandbox.stats()["requests"]["bulk-users"] - before
            assert sent == sum(line.requests for line in lines.values()), step


def test_eta_arithmetic_and_warning() -> None:
    settings = Settings.from_mapping(
        {
            "license_code": "~99199077",
            "api_key": KEY,
            "bulk_users_rpm": 500,
            "rate_headroom": 1.0,
            "max_run_minutes": 60,
        }
    )
    from etl.plan import PlanLine

    line = PlanLine(
        pipeline="users",
        noun="changed users",
        rows=1_204_331,
        requests=48_174,
        endpoint="bulk-users",
        rpm=effective_rpm(settings, "bulk-users"),
    )
    assert line.describe() == "users: 1,204,331 changed users → 48,174 requests → 96 min at 500 req/min"
    assert round(total_minutes([line], settings)) == 96
    assert "WARNING" in render_plan([line], settings)
    shared = settings.replace(shared_bulk_budget=True)
    events = PlanLine(pipeline="events", noun="events", rows=25_000, requests=1_000, endpoint="bulk-events", rpm=500)
    assert total_minutes([line, events], shared) > total_minutes([line, events], settings)


def test_eta_warning_before_a_long_sync(demo_templates: DemoTemplates, tmp_path: Path) -> None:
    from etl.plan import eta_warning

    path = demo_templates.copy(tmp_path, users=300)
    base = {"license_code": "~99199077", "api_key": KEY, "warehouse_url": f"duckdb:///{path}", "bulk_users_rpm": 6}
    # 300 users = 12 requests at 6 req/min (x 0.98 headroom): just over 2 minutes.
    assert eta_warning(Settings.from_mapping(base), as_of=AS_OF) is None  # check off
    warning = eta_warning(Settings.from_mapping({**base, "max_run_minutes": 1}), as_of=AS_OF)
    assert warning is not None and "12 requests" in warning and "max_run_minutes=1" in warning
    assert eta_warning(Settings.from_mapping({**base, "max_run_minutes": 5}), as_of=AS_OF) is None
