"""Broker URLs with several nodes (a cluster) and the order clients try them in (#19)."""

from __future__ import annotations

import asyncio

import pytest
from aio_pika.connection import make_url

from amqptasks import App
from amqptasks.config import BrokerURL
from amqptasks.exceptions import AuthenticationFailed, BrokerUnreachable, ConfigError
from amqptasks.logging import redact, redact_secrets
from amqptasks.transport._pika import every_node_parameters
from amqptasks.transport.failover import NodeRing
from amqptasks.transport.robust import _node_url

CLUSTER = "amqp://app:pa;ss@rabbit-1:5672//;amqp://app:s3cret@rabbit-2:5673/jobs?heartbeat=5"


def test_semicolons_separate_nodes_each_parsed_whole() -> None:
    url = BrokerURL.parse(CLUSTER)
    assert [(n.host, n.port, n.vhost) for n in url.nodes] == [
        ("rabbit-1", 5672, "/"),
        ("rabbit-2", 5673, "jobs"),
    ]
    # A ";" not followed by a scheme is part of the password.
    assert url.nodes[0].password == "pa;ss"
    assert url.nodes[1].password == "s3cret"
    assert url.nodes[1].heartbeat == 5
    assert url.host == "rabbit-1"  # the URL itself is its first node
    assert [n.host for n in url.alternates] == ["rabbit-2"]
    assert url.where == "rabbit-1:5672,rabbit-2:5673//"


def test_one_url_is_one_node() -> None:
    url = BrokerURL.parse("amqp://guest:guest@localhost//")
    assert url.nodes == (url,)
    assert url.alternates == ()


def test_every_node_password_is_masked() -> None:
    url = BrokerURL.parse(CLUSTER)
    shown = [url.redacted(), str(url), repr(url)]
    for text in shown:
        assert "pa;ss" not in text and "s3cret" not in text
    assert url.redacted() == "amqp://app:***@rabbit-1:5672/;amqp://app:***@rabbit-2:5673/jobs"
    assert "s3cret" not in redact(f"connecting to {CLUSTER} failed")
    assert "pa;ss" not in redact(f"connecting to {CLUSTER} failed")
    event = redact_secrets(None, "warning", {"event": "x", "broker": CLUSTER})  # type: ignore[arg-type]
    assert "s3cret" not in event["broker"] and "pa;ss" not in event["broker"]


def test_a_list_of_urls_is_a_cluster_url() -> None:
    nodes = ["amqp://app:s3cret@rabbit-1//", "amqp://app:s3cret@rabbit-2//"]
    assert [n.host for n in BrokerURL.parse(nodes).nodes] == ["rabbit-1", "rabbit-2"]
    app = App("proj", broker_url=nodes)
    assert app.settings.broker_url == ";".join(nodes)
    assert [n.host for n in app.settings.broker.nodes] == ["rabbit-1", "rabbit-2"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "broker URL is empty"),
        (" ; ", "broker URL is empty"),
        ([], "broker URL is empty"),
        (["amqp://a//", 5], "a string or a list of strings"),
        ("amqp://app:s3cret@rabbit-1//;http://app:s3cret@rabbit-2//", "scheme must be amqp"),
        ("amqp://app:s3cret@rabbit-1//;amqp://app:s3cret@rabbit-2:99999//", "not a valid URL"),
    ],
)
def test_a_bad_node_is_a_one_line_error_without_its_password(value: object, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        BrokerURL.parse(value)  # type: ignore[arg-type]
    text = str(caught.value)
    assert message in text
    assert "s3cret" not in text and "\n" not in text


def test_pika_parameters_for_each_node() -> None:
    parameters = every_node_parameters(BrokerURL.parse(CLUSTER), "test")
    assert [(p.host, p.port, p.virtual_host) for p in parameters] == [
        ("rabbit-1", 5672, "/"),
        ("rabbit-2", 5673, "jobs"),
    ]


def test_the_async_connection_keeps_its_query_on_another_node() -> None:
    template = make_url(host="rabbit-1", port=5672, login="app", password="x", heartbeat=5)
    node = BrokerURL.parse(CLUSTER).nodes[1]
    moved = _node_url(template, node)
    assert (moved.host, moved.port, moved.user, moved.password) == (
        "rabbit-2",
        5673,
        "app",
        "s3cret",
    )
    assert moved.path == "/jobs"
    assert moved.query["heartbeat"] == "5"


def _ring() -> NodeRing:
    return NodeRing(BrokerURL.parse("amqp://n1//;amqp://n2//;amqp://n3//"))


def test_the_ring_moves_on_from_the_node_last_used() -> None:
    ring = _ring()
    assert [n.host for n in ring.round()] == ["n1", "n2", "n3"]
    assert ring.connect(lambda node: node.host) == "n1"
    assert [n.host for n in ring.round()] == ["n2", "n3", "n1"]
    assert ring.connect(lambda node: node.host) == "n2"
    assert ring.current == 1


def test_unreachable_nodes_are_skipped_and_all_named_when_none_answers() -> None:
    ring = _ring()
    tried: list[str] = []

    def open_node(node: BrokerURL) -> str:
        tried.append(node.host)
        if node.host != "n3":
            raise BrokerUnreachable(f"cannot connect to {node.redacted()}: refused")
        return node.host

    assert ring.connect(open_node) == "n3"
    assert tried == ["n1", "n2", "n3"]

    def refuse(node: BrokerURL) -> str:
        raise BrokerUnreachable(f"cannot connect to {node.redacted()}: refused")

    with pytest.raises(BrokerUnreachable) as caught:
        ring.connect(refuse)
    text = str(caught.value)
    assert "no node of the cluster answered (3 tried)" in text
    assert all(f"@{host}:5672" in text for host in ("n1", "n2", "n3"))


def test_a_refused_login_is_not_hidden_by_failing_over() -> None:
    ring = _ring()

    def open_node(node: BrokerURL) -> str:
        raise AuthenticationFailed(f"broker at {node.redacted()} refused the login")

    with pytest.raises(AuthenticationFailed, match="n1"):
        ring.connect(open_node)


def test_the_async_ring_fails_over_too() -> None:
    ring = _ring()

    async def open_node(node: BrokerURL) -> str:
        if node.host == "n1":
            raise BrokerUnreachable("refused")
        return node.host

    assert asyncio.run(ring.aconnect(open_node)) == "n2"
    assert [n.host for n in ring.round()] == ["n3", "n1", "n2"]
