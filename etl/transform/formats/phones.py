"""Phone numbers: :func:`to_e164`."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

import numpy as np
import pandas as pd
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc

from etl.transform.formats.core import (
    _STRING_OUT,
    _U,
    INVALID_PHONE,
    BoolArray,
    Coerced,
    IntArray,
    ObjArray,
    _classify,
    _factorize,
    _factorize_ints,
    _finish,
    _to_obj,
)

_PHONE_STRIP_RE: Final = r"[\s\-.()]"
_IN_MOBILE_RE: Final = r"^(?:\+?91|0)?(?P<nsn>[6-9][0-9]{9})$"
_PLUS91_RE: Final = r"^\+91(?P<nsn>[6-9][0-9]{9})$"
_REGION_ALIASES: Final = {"UK": "GB"}
_DESC_NAMES: Final = (
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
    "fixed_line",
    "mobile",
)


@dataclass(frozen=True)
class _RegionRules:
    """Vectorisable subset of libphonenumber's parse/is_valid for one region (see ``_fast_phone``)."""

    country_code: int
    general: tuple[frozenset[int], str]
    types: tuple[tuple[frozenset[int], str], ...]
    national_prefix: str | None  # national_prefix_for_parsing regex
    simple_prefix: bool  # the prefix regex has no groups and there is no transform rule
    idd: str | None
    is_main: bool  # first region of its calling code and no leading_digits: is_valid_number agrees


@lru_cache(maxsize=512)
def _rules(region: str) -> _RegionRules | None:
    if region not in phonenumbers.SUPPORTED_REGIONS:
        return None
    md = phonenumbers.PhoneMetadata.metadata_for_region(region, None)
    if md is None or md.general_desc is None or not md.general_desc.national_number_pattern:
        return None

    def desc(d: Any) -> tuple[frozenset[int], str] | None:
        if d is None or not d.national_number_pattern:
            return None
        return frozenset(d.possible_length or ()), d.national_number_pattern

    general = desc(md.general_desc)
    assert general is not None
    types = tuple(x for x in (desc(getattr(md, name, None)) for name in _DESC_NAMES) if x is not None)
    npfp = md.national_prefix_for_parsing or None
    simple = npfp is None or (re.compile(npfp).groups == 0 and not md.national_prefix_transform_rule)
    cc = int(md.country_code or 0)
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(cc, ())
    is_main = bool(regions) and regions[0] == region and md.leading_digits is None
    return _RegionRules(cc, general, types, npfp, simple, md.international_prefix, is_main)


def _fullmatch(arr: pa.Array, pattern: str) -> BoolArray:
    got = pc.match_substring_regex(arr, f"^(?:{pattern})$")
    return np.asarray(got.to_numpy(zero_copy_only=False), dtype=bool)


def _prefix_match_len(values: ObjArray, pattern: str) -> IntArray:
    """Length of ``re.match(pattern)`` (libphonenumber's semantics) per distinct value, -1 if none."""
    compiled = re.compile(pattern)
    out = np.full(len(values), -1, dtype=np.int64)
    for i, v in enumerate(values):
        m = compiled.match(v)
        if m is not None:
            out[i] = m.end()
    return out


def _valid_nsn(nsns: ObjArray, rules: _RegionRules) -> BoolArray:
    """Vectorised ``_number_type_helper(nsn) != UNKNOWN`` (general desc, then any number type)."""
    if len(nsns) == 0:
        return np.zeros(0, dtype=bool)
    arr = pa.array(list(nsns), type=pa.string())
    lens = np.asarray(pc.utf8_length(arr).to_numpy(zero_copy_only=False), dtype=np.int64)

    def matches(d: tuple[frozenset[int], str]) -> BoolArray:
        lengths, pattern = d
        ok = np.isin(lens, list(lengths)) if lengths else np.ones(len(lens), dtype=bool)
        if ok.any():
            ok &= _fullmatch(arr, pattern)
        return ok

    ok = matches(rules.general)
    if not ok.any():
        return ok
    any_type = np.zeros(len(nsns), dtype=bool)
    for d in rules.types:
        any_type |= matches(d)
    leading_zero = np.asarray(pc.starts_with(arr, "0").to_numpy(zero_copy_only=False), dtype=bool)
    result: BoolArray = ok & any_type & ~leading_zero
    return result


