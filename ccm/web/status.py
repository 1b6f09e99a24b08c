# -*- test-case-name: tests.web.test_status -*-
"""
``GET /ccm/v1/status``: how much of the caller's pool is used.

The answer has the reference's three fields, ``five_hour_utilization``,
``weekly_utilization`` (percent, measured against each credential's pause
threshold, a credential that cannot serve counting as full) and
``plan_weight``, plus ``five_hour_reset`` and ``weekly_reset`` (Unix seconds,
0 when unknown), as the newest sing-box has them; see
:obj:`ccm.pool.member.pool_status`.
"""

from __future__ import annotations

import json
from typing import Callable

from twisted.web.resource import Resource
from twisted.web.server import Request

from ccm.web.auth import Authenticator, Caller
from ccm.pool.select import Pool
from ccm.web.errors import NOT_FOUND, APIError, method_not_allowed, render_error


_METHOD_NOT_ALLOWED = method_not_allowed(b"GET")


class StatusResource(Resource):
    """
    Report the caller's pool utilization.
    """

    isLeaf = True

    def __init__(
        self, authenticator: Authenticator, pool_for: Callable[[Caller], Pool]
    ) -> None:
        super().__init__()
        self._authenticator = authenticator
        self._pool_for = pool_for

    def render(self, request: Request) -> bytes:
        if request.postpath:
            # Only the exact path: not ``/ccm/v1/status/`` or below it.
            return render_error(request, NOT_FOUND)
        if request.method != b"GET":
            return render_error(request, _METHOD_NOT_ALLOWED)
        try:
            caller = self._authenticator.authenticate(request.requestHeaders)
            pool = self._pool_for(caller)
        except APIError as error:
            return render_error(request, error)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        return json.dumps(pool.status(), sort_keys=True).encode("utf-8") + b"\n"
