# -*- test-case-name: tests.web.test_health -*-
"""
``GET /ccm/v1/health``: whether the service can serve, for load balancers
and watchdogs, without authentication.

200 when at least one credential can serve now, 503 when none can.  The
body names each credential's coarse state (the ``state`` of
``/ccm/v1/status``: ``usable``, ``paused``, ``rate_limited``,
``quarantined``, ``unavailable``) by its tag, and nothing else: no token,
no path, no user, no reason in words.  ``HEAD`` gets the same status
without the body; every answer is ``Cache-Control: no-store``.  With a
shared state, ``state`` says whether Redis is reachable (``connected`` or
``disconnected``), which does not change the status.
"""

from __future__ import annotations

import json
from typing import Callable, Mapping

from twisted.internet.interfaces import IReactorTime
from twisted.web.resource import Resource
from twisted.web.server import Request

from ccm.pool.member import PoolMember
from ccm.pool.standing import state_name
from ccm.web.errors import NOT_FOUND, method_not_allowed, render_error

_METHOD_NOT_ALLOWED = method_not_allowed(b"GET", b"HEAD")


def health(
    members: Mapping[str, PoolMember], now: float, connected: bool | None = None
) -> tuple[int, dict[str, object]]:
    """
    The status and the document of the health answer at ``now``.

    :param connected: whether the shared state (the ``state`` key) is
        reachable, None without one.  It is said in the document only: a
        process serves on from its own copy while Redis is away.
    """
    usable = [tag for tag, member in members.items() if member.state(now).usable]
    document: dict[str, object] = {
        "status": "ok" if usable else "unavailable",
        "credentials": {tag: state_name(member.state(now)) for tag, member in members.items()},
    }
    if connected is not None:
        document["state"] = "connected" if connected else "disconnected"
    return (200 if usable else 503), document


class HealthResource(Resource):
    """
    The health of the credentials ``members`` holds, at ``clock``'s time.
    """

    isLeaf = True

    def __init__(
        self,
        members: Mapping[str, PoolMember],
        clock: IReactorTime,
        connected: Callable[[], bool | None] = lambda: None,
    ) -> None:
        super().__init__()
        self._members = members
        self._clock = clock
        self._connected = connected

    def render(self, request: Request) -> bytes:
        """
        The health answer for ``GET`` and ``HEAD`` of the exact path.
        """
        if request.postpath:
            return render_error(request, NOT_FOUND)
        if request.method not in (b"GET", b"HEAD"):
            return render_error(request, _METHOD_NOT_ALLOWED)
        code, document = health(self._members, self._clock.seconds(), self._connected())
        request.setResponseCode(code)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        return json.dumps(document).encode("utf-8") + b"\n"
