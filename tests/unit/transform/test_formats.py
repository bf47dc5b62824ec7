"""Unit tests for etl.transform.formats (fast: no I/O except one subprocess for the TZ check)."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import re
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import phonenumbers
import pyarrow as pa
import pytest

from etl.transform.formats import (
    Coerced,
    attribute_name_problem,
    sanitize_attribute_name,
    to_birth_date_str,
    to_bool,
    to_datetime_str,
    to_e164,
    to_email,
    to_gender,
    to_json_object,
    to_number,
    to_string,
)

WIRE_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+0000$")
REPO = Path(__file__).resolve().parents[3]


def one(result: Coerced) -> Any:
    """The single value of a one-row result, with pandas NA mapped to None."""
    v = result.values.iloc[0]
    return None if v is pd.NA or v is None else v


def check_shape(result: Coerced, s: pd.Series) -> None:
    assert result.values.index.equals(s.index)
    assert result.invalid.index.equals(s.index)
    assert result.invalid.dtype == bool
    inv = result.invalid.to_numpy(dtype=bool)
    assert result.values[inv].isna().all(), "invalid rows must carry no value"
    if result.changed is not None:
        assert result.changed.index.equals(s.index)
    if result.reasons is not None:
        assert result.reasons[inv].notna().all()
        assert result.reasons[~inv].isna().all()


# --------------------------------------------------------------------------------------------------
# Dates
# --------------------------------------------------------------------------------------------------

UTC = dt.UTC
IST = dt.timezone(dt.timedelta(hours=5, minutes=30))


@pytest.mark.parametrize(
    ("value", "kwargs", "expected"),
    [
        ("2024-03-01 10:00:00", {"source_tz": "Asia/Kolkata"}, "2024-03-01T04:30:00+0000"),
        ("2024-03-01T10:00:00", {}, "2024-03-01T10:00:00+0000"),
        ("2024-03-01T10:00:00+05:30", {"source_tz": "America/New_York"}, "2024-03-01T04:30:00+0000"),
        ("2024-03-01T10:00:00+0530", {}, "2024-03-01T04:30:00+0000"),
        ("2024-03-01T04:30:00Z", {"source_tz": "Asia/Kolkata"}, "2024-03-01T04:30:00+0000"),
        ("2024-03-01T04:30:00.987654Z", {}, "2024-03-01T04:30:00+0000"),  # sub-seconds floored
        ("1990-05-01", {}, "1990-05-01T00:00:00+0000"),
        ("1990-05-01", {"source_tz": "Asia/Kolkata"}, "1990-04-30T18:30:00+0000"),
        ("1990/05/01", {}, "1990-05-01T00:00:00+0000"),
        ("01/05/1990", {}, "1990-01-05T00:00:00+0000"),
        ("01/05/1990", {"dayfirst": True}, "1990-05-01T00:00:00+0000"),
        ("  2024-03-01T10:00:00Z ", {}, "2024-03-01T10:00:00+0000"),
        # DST gap in New York (02:00 -> 03:00 on 2024-03-10): shifted forward to 03:00 EDT
        ("2024-03-10 02:30:00", {"source_tz": "America/New_York"}, "2024-03-10T07:00:00+0000"),
        # DST overlap (01:00-02:00 twice on 2024-11-03): the earlier instant (EDT)
        ("2024-11-03 01:30:00", {"source_tz": "America/New_York"}, "2024-11-03T05:30:00+0000"),
        (dt.date(2020, 1, 1), {"source_tz": "Asia/Kolkata"}, "2019-12-31T18:30:00+0000"),
        (dt.datetime(2020, 1, 1, 12, 0, tzinfo=IST), {}, "2020-01-01T06:30:00+0000"),
        (dt.datetime(2020, 1, 1, 12, 0), {"source_tz": "Asia/Kolkata"}, "2020-01-01T06:30:00+0000"),
        (pd.Timestamp("2020-01-01 12:00", tz="UTC"), {"source_tz": "Asia/Kolkata"}, "2020-01-01T12:00:00+0000"),
        (1_700_000_000_000, {"epoch_unit": "ms"}, "2023-11-14T22:13:20+0000"),
        (1_700_000_000, {"epoch_unit": "s"}, "2023-11-14T22:13:20+0000"),
        ("1700000000", {"epoch_unit": "s"}, "2023-11-14T22:13:20+0000"),
    ],
)
def test_to_datetime_str_values(value: Any, kwargs: dict[str, Any], expected: str) -> None:
    s = pd.Series([value], dtype=object)
    r = to_datetime_str(s, **kwargs)
    check_shape(r, s)
    assert one(r) == expected
    assert WIRE_DATE.match(expected)
    assert not r.invalid.any()


@pytest.mark.parametrize(
    ("value", "kwargs", "reason"),
    [
        ("unknown", {}, "invalid_date"),
        ("32/13/2020", {}, "invalid_date"),
        ("2024-02-30", {}, "invalid_date"),
        ("May 1990", {}, "invalid_date"),  # never guessed (dateutil would fill in today's day)
        ("2024-03-01T10:00:00+25:00", {}, "invalid_date"),
        (1_700_000_000_000, {}, "invalid_date"),  # numbers need epoch_unit
        (True, {"epoch_unit": "s"}, "invalid_date"),
        ("1899-12-31", {}, "date_out_of_range"),
        ("2101-01-01", {}, "date_out_of_range"),
        ("0001-01-01", {}, "date_out_of_range"),
        ({"a": 1}, {}, "invalid_date"),
    ],
)
def test_to_datetime_str_invalid(value: Any, kwargs: dict[str, Any], reason: str) -> None:
    s = pd.Series([value], dtype=object)
    r = to_datetime_str(s, **kwargs)
    check_shape(r, s)
    assert r.invalid.tolist() == [True]
    assert r.reasons is not None and r.reasons.iloc[0] == reason
    assert r.reason_counts() == {reason: 1}
    assert one(r) is None


@pytest.mark.parametrize("value", [None, np.nan, pd.NaT, pd.NA, "", "   "])
def test_to_datetime_str_missing_is_not_invalid(value: Any) -> None:
    r = to_datetime_str(pd.Series([value], dtype=object))
    assert one(r) is None
    assert not r.invalid.any()


def test_to_datetime_str_datetime64_columns() -> None:
    naive = pd.Series(pd.to_datetime(["2024-03-01 10:00:00.5", None, "1990-05-01"], format="ISO8601").as_unit("us"))
    r = to_datetime_str(naive, source_tz="Asia/Kolkata")
    assert r.values.tolist()[0] == "2024-03-01T04:30:00+0000"
    assert r.values.isna().tolist() == [False, True, False]
    aware = naive.dt.tz_localize("UTC")
    assert str(aware.dtype) == "datetime64[us, UTC]"
    r2 = to_datetime_str(aware, source_tz="Asia/Kolkata")  # aware: source_tz ignored
    assert r2.values.tolist()[0] == "2024-03-01T10:00:00+0000"
    ns = pd.Series(pd.to_datetime(["2024-03-01 10:00"]).as_unit("ns").tz_localize("Asia/Kolkata"))
    assert to_datetime_str(ns).values.tolist() == ["2024-03-01T04:30:00+0000"]
    sec = pd.Series(np.array(["2024-03-01T10:00:00"], dtype="datetime64[s]"))
    assert to_datetime_str(sec).values.tolist() == ["2024-03-01T10:00:00+0000"]
    arrow = pd.Series([dt.datetime(2024, 3, 1, 10)], dtype=pd.ArrowDtype(pa.timestamp("us", tz="UTC")))
    assert to_datetime_str(arrow).values.tolist() == ["2024-03-01T10:00:00+0000"]
    date32 = pd.Series([dt.date(2024, 3, 1)], dtype=pd.ArrowDtype(pa.date32()))
    assert to_datetime_str(date32).values.tolist() == ["2024-03-01T00:00:00+0000"]


def test_to_datetime_str_string_dtypes_and_format() -> None:
    raw = ["2024-03-01T10:00:00+05:30", "2024-03-01T10:00:00Z", "1990-05-01", None, "", "unknown"]
    outs = []
    for dtype in (object, "string", pd.ArrowDtype(pa.string()), "category"):
        s = pd.Series(raw, dtype=dtype, index=[10, 11, 12, 13, 14, 15])
        r = to_datetime_str(s, source_tz="Asia/Kolkata")
        check_shape(r, s)
        outs.append(r.values.tolist())
        assert r.invalid.tolist() == [False, False, False, False, False, True]
        for v in r.values.dropna():
            assert WIRE_DATE.match(v), v
    assert all(o == outs[0] for o in outs)


def test_to_datetime_str_numbers_epoch() -> None:
    s = pd.Series([1_700_000_000_000, None], dtype="Int64")
    assert to_datetime_str(s, epoch_unit="ms").values.tolist()[0] == "2023-11-14T22:13:20+0000"
    r = to_datetime_str(s)
    assert r.invalid.tolist() == [True, False]
    assert to_datetime_str(pd.Series([float("inf")]), epoch_unit="s").invalid.tolist() == [True]


def test_to_datetime_str_rejects_bad_options() -> None:
    with pytest.raises(ValueError, match="time zone"):
        to_datetime_str(pd.Series(["2024-01-01"]), source_tz="Mars/Base")
    with pytest.raises(ValueError):
        to_datetime_str(pd.Series(["2024-01-01"]), min_year=2100, max_year=1900)


@pytest.mark.parametrize(
    ("value", "expected", "reason"),
    [
        ("1990-05-01", "1990-05-01T00:00:00+0000", None),
        ("1990-05-01T23:30:00-05:00", "1990-05-01T00:00:00+0000", None),  # date as written, no shift
        ("1990-05-01T01:00:00+05:30", "1990-05-01T00:00:00+0000", None),
        (dt.date(1990, 5, 1), "1990-05-01T00:00:00+0000", None),
        (dt.datetime(1990, 5, 1, 23, 59, tzinfo=IST), "1990-05-01T00:00:00+0000", None),
        ("2026-01-01", "2026-01-01T00:00:00+0000", None),  # today itself is fine
        ("2026-01-02", None, "birth_date_in_future"),
        ("1899-12-31", None, "date_out_of_range"),
        ("not a date", None, "invalid_date"),
        ("", None, None),
    ],
)
def test_to_birth_date_str(value: Any, expected: str | None, reason: str | None) -> None:
    s = pd.Series([value], dtype=object)
    r = to_birth_date_str(s, today=dt.date(2026, 1, 1))
    check_shape(r, s)
    assert one(r) == expected
    assert r.invalid.iloc[0] == (reason is not None)
    if reason:
        assert r.reasons is not None and r.reasons.iloc[0] == reason


def test_to_birth_date_str_aware_column_keeps_local_date() -> None:
    s = pd.Series(pd.to_datetime(["1990-05-01 02:00"]).tz_localize("Asia/Kolkata"))
    r = to_birth_date_str(s, today=dt.date(2026, 1, 1))
    assert r.values.tolist() == ["1990-05-01T00:00:00+0000"]


def test_to_birth_date_str_requires_today() -> None:
    with pytest.raises(TypeError):
        to_birth_date_str(pd.Series(["1990-05-01"]))  # type: ignore[call-arg]


# --------------------------------------------------------------------------------------------------
# Phones
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "region", "expected"),
    [
        ("98765 43210", None, "+919876543210"),
        ("9876543210", "IN", "+919876543210"),
        ("09876543210", None, "+919876543210"),
        ("919876543210", None, "+919876543210"),
        ("+91-98765-43210", None, "+919876543210"),
        ("0091 98765 43210", None, "+919876543210"),
        ("+91 (98765) 43210", "US", "+919876543210"),  # '+' numbers ignore the region
        ("(415) 555-2671", "US", "+14155552671"),
        ("415.555.2671", "us", "+14155552671"),
        ("+1 415 555 2671", None, "+14155552671"),
        ("07911 123456", "GB", "+447911123456"),
        ("07911 123456", "UK", "+447911123456"),  # alias
        ("+44 7911 123456", None, "+447911123456"),
        ("050 123 4567", "AE", "+971501234567"),
        ("+971 50 123 4567", None, "+971501234567"),
        ("050 123 4567", "SA", "+966501234567"),
        ("0501234567", "SA", "+966501234567"),
        (9876543210, None, "+919876543210"),
        ("12345", None, None),
        ("call me", None, None),
        ("98765 43210 ext 12", None, None),
        ("+0 123", None, None),
        # Ofcom's reserved drama range: libphonenumber's is_valid_number says no, so do we
        ("07700 900123", "GB", None),
    ],
)
def test_to_e164(value: Any, region: str | None, expected: str | None) -> None:
    s = pd.Series([value], dtype=object)
    r = to_e164(s, region=pd.Series([region], dtype=object))
    check_shape(r, s)
    assert one(r) == expected
    assert r.invalid.iloc[0] == (expected is None)
    if expected is None:
        assert r.reason == "invalid_phone"


def test_to_e164_missing_and_changed() -> None:
    s = pd.Series([None, "", "+919876543210", "98765 43210", np.nan], dtype=object)
    r = to_e164(s)
    assert r.values.isna().tolist() == [True, True, False, False, True]
    assert r.invalid.tolist() == [False, True, False, False, False]  # "" is not a phone number
    assert r.changed is not None and r.changed.tolist() == [False, False, False, True, False]


def test_to_e164_region_column_alignment() -> None:
    s = pd.Series(["(415) 555-2671", "98765 43210"], index=[5, 6])
    r = to_e164(s, region=pd.Series(["US", None], index=[5, 6]))
    assert r.values.tolist() == ["+14155552671", "+919876543210"]
    with pytest.raises(ValueError):
        to_e164(s, region=pd.Series(["US", None]))


def _reference_e164(value: str, region: str) -> str | None:
    cleaned = re.sub(r"[\s\-.()]", "", value)
    if cleaned.startswith("00"):
        cleaned = "+" + cleaned[2:]
    if not re.fullmatch(r"\+?[0-9]+", cleaned):
        return None
    try:
        num = phonenumbers.parse(cleaned, None if cleaned.startswith("+") else region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(num):
        return None
    return str(phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164))


def test_to_e164_fast_path_agrees_with_phonenumbers() -> None:
    """The vectorised replica must give libphonenumber's answer on every shape it might see."""
    rnd = random.Random(20240301)
    regions = ["IN", "US", "GB", "AE", "SA", "CA", "DE", "FR", "SG", "AU", "BR", "IT", "RU"]
    values: list[str] = []
    regs: list[str] = []
    for _ in range(3000):
        region = rnd.choice(regions)
        cc = str(phonenumbers.country_code_for_region(region))
        body = "".join(rnd.choice("0123456789") for _ in range(rnd.randint(6, 12)))
        shape = rnd.randint(0, 6)
        if shape == 0:
            v = "+" + cc + body
        elif shape == 1:
            v = "0" + body
        elif shape == 2:
            v = cc + body
        elif shape == 3:
            v = "00" + cc + " " + body
        elif shape == 4:
            v = rnd.choice("6789") + body[:9]
        elif shape == 5:
            example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
            nsn = phonenumbers.national_significant_number(example) if example else body
            v = rnd.choice(["+" + cc + nsn, "0" + nsn, nsn, cc + nsn])
        else:
            v = body
        values.append(v)
        regs.append(region)
    got = to_e164(pd.Series(values), region=pd.Series(regs)).values.tolist()
    got = [None if g is pd.NA else g for g in got]
    expected = [_reference_e164(v, r) for v, r in zip(values, regs, strict=True)]
    mismatches = [(v, r, e, g) for v, r, e, g in zip(values, regs, expected, got, strict=True) if e != g]
    assert not mismatches, mismatches[:10]
    assert sum(e is not None for e in expected) > 300  # the sample exercises valid numbers too