def _fast_phone(cleaned: ObjArray, regions: ObjArray) -> ObjArray:
    """E.164 for the pairs a vectorised replica of libphonenumber can settle; ``None`` = ask phonenumbers.

    Deliberately conservative: it only accepts a number when libphonenumber would parse it to the same
    national significant number and ``is_valid_number`` would be true (same metadata regexes), so the
    fallback decides every doubtful case. Verified against phonenumbers in the tests.
    """
    n = len(cleaned)
    out = np.full(n, None, dtype=object)
    if n == 0:
        return out
    arr = pa.array(list(cleaned), type=pa.string())
    # Indian mobiles (region IN, or +91 anywhere): the hot path.
    reg_in = regions == "IN"
    ext_in = pc.struct_field(pc.extract_regex(arr, _IN_MOBILE_RE), 0).to_numpy(zero_copy_only=False)
    ext_91 = pc.struct_field(pc.extract_regex(arr, _PLUS91_RE), 0).to_numpy(zero_copy_only=False)
    cand = np.where(reg_in, ext_in, ext_91)
    has = np.array([c is not None for c in cand], dtype=bool)  # over distinct values only
    in_rules = _rules("IN")
    if has.any() and in_rules is not None:
        pos = np.flatnonzero(has)
        ok = _valid_nsn(cand[pos], in_rules)
        out[pos[ok]] = np.char.add("+91", cand[pos[ok]].astype(str)).astype(object)
    todo = np.array([o is None for o in out], dtype=bool)
    is_plus = np.asarray(_fullmatch(arr, r"\+[1-9][0-9]{1,17}"), dtype=bool) & todo
    is_nat = np.asarray(_fullmatch(arr, r"[0-9]{2,17}"), dtype=bool) & todo
    # International numbers: calling code = first 1..3 digits that are a known code (re-parse semantics).
    if is_plus.any():
        pos = np.flatnonzero(is_plus)
        digits = np.array([c[1:] for c in cleaned[pos]], dtype=object)
        cc = np.zeros(len(pos), dtype=np.int64)
        for k in (3, 2, 1):  # the library takes the shortest known prefix: assign longest first
            heads = np.array([int(d[:k]) if len(d) > k else -1 for d in digits], dtype=np.int64)
            known = np.isin(heads, list(phonenumbers.COUNTRY_CODE_TO_REGION_CODE))
            cc = np.where(known, heads, cc)
        for code in np.unique(cc[cc > 0]):
            main = phonenumbers.COUNTRY_CODE_TO_REGION_CODE[int(code)][0]
            rules = _rules(main)
            if rules is None or not rules.is_main:
                continue
            sel = np.flatnonzero(cc == code)
            nsn = np.array([d[len(str(code)) :] for d in digits[sel]], dtype=object)
            ok = _valid_nsn(nsn, rules)
            if rules.national_prefix:
                ok &= _prefix_match_len(nsn, rules.national_prefix) < 0
            out[pos[sel[ok]]] = np.array([f"+{code}{x}" for x in nsn[ok]], dtype=object)
    # National numbers, per region.
    if is_nat.any():
        for region in sorted(set(regions[is_nat].tolist())):
            rules = _rules(region)
            if rules is None or not rules.is_main:
                continue
            sel = np.flatnonzero(is_nat & (regions == region))
            nums = cleaned[sel]
            narr = pa.array(list(nums), type=pa.string())
            eligible = ~pc.starts_with(narr, str(rules.country_code)).to_numpy(zero_copy_only=False)
            if rules.idd:
                eligible &= _prefix_match_len(nums, rules.idd) < 0
            nsn = nums.copy()
            if rules.national_prefix:
                plen = _prefix_match_len(nums, rules.national_prefix)
                has_prefix = plen >= 0
                if not rules.simple_prefix:
                    eligible &= ~has_prefix
                nsn = np.array([x[p:] if p >= 0 else x for x, p in zip(nums, plen, strict=True)], dtype=object)
            ok = eligible & _valid_nsn(nsn, rules)
            out[sel[ok]] = np.array([f"+{rules.country_code}{x}" for x in nsn[ok]], dtype=object)
    return out


def _slow_phone(value: str, region: str) -> str | None:
    try:
        num = phonenumbers.parse(value, region or None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(num):
        return None
    return str(phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164))


