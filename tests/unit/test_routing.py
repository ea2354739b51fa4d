"""Router: where a task message is published, and what must exist first (pure)."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from amqptasks import App
from amqptasks._client import destination
from amqptasks.exceptions import ConfigError
from amqptasks.publishing import prepare_call
from amqptasks.routing import Route, Router
from amqptasks.topology.model import (
    Binding,
    BindingDeclaration,
    Declarations,
    Exchange,
    Queue,
    QueueDeclaration,
)

URL = "amqp://guest:guest@127.0.0.1:1//"
REPLY = "amqptasks.reply.t.abc"


MAIL = Queue("mail", exchange=Exchange("mail", "topic"), routing_key="mail.#")
EVENTS = Exchange("events", "topic")


def _router(**given: Any) -> Router:
    given.setdefault("default_queue", "default")
    return Router(**given)


def _app(**settings: Any) -> App:
    return App("t", broker_url=URL, **settings)


# -- precedence: call > task queue > routes > default queue ---------------------------------


def test_app_default_queue() -> None:
    assert _router().resolve("proj.add") == Route("", "default", Queue("default"))


def test_task_queue_wins_over_app_default() -> None:
    assert _router().resolve("proj.add", task_queue="emails") == Route(
        "", "emails", Queue("emails")
    )


def test_call_queue_wins_over_task_queue() -> None:
    assert _router().resolve("proj.add", task_queue="emails", queue="urgent") == Route(
        "", "urgent", Queue("urgent")
    )


def test_exchange_with_routing_key() -> None:
    assert _router().resolve(
        "proj.add", task_queue="emails", exchange="events", routing_key="user.created"
    ) == Route("events", "user.created", None)


def test_exchange_with_queue_routes_by_the_queue_name() -> None:
    assert _router().resolve("proj.add", queue="urgent", exchange="events") == Route(
        "events", "urgent", Queue("urgent")
    )


def test_exchange_alone_routing_key_defaults_to_the_task_queue() -> None:
    route = _router().resolve("proj.add", task_queue="emails", exchange="events")
    assert (route.exchange, route.routing_key) == ("events", "emails")


def test_routing_key_alone_names_the_queue_on_the_default_exchange() -> None:
    assert _router().resolve("proj.add", routing_key="reports") == Route(
        "", "reports", Queue("reports")
    )


def test_routing_key_equal_to_the_queue() -> None:
    assert _router().resolve("proj.add", queue="q", routing_key="q") == Route("", "q", Queue("q"))


def test_queue_and_another_routing_key_without_exchange_conflict() -> None:
    with pytest.raises(ConfigError, match=r"queue='q' and routing_key='k' conflict"):
        _router().resolve("proj.add", queue="q", routing_key="k")


def test_task_queue_beats_routes() -> None:
    router = _router(routes={"proj.add": {"queue": "routed", "priority": 9}})
    assert router.resolve("proj.add", task_queue="emails") == Route("", "emails", Queue("emails"))


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        ({"queue": "called"}, Route("", "called", Queue("called"))),
        ({"routing_key": "keyed"}, Route("", "keyed", Queue("keyed"))),
        ({"exchange": "events", "routing_key": "k"}, Route("events", "k", None)),
    ],
)
def test_call_options_beat_task_queue_and_routes(call: dict[str, str], expected: Route) -> None:
    router = _router(routes={"proj.*": {"queue": "routed", "priority": 9}})
    assert router.resolve("proj.add", task_queue="emails", **call) == expected


# -- routes -----------------------------------------------------------------------------------


def test_route_as_a_string_is_a_queue_name() -> None:
    router = _router(routes={"proj.add": "math"})
    assert router.resolve("proj.add") == Route("", "math", Queue("math"))
    assert router.resolve("proj.other") == Route("", "default", Queue("default"))


@pytest.mark.parametrize(
    "routes",
    [
        {"proj.*": "glob", "proj.add": "exact"},
        {"proj.add": "exact", "proj.*": "glob"},
    ],
)
def test_exact_name_beats_glob(routes: dict[str, str]) -> None:
    router = _router(routes=routes)
    assert router.resolve("proj.add").routing_key == "exact"
    assert router.resolve("proj.sub").routing_key == "glob"


def test_glob_patterns() -> None:
    router = _router(routes={"proj.mail.*": "mail", "proj.report?": "reports", "x.[ab]": "ab"})
    assert router.resolve("proj.mail.send").routing_key == "mail"
    assert router.resolve("proj.reports").routing_key == "reports"
    assert router.resolve("x.b").routing_key == "ab"
    # Case-sensitive, anchored at both ends.
    assert router.resolve("Proj.mail.send").routing_key == "default"
    assert router.resolve("other.proj.mail.send").routing_key == "default"
    assert router.resolve("x.c").routing_key == "default"


def test_globs_and_router_functions_are_tried_in_order() -> None:
    seen: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def by_tenant(name: str, args: Any, kwargs: Any) -> str | None:
        seen.append((name, tuple(args), dict(kwargs)))
        return "tenant-" + kwargs["tenant"] if "tenant" in kwargs else None

    router = _router(routes=[{"proj.mail.*": "mail"}, by_tenant, {"proj.*": "proj"}])
    # The glob comes first: the function is not even asked.
    assert router.resolve("proj.mail.send", (), {"tenant": "a"}).routing_key == "mail"
    assert seen == []
    # The function comes before the later glob.
    assert router.resolve("proj.add", (1,), {"tenant": "acme"}).routing_key == "tenant-acme"
    assert seen == [("proj.add", (1,), {"tenant": "acme"})]
    # A function returning None falls through to the next entry, then to the default.
    assert router.resolve("proj.add", (1,), {}).routing_key == "proj"
    assert router.resolve("other.add", (), {}).routing_key == "default"


def test_router_function_first_then_mapping() -> None:
    router = _router(routes=[lambda name, args, kwargs: "fn", {"proj.add": "exact"}])
    assert router.resolve("proj.add").routing_key == "fn"


def test_router_function_returning_none_falls_through_to_default() -> None:
    router = _router(routes=lambda name, args, kwargs: None)
    assert router.resolve("proj.add") == Route("", "default", Queue("default"))


def test_router_function_returning_a_mapping() -> None:
    router = _router(
        routes=lambda name, args, kwargs: {"exchange": "events", "routing_key": name, "priority": 3}
    )
    assert router.resolve("proj.add") == Route("events", "proj.add", None, 3)


@pytest.mark.parametrize(
    ("returned", "match"),
    [({"queue": "q", "exchnage": "x"}, "exchnage"), (5, "queue name or a mapping")],
)
def test_router_function_result_is_checked(returned: object, match: str) -> None:
    router = _router(routes=lambda name, args, kwargs: returned)
    with pytest.raises(ConfigError, match=match):
        router.resolve("proj.add")


def test_route_gives_queue_and_priority() -> None:
    router = _router(routes={"proj.report": {"queue": "reports", "priority": 7}})
    assert router.resolve("proj.report") == Route("", "reports", Queue("reports"), 7)


def test_route_gives_exchange_and_routing_key_without_queue() -> None:
    router = _router(routes={"proj.*": {"exchange": "events", "routing_key": "user.created"}})
    assert router.resolve("proj.signup") == Route("events", "user.created", None)


def test_route_gives_exchange_and_queue() -> None:
    router = _router(routes={"proj.*": {"exchange": "events", "queue": "mail"}})
    assert router.resolve("proj.signup") == Route("events", "mail", Queue("mail"))


def test_route_giving_only_a_priority_goes_to_the_default_queue() -> None:
    router = _router(routes={"proj.*": {"priority": 4}})
    assert router.resolve("proj.add") == Route("", "default", Queue("default"), 4)


def test_route_to_a_queue_bound_to_an_exchange() -> None:
    router = _router(queues=[MAIL], routes={"proj.mail.*": "mail"})
    assert router.resolve("proj.mail.send") == Route("mail", "mail.#", MAIL)


# -- queues -----------------------------------------------------------------------------------


def test_queue_bound_to_an_exchange_is_published_there_with_its_routing_key() -> None:
    router = _router(queues=[MAIL])
    assert router.resolve("proj.send", queue="mail") == Route("mail", "mail.#", MAIL)
    assert router.resolve("proj.send", task_queue="mail") == Route("mail", "mail.#", MAIL)


def test_queue_bound_without_routing_key_uses_its_name() -> None:
    queue = Queue("mail", exchange="tasks")
    route = _router(queues=[queue]).resolve("proj.send", queue="mail")
    assert route == Route("tasks", "mail", queue)


def test_queue_bound_to_a_builtin_exchange() -> None:
    queue = Queue("audit", exchange=Exchange("amq.topic", "topic"), routing_key="audit.*")
    route = _router(queues=[queue]).resolve("proj.log", queue="audit")
    assert route == Route("amq.topic", "audit.*", queue)


def test_queue_with_only_extra_bindings_is_reached_through_the_default_exchange() -> None:
    queue = Queue("audit", bindings=[Binding("events", "user.*")])
    route = _router(queues=[queue]).resolve("proj.log", queue="audit")
    assert route == Route("", "audit", queue)


def test_default_queue_can_be_an_app_queue() -> None:
    router = _router(queues=[MAIL], default_queue="mail")
    assert router.resolve("proj.any") == Route("mail", "mail.#", MAIL)


def test_default_exchange_binds_implicit_queues_to_it() -> None:
    router = _router(default_exchange="tasks")
    implicit = Queue("default", exchange=Exchange("tasks"), routing_key="default")
    assert router.resolve("proj.add") == Route("tasks", "default", implicit)
    assert router.queue("emails").all_bindings() == (Binding(Exchange("tasks"), "emails"),)
    # A queue bound elsewhere keeps its own exchange.
    assert _router(default_exchange="tasks", queues=[MAIL]).resolve(
        "proj.add", queue="mail"
    ) == Route("mail", "mail.#", MAIL)


def test_default_exchange_applies_to_app_queues_without_exchange() -> None:
    router = _router(default_exchange="tasks", queues=[Queue("reports", max_priority=10)])
    route = router.resolve("proj.report", queue="reports")
    assert (route.exchange, route.routing_key) == ("tasks", "reports")


def test_queue_lookup_returns_the_app_queue_or_an_implicit_one() -> None:
    router = _router(queues=[MAIL])
    assert router.queue("mail") is MAIL
    assert router.queue("other") == Queue("other")


def test_duplicate_queue_names_are_refused() -> None:
    with pytest.raises(ConfigError, match="'mail' is defined twice"):
        _router(queues=[MAIL, Queue("mail")])
    with pytest.raises(ConfigError, match="'mail' is defined twice"):
        _app(queues=[Queue("mail"), Queue("mail", max_priority=3)])


def test_queues_must_be_queue_objects() -> None:
    with pytest.raises(ConfigError, match="Queue objects"):
        _app(queues=["mail"])


# -- route validation at App construction ----------------------------------------------------


def test_unknown_route_key_is_refused_at_app_construction() -> None:
    with pytest.raises(ConfigError, match=r"route 'proj\.add' has unknown key\(s\) prio"):
        _app(routes={"proj.add": {"queue": "q", "prio": 3}})


def test_unknown_route_key_in_a_list_entry_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"unknown key\(s\) exchnage, rk"):
        _app(routes=[lambda n, a, k: None, {"proj.*": {"exchnage": "x", "rk": "y"}}])


@pytest.mark.parametrize("spec", [5, None, ["q"]])
def test_route_spec_must_be_a_name_or_a_mapping(spec: object) -> None:
    with pytest.raises(ConfigError, match="must be a queue name or a mapping"):
        _app(routes={"proj.add": spec})


@pytest.mark.parametrize("routes", ["default", 5, ["default"], [{"a": "b"}, 3]])
def test_routes_of_the_wrong_type_are_refused(routes: object) -> None:
    with pytest.raises(ConfigError, match="route"):
        _app(routes=routes)


# -- declarations and declare modes ---------------------------------------------------------


def test_declarations_for_a_queue_route() -> None:
    router = _router(queues=[Queue("reports", max_priority=10)])
    route = router.resolve("proj.report", queue="reports")
    assert router.declarations(route) == Queue("reports", max_priority=10).declarations()
    assert router.declarations(route).queues[-1].arguments["x-max-priority"] == 10


def test_declarations_follow_the_default_queue_type() -> None:
    router = _router(default_queue_type="quorum")
    declarations = router.declarations(router.resolve("proj.add"))
    assert [q.arguments.get("x-queue-type") for q in declarations.queues] == ["quorum", "quorum"]


def test_declarations_for_an_exchange_route_without_app_queues_on_it() -> None:
    router = _router(queues=[Queue("plain")])
    assert router.declarations(Route("events", "user.created", None)) == Declarations()


def test_declarations_for_an_exchange_route_cover_every_app_queue_bound_to_it() -> None:
    signups = Queue("signups", exchange=EVENTS, routing_key="user.created")
    audit = Queue("audit", bindings=[Binding(EVENTS, "#")], dead_letter=False)
    router = _router(queues=[signups, MAIL, audit, Queue("plain")])
    assert router.declarations(Route("events", "user.created", None)) == Declarations(
        exchanges=(EVENTS,),
        queues=(
            QueueDeclaration("signups.dlq"),
            QueueDeclaration(
                "signups",
                arguments={
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": "signups.dlq",
                },
            ),
            QueueDeclaration("audit"),
        ),
        bindings=(
            BindingDeclaration("signups", "events", "user.created"),
            BindingDeclaration("audit", "events", "#"),
        ),
    )


def test_declare_mode_of_a_queue_wins_over_the_app_mode() -> None:
    router = _router()
    assert router.declare_mode(Queue("q", declare="passive"), "declare") == "passive"
    assert router.declare_mode(Queue("q"), "off") == "off"
    assert router.declare_mode(None, "passive") == "passive"


def test_destination_of_a_queue_route() -> None:
    app = _app(queues=[Queue("legacy", declare="passive")], topology_mode="declare")
    target = destination(app.router, app.settings, app.router.resolve("x", queue="legacy"))
    assert target.key == "q:legacy"
    assert target.mode == "passive"
    assert target.declarations == Queue("legacy").declarations()
    target = destination(app.router, app.settings, app.router.resolve("x"))
    assert (target.key, target.mode) == ("q:default", "declare")


def test_destination_of_an_exchange_route() -> None:
    app = _app(topology_mode="off")
    target = destination(app.router, app.settings, Route("events", "k", None))
    assert (target.key, target.mode, target.declarations) == ("x:events", "off", Declarations())


# -- App wiring -----------------------------------------------------------------------------


def test_app_builds_its_router_from_settings() -> None:
    reports = Queue("reports", max_priority=10)
    app = _app(
        queues=[MAIL, reports],
        routes={"proj.mail.*": "mail", "proj.report": {"queue": "reports", "priority": 5}},
        default_queue="work",
        default_queue_type="quorum",
    )
    router = app.router
    assert router.queues == {"mail": MAIL, "reports": reports}
    assert (router.default_queue, router.default_queue_type) == ("work", "quorum")
    assert router.resolve("proj.mail.send") == Route("mail", "mail.#", MAIL)
    assert router.resolve("proj.report") == Route("", "reports", reports, 5)
    assert router.resolve("proj.add") == Route("", "work", Queue("work"))


def test_app_router_uses_default_exchange() -> None:
    app = _app(default_exchange="amq.direct")
    assert app.router.resolve("proj.add") == Route(
        "amq.direct", "default", Queue("default", exchange="amq.direct", routing_key="default")
    )


def test_config_from_object_rebuilds_the_router() -> None:
    app = _app()

    class Later:
        QUEUES: ClassVar[list[Queue]] = [MAIL]  # a list is accepted, stored as a tuple
        ROUTES: ClassVar[dict[str, str]] = {"proj.mail.*": "mail"}

    app.config_from_object(Later)
    assert app.settings.queues == (MAIL,)
    assert app.router.resolve("proj.mail.send") == Route("mail", "mail.#", MAIL)


def test_route_priority_is_used_when_the_call_and_task_give_none() -> None:
    app = _app(routes={"proj.report": {"queue": "reports", "priority": 7}})

    def prepare(**options: Any) -> Any:
        return prepare_call(
            settings=app.settings,
            router=app.router,
            task_name="proj.report",
            args=(),
            kwargs=None,
            reply_to=REPLY,
            **options,
        )

    assert prepare().message.priority == 7
    assert prepare(priority=2).message.priority == 2  # the call's (or task's) own wins
    assert prepare(priority=0).message.priority == 0
    # When the call names a queue, the routes (and their priority) are not consulted.
    assert prepare(queue="other").message.priority is None


def test_send_task_and_delay_resolve_the_same_route(monkeypatch: pytest.MonkeyPatch) -> None:
    app = _app(queues=[MAIL])
    captured: list[dict[str, Any]] = []
    monkeypatch.setattr(app, "_send", lambda options: captured.append(options))

    @app.task(name="proj.mail.send", queue="mail")
    def send(to: str) -> None: ...

    send.delay("a@example.com")
    app.send_task("proj.mail.send", ("a@example.com",))
    routes = [
        prepare_call(settings=app.settings, router=app.router, reply_to=REPLY, **options).route
        for options in captured
    ]
    assert routes == [Route("mail", "mail.#", MAIL)] * 2


def test_send_task_uses_the_registered_task_priority(monkeypatch: pytest.MonkeyPatch) -> None:
    app = _app()
    captured: list[dict[str, Any]] = []
    monkeypatch.setattr(app, "_send", lambda options: captured.append(options))

    @app.task(name="proj.urgent", priority=8)
    def urgent() -> None: ...

    urgent.delay()
    app.send_task("proj.urgent")
    priorities = [
        prepare_call(
            settings=app.settings, router=app.router, reply_to=REPLY, **options
        ).message.priority
        for options in captured
    ]
    assert priorities == [8, 8]


def test_app_declarations_of_all_queues_in_order() -> None:
    reports = Queue("reports", max_priority=10, dead_letter=False)
    app = _app(queues=[reports, MAIL])
    assert app.declarations() == Declarations(
        exchanges=(Exchange("mail", "topic"),),
        queues=(
            QueueDeclaration("reports", arguments={"x-max-priority": 10}),
            QueueDeclaration("mail.dlq"),
            QueueDeclaration(
                "mail",
                arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "mail.dlq"},
            ),
        ),
        bindings=(BindingDeclaration("mail", "mail", "mail.#"),),
    )


def test_app_declarations_without_queues_is_the_default_queue() -> None:
    app = _app(default_queue="work")
    assert app.declarations() == Queue("work").declarations()


def test_app_declarations_of_named_queues_only() -> None:
    app = _app(queues=[MAIL, Queue("reports")])
    declarations = app.declarations(["reports", "extra"])
    assert [q.name for q in declarations.queues] == ["reports.dlq", "reports", "extra.dlq", "extra"]
    assert (declarations.exchanges, declarations.bindings) == ((), ())


def test_app_declarations_bind_implicit_queues_to_the_default_exchange() -> None:
    app = _app(default_exchange="tasks")
    declarations = app.declarations(["extra"])
    assert declarations.exchanges == (Exchange("tasks"),)
    assert declarations.bindings == (BindingDeclaration("extra", "tasks", "extra"),)