# --------------------------------------------------------------------------------------------------
# Gender, booleans
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected", "invalid"),
    [
        ("M", "male", False),
        (" male ", "male", False),
        ("Man", "male", False),
        ("he/him", "male", False),
        ("f", "female", False),
        ("FEMALE", "female", False),
        ("Girl", "female", False),
        ("she/her", "female", False),
        ("Non-Binary", "other", False),
        ("nonbinary", "other", False),
        ("NB", "other", False),
        ("x", "other", False),
        ("they/them", "other", False),
        ("other", "other", False),
        ("", None, False),
        ("Unknown", None, False),
        ("Prefer not to say", None, False),
        ("n/a", None, False),
        (None, None, False),
        ("robot", None, True),
        (1, None, True),
    ],
)
def test_to_gender(value: Any, expected: str | None, invalid: bool) -> None:
    s = pd.Series([value], dtype=object)
    r = to_gender(s)
    check_shape(r, s)
    assert one(r) == expected
    assert r.invalid.iloc[0] == invalid


def test_to_gender_extra() -> None:
    r = to_gender(pd.Series(["Herr", "Frau", "diverse", "?"]), extra={"herr": "male", "Frau": "female", "?": ""})
    assert r.values.tolist()[:3] == ["male", "female", "other"]
    assert r.values.isna().tolist()[3] and not r.invalid.iloc[3]
    with pytest.raises(ValueError):
        to_gender(pd.Series(["x"]), extra={"x": "robot"})


