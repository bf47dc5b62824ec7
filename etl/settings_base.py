"""The one loading mechanism behind every settings object (sync, webhooks, sandbox).

:class:`SettingsModel` is a frozen pydantic-settings model. A subclass declares its fields with the shared types
below (one rule per kind of value: :data:`Flag`, :data:`Int`, :data:`Number`, :data:`Text`, :data:`TextList`,
:class:`Secret`) and, where a field is read from the environment, the variable's name as its validation alias.
Then:

* ``Model(**values)`` builds from keyword arguments only (never reads the process environment);
* ``Model._load(values, env=mapping)`` builds from the variables of ``mapping`` (aliases) with ``values``
  (field names) taking precedence; pydantic-settings' environment source does the reading (given the mapping
  for that call, so ``os.environ`` or a test's dict);
* ``model.replace(**changes)`` is a validated copy.

Every failure is a :class:`ConfigError` (or the subclass's ``config_error``) naming the setting, as the
subclass wants it named (field or variable), and never echoing the value: pydantic's ``ValidationError``
is converted here, its input left out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import FrozenInstanceError
from typing import Annotated, Any, ClassVar, Final, Literal, Self

from pydantic import AfterValidator, BeforeValidator, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from etl.errors import ConfigError

__all__ = [
    "Flag",
    "Int",
    "Number",
    "Secret",
    "SettingsModel",
    "Text",
    "TextList",
    "checked",
    "parse_flag",
    "stripped",
]

_TRUE: Final = frozenset({"true", "yes", "on", "1"})
_FALSE: Final = frozenset({"false", "no", "off", "0"})
FLAG_WORDS: Final = "true/false, yes/no, on/off or 1/0"


class Secret(SecretStr):
    """An opaque credential. ``repr``/``str`` print a mask; only :meth:`reveal` gives the value.

    Pydantic's ``SecretStr`` (so JSON dumps mask it too), pickled with its value, compared and hashed by it."""

    def reveal(self) -> str:
        return self.get_secret_value()

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__


def parse_flag(value: object) -> bool:
    """The one boolean rule: ``true/false``, ``yes/no``, ``on/off``, ``1/0`` (any case), or a bool."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise ValueError(f"expected {FLAG_WORDS}")


def _not_bool(value: object) -> object:
    # pydantic reads True as 1; a flag where a number belongs is a mistake.
    if isinstance(value, bool):
        raise ValueError("expected a number, not a boolean")
    return value


def stripped(value: object) -> object:
    return value.strip() if isinstance(value, str) else value


def _text_list(value: object) -> tuple[str, ...]:
    items: Iterable[object]
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, Iterable):
        items = value
    else:
        raise ValueError("expected a comma-separated list")
    return tuple(text for text in (str(item).strip() for item in items) if text)


#: A boolean (see :func:`parse_flag`).
Flag = Annotated[bool, BeforeValidator(parse_flag)]
#: An integer: ``12``, ``"12"``, ``"1_000"``, ``12.0``; never a bool or a fraction.
Int = Annotated[int, BeforeValidator(_not_bool)]
#: A finite number (the models refuse nan/inf); never a bool.
Number = Annotated[float, BeforeValidator(_not_bool)]
#: Text with surrounding whitespace removed.
Text = Annotated[str, BeforeValidator(stripped)]
#: A list given as ``"a,b"`` (environment) or a JSON list; blanks dropped.
TextList = Annotated[tuple[str, ...], BeforeValidator(_text_list)]


def checked(check: Callable[[Any], None]) -> AfterValidator:
    """A field check raising :class:`ConfigError` (e.g. :func:`etl.config.check_license_code`) as a pydantic
    validator: its reason is kept, the setting named by the model (field or variable)."""

    def run(value: Any) -> Any:
        try:
            check(value)
        except ConfigError as exc:
            raise ValueError(exc.reason) from None
        return value

    return AfterValidator(run)


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping (``os.environ`` or a test's dict), reading
    only the variables the model declares, so a field's own name is never read as a variable."""

    def __init__(self, settings_cls: type[SettingsModel], env: Mapping[str, str]) -> None:
        declared = settings_cls.env_vars().values()
        self._given = {var: env[var] for var in declared if env.get(var, "") != ""}
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return dict(self._given)

    def decode_complex_value(self, field_name: str, field: FieldInfo, value: Any) -> Any:
        # Lists are given as "a,b" (split by the field's validator), never as JSON.
        return value


