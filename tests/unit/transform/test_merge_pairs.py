"""Screening anonymous -> known pairs (pure): folding repeats, ids, shared devices, earlier merges."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from etl.errors import ConfigError
from etl.transform.formats.garbage import DEFAULT_NULL_TOKENS, null_tokens
from etl.transform.merges import pair_key, payload, screen_pairs

TOKENS = null_tokens(DEFAULT_NULL_TOKENS)


def frame(rows: list[tuple[object, object, object]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["anonymous_id", "user_id", "identified_at"])


def test_repeats_fold_and_numeric_ids_read_as_text() -> None:
    df = pd.DataFrame({"anonymous_id": [" d1 ", "d1", "d2"], "user_id": [42.0, 42.0, 7.0]})
    out = screen_pairs(df, merged={}, policy="first", null_tokens=TOKENS)
    assert out.pairs == 2 and [(c.anonymous_id, c.user_id) for c in out.send] == [("d1", "42"), ("d2", "7")]
    assert payload(out.send[0]) == {"userId": "42", "anonymousId": "d1"}


@pytest.mark.parametrize(("policy", "chosen"), [("first", "early"), ("last", "late"), ("none", None)])
def test_shared_device_policy(policy: str, chosen: str | None) -> None:
    df = frame(
        [
            ("d1", "late", datetime(2026, 10, 2, tzinfo=UTC)),
            ("d1", "undated", None),  # no time: never "first" or "last" while a dated pair exists
            ("d1", "early", datetime(2026, 10, 1, tzinfo=UTC)),
        ]
    )
    out = screen_pairs(df, merged={}, policy=policy, null_tokens=TOKENS)  # type: ignore[arg-type]
    assert [c.user_id for c in out.send] == ([chosen] if chosen else [])
    assert out.shared_devices == 1
    assert {r.row_key for r in out.rejects} == {pair_key("d1", u) for u in ("early", "late", "undated")} - {
        pair_key("d1", chosen or "")
    }


def test_an_earlier_merge_wins_over_the_policy() -> None:
    df = frame([("d1", "a", datetime(2026, 10, 1, tzinfo=UTC)), ("d1", "b", datetime(2026, 9, 1, tzinfo=UTC))])
    out = screen_pairs(df, merged={"d1": "a"}, policy="first", null_tokens=TOKENS)
    assert out.send == [] and out.unchanged == 1
    assert [(r.row_key, r.reason) for r in out.rejects] == [(pair_key("d1", "b"), "shared_anonymous_id")]


def test_a_source_without_the_columns_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="user_id"):
        screen_pairs(pd.DataFrame({"anonymous_id": ["d"]}), merged={}, policy="first", null_tokens=TOKENS)
