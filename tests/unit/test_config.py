"""BrokerURL.parse, Settings.build and settings_from_object."""

from __future__ import annotations

import sys
import types

import pytest

from amqptasks import constants
from amqptasks.config import BrokerURL, Settings, settings_from_object
from amqptasks.exceptions import ConfigError

#: A password distinctive enough that finding it anywhere means it leaked.
SECRET = "Zq8-uniquePassw0rd"

# -- BrokerURL.parse -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "vhost"),
    [
        ("amqp://u:p@h:5672//", "/"),
        ("amqp://u:p@h/%2F", "/"),
        ("amqp://u:p@h:5672/", "/"),
        ("amqp://h", "/"),
        ("amqp://h/foo", "foo"),
        ("amqp://h/%2Fprod", "/prod"),
    ],
)
def test_vhost(url: str, vhost: str) -> None:
    assert BrokerURL.parse(url).vhost == vhost


def test_full_url_is_split_into_its_parts() -> None:
    url = BrokerURL.parse("amqp://alice:wonder@rabbit.example.com:5673/prod")
    assert (url.scheme, url.host, url.port, url.vhost) == (
        "amqp",
        "rabbit.example.com",
        5673,
        "prod",
    )
    assert (url.username, url.password) == ("alice", "wonder")
    assert url.ssl is False


def test_bare_host_means_guest_on_default_port_and_vhost() -> None:
    url = BrokerURL.parse("amqp://h")
    assert (url.host, url.port, url.vhost) == ("h", 5672, "/")
    assert (url.username, url.password) == ("guest", "guest")
    assert url.heartbeat == constants.DEFAULT_HEARTBEAT
    assert url.connect_timeout == constants.DEFAULT_CONNECT_TIMEOUT


def test_amqps_defaults_to_port_5671_and_ssl() -> None:
    url = BrokerURL.parse("amqps://u:p@h//")
    assert url.port == 5671
    assert url.scheme == "amqps"
    assert url.ssl is True


def test_scheme_is_case_insensitive() -> None:
    assert BrokerURL.parse("AMQP://h").scheme == "amqp"


def test_percent_encoded_credentials_are_decoded() -> None:
    url = BrokerURL.parse("amqp://us%40er:p%40ss%2Fword@h//")
    assert (url.username, url.password) == ("us@er", "p@ss/word")


def test_query_parameters_are_parsed() -> None:
    url = BrokerURL.parse("amqp://h//?heartbeat=10&connect_timeout=2.5&name=billing")
    assert url.heartbeat == 10
    assert url.connect_timeout == 2.5
    assert url.name == "billing"


def test_heartbeat_zero_is_allowed() -> None:
    # 0 disables heartbeats; it is a legitimate value.
    assert BrokerURL.parse("amqp://h//?heartbeat=0").heartbeat == 0


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("heartbeat=-1", "heartbeat"),
        ("heartbeat=ten", "heartbeat"),
        ("heartbeat=1.5", "heartbeat"),
        ("heartbeat=", "heartbeat"),
        ("connect_timeout=0", "connect_timeout"),
        ("connect_timeout=-3", "connect_timeout"),
        ("connect_timeout=soon", "connect_timeout"),
        ("connect_timeout=nan", "connect_timeout"),
    ],
)
def test_bad_query_parameter_value_is_refused(query: str, parameter: str) -> None:
    with pytest.raises(ConfigError, match=parameter):
        BrokerURL.parse(f"amqp://u:{SECRET}@h//?{query}")


def test_unknown_query_parameter_is_named() -> None:
    with pytest.raises(ConfigError, match="heartbeet") as info:
        BrokerURL.parse("amqp://h//?heartbeet=10")
    # The message lists the known parameters, so the typo is easy to fix.
    assert "heartbeat" in str(info.value)


@pytest.mark.parametrize(
    "url",
    ["http://u:p@h//", "redis://h:6379/0", "amqpx://h//", "h:5672"],
)
def test_bad_scheme_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="scheme"):
        BrokerURL.parse(url)