def _phone_text(uniques: ObjArray) -> tuple[ObjArray, BoolArray]:
    """Distinct raw values -> cleaned text (``None`` where the type cannot be a phone)."""
    n = len(uniques)
    text = np.full(n, None, dtype=object)
    bad = np.zeros(n, dtype=bool)
    is_str, _, is_num = _classify(uniques)
    text[is_str] = uniques[is_str]
    for i in np.flatnonzero(is_num):  # numbers: whole, non-negative only (distinct values)
        v = uniques[i]
        f = float(v)
        if math.isfinite(f) and f >= 0 and f == math.floor(f):
            text[i] = str(int(v)) if not isinstance(v, float | np.floating) else f"{f:.0f}"
    bad[~is_str & ~is_num] = True
    bad[is_num & np.array([t is None for t in text], dtype=bool)] = True
    if is_str.any() or is_num.any():
        has = ~bad
        cleaned = pd.Series(text[has], dtype=_STRING_OUT).str.replace(_PHONE_STRIP_RE, "", regex=True)
        cleaned = cleaned.str.replace(r"^00", "+", regex=True)
        text[has] = cleaned.pipe(_to_obj)
    return text, bad


def to_e164(s: pd.Series, *, default_region: str = "IN", region: pd.Series | None = None) -> Coerced:
    """Coerce phone numbers to E.164 (``+917850009678``); invalid -> ``invalid_phone``.

    Spaces, dashes, dots and parentheses are removed and a leading ``00`` becomes ``+``. Numbers without
    ``+`` are read in the row's region: ``region`` (ISO 3166 alpha-2 per row, aligned on ``s``'s index;
    case-insensitive, ``UK`` means ``GB``; null/blank -> ``default_region``). What remains must be ASCII digits
    with an optional leading ``+``: letters (vanity numbers, ``ext. 12``) are invalid. Whole non-negative
    numbers (int/float/Decimal columns) are read as their digits. Validity is libphonenumber's
    ``is_valid_number``: a vectorised replica of its metadata rules settles the common shapes (Indian
    mobiles first), the rest goes through ``phonenumbers.parse`` over distinct (value, region) pairs.
    ``changed`` flags rows whose output text differs from the (stripped) input.
    """
    dr = default_region.strip().upper()
    dr = _REGION_ALIASES.get(dr, dr)
    codes, uniques = _factorize(s)
    text, type_bad = _phone_text(uniques)
    n = len(s)
    # per-row region code (only matters for numbers without '+')
    if region is None:
        reg_rows = np.full(n, dr, dtype=object)
    else:
        if len(region) != n or not region.index.equals(s.index):
            raise ValueError("region must be aligned with s (same index)")
        r = region.astype(_STRING_OUT).str.strip().str.upper()
        r = r.replace(_REGION_ALIASES).fillna(dr).replace("", dr)
        reg_rows = r.to_numpy(dtype=object)
    rcodes, runiq = pd.factorize(reg_rows)
    is_plus_u = np.array([t is not None and t.startswith("+") for t in text], dtype=bool)
    present = codes >= 0
    take = np.maximum(codes, 0)
    row_plus = np.where(present, is_plus_u[take] if len(text) else False, False)
    rkey = np.where(row_plus, 0, rcodes.astype(np.int64) + 1)
    key = np.where(present, take.astype(np.int64) * (len(runiq) + 1) + rkey, -1)
    pcodes, first = _factorize_ints(key)
    pair_val = text[take[first]] if len(first) else np.empty(0, dtype=object)
    pair_bad = type_bad[take[first]] if len(first) else np.empty(0, dtype=bool)
    pair_reg = np.where(row_plus[first], "", np.asarray(reg_rows, dtype=object)[first]).astype(object)
    usable = ~pair_bad & np.array([v is not None for v in pair_val], dtype=bool)
    result = np.full(len(first), None, dtype=object)
    if usable.any():
        pos = np.flatnonzero(usable)
        vals = pair_val[pos]
        shape_ok = pd.Series(vals, dtype=_STRING_OUT).str.fullmatch(r"\+?\d+").to_numpy(dtype=bool, na_value=False)
        regs = pair_reg[pos]
        fast = np.full(len(pos), None, dtype=object)
        if shape_ok.any():
            fast[shape_ok] = _fast_phone(vals[shape_ok], regs[shape_ok])
        for j in np.flatnonzero(shape_ok & np.array([f is None for f in fast], dtype=bool)):
            fast[j] = _slow_phone(str(vals[j]), str(regs[j]))
        result[pos] = fast
    invalid_pair = np.array([r is None for r in result], dtype=bool)
    original = uniques[take[first]] if len(first) else np.empty(0, dtype=object)
    changed_pair = np.asarray(original != result, dtype=bool)
    u = _U(values=result, invalid=invalid_pair, changed=changed_pair & ~invalid_pair)
    return _finish(s, pcodes, u, reason=INVALID_PHONE, out_dtype=_STRING_OUT, change_reason="phone_normalised")
