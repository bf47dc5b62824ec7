from __future__ import annotations

import pickle

import pytest

from etl.config import Settings, env_var_for
from etl.errors import ConfigError

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
    [("global", "https://api.webengage.com"), ("in", "https://api.in.webengage.com"),
     ("ksa", "https://api.ksa.webengage.com")],
)  # fmt: skip
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
