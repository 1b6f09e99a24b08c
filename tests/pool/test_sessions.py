"""
Tests for :obj:`ccm.pool.sessions`: the Claude Code session a request belongs to,
and the table of which credential each session is on.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from ccm.pool.sessions import (
    MAX_SESSION_ID_LENGTH,
    SESSION_IDLE_SECONDS,
    MemorySessionTable,
    session_id_of,
)

HEADER_ID = "80c50ae9-1df2-4ee4-bafa-e96205010a1c"
JSON_ID = "17662a42-5f0c-4d55-9b7e-3f1a2b4c5d6e"
LEGACY_ID = "0b9e7c52-2a61-4d3e-8f4c-6a7b8c9d0e1f"
LEGACY_USER_ID = (
    "user_19f2" + "ab" * 30 + "ae80_account_a929b7ef-1111-4222-8333-944455556666"
    f"_session_{LEGACY_ID}"
)


def session_header(*values: str) -> Headers:
    """
    Headers with ``X-Claude-Code-Session-Id`` set to ``values``.
    """
    return Headers({b"X-Claude-Code-Session-Id": [v.encode("latin-1") for v in values]})


def body_with_user_id(user_id: Any) -> dict[str, Any]:
    """
    A Messages request body whose ``metadata.user_id`` is ``user_id``.
    """
    return {"model": "claude-sonnet-4-5-20250929", "metadata": {"user_id": user_id}}


def json_user_id(**fields: Any) -> str:
    """
    A ``metadata.user_id`` in the JSON form of Claude Code 2.1.78 and later.
    """
    document = {"device_id": "59855df6" * 8, "account_uuid": ""}
    document.update(fields)
    return json.dumps(document)


class SessionIdTests(SynchronousTestCase):
    """
    :obj:`session_id_of` in each of Claude Code's forms and their precedence.
    """

    def test_header(self) -> None:
        """
        The ``X-Claude-Code-Session-Id`` header names the session.
        """
        self.assertEqual(session_id_of(session_header(HEADER_ID), None), HEADER_ID)

    def test_header_trimmed(self) -> None:
        """
        Blanks around the header value are ignored.
        """
        self.assertEqual(session_id_of(session_header(f"  {HEADER_ID} "), None), HEADER_ID)

    def test_json_user_id(self) -> None:
        """
        A JSON ``metadata.user_id`` names the session in its ``session_id``.
        """
        body = body_with_user_id(json_user_id(session_id=JSON_ID))
        self.assertEqual(session_id_of(Headers(), body), JSON_ID)

    def test_legacy_suffix(self) -> None:
        """
        The legacy ``user_..._account_..._session_<id>`` form names the
        session after its last ``_session_``.
        """
        self.assertEqual(session_id_of(None, body_with_user_id(LEGACY_USER_ID)), LEGACY_ID)
        self.assertEqual(
            session_id_of(None, body_with_user_id("user_x_session_a_session_b")), "b"
        )

    def test_header_wins(self) -> None:
        """
        The header takes precedence over the body's forms.
        """
        body = body_with_user_id(json_user_id(session_id=JSON_ID))
        self.assertEqual(session_id_of(session_header(HEADER_ID), body), HEADER_ID)
        body = body_with_user_id(LEGACY_USER_ID)
        self.assertEqual(session_id_of(session_header(HEADER_ID), body), HEADER_ID)

    def test_json_wins_over_suffix_inside_it(self) -> None:
        """
        A JSON ``user_id`` whose other fields contain ``_session_`` still
        yields its ``session_id``.
        """
        body = body_with_user_id(json_user_id(session_id=JSON_ID, note="x_session_wrong"))
        self.assertEqual(session_id_of(None, body), JSON_ID)

    def test_empty_header_falls_back(self) -> None:
        """
        A blank header is skipped in favour of a later header value or the
        body.
        """
        body = body_with_user_id(LEGACY_USER_ID)
        self.assertEqual(session_id_of(session_header("  "), body), LEGACY_ID)
        self.assertEqual(session_id_of(session_header("", HEADER_ID), body), HEADER_ID)

    def test_oversized_ids_ignored(self) -> None:
        """
        An id longer than the limit is not used, wherever it comes from; one
        of exactly the limit is.
        """
        long_id = "s" * (MAX_SESSION_ID_LENGTH + 1)
        limit_id = "s" * MAX_SESSION_ID_LENGTH
        self.assertEqual(session_id_of(session_header(long_id), None), "")
        self.assertEqual(session_id_of(session_header(limit_id), None), limit_id)
        body = body_with_user_id(json_user_id(session_id=long_id))
        self.assertEqual(session_id_of(None, body), "")
        body = body_with_user_id(f"user_x_session_{long_id}")
        self.assertEqual(session_id_of(None, body), "")
        body = body_with_user_id(LEGACY_USER_ID)
        self.assertEqual(session_id_of(session_header(long_id), body), LEGACY_ID)

    def test_nothing_named(self) -> None:
        """
        Requests that name no session give the empty string.
        """
        for headers, body in (
            (None, None),
            (Headers(), {}),
            (Headers(), {"metadata": {}}),
            (Headers(), body_with_user_id("user_abc_account_def")),
            (Headers(), body_with_user_id("user_abc_session_")),
            (Headers(), body_with_user_id(json_user_id())),
            (Headers(), body_with_user_id(json_user_id(session_id=""))),
        ):
            self.assertEqual(session_id_of(headers, body), "", (headers, body))

    def test_garbage(self) -> None:
        """
        Malformed metadata of any shape is ignored without an error.
        """
        for body in (
            {"metadata": "user_x_session_y"},
            {"metadata": ["user_x_session_y"]},
            {"metadata": None},
            body_with_user_id(None),
            body_with_user_id(12345),
            body_with_user_id(["_session_x"]),
            body_with_user_id({"session_id": "x"}),
            body_with_user_id("{not json"),
            body_with_user_id('{"session_id": 42}'),
            body_with_user_id('{"session_id": ["x"]}'),
            body_with_user_id("[1, 2]"),
        ):
            self.assertEqual(session_id_of(Headers(), body), "", body)

    def test_broken_json_with_suffix(self) -> None:
        """
        A ``user_id`` that looks like JSON but is not falls back to the
        legacy suffix.
        """
        body = body_with_user_id("{broken_session_abc")
        self.assertEqual(session_id_of(None, body), "abc")


NOW = 1_790_000_000.0


class MemorySessionTableTests(SynchronousTestCase):
    """
    :obj:`MemorySessionTable`: assignments, forgotten when idle for a day or
    when the table is full.
    """

    def test_assign(self) -> None:
        """
        An assigned session is on its credential until reassigned; an
        unknown one is on none.
        """
        table = MemorySessionTable()
        self.assertIsNone(table.credential_of("s", NOW))
        table.assign("s", "a", NOW)
        self.assertEqual(table.credential_of("s", NOW + 1), "a")
        table.assign("s", "b", NOW + 2)
        self.assertEqual(table.credential_of("s", NOW + 3), "b")
        self.assertEqual(len(table), 1)

    def test_idle_forgotten(self) -> None:
        """
        A session unused for a day is forgotten; each use starts the day
        anew.
        """
        table = MemorySessionTable()
        table.assign("s", "a", NOW)
        table.assign("s", "a", NOW + SESSION_IDLE_SECONDS - 1)
        self.assertEqual(table.credential_of("s", NOW + SESSION_IDLE_SECONDS), "a")
        self.assertIsNone(table.credential_of("s", NOW + 2 * SESSION_IDLE_SECONDS))
        self.assertEqual(len(table), 0)

    def test_bounded(self) -> None:
        """
        Past its bound the table forgets the least recently used sessions
        first.
        """
        table = MemorySessionTable(max_sessions=2)
        table.assign("one", "a", NOW)
        table.assign("two", "a", NOW + 1)
        table.assign("one", "a", NOW + 2)
        table.assign("three", "b", NOW + 3)
        self.assertEqual(len(table), 2)
        self.assertIsNone(table.credential_of("two", NOW + 4))
        self.assertEqual(table.credential_of("one", NOW + 4), "a")
        self.assertEqual(table.credential_of("three", NOW + 4), "b")

    def test_forget(self) -> None:
        """
        A session can be forgotten alone, or with every other session on
        its credential; forgetting an unknown one is no error.
        """
        table = MemorySessionTable()
        for session, tag in (("one", "a"), ("two", "a"), ("three", "b")):
            table.assign(session, tag, NOW)
        table.forget("three")
        table.forget("unknown")
        self.assertIsNone(table.credential_of("three", NOW))
        table.forget_credential("a")
        self.assertEqual(len(table), 0)

    def test_lookup(self) -> None:
        """
        :obj:`MemorySessionTable.lookup` answers as ``credential_of`` does:
        the credential of an assigned session, None for an unknown one or
        one idle for a day.
        """
        table = MemorySessionTable()
        table.assign("s", "a", NOW)
        self.assertEqual(table.lookup("s", NOW + 1), "a")
        self.assertIsNone(table.lookup("unknown", NOW + 1))
        self.assertIsNone(table.lookup("s", NOW + SESSION_IDLE_SECONDS))

    def test_lookup_changes_nothing(self) -> None:
        """
        A lookup neither refreshes the session's last use (it is still
        forgotten a day after its assignment) nor forgets idle entries, nor
        moves an entry up the order in which a full table forgets them.
        """
        table = MemorySessionTable()
        table.assign("s", "a", NOW)
        table.assign("other", "b", NOW + 10)
        self.assertEqual(table.lookup("s", NOW + SESSION_IDLE_SECONDS - 1), "a")
        self.assertIsNone(table.lookup("s", NOW + SESSION_IDLE_SECONDS + 5))
        self.assertEqual(len(table), 2)
        self.assertIsNone(table.credential_of("s", NOW + SESSION_IDLE_SECONDS + 5))
        self.assertEqual(len(table), 1)
        full = MemorySessionTable(max_sessions=2)
        full.assign("one", "a", NOW)
        full.assign("two", "a", NOW + 1)
        full.lookup("one", NOW + 2)
        full.assign("three", "b", NOW + 3)
        self.assertIsNone(full.lookup("one", NOW + 4))
        self.assertEqual(full.lookup("two", NOW + 4), "a")


class SessionsOnTests(SynchronousTestCase):
    """
    :obj:`MemorySessionTable.sessions_on`, the dashboard's query.
    """

    def test_sessions_on(self) -> None:
        """
        The sessions on a credential, newest use first, without the idle
        ones; nothing changes.
        """
        table = MemorySessionTable(idle_seconds=100)
        table.assign("s1", "a", 0)
        table.assign("s2", "b", 10)
        table.assign("s3", "a", 50)
        self.assertEqual(table.sessions_on("a", 60), [("s3", 50), ("s1", 0)])
        self.assertEqual(table.sessions_on("a", 120), [("s3", 50)])
        self.assertEqual(len(table), 3)
