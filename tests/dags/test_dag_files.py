"""The DAG files stay thin: at most 60 lines of code each, shared pieces in webengage_common, params injected
as task arguments, and an Asset published by every sync."""

from __future__ import annotations

import ast
import io
import os
import tokenize
from pathlib import Path
from typing import Any

import pytest

DAGS = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
DAG_FILES = sorted(DAGS.glob("*.py"))
MAX_CODE_LINES = 60
_NOT_CODE = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER}


def code_lines(source: str) -> int:
    """Lines holding code: not blank, not only a comment, not in a docstring (the module's doc_md included)."""
    docstrings: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and body:
            first = body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                docstrings.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    lines: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in _NOT_CODE:
            lines.update(range(tok.start[0], tok.end[0] + 1))
    return len(lines - docstrings)


def test_code_line_counter() -> None:
    source = (
        '"""Doc\n\nmore doc."""\n\n'
        "# a comment\n"
        "import os  # trailing\n\n"
        "X = (\n    1,\n)\n\n\n"
        "def f():\n"
        '    """Doc."""\n'
        '    return """a\nb"""\n'
    )
    assert code_lines(source) == 7  # import; X = ( 1, ); def; the return over two lines


def test_every_dag_file_is_found() -> None:
    assert {p.stem for p in DAG_FILES} == {
        "webengage_users_sync",
        "webengage_events_sync",
        "webengage_cohort_export",
        "webengage_cohorts_sync",
        "webengage_webhooks_load",
    }


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_has_at_most_60_lines_of_code(path: Path) -> None:
    assert code_lines(path.read_text()) <= MAX_CODE_LINES


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_reads_no_context_and_defines_no_asset(path: Path) -> None:
    source = path.read_text()
    # Params, run_id, the data interval... come in as task arguments (TaskFlow context injection).
    assert "**context" not in source and 'context["params"]' not in source
    # Assets are defined once, in webengage_common/assets.py.
    assert "Asset(" not in source


def outlet_names(task: Any) -> set[str]:
    from airflow.sdk import Asset, AssetAlias

    return {
        o.uri if isinstance(o, Asset) else f"alias:{o.name}" for o in task.outlets if isinstance(o, Asset | AssetAlias)
    }


@pytest.mark.parametrize(
    ("dag_id", "task_id", "outlet"),
    [
        # The syncs publish through an alias: a dry run adds no event (a plain Asset outlet always emits).
        ("webengage_users_sync", "sync_users", "alias:webengage-users"),
        ("webengage_events_sync", "sync_events", "alias:webengage-events"),
        ("webengage_webhooks_load", "load_webhooks", "webengage://webhooks/"),
        ("webengage_cohort_export", "export_cohort", "alias:webengage-cohort"),
        ("webengage_cohorts_sync", "sync_cohort", "alias:webengage-cohort"),
        ("webengage_cohorts_sync", "retire_removed_cohorts", "alias:webengage-cohort"),
    ],
)
def test_every_sync_task_publishes_an_asset(dagbag: Any, dag_id: str, task_id: str, outlet: str) -> None:
    assert dagbag.import_errors == {}
    assert outlet_names(dagbag.get_dag(dag_id).get_task(task_id)) == {outlet}


def test_dags_share_asset_definitions_but_not_param_objects(dagbag: Any) -> None:
    export, sync = dagbag.get_dag("webengage_cohort_export"), dagbag.get_dag("webengage_cohorts_sync")
    assert export.get_task("export_cohort").outlets[0] is sync.get_task("sync_cohort").outlets[0]
    # A Param object shared by two DAGs would carry one run's conf into the other (dag.test resolves in place).
    for name in ("dry_run", "as_of"):
        assert export.params.get_param(name) is not sync.params.get_param(name)
        assert export.params.get_param(name).schema["type"] == sync.params.get_param(name).schema["type"]


def test_every_param_of_every_trigger_form_has_a_title_and_a_description(dagbag: Any) -> None:
    for dag_id in dagbag.dag_ids:
        params = dagbag.get_dag(dag_id).params
        for name in params:
            param = params.get_param(name)
            assert param.schema.get("title") and param.description, (dag_id, name)


def test_a_webhooks_load_run_records_an_asset_event(
    dagbag: Any, dag_runner: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    monkeypatch.setenv("WEBENGAGE_WEBHOOK_DIR", str(tmp_path / "landing"))  # nothing landed: loads 0 lines
    monkeypatch.setenv("WAREHOUSE_URL", f"duckdb:///{tmp_path / 'w.duckdb'}")
    monkeypatch.delenv("WEBENGAGE_WEBHOOK_SECRET", raising=False)
    dr = dag_runner(dagbag, "webengage_webhooks_load")
    assert dr.state == "success"
    with create_session() as session:
        events = session.scalars(
            select(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.uri == "webengage://webhooks/", AssetEvent.source_run_id == dr.run_id)
        ).all()
    assert [(e.source_dag_id, e.source_task_id) for e in events] == [("webengage_webhooks_load", "load_webhooks")]


def test_asset_events_carry_the_run_counts(
    dagbag: Any, dag_runner: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    monkeypatch.setenv("WEBENGAGE_WEBHOOK_DIR", str(tmp_path / "landing"))
    monkeypatch.setenv("WAREHOUSE_URL", f"duckdb:///{tmp_path / 'w.duckdb'}")
    monkeypatch.delenv("WEBENGAGE_WEBHOOK_SECRET", raising=False)
    dr = dag_runner(dagbag, "webengage_webhooks_load")
    with create_session() as session:
        [event] = session.scalars(
            select(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.uri == "webengage://webhooks/", AssetEvent.source_run_id == dr.run_id)
        ).all()
        extra = dict(event.extra or {})
    assert extra["lines"] == 0 and extra["events_loaded"] == 0 and "message" not in extra
