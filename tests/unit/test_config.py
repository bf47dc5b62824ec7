from __future__ import annotations

import dataclasses
import logging
import pickle

import pytest

from etl.config import Secret, Settings, env_values, env_var_for
from etl.errors import ConfigError
from webengage_dev.sandbox.config import SandboxConfig

KEY = "sk-live-VERY-SECRET-123"
BASE = {"WEBENGAGE_LICENSE_CODE": "~2024bb40", "WEBENGAGE_API_KEY": KEY}


def test_from_env_defaults_match_contract() -> None:
    s = Settings.from_env(BASE)
    assert s.base_url == "https://api.webengage.com"
    assert s.account_url == "https://api.webengage.com/v1/accounts/~2024bb40"
    assert (s.bulk_users_rpm, s.bulk_events_rpm, s.users_rpm, s.events_rpm) == (500, 500, 5000, 5000)
    assert s.batch_size == 25
    assert s.effective_state_url == s.warehouse_url


@pytest.mark.parametrize(
    ("dc", "host"),
    [
        ("global", "https://api.webengage.com"),
        ("in", "https://api.in.webengage.com"),
        ("ksa", "https://api.ksa.webengage.com"),
    ],
)
def test_data_center_selects_host(dc: str, host: str) -> None:
    assert Settings.from_env({**BASE, "WEBENGAGE_DATA_CENTER": dc}).base_url == host


def test_api_url_overrides_data_center() -> None:
    s = Settings.from_env({**BASE, "WEBENGAGE_DATA_CENTER": "in", "WEBENGAGE_API_URL": "http://127.0.0.1:8765/"})
    assert s.account_url == "http://127.0.0.1:8765/v1/accounts/~2024bb40"


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"WEBENGAGE_DATA_CENTER": "eu"}, "data_center"),
        ({"WEBENGAGE_BATCH_SIZE": "26"}, "batch_size"),
        ({"WEBENGAGE_BATCH_SIZE": "0"}, "batch_size"),
        ({"WEBENGAGE_BULK_USERS_RPM": "fast"}, "bulk_users_rpm"),
        ({"WEBENGAGE_BULK_USERS_RPM": "-1"}, "bulk_users_rpm"),
        ({"WEBENGAGE_USERS_RPM": "nan"}, "users_rpm"),
        ({"WEBENGAGE_MAX_RETRIES": "2.5"}, "max_retries"),
        ({"WEBENGAGE_SHARED_BULK_BUDGET": "maybe"}, "shared_bulk_budget"),
        ({"WEBENGAGE_API_URL": "ftp://x"}, "api_url"),
        ({"WAREHOUSE_URL": "/tmp/x.duckdb"}, "warehouse_url"),
        ({"WEBENGAGE_RATE_HEADROOM": "1.5"}, "rate_headroom"),
    ],
)
def test_invalid_configuration_names_the_setting(env: dict[str, str], setting: str) -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_env({**BASE, **env})
    assert setting in str(err.value)
    assert KEY not in str(err.value)


@pytest.mark.parametrize("missing", ["WEBENGAGE_API_KEY", "WEBENGAGE_LICENSE_CODE"])
def test_missing_credentials(missing: str) -> None:
    env = {k: v for k, v in BASE.items() if k != missing}
    with pytest.raises(ConfigError, match=missing):
        Settings.from_env(env)


def test_key_never_in_repr_str_or_errors() -> None:
    s = Settings.from_env(BASE)
    assert KEY not in repr(s) and KEY not in str(s) and KEY not in repr(s.api_key)
    assert s.api_key.reveal() == KEY
    assert pickle.loads(pickle.dumps(s)).api_key.reveal() == KEY
    with pytest.raises(ConfigError) as err:
        Settings.from_env({**BASE, "WEBENGAGE_BATCH_SIZE": KEY})
    assert KEY not in str(err.value)


def test_from_airflow_connection_fields() -> None:
    s = Settings.from_connection(
        host="in", login="in~58adcc11", password=KEY, extra={"bulk_users_rpm": "1000", "shared_bulk_budget": True}
    )
    assert s.base_url == "https://api.in.webengage.com"
    assert s.license_code == "in~58adcc11" and s.bulk_users_rpm == 1000 and s.shared_bulk_budget
    url = Settings.from_connection(host="http://127.0.0.1:9/", login="l", password="p")
    assert url.base_url == "http://127.0.0.1:9"
    bare = Settings.from_connection(host="api.ksa.webengage.com", login="l", password="p")
    assert bare.base_url == "https://api.ksa.webengage.com"


def test_connection_rejects_unknown_extra() -> None:
    with pytest.raises(ConfigError, match=r"extra\.colour"):
        Settings.from_connection(host="global", login="l", password="p", extra={"colour": "red"})


def test_env_var_names_are_documented_names() -> None:
    assert env_var_for("warehouse_url") == "WAREHOUSE_URL"
    assert env_var_for("state_url") == "STATE_URL"
    assert env_var_for("bulk_users_rpm") == "WEBENGAGE_BULK_USERS_RPM"


