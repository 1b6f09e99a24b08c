# -*- test-case-name: tests.web.test_hello -*-
"""
``/api/hello``: the connection warm-up Claude Code sends when it starts.

Claude Code 2.1.332 sends ``HEAD /api/hello`` to its base URL before its
first request, to open a connection early, and ignores the answer.  ccm
answers it itself, at once: ``HEAD`` and ``GET`` get a 204 with no body,
without authentication (the client sends it before any token is used, and
the answer tells nothing) and without any work upstream.  Any other method
gets a 405 in the Anthropic shape.
"""

from __future__ import annotations

from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from ccm.web.errors import NOT_FOUND, method_not_allowed, render_error

_METHOD_NOT_ALLOWED = method_not_allowed(b"GET", b"HEAD")


class HelloResource(Resource):
    """
    Answer the warm-up with an empty 204, locally.
    """

    isLeaf = True

    def render(self, request: Request) -> bytes | int:
        """
        A 204 for ``GET`` and ``HEAD`` of the exact path, a 405 for other
        methods, a 404 below the path.

        The 204 is finished here rather than returned as an empty body:
        twisted.web would add ``Content-Length: 0`` to a returned body, and
        a 204 must not carry that header (RFC 9110, 8.6).
        """
        if request.postpath:
            # Only the exact path: not ``/api/hello/`` or below it.
            return render_error(request, NOT_FOUND)
        if request.method not in (b"GET", b"HEAD"):
            return render_error(request, _METHOD_NOT_ALLOWED)
        request.setResponseCode(204)
        request.finish()
        return NOT_DONE_YET