@pytest.mark.parametrize(
    ("value", "expected", "invalid"),
    [
        ("yes", True, False),
        ("Y", True, False),
        ("1", True, False),
        (" TRUE ", True, False),
        ("on", True, False),
        ("1.0", True, False),
        (1, True, False),
        (1.0, True, False),
        (True, True, False),
        (np.True_, True, False),
        ("off", False, False),
        ("No", False, False),
        ("0", False, False),
        (0, False, False),
        (False, False, False),
        ("", None, False),
        (None, None, False),
        ("maybe", None, True),
        (2, None, True),
        (0.5, None, True),
    ],
)
def test_to_bool(value: Any, expected: bool | None, invalid: bool) -> None:
    s = pd.Series([value], dtype=object)
    r = to_bool(s)
    check_shape(r, s)
    assert one(r) is expected if expected is None else one(r) == expected
    assert r.invalid.iloc[0] == invalid
    assert str(r.values.dtype) == "boolean"


def test_to_bool_dtypes_and_extras() -> None:
    assert to_bool(pd.Series([True, False])).values.tolist() == [True, False]
    nullable = to_bool(pd.Series([True, None], dtype="boolean"))
    assert nullable.values.isna().tolist() == [False, True]
    assert to_bool(pd.Series([1, 0, 1])).values.tolist() == [True, False, True]
    r = to_bool(pd.Series(["ja", "nein"]), extra_true=["JA"], extra_false=["nein"])
    assert r.values.tolist() == [True, False]
    with pytest.raises(ValueError):
        to_bool(pd.Series(["x"]), extra_true=["x"], extra_false=["x"])


