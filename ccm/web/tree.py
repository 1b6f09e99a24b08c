# -*- test-case-name: tests.web.test_site,tests.web.test_paths,tests.web.test_hello -*-
"""
The URL tree of a service: ``/v1/...`` is proxied, ``/ccm/v1/status``
reports the caller's pool, ``/ccm/v1/health`` and ``/metrics`` (for
admins) report the service, ``/api/hello`` answers Claude Code's warm-up
locally, and everything else is a 404 in the Anthropic shape.  Routing and the proxy both work on the path as
:obj:`ccm.web.paths.normalize_path` makes it, once, at the root
(:obj:`Root`).
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from twisted.logger import Logger
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource, getChildForRequest
from twisted.web.server import Request

from ccm.web.errors import NOT_FOUND, render_error
from ccm.web.hello import HelloResource
from ccm.web.paths import PathRefused, normalize_path


class NotFoundResource(Resource):
    """
    A 404 in the Anthropic error shape, for any path ccm does not serve.
    """

    isLeaf = True

    def render(self, request: Request) -> bytes:
        return render_error(request, NOT_FOUND)


_NOT_FOUND = NotFoundResource()


class Directory(Resource):
    """
    A resource with fixed children and a JSON 404 for anything else.
    """

    def getChild(self, path: bytes, request: IRequest) -> IResource:
        return _NOT_FOUND

    def render(self, request: Request) -> bytes:
        return render_error(request, NOT_FOUND)


class Root(Resource):
    """
    The root of ccm's URL space: it normalizes the request path, then routes
    the normalized path through ``tree``.

    This is the one place a path is normalized.  The normalized path
    replaces ``request.path``, and ``prepath`` and ``postpath`` are split from
    it the way twisted.web splits them, so every resource below, the proxy
    included, routes, forwards and logs the same path (as
    :obj:`twisted.web.rewrite` rules do, by rewriting the request before the
    tree sees it).  ``request.uri`` keeps the target as the client sent it;
    the proxy takes only the query string from it.

    A path that :obj:`normalize_path` refuses is answered with ccm's 404 before
    any resource, authentication or upstream work, and logged as a warning
    without its query string.
    """

    isLeaf = True
    log = Logger()

    def __init__(self, tree: IResource) -> None:
        """
        :param tree: the resources to route normalized paths through.
        """
        super().__init__()
        self._tree = tree

    def render(self, request: Request) -> bytes | int:
        """
        Render the resource the normalized path names, or ccm's 404 for a
        refused path.
        """
        try:
            path = normalize_path(request.path)
        except PathRefused as refusal:
            self.log.warn(
                "refused {method} {path} from {peer}: {reason}",
                method=request.method.decode("ascii", "replace"),
                path=request.path.decode("ascii", "backslashreplace"),
                peer=client_host(request),
                reason=str(refusal),
            )
            return render_error(request, NOT_FOUND)
        request.path = path
        request.prepath = []
        request.postpath = [unquote_to_bytes(segment) for segment in path[1:].split(b"/")]
        resource: IResource = getChildForRequest(self._tree, request)
        rendered: bytes | int = resource.render(request)
        return rendered


def client_host(request: Request) -> str:
    """
    The client's address as the refusal log lines name it: its host, never
    its port.
    """
    address = request.getClientAddress()
    host = getattr(address, "host", None)
    return str(host) if host is not None else str(address)


#: The names under ``/ccm/`` that the dashboard serves.
DASHBOARD_NAMES = (b"", b"login", b"logout", b"credentials", b"static")


def build_root(
    proxy: IResource,
    status: IResource,
    *,
    health: IResource | None = None,
    metrics: IResource | None = None,
    dashboard: IResource | None = None,
) -> Resource:
    """
    The root of ccm's URL space.

    :param proxy: the resource for ``/v1/...``.
    :param status: the resource for ``/ccm/v1/status``.
    :param health: the resource for ``/ccm/v1/health``, if any.
    :param metrics: the resource for ``/metrics``, if any.
    :param dashboard: the resource for ``/ccm/`` and the pages below it
        (:obj:`DASHBOARD_NAMES`), when there is one.
    """
    tree = Directory()
    tree.putChild(b"v1", proxy)
    api = Directory()
    tree.putChild(b"api", api)
    api.putChild(b"hello", HelloResource())
    ccm = Directory()
    ccm_v1 = Directory()
    tree.putChild(b"ccm", ccm)
    ccm.putChild(b"v1", ccm_v1)
    ccm_v1.putChild(b"status", status)
    if health is not None:
        ccm_v1.putChild(b"health", health)
    if metrics is not None:
        tree.putChild(b"metrics", metrics)
    if dashboard is not None:
        for name in DASHBOARD_NAMES:
            ccm.putChild(name, dashboard)
    return Root(tree)