@pytest.mark.parametrize("code", ["~99199077", "~2024bb40", "82617894", "in~58adcc11", "ksa~~47b66537", "va1w264d"])
def test_real_license_codes_are_accepted_and_go_into_the_path_unchanged(code: str) -> None:
    s = Settings.from_env({**BASE, "WEBENGAGE_LICENSE_CODE": code, "WEBENGAGE_API_URL": "http://127.0.0.1:9"})
    assert s.license_code == code and s.account_url == f"http://127.0.0.1:9/v1/accounts/{code}"


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("82618947.0", "use '82618947'"),  # a spreadsheet's float
        ("8.2618947E7", "turned into a float"),
        (" ~99199077", "whitespace"),
        ("~99199077\n", "whitespace"),
        ("~9919 9077", "only letters, digits"),
        ("lic/../other", "only letters, digits"),
        ("~", "only letters, digits"),
        ("lic?x=1", "only letters, digits"),
    ],
)
def test_mangled_license_codes_get_the_fix(code: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_env({**BASE, "WEBENGAGE_LICENSE_CODE": code})
    assert err.value.setting == "license_code" and expected in str(err.value)


def test_a_float_license_code_from_airflow_extras_is_read_as_text_and_refused() -> None:
    with pytest.raises(ConfigError, match="use '82618947'"):
        Settings.from_mapping({"license_code": 82618947.0, "api_key": KEY})


@pytest.mark.parametrize("bad", [KEY + "\n", KEY + "\r\n", "sk-live\nVERY-SECRET", "sk\tlive", " " + KEY, KEY + "\x00"])
def test_api_key_with_control_characters_or_whitespace_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_env({**BASE, "WEBENGAGE_API_KEY": bad})
    assert err.value.setting == "api_key" and "remove it" in str(err.value)
    assert "VERY-SECRET" not in str(err.value) and "live" not in str(err.value)


def test_settings_without_credentials_for_read_only_commands() -> None:
    s = Settings.from_env({"WAREHOUSE_URL": "duckdb:///x.duckdb"}, credentials=False)
    assert s.license_code == "" and s.effective_state_url == "duckdb:///x.duckdb"
    with pytest.raises(ConfigError, match="WEBENGAGE_LICENSE_CODE"):
        s.require_credentials()
    from etl.engine.frame import client_options

    with pytest.raises(ConfigError, match="license_code"):
        client_options(s)  # nothing can be sent without them: no client is built
    with pytest.raises(ConfigError, match="WEBENGAGE_API_KEY"):
        Settings.from_env({"WEBENGAGE_LICENSE_CODE": "~99199077"}, credentials=False).require_credentials()
    with pytest.raises(ConfigError, match="license_code"):  # given ones are still checked
        Settings.from_env({"WEBENGAGE_LICENSE_CODE": "8.0"}, credentials=False)


# -- the shared loading mechanism (etl/settings_base.py) --------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("yes", True),
        ("On", True),
        ("1", True),
        ("false", False),
        ("No", False),
        ("off", False),
        (" 0 ", False),
    ],
)
def test_one_boolean_rule(text: str, expected: bool) -> None:
    assert Settings.from_env({**BASE, "WEBENGAGE_OVERFLOW_LANE": text}).overflow_lane is expected
    assert Settings.from_mapping({**MAPPING, "overflow_lane": text}).overflow_lane is expected
    assert SandboxConfig.from_mapping({"retry_after": text}).retry_after is expected


@pytest.mark.parametrize("bad", ["maybe", "2", "enabled", ""])
def test_booleans_outside_the_rule_are_refused_everywhere(bad: str) -> None:
    with pytest.raises(ConfigError, match="overflow_lane"):
        Settings.from_mapping({**MAPPING, "overflow_lane": bad})
    with pytest.raises(ValueError, match="retry_after"):
        SandboxConfig.from_mapping({"retry_after": bad})


MAPPING = {"license_code": "~2024bb40", "api_key": KEY}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("data_center", KEY),
        ("batch_size", KEY),
        ("batch_size", 2.5),
        ("batch_size", True),
        ("users_rpm", KEY),
        ("users_rpm", float("inf")),
        ("accepted_statuses", 5),
        ("shared_bulk_budget", KEY),
        ("warehouse_url", KEY),
    ],
)
def test_type_errors_name_the_setting_and_never_echo_the_value(name: str, value: object) -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_mapping({**MAPPING, name: value})
    assert err.value.setting == name
    assert KEY not in str(err.value) and "VERY-SECRET" not in repr(err.value)
    # No ValidationError (which would print the input) in the chain that a traceback shows.
    assert err.value.__cause__ is None and (err.value.__context__ is None or err.value.__suppress_context__)


def test_every_bad_setting_is_listed() -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_env({**BASE, "WEBENGAGE_BATCH_SIZE": "x", "WEBENGAGE_USERS_RPM": "y"})
    assert {err.value.setting, *str(err.value).split("also invalid: ")[1].rstrip(")").split(", ")} == {
        "batch_size",
        "users_rpm",
    }


