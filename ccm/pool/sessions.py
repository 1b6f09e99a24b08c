# -*- test-case-name: tests.pool.test_sessions -*-
"""
Which Claude Code conversation a request belongs to, so a pool can keep a
conversation on one subscription and its prompt cache warm.

Claude Code names its session in three ways, depending on its version: the
C{X-Claude-Code-Session-Id} header (2.1.86 and later), a C{session_id}
inside C{metadata.user_id} when that is a JSON string (2.1.78 and later),
and a C{..._session_<id>} suffix of C{metadata.user_id} (older versions).
"""

from __future__ import annotations

import json
from typing import Any

from twisted.web.http_headers import Headers

SESSION_HEADER = b"x-claude-code-session-id"
_LEGACY_MARKER = "_session_"
MAX_SESSION_ID_LENGTH = 256


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
