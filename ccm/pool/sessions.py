# -*- test-case-name: tests.pool.test_sessions -*-
"""
Sticky sessions: which Claude Code conversation a request belongs to, and
which subscription each conversation is on, so a balancer can keep a
conversation on one subscription and its prompt cache warm.

Claude Code names its session in three ways, depending on its version: the
``X-Claude-Code-Session-Id`` header (2.1.86 and later), a ``session_id``
inside ``metadata.user_id`` when that is a JSON string (2.1.78 and later),
and a ``..._session_<id>`` suffix of ``metadata.user_id`` (older versions).

A balancer remembers its sessions in a :obj:`SessionTable`: entries unused for a
day are forgotten, and the table is bounded.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any, Protocol

from twisted.web.http_headers import Headers

SESSION_HEADER = b"x-claude-code-session-id"
_LEGACY_MARKER = "_session_"
MAX_SESSION_ID_LENGTH = 256
SESSION_IDLE_SECONDS = 24 * 3600
MAX_SESSIONS = 10_000


def _clean(value: str) -> str:
    value = value.strip()
    return value if 0 < len(value) <= MAX_SESSION_ID_LENGTH else ""


def session_id_of(headers: Headers | None, body: dict[str, Any] | None) -> str:
    """
    The session id of a request, or the empty string when it names none.
    """
    if headers is not None:
        for value in headers.getRawHeaders(SESSION_HEADER, []):
            found = _clean(value.decode("latin-1"))
            if found:
                return found
    if body is None:
        return ""
    metadata = body.get("metadata")
    if not isinstance(metadata, dict):
        return ""
    user_id = metadata.get("user_id")
    if not isinstance(user_id, str):
        return ""
    if user_id.lstrip().startswith("{"):
        try:
            inner = json.loads(user_id)
        except ValueError:
            inner = None
        if isinstance(inner, dict) and isinstance(inner.get("session_id"), str):
            return _clean(inner["session_id"])
    _, marker, suffix = user_id.rpartition(_LEGACY_MARKER)
    return _clean(suffix) if marker else ""


class SessionTable(Protocol):
    """
    Which credential each session of one balancer is on: the seam where a
    store shared by several ccm processes can replace :obj:`MemorySessionTable`.

    It is synchronous by design, so that no request waits for a store: a
    shared implementation keeps a local copy in step with the other
    processes and writes behind.
    """

    def credential_of(self, session_id: str, now: float) -> str | None:
        """
        The tag of the credential session ``session_id`` is on, or None when
        it is on none (never assigned, or forgotten).
        """

    def lookup(self, session_id: str, now: float) -> str | None:
        """
        What :obj:`credential_of` would answer at ``now``, for queries (the
        status endpoint): nothing changes, no entry is forgotten and the
        session's last use stays as it was.
        """

    def assign(self, session_id: str, tag: str, now: float) -> None:
        """
        Put session ``session_id`` on credential ``tag``, used at ``now``.
        """

    def forget(self, session_id: str) -> None:
        """
        Unassign session ``session_id``.
        """

    def forget_credential(self, tag: str) -> None:
        """
        Unassign every session on credential ``tag``.
        """

    def sessions_on(self, tag: str, now: float) -> list[tuple[str, float]]:
        """
        The sessions on credential ``tag`` at ``now``, each (id, last use),
        most recent first, for the dashboard: a query, which changes nothing.
        """


class MemorySessionTable:
    """
    A session table in this process's memory: entries unused for
    ``idle_seconds`` are forgotten, and past ``max_sessions`` the least
    recently used ones go first.
    """

    def __init__(
        self, idle_seconds: float = SESSION_IDLE_SECONDS, max_sessions: int = MAX_SESSIONS
    ) -> None:
        self._idle_seconds = idle_seconds
        self._max_sessions = max_sessions
        # session id -> (credential tag, last used), oldest use first.
        self._sessions: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def _expire(self, now: float) -> None:
        while self._sessions:
            oldest, (_, used) = next(iter(self._sessions.items()))
            if now - used < self._idle_seconds and len(self._sessions) <= self._max_sessions:
                break
            del self._sessions[oldest]

    def credential_of(self, session_id: str, now: float) -> str | None:
        """
        The tag of the credential session ``session_id`` is on; idle entries
        are forgotten first.
        """
        self._expire(now)
        entry = self._sessions.get(session_id)
        return entry[0] if entry is not None else None

    def lookup(self, session_id: str, now: float) -> str | None:
        """
        The tag of the credential session ``session_id`` is on, unless its
        entry is idle for too long at ``now``; nothing is changed.
        """
        entry = self._sessions.get(session_id)
        if entry is None or now - entry[1] >= self._idle_seconds:
            return None
        return entry[0]

    def assign(self, session_id: str, tag: str, now: float) -> None:
        """
        Put session ``session_id`` on credential ``tag``, as its most recent
        use; the oldest entries go past the bound.
        """
        self._sessions[session_id] = (tag, now)
        self._sessions.move_to_end(session_id)
        self._expire(now)

    def forget(self, session_id: str) -> None:
        """
        Unassign session ``session_id``, if assigned.
        """
        self._sessions.pop(session_id, None)

    def forget_credential(self, tag: str) -> None:
        """
        Unassign every session on credential ``tag``: each is placed anew
        at its next request.
        """
        for session, (assigned, _) in list(self._sessions.items()):
            if assigned == tag:
                del self._sessions[session]

    def sessions_on(self, tag: str, now: float) -> list[tuple[str, float]]:
        """
        The sessions on credential ``tag`` not idle for too long at ``now``,
        each (id, last use), most recent first; nothing is changed.
        """
        return [
            (session, used)
            for session, (assigned, used) in reversed(self._sessions.items())
            if assigned == tag and now - used < self._idle_seconds
        ]

    def entries(self, now: float) -> list[tuple[str, str, float]]:
        """
        Every entry not idle for too long at ``now``, each (id, tag, last
        use), least recent first: what a shared table pushes to its store
        when the store returns.  Nothing is changed.
        """
        return [
            (session, assigned, used)
            for session, (assigned, used) in self._sessions.items()
            if now - used < self._idle_seconds
        ]

    def __len__(self) -> int:
        """
        How many sessions are assigned.
        """
        return len(self._sessions)