def test_unknown_setting_by_name() -> None:
    with pytest.raises(ConfigError, match="colour: unknown setting"):
        Settings.from_mapping({**MAPPING, "colour": "red"})
    with pytest.raises(ConfigError, match="unknown setting"):
        Settings.from_env(BASE, colour="red")
    with pytest.raises(ConfigError, match="_env_file"):  # pydantic-settings' own options are not settings
        Settings.from_mapping({**MAPPING, "_env_file": ".env"})


def test_overrides_win_over_the_environment_and_empty_variables_are_unset() -> None:
    env = {**BASE, "WEBENGAGE_BATCH_SIZE": "5", "WEBENGAGE_USERS_RPM": "", "STATE_URL": ""}
    s = Settings.from_env(env, batch_size=3, read_timeout_s=None)
    assert (s.batch_size, s.users_rpm, s.state_url, s.read_timeout_s) == (3, 5000, "", 30.0)


def test_only_the_documented_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    # A variable named like the field (or in another case) is not a setting; neither is os.environ read
    # when Settings is built directly.
    s = Settings.from_env({**BASE, "batch_size": "3", "webengage_batch_size": "4"})
    assert s.batch_size == 25
    monkeypatch.setenv("WEBENGAGE_BATCH_SIZE", "7")
    assert Settings().batch_size == 25 and Settings.from_mapping(MAPPING).batch_size == 25
    assert Settings.from_env(credentials=False).batch_size == 7


def test_text_is_stripped_lists_split_and_numbers_read_loosely() -> None:
    env = {
        **BASE,
        "WAREHOUSE_URL": " duckdb:///x.duckdb\n",
        "WEBENGAGE_ACCEPTED_STATUSES": "queued, ok ,",
        "WEBENGAGE_MAX_BATCH_BYTES": "1_000_000",
        "WEBENGAGE_DATA_CENTER": " in ",
    }
    s = Settings.from_env(env)
    assert (s.warehouse_url, s.accepted_statuses, s.max_batch_bytes) == ("duckdb:///x.duckdb", ("queued", "ok"), 10**6)
    assert s.data_center == "in"
    assert Settings.from_mapping({**MAPPING, "accepted_statuses": ["a", " b"], "batch_size": 10.0}).batch_size == 10


def test_settings_are_frozen_hashable_and_replace_validates() -> None:
    s = Settings.from_env(BASE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.batch_size = 3  # type: ignore[misc]
    assert s == Settings.from_env(BASE) and hash(s) == hash(Settings.from_env(BASE))
    changed = s.replace(batch_size=10, shared_bulk_budget="yes")
    assert (changed.batch_size, changed.shared_bulk_budget, s.batch_size) == (10, True, 25)
    assert changed.api_key.reveal() == KEY
    with pytest.raises(ConfigError, match="batch_size"):
        s.replace(batch_size=26)
    with pytest.raises(ConfigError, match="unknown setting"):
        s.replace(colour="red")


def test_secret_is_pydantic_secret_that_reveals_and_pickles() -> None:
    from pydantic import SecretStr

    key = Settings.from_env(BASE).api_key
    assert isinstance(key, Secret) and isinstance(key, SecretStr)
    assert repr(key) == str(key) == "Secret('**********')" and repr(Secret("")) == "Secret('**********')"
    assert pickle.loads(pickle.dumps(key)) == key and key == Secret(KEY) and key != Secret("other")
    assert Settings.from_mapping({**MAPPING, "api_key": Secret(KEY)}).api_key == key


def test_connection_extras_list_the_allowed_settings() -> None:
    for extra in ({"colour": "red"}, {"api_key": KEY}, {"license_code": "x"}):
        with pytest.raises(ConfigError) as err:
            Settings.from_connection(host="global", login="l", password="p", extra=extra)
        assert err.value.setting.startswith("extra.") and "bulk_users_rpm" in err.value.reason
        assert "api_key" not in err.value.reason and KEY not in str(err.value)
    s = Settings.from_connection(host="ksa", login="l", password="p", extra={"overflow_lane": "on"}, batch_size=5)
    assert s.overflow_lane and s.batch_size == 5 and s.data_center == "ksa"


def test_env_values_and_env_var_for_cover_every_setting() -> None:
    env = {env_var_for(name): "x" for name in Settings.model_fields}
    assert set(env_values(env)) == set(Settings.model_fields)
    assert env_values({"WEBENGAGE_BATCH_SIZE": "", "STATE_URL": "duckdb:///s"}) == {"state_url": "duckdb:///s"}


def test_data_centre_hint_only_when_nothing_chose_the_host(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="etl.config"):
        Settings.from_mapping({"license_code": "in~58adcc11", "api_key": KEY})
    assert "'in' data centre" in caplog.text and KEY not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="etl.config"):
        Settings.from_env({**BASE, "WEBENGAGE_LICENSE_CODE": "in~58adcc11", "WEBENGAGE_DATA_CENTER": "global"})
        Settings.from_mapping({"license_code": "in~58adcc11", "api_key": KEY, "api_url": "http://127.0.0.1:9"})
    assert caplog.text == ""