#: The environment of the _load call in progress (None: keyword arguments only).
_ENVIRONMENT: ContextVar[Mapping[str, str] | None] = ContextVar("settings_environment", default=None)


class SettingsModel(BaseSettings):
    """Base of the settings objects: frozen, unknown names refused, one rule per kind of value."""

    model_config = SettingsConfigDict(
        frozen=True,
        extra="forbid",
        validate_by_name=True,
        validate_by_alias=True,
        case_sensitive=True,
        env_ignore_empty=True,
        allow_inf_nan=False,
    )

    #: The error raised for a bad value (the sandbox's is also a ValueError).
    config_error: ClassVar[type[ConfigError]] = ConfigError
    #: How errors name a setting: by field name, or by the environment variable that sets it.
    error_names: ClassVar[Literal["field", "env"]] = "field"

    def __init__(self, **values: Any) -> None:
        for name in values:
            if name.startswith("_"):  # BaseSettings' own options (_env_file, ...): not settings, not allowed
                raise type(self).config_error(name, "unknown setting")
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise type(self)._config_error_from(exc) from None

    def __setattr__(self, name: str, value: Any) -> None:
        # Frozen as the dataclasses were (and without pydantic's error, which would print the value).
        raise FrozenInstanceError(f"cannot assign to field {name!r}: settings are immutable; use .replace()")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}: settings are immutable")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Constructed directly: keyword arguments only. The environment is read only through _load, from
        # the mapping it is given, so a test or a library caller never picks up a variable by accident.
        env = _ENVIRONMENT.get()
        if env is None or not issubclass(settings_cls, SettingsModel):
            return (init_settings,)
        return (init_settings, _MappingEnvSource(settings_cls, env))

    @classmethod
    def _load(cls, values: Mapping[str, Any] | None = None, *, env: Mapping[str, str] | None = None) -> Self:
        """Build from ``values`` (by field name) over the declared variables of ``env`` (when given)."""
        token = _ENVIRONMENT.set(env)
        try:
            return cls(**dict(values or {}))
        finally:
            _ENVIRONMENT.reset(token)

    # -- names -----------------------------------------------------------------------------------
    @classmethod
    def env_vars(cls) -> dict[str, str]:
        """Field name -> the environment variable that sets it (fields read from the environment only)."""
        found: dict[str, str] = {}
        for name, info in cls.model_fields.items():
            if isinstance(info.validation_alias, str):
                found[name] = info.validation_alias
        return found

    @classmethod
    def setting_name(cls, field: str) -> str:
        """How messages name ``field``."""
        if cls.error_names == "env":
            return cls.env_vars().get(field, field)
        return field

    @classmethod
    def invalid(cls, field: str, reason: str) -> ConfigError:
        """The error for a bad ``field`` (for cross-field checks, which have no pydantic location)."""
        return cls.config_error(cls.setting_name(field), reason)

    # -- copies ----------------------------------------------------------------------------------
    def replace(self, **changes: Any) -> Self:
        """A validated copy with ``changes`` applied; an unknown name is a configuration error."""
        current = {name: getattr(self, name) for name in type(self).model_fields}
        return type(self)(**{**current, **changes})

    # -- errors ----------------------------------------------------------------------------------
    @classmethod
    def _config_error_from(cls, exc: ValidationError) -> ConfigError:
        fields = {alias: name for name, alias in cls.env_vars().items()}
        named: list[tuple[str, str]] = []
        for error in exc.errors(include_url=False):
            cause = (error.get("ctx") or {}).get("error")
            if isinstance(cause, ConfigError):  # a check that names its setting (and is a ValueError too)
                return cause
            key = str(error["loc"][0]) if error["loc"] else ""
            field = fields.get(key, key)
            setting = cls.setting_name(field) if field in cls.model_fields else (key or cls.__name__)
            named.append((setting, _reason(error)))
        setting, reason = named[0]
        others = sorted({other for other, _ in named[1:]} - {setting})
        if others:
            reason = f"{reason} (also invalid: {', '.join(others)})"
        return cls.config_error(setting, reason)


def _reason(error: ErrorDetails) -> str:
    """Why a value was refused, without the value (it might be a key pasted into the wrong variable)."""
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown setting"
    if kind == "missing":
        return "missing"
    if kind in ("value_error", "assertion_error"):
        cause = (error.get("ctx") or {}).get("error")
        if cause is not None:
            return str(cause)  # our own messages, written not to echo secrets
    message = error["msg"]
    value = error.get("input")
    if isinstance(value, str) and len(value) >= 3 and value in message:
        message = message.replace(value, "…")
    return message