def test_missing_host_is_refused() -> None:
    with pytest.raises(ConfigError, match="no host"):
        BrokerURL.parse("amqp:///vhost")


def test_str_and_repr_hide_the_password() -> None:
    url = BrokerURL.parse(f"amqp://alice:{SECRET}@h:5672/prod")
    assert SECRET not in str(url)
    assert SECRET not in repr(url)
    assert str(url) == "amqp://alice:***@h:5672/prod"
    assert "alice" in repr(url)


def test_redacted_url_parses_back_to_the_same_place() -> None:
    for raw in ("amqp://u:x@h:5672//", "amqps://u:x@h:5671/prod"):
        url = BrokerURL.parse(raw)
        again = BrokerURL.parse(url.redacted())
        assert (again.scheme, again.host, again.port, again.vhost, again.username) == (
            url.scheme,
            url.host,
            url.port,
            url.vhost,
            url.username,
        )


@pytest.mark.parametrize(
    "url",
    [
        f"http://u:{SECRET}@h//",
        f"amqp://u:{SECRET}@h//?bogus=1",
        f"amqp://u:{SECRET}@h//?heartbeat=x",
        f"amqp://u:{SECRET}@h:notaport//",
        f"amqp://u:{SECRET}@h:99999//",
        f"amqp://u:{SECRET}@[::1//",
        f"amqp://u:{SECRET}@/vhost",
        # The scheme forgotten: a common slip when pasting credentials.
        f"guest:{SECRET}@localhost:5672//",
    ],
)
def test_password_never_appears_in_errors(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        BrokerURL.parse(url)
    assert SECRET not in str(info.value)
    assert SECRET not in repr(info.value)


def test_password_with_a_raw_at_sign_is_not_leaked_in_errors() -> None:
    # An unencoded "@" in the password: urlsplit still splits at the last "@",
    # so the error message must not show the part after the first one either.
    with pytest.raises(ConfigError) as info:
        BrokerURL.parse("amqp://u:pa@ss-Zq8tail@h//?bogus=1")
    assert "ss-Zq8tail" not in str(info.value)


# -- Settings.build --------------------------------------------------------------------------


def test_build_without_anything_gives_the_defaults() -> None:
    settings = Settings.build({}, environ={})
    assert settings == Settings()
    assert settings.broker_url == constants.DEFAULT_BROKER_URL
    assert settings.accept_content == ("json", "msgpack", "yaml")


def test_build_takes_given_values() -> None:
    settings = Settings.build(
        {"broker_url": "amqp://h/vh", "default_queue": "jobs", "accept_content": ["json"]},
        environ={},
    )
    assert settings.broker.vhost == "vh"
    assert settings.default_queue == "jobs"
    assert settings.accept_content == ("json",)


def test_unknown_setting_suggests_the_close_name() -> None:
    with pytest.raises(ConfigError, match="broker_ur") as info:
        Settings.build({"broker_ur": "amqp://h//"}, environ={})
    assert "did you mean broker_url" in str(info.value)


@pytest.mark.parametrize(
    ("given", "match"),
    [
        pytest.param({"worker_pool": "gevent"}, "worker_pool", id="pool"),
        pytest.param(
            {"worker_max_tasks_per_child": 0}, "worker_max_tasks_per_child", id="max-tasks-0"
        ),
        pytest.param(
            {"worker_max_memory_per_child": 1.5}, "worker_max_memory_per_child", id="max-mem"
        ),
        pytest.param({"task_time_limit": 0}, "task_time_limit", id="time-limit-0"),
        pytest.param(
            {"task_soft_time_limit": float("inf")}, "task_soft_time_limit", id="soft-limit-inf"
        ),
        pytest.param(
            {"broker_consumer_timeout": -1}, "broker_consumer_timeout", id="consumer-timeout"
        ),
        pytest.param(
            {"worker_prefetch_multiplier": 0}, "worker_prefetch_multiplier", id="prefetch"
        ),
        pytest.param({"worker_concurrency": 0}, "worker_concurrency", id="concurrency"),
        pytest.param({"publish_timeout": 0}, "publish_timeout", id="publish-timeout-0"),
        pytest.param({"result_expires": -1}, "result_expires", id="result-expires-negative"),
        pytest.param(
            {"publish_timeout": float("nan")}, "publish_timeout", id="publish-timeout-nan"
        ),
        pytest.param(
            {"worker_shutdown_timeout": float("nan")},
            "worker_shutdown_timeout",
            id="shutdown-timeout-nan",
        ),
        pytest.param({"broker_url": "redis://h"}, "scheme", id="broker-url"),
    ],
)
def test_bad_given_value_is_refused(given: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Settings.build(given, environ={})


def test_environment_overrides_given_values() -> None:
    settings = Settings.build(
        {"broker_url": "amqp://code-host//", "default_queue": "from-code"},
        environ={
            "AMQPTASKS_BROKER_URL": "amqp://env-host//",
            "AMQPTASKS_DEFAULT_QUEUE": "from-env",
        },
    )
    assert settings.broker.host == "env-host"
    assert settings.default_queue == "from-env"


def test_unrelated_environment_variables_are_ignored() -> None:
    settings = Settings.build({}, environ={"BROKER_URL": "amqp://x//", "AMQPTASKS_NOPE": "1"})
    assert settings == Settings()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", True),
        ("true", True),
        ("Yes", True),
        (" ON ", True),
        ("0", False),
        ("false", False),
        ("no", False),
        ("off", False),
        ("", False),
    ],
)
def test_boolean_from_environment(raw: str, expected: bool) -> None:
    settings = Settings.build({}, environ={"AMQPTASKS_TASK_ACKS_EARLY": raw})
    assert settings.task_acks_early is expected