# --------------------------------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected", "reason"),
    [
        (np.nan, None, None),
        (None, None, None),
        ("", None, None),
        (float("inf"), None, "non_finite_number"),
        (float("-inf"), None, "non_finite_number"),
        ("-inf", None, "non_finite_number"),
        ("12a", None, "invalid_number"),
        ("1,234.5", None, "invalid_number"),
        ("nan", None, "invalid_number"),
        (True, None, "invalid_number"),
        (Decimal("1.50"), 1.5, None),
        (" 3 ", 3.0, None),
        ("-1.5e3", -1500.0, None),
        (".5", 0.5, None),
        (7, 7.0, None),
    ],
)
def test_to_number(value: Any, expected: float | None, reason: str | None) -> None:
    s = pd.Series([value], dtype=object)
    r = to_number(s)
    check_shape(r, s)
    assert one(r) == expected
    assert str(r.values.dtype) == "Float64"
    assert r.invalid.iloc[0] == (reason is not None)
    if reason:
        assert r.reasons is not None and r.reasons.iloc[0] == reason


def test_to_number_numeric_dtypes() -> None:
    r = to_number(pd.Series([1.5, np.nan, np.inf]))
    assert r.values.isna().tolist() == [False, True, True]
    assert r.invalid.tolist() == [False, False, True]
    assert to_number(pd.Series([1, None], dtype="Int64")).values.tolist()[0] == 1.0


