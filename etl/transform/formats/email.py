"""Email addresses: :func:`to_email`."""

from __future__ import annotations

from typing import Final

import numpy as np
import pandas as pd

from etl.transform.formats.core import _STRING_OUT, _U, INVALID_EMAIL, Coerced, ObjArray, _classify, _run

_EMAIL_RE: Final = r"^[^@\s]+@[^@\s.][^@\s]*\.[^@\s]*[^@\s.]$"


def to_email(s: pd.Series) -> Coerced:
    """Coerce to an email address: trimmed, **domain lower-cased, local part kept as written**.

    Valid: exactly one ``@``, a non-empty local part, a domain containing a dot that neither starts nor
    ends with a dot and has no ``..``, and no whitespace or control characters anywhere. Anything else
    (and non-strings) -> ``invalid_email``. Blank strings are missing. No DNS/MX look-ups.
    """

    def core(uniques: ObjArray) -> _U:
        n = len(uniques)
        is_str = _classify(uniques)[0]
        vals = np.full(n, None, dtype=object)
        invalid = ~is_str
        missing = np.zeros(n, dtype=bool)
        if is_str.any():
            st = pd.Series(uniques[is_str], dtype=_STRING_OUT).str.strip()
            blank = (st == "").to_numpy(dtype=bool, na_value=False)
            shape = st.str.fullmatch(_EMAIL_RE).to_numpy(dtype=bool, na_value=False)
            shape &= ~st.str.contains(r"[\x00-\x1f\x7f]", regex=True).to_numpy(dtype=bool, na_value=False)
            parts = st.str.rpartition("@")
            domain = parts[2].str.lower()
            shape &= ~domain.str.contains("..", regex=False).to_numpy(dtype=bool, na_value=False)
            email = parts[0] + "@" + domain
            pos = np.flatnonzero(is_str)
            vals[pos[shape]] = email[shape].to_numpy(dtype=object)
            missing[pos] = blank
            invalid[pos] = ~shape & ~blank
        changed = ~invalid & ~missing & (vals != uniques)
        return _U(values=vals, invalid=invalid, changed=changed)

    return _run(s, core, reason=INVALID_EMAIL, out_dtype=_STRING_OUT, change_reason="email_normalised")