def test_numbers_and_tuples_from_environment() -> None:
    settings = Settings.build(
        {},
        environ={
            "AMQPTASKS_WORKER_PREFETCH_MULTIPLIER": "8",
            "AMQPTASKS_WORKER_CONCURRENCY": "3",
            "AMQPTASKS_PUBLISH_TIMEOUT": "2.5",
            "AMQPTASKS_ACCEPT_CONTENT": "json, msgpack,,pickle ",
            "AMQPTASKS_TASK_COMPRESSION": "zlib",
        },
    )
    assert settings.worker_prefetch_multiplier == 8
    assert settings.worker_concurrency == 3
    assert settings.publish_timeout == 2.5
    assert settings.accept_content == ("json", "msgpack", "pickle")
    assert settings.task_compression == "zlib"


def test_empty_environment_value_resets_optional_settings() -> None:
    settings = Settings.build(
        {"worker_concurrency": 5, "task_compression": "bz2"},
        environ={"AMQPTASKS_WORKER_CONCURRENCY": "", "AMQPTASKS_TASK_COMPRESSION": ""},
    )
    assert settings.worker_concurrency is None
    assert settings.task_compression is None


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("AMQPTASKS_TASK_ACKS_EARLY", "maybe"),
        ("AMQPTASKS_WORKER_PREFETCH_MULTIPLIER", "eight"),
        ("AMQPTASKS_WORKER_CONCURRENCY", "2.5"),
        ("AMQPTASKS_PUBLISH_TIMEOUT", "soon"),
    ],
)
def test_unparsable_environment_value_names_the_variable(variable: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        Settings.build({}, environ={variable: raw})


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("AMQPTASKS_WORKER_PREFETCH_MULTIPLIER", "0"),
        ("AMQPTASKS_WORKER_POOL", "gevent"),
        ("AMQPTASKS_TASK_TIME_LIMIT", "-5"),
        ("AMQPTASKS_PUBLISH_TIMEOUT", "-1"),
    ],
)
def test_rejected_environment_value_names_the_variable(variable: str, raw: str) -> None:
    # The value parses but the setting refuses it: the operator must still be told
    # that it came from the environment, not from the application's code.
    with pytest.raises(ConfigError, match=variable):
        Settings.build({}, environ={variable: raw})