@pytest.mark.parametrize(
    ("values", "expected", "invalid"),
    [
        ([1.0, 2.0, np.nan], [1, 2, None], [False, False, False]),
        ([1.0, 2.5], [1, None], [False, True]),
        (["12", "1.5", 3, Decimal("4")], [12, None, 3, 4], [False, True, False, False]),
        ([9_007_199_254_740_993], [9_007_199_254_740_993], [False]),  # exact beyond 2**53
        ([1e20], [None], [True]),
    ],
)
def test_to_number_integer(values: list[Any], expected: list[Any], invalid: list[bool]) -> None:
    r = to_number(pd.Series(values, dtype=object if any(isinstance(v, str) for v in values) else None), integer=True)
    assert str(r.values.dtype) == "Int64"
    assert [None if v is pd.NA else v for v in r.values.tolist()] == expected
    assert r.invalid.tolist() == invalid


def test_to_number_integer_reason() -> None:
    r = to_number(pd.Series([1.5]), integer=True)
    assert r.reasons is not None and r.reasons.tolist() == ["not_an_integer"]


# --------------------------------------------------------------------------------------------------
# Strings
# --------------------------------------------------------------------------------------------------


def test_to_string_trim_and_conversions() -> None:
    emoji = "😀" * 1000
    s = pd.Series(
        ["x" * 5000, emoji, 5, 1.5, True, "a\x00b\tc", "", None, dt.date(2020, 1, 1), Decimal("1.50"), "ok"],
        dtype=object,
    )
    r = to_string(s)
    check_shape(r, s)
    v = r.values.tolist()
    assert len(v[0]) == 999
    assert v[1] == "😀" * 999
    assert v[2:7] == ["5", "1.5", "true", "ab\tc", ""]
    assert v[7] is pd.NA
    assert v[8:] == ["2020-01-01", "1.50", "ok"]
    assert r.trimmed is not None and r.trimmed.tolist()[:3] == [True, True, False]
    assert r.changed is not None
    assert r.changed.tolist() == [True, True, True, True, True, True, False, False, True, True, False]
    assert not r.invalid.any()
    assert r.change_reason == "string_trimmed"


