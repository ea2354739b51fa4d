"""Result messages in Celery's rpc format, and rebuilding remote exceptions."""

from __future__ import annotations

import datetime as dt
import json
import sys
import textwrap
from typing import TYPE_CHECKING

import pytest

from amqptasks.exceptions import DecodeError, Reject, RemoteTaskError
from amqptasks.results import states
from amqptasks.results.meta import (
    ResultMeta,
    decode_result,
    encode_exception,
    encode_result,
    rebuild_exception,
)

if TYPE_CHECKING:
    from pathlib import Path


class InventoryError(Exception):
    """A user-defined exception in an imported module (this one)."""


def test_encode_success_result() -> None:
    before = dt.datetime.now(dt.timezone.utc)
    body = encode_result("tid", states.SUCCESS, {"total": 5})
    after = dt.datetime.now(dt.timezone.utc)
    assert set(body) == {"task_id", "status", "result", "traceback", "children", "date_done"}
    assert body["task_id"] == "tid"
    assert body["status"] == "SUCCESS"
    assert body["result"] == {"total": 5}
    assert body["traceback"] is None
    assert body["children"] == []
    done = dt.datetime.fromisoformat(body["date_done"])
    assert done.utcoffset() == dt.timedelta(0)
    assert before <= done <= after


def test_encode_result_of_an_unfinished_state_has_no_date_done() -> None:
    assert encode_result("tid", states.STARTED)["date_done"] is None


def test_encode_failure_result() -> None:
    body = encode_result(
        "tid", states.FAILURE, traceback="Traceback...", exception=ValueError("bad", 3)
    )
    assert body["status"] == "FAILURE"
    assert body["result"] == {
        "exc_type": "ValueError",
        "exc_message": ["bad", 3],
        "exc_module": "builtins",
    }
    assert body["traceback"] == "Traceback..."
    assert body["date_done"] is not None
    json.dumps(body)  # the whole body is JSON-serializable


def test_encode_exception_makes_odd_arguments_serializable() -> None:
    encoded = encode_exception(KeyError(("a", 1)))
    assert encoded == {
        "exc_type": "KeyError",
        "exc_message": ["('a', 1)"],
        "exc_module": "builtins",
    }
    json.dumps(encoded)


def test_encode_exception_of_a_user_type() -> None:
    assert encode_exception(InventoryError("out of stock")) == {
        "exc_type": "InventoryError",
        "exc_message": ["out of stock"],
        "exc_module": __name__,
    }


def test_decode_result_round_trip() -> None:
    body = json.loads(json.dumps(encode_result("tid", states.SUCCESS, [1, 2])))
    meta = decode_result(body)
    assert isinstance(meta, ResultMeta)
    assert (meta.task_id, meta.status, meta.result) == ("tid", "SUCCESS", [1, 2])
    assert meta.traceback is None
    assert meta.children == []
    assert meta.date_done == body["date_done"]


def test_decode_a_celery_rpc_reply() -> None:
    meta = decode_result(
        {
            "task_id": "c0ffee",
            "status": "FAILURE",
            "result": {"exc_type": "ZeroDivisionError", "exc_message": ["division by zero"]},
            "traceback": "Traceback (most recent call last): ...",
            "children": [],
            "date_done": "2024-05-01T10:00:00.000000+00:00",
        }
    )
    assert meta.status == "FAILURE"
    exc = rebuild_exception(meta.result, meta.traceback)
    assert isinstance(exc, ZeroDivisionError)
    assert str(exc) == "division by zero"


@pytest.mark.parametrize(
    "payload", [None, [], "SUCCESS", {"status": "SUCCESS"}, {"task_id": "tid"}]
)
def test_decode_result_refuses_non_results(payload: object) -> None:
    with pytest.raises(DecodeError, match="not a result message"):
        decode_result(payload)


def test_rebuild_builtin_exception() -> None:
    exc = rebuild_exception(encode_exception(ValueError("must be positive")), None)
    assert type(exc) is ValueError
    assert exc.args == ("must be positive",)


def test_rebuild_amqptasks_exception() -> None:
    exc = rebuild_exception(encode_exception(Reject("poison message")), None)
    assert type(exc) is Reject
    assert str(exc) == "poison message"


def test_rebuild_exception_from_an_imported_module() -> None:
    exc = rebuild_exception(encode_exception(InventoryError("out of stock")), None)
    assert type(exc) is InventoryError
    assert str(exc) == "out of stock"


def test_rebuild_unknown_module_falls_back_without_importing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The module exists and is importable: a rebuild that imported it would succeed
    # and leave a marker file behind.
    name = "amqptasks_unit_sender_module"
    marker = tmp_path / "imported.marker"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            f"""
            import pathlib
            pathlib.Path({str(marker)!r}).touch()

            class Boom(Exception):
                pass
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert name not in sys.modules

    exc = rebuild_exception(
        {"exc_type": "Boom", "exc_message": ["kaboom", 7], "exc_module": name}, "tb"
    )

    assert name not in sys.modules
    assert not marker.exists()
    assert type(exc) is RemoteTaskError
    assert exc.exc_type == "Boom"
    assert exc.exc_module == name
    assert "kaboom" in str(exc)
    assert "Boom" in str(exc)


def test_rebuild_a_name_that_is_not_an_exception_type() -> None:
    exc = rebuild_exception({"exc_type": "print", "exc_message": ["x"]}, None)
    assert type(exc) is RemoteTaskError
    assert exc.exc_type == "print"


def test_rebuild_a_type_whose_constructor_refuses_the_arguments() -> None:
    # UnicodeDecodeError needs five arguments; one was sent.
    exc = rebuild_exception(
        {"exc_type": "UnicodeDecodeError", "exc_message": ["bad byte"], "exc_module": "builtins"},
        None,
    )
    assert isinstance(exc, RemoteTaskError)
    assert exc.exc_type == "UnicodeDecodeError"
    assert "bad byte" in str(exc)


def test_rebuild_something_that_is_not_an_encoded_exception() -> None:
    exc = rebuild_exception("division by zero", None)
    assert isinstance(exc, RemoteTaskError)
    assert "division by zero" in str(exc)


def test_remote_traceback_is_kept() -> None:
    remote_tb = 'Traceback (most recent call last):\n  File "tasks.py", line 3\nValueError: no\n'
    exc = rebuild_exception(encode_exception(ValueError("no")), remote_tb)
    assert exc.remote_traceback == remote_tb  # type: ignore[attr-defined]
    notes = getattr(exc, "__notes__", None)
    if sys.version_info >= (3, 11):
        assert notes is not None
        assert any('File "tasks.py", line 3' in note for note in notes)
        assert any(note.startswith("Remote traceback:") for note in notes)


def test_no_traceback_no_note() -> None:
    exc = rebuild_exception(encode_exception(ValueError("no")), None)
    assert exc.remote_traceback is None  # type: ignore[attr-defined]
    assert not getattr(exc, "__notes__", None)