def test_worker_settings_of_issue_5_from_the_environment() -> None:
    settings = Settings.build(
        {},
        environ={
            "AMQPTASKS_WORKER_POOL": "processes",
            "AMQPTASKS_WORKER_MAX_TASKS_PER_CHILD": "100",
            "AMQPTASKS_WORKER_MAX_MEMORY_PER_CHILD": "200000",
            "AMQPTASKS_TASK_TIME_LIMIT": "300",
            "AMQPTASKS_TASK_SOFT_TIME_LIMIT": "240.5",
            "AMQPTASKS_BROKER_CONSUMER_TIMEOUT": "3600",
        },
    )
    assert settings.worker_pool == "processes"
    assert settings.worker_max_tasks_per_child == 100
    assert settings.worker_max_memory_per_child == 200_000
    assert (settings.task_soft_time_limit, settings.task_time_limit) == (240.5, 300.0)
    assert settings.broker_consumer_timeout == 3600.0
    empty = Settings.build({}, environ={"AMQPTASKS_TASK_TIME_LIMIT": ""})
    assert empty.task_time_limit is None
    assert Settings().broker_consumer_timeout == 1800.0


@pytest.mark.parametrize("pool", ["threads", "processes", "asyncio", "solo"])
def test_every_pool_is_a_valid_setting(pool: str) -> None:
    assert Settings.build({"worker_pool": pool}, environ={}).worker_pool == pool


def test_settings_repr_does_not_leak_the_password() -> None:
    settings = Settings.build({"broker_url": f"amqp://alice:{SECRET}@h//"}, environ={})
    assert settings.broker.password == SECRET
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings)


def test_bad_broker_url_from_environment_does_not_leak_the_password() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.build({}, environ={"AMQPTASKS_BROKER_URL": f"amqp://u:{SECRET}@h//?x=1"})
    assert SECRET not in str(info.value)


# -- settings_from_object --------------------------------------------------------------------


class _ConfigClass:
    broker_url = "amqp://cls-host//"
    DEFAULT_QUEUE = "upper-case"
    AMQPTASKS_TASK_SERIALIZER = "msgpack"
    not_a_setting = 42
    _task_acks_early = True


def test_settings_from_a_class_takes_lower_and_upper_case_names() -> None:
    assert settings_from_object(_ConfigClass) == {
        "broker_url": "amqp://cls-host//",
        "default_queue": "upper-case",
        "task_serializer": "msgpack",
    }


def test_settings_from_a_module_object() -> None:
    module = types.ModuleType("my_settings")
    module.BROKER_URL = "amqp://mod-host//"  # type: ignore[attr-defined]
    module.task_ignore_result = True  # type: ignore[attr-defined]
    module.os = sys  # type: ignore[attr-defined]  # imported names are ignored
    assert settings_from_object(module) == {
        "broker_url": "amqp://mod-host//",
        "task_ignore_result": True,
    }


def test_settings_from_an_import_path(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("amqptasks_unit_settings_module")
    module.DEFAULT_QUEUE = "imported"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    assert settings_from_object(module.__name__) == {"default_queue": "imported"}


def test_settings_from_a_missing_import_path() -> None:
    with pytest.raises(ConfigError, match="amqptasks_no_such_settings_module"):
        settings_from_object("amqptasks_no_such_settings_module")


def test_settings_from_object_feed_settings_build() -> None:
    settings = Settings.build(settings_from_object(_ConfigClass), environ={})
    assert settings.broker.host == "cls-host"
    assert settings.default_queue == "upper-case"
    assert settings.task_serializer == "msgpack"