def test_to_string_options() -> None:
    r = to_string(pd.Series(["", "  ", "abcdef"]), max_len=3, empty_as_missing=True)
    assert r.values.isna().tolist() == [True, True, False]
    assert r.values.tolist()[2] == "abc"
    assert to_string(pd.Series([1, 2], dtype="int64")).values.tolist() == ["1", "2"]
    assert to_string(pd.Series([1.0, np.nan])).values.tolist()[0] == "1.0"
    assert to_string(pd.Series([1, True], dtype=object)).values.tolist() == ["1", "true"]  # not merged
    assert to_string(pd.Series([b"\xff"], dtype=object)).invalid.tolist() == [True]


# --------------------------------------------------------------------------------------------------
# JSON, email
# --------------------------------------------------------------------------------------------------


def test_to_json_object() -> None:
    d = {"a": 1}
    s = pd.Series(
        [d, '{"b": [1, 2]}', "not json", "3", None, [1, 2], {"x": float("nan")}, "", 5, '{"x": NaN}'],
        dtype=object,
    )
    r = to_json_object(s)
    check_shape(r, s)
    v = r.values.tolist()
    assert v[0] is d and v[1] == {"b": [1, 2]} and v[5] == [1, 2]
    assert v[4] is None and v[7] is None
    assert r.reasons is not None
    assert r.reasons.tolist() == [
        pd.NA,
        pd.NA,
        "invalid_json",
        "json_not_object",
        pd.NA,
        pd.NA,
        "invalid_json",
        pd.NA,
        "json_not_object",
        "invalid_json",
    ]


def test_to_json_object_string_column_and_arrow() -> None:
    r = to_json_object(pd.Series(['{"a": 1}', '{"a": 1}', None], dtype="string"))
    assert r.values.tolist() == [{"a": 1}, {"a": 1}, None]
    arrow = pd.Series([{"k": 1}, None], dtype=pd.ArrowDtype(pa.struct([("k", pa.int64())])))
    assert to_json_object(arrow).values.tolist() == [{"k": 1}, None]


@pytest.mark.parametrize(
    ("value", "expected", "invalid"),
    [
        (" John.Doe@Example.COM ", "John.Doe@example.com", False),
        ("a@b.co", "a@b.co", False),
        ("a@b", None, True),
        ("a b@c.com", None, True),
        ("a@@b.com", None, True),
        ("a@b@c.com", None, True),
        ("@b.com", None, True),
        ("a@.b.com", None, True),
        ("a@b.com.", None, True),
        ("x@y..com", None, True),
        ("", None, False),
        (None, None, False),
        (5, None, True),
    ],
)
def test_to_email(value: Any, expected: str | None, invalid: bool) -> None:
    s = pd.Series([value], dtype=object)
    r = to_email(s)
    check_shape(r, s)
    assert one(r) == expected
    assert r.invalid.iloc[0] == invalid


