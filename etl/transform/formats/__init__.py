"""Deterministic, vectorised coercion of warehouse columns into WebEngage wire values.

Every public ``to_*`` function takes one pandas Series of whatever dtype the warehouse produced (object,
``string``/``str``, ``ArrowDtype``, numeric, ``bool``/``boolean``, ``datetime64`` naive or tz-aware,
categorical) and returns a :class:`Coerced` with the same index.

Semantics shared by every function
----------------------------------
* **Missing is never invalid.** ``None``, ``pd.NA``, ``NaN``, ``NaT`` (and, where a function says so, the
  empty or blank string) are *missing*: ``values`` holds ``<NA>`` and ``invalid`` is ``False``.
* **Invalid** means a non-missing source value that cannot be represented on the wire. Its ``values`` entry
  is ``<NA>`` (the value is dropped, the row still goes) and ``invalid`` is ``True``. ``reason`` is the
  function's main reason code; when a function can fail for more than one reason, ``reasons`` holds the
  per-row code (``<NA>`` on rows that are not invalid). :meth:`Coerced.reason_counts` works either way.
* ``changed`` (when not ``None``) flags rows whose value was altered on the way (normalised, trimmed,
  re-formatted); ``trimmed`` (strings only) flags the rows cut to ``max_len``.
* Results never depend on the machine clock, time zone or locale: no ``now()``, no ``dateutil`` guessing,
  no locale-aware formatting. The same input gives byte-identical output on every run.
* No per-row Python loops: work is done with pandas/numpy/pyarrow kernels, and the few Python loops that
  remain run over *deduplicated* values (object columns are factorised by ``(type, value)`` first, so
  ``1``, ``1.0`` and ``True`` stay distinct). The one exception is :func:`to_json_object`, which has to look
  at every dict/list because containers are unhashable.

Output dtypes: strings are pandas ``string`` (pyarrow storage, ``pd.NA`` for missing), booleans are
``boolean``, numbers are ``Float64`` or ``Int64`` (never a NaN, missing is ``pd.NA``), JSON is ``object``
(``None`` for missing).

One module per kind of value: :mod:`.dates`, :mod:`.phones`, :mod:`.enums` (gender, boolean), :mod:`.numbers`,
:mod:`.text`, :mod:`.json_objects`, :mod:`.email`, :mod:`.names` (attribute and event names); the result type,
limits, reason codes and the shared machinery are in :mod:`.core`. This package re-exports the public names.
"""

from etl.transform.formats.core import (
    ATTRIBUTE_NAME_MAX_LEN,
    BIRTH_DATE_IN_FUTURE,
    DATE_OUT_OF_RANGE,
    INVALID_BOOLEAN,
    INVALID_DATE,
    INVALID_EMAIL,
    INVALID_GENDER,
    INVALID_JSON,
    INVALID_NUMBER,
    INVALID_PHONE,
    INVALID_STRING,
    JSON_NOT_OBJECT,
    NON_FINITE_NUMBER,
    NOT_AN_INTEGER,
    NUMBER_OUT_OF_RANGE,
    STRING_MAX_LEN,
    STRING_TRIMMED,
    Coerced,
)
from etl.transform.formats.dates import to_birth_date_str, to_datetime_str
from etl.transform.formats.email import to_email
from etl.transform.formats.enums import FALSE_WORDS, TRUE_WORDS, bool_word, to_bool, to_gender
from etl.transform.formats.json_objects import to_json_object
from etl.transform.formats.names import attribute_name_problem, sanitize_attribute_name
from etl.transform.formats.numbers import to_number
from etl.transform.formats.phones import to_e164
from etl.transform.formats.text import to_string

__all__ = [
    "ATTRIBUTE_NAME_MAX_LEN",
    "BIRTH_DATE_IN_FUTURE",
    "DATE_OUT_OF_RANGE",
    "FALSE_WORDS",
    "INVALID_BOOLEAN",
    "INVALID_DATE",
    "INVALID_EMAIL",
    "INVALID_GENDER",
    "INVALID_JSON",
    "INVALID_NUMBER",
    "INVALID_PHONE",
    "INVALID_STRING",
    "JSON_NOT_OBJECT",
    "NON_FINITE_NUMBER",
    "NOT_AN_INTEGER",
    "NUMBER_OUT_OF_RANGE",
    "STRING_MAX_LEN",
    "STRING_TRIMMED",
    "TRUE_WORDS",
    "Coerced",
    "attribute_name_problem",
    "bool_word",
    "sanitize_attribute_name",
    "to_birth_date_str",
    "to_bool",
    "to_datetime_str",
    "to_e164",
    "to_email",
    "to_gender",
    "to_json_object",
    "to_number",
    "to_string",
]