# --------------------------------------------------------------------------------------------------
# Attribute names
# --------------------------------------------------------------------------------------------------


def test_attribute_names() -> None:
    ok49 = "a" * 49
    assert attribute_name_problem(ok49) is None
    assert sanitize_attribute_name(ok49) == ok49
    long50 = "a" * 50
    assert attribute_name_problem(long50) == "name_too_long"
    renamed = sanitize_attribute_name(long50)
    assert len(renamed) == 49 and renamed.startswith("a" * 40 + "_")
    assert attribute_name_problem(renamed) is None
    assert attribute_name_problem("we_score") == "reserved_prefix"
    assert attribute_name_problem("WE_Score") == "reserved_prefix"
    assert sanitize_attribute_name("we_score") == "attr_score"
    assert sanitize_attribute_name("WE_Score") == "attr_Score"
    assert attribute_name_problem("   ") == "empty_name"
    assert attribute_name_problem("weekly_score") is None
    with pytest.raises(ValueError):
        sanitize_attribute_name("  ")
    # collisions: long names sharing the first 40 characters stay distinct and deterministic
    a, b = "x" * 45 + "_first", "x" * 45 + "_second"
    assert sanitize_attribute_name(a) != sanitize_attribute_name(b)
    assert sanitize_attribute_name(a) == sanitize_attribute_name(a)
    long_reserved = "we_" + "y" * 60
    out = sanitize_attribute_name(long_reserved)
    assert attribute_name_problem(out) is None and out.startswith("attr_")


# --------------------------------------------------------------------------------------------------
# Determinism
# --------------------------------------------------------------------------------------------------


def _mixed_frame() -> dict[str, pd.Series]:
    return {
        "dates": pd.Series(
            ["2024-03-01 10:00", "2024-03-01T10:00:00+05:30", dt.date(2020, 1, 1), dt.datetime(2020, 1, 1, 12)],
            dtype=object,
        ),
        "ts": pd.Series(pd.to_datetime(["2024-11-03 01:30", "2024-03-10 02:30"])),
        "phones": pd.Series(["98765 43210", "+1 415 555 2671", "bad"]),
    }


def _run_all(frame: dict[str, pd.Series]) -> str:
    out = {
        "dates": to_datetime_str(frame["dates"], source_tz="America/New_York").values.tolist(),
        "ts": to_datetime_str(frame["ts"], source_tz="America/New_York").values.tolist(),
        "birth": to_birth_date_str(frame["dates"], today=dt.date(2026, 1, 1)).values.tolist(),
        "phones": to_e164(frame["phones"]).values.tolist(),
    }
    return json.dumps(out, default=str, sort_keys=True)


def test_same_input_same_output() -> None:
    assert _run_all(_mixed_frame()) == _run_all(_mixed_frame())
    s = pd.Series(["Male", "x", None, "f"] * 3)
    a, b = to_gender(s), to_gender(s)
    pd.testing.assert_series_equal(a.values, b.values)
    pd.testing.assert_series_equal(a.invalid, b.invalid)


_TZ_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, time
    sys.path.insert(0, {repo!r})
    from tests.unit.transform.test_formats import _mixed_frame, _run_all
    out = {{}}
    for tz in ("UTC", "Asia/Kolkata", "America/New_York", "Pacific/Chatham"):
        os.environ["TZ"] = tz
        time.tzset()
        out[tz] = _run_all(_mixed_frame())
    print(json.dumps(out))
    """
)


@pytest.mark.skipif(not hasattr(__import__("time"), "tzset"), reason="needs time.tzset (POSIX)")
def test_independent_of_process_time_zone() -> None:
    """Fresh interpreter started under a far-off TZ, then switched between zones with time.tzset()."""
    env = {**os.environ, "TZ": "Pacific/Kiritimati", "LC_ALL": "C"}
    proc = subprocess.run(
        [sys.executable, "-c", _TZ_SCRIPT.format(repo=str(REPO))],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    per_tz = json.loads(proc.stdout)
    assert len(per_tz) == 4
    assert set(per_tz.values()) == {_run_all(_mixed_frame())}
