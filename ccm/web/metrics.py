# -*- test-case-name: tests.web.test_metrics -*-
"""
``/metrics``: a service's Prometheus metrics in the text exposition format
(or OpenMetrics, when the scraper asks for it).

On the service's own listeners only an admin may read them (a user with
``"admin": true``, by its bearer token): they name every user and
credential.  A ``metrics_listen`` listener serves them without
authentication, with the health answer beside them
(:obj:`metrics_root`); it is meant for loopback or a private network.

The metrics are rendered in the reactor thread, as the rest of ccm runs,
rather than with prometheus_client's own Twisted resource: that one
renders in the global reactor's thread pool, where reading the
credentials' state would race the reactor.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request

from ccm.web.auth import Authenticator
from ccm.web.errors import NOT_FOUND, APIError, method_not_allowed, render_error
from ccm.web.tree import Directory, Root

_METHOD_NOT_ALLOWED = method_not_allowed(b"GET", b"HEAD")
NOT_AN_ADMIN = APIError(
    403,
    "permission_error",
    "the metrics are for ccm's admins: use the token of a user with \"admin\": true, "
    "or scrape the metrics_listen listener",
    headers=(("x-should-retry", "false"),),
)


class MetricsResource(Resource):
    """
    The metrics of ``registry``.

    :param authenticator: who may read them: an admin's token is needed;
        ``None`` for a listener of their own, which asks for none.
    """

    isLeaf = True

    def __init__(self, registry: CollectorRegistry, authenticator: Authenticator | None) -> None:
        super().__init__()
        self._registry = registry
        self._authenticator = authenticator

    def render(self, request: Request) -> bytes:
        """
        The metrics, or ccm's 401 (no or a wrong token), 403 (not an
        admin), 404 (below the path) or 405 (another method).
        """
        if request.postpath:
            return render_error(request, NOT_FOUND)
        if request.method not in (b"GET", b"HEAD"):
            return render_error(request, _METHOD_NOT_ALLOWED)
        if self._authenticator is not None:
            try:
                caller = self._authenticator.authenticate(request.requestHeaders)
            except APIError as error:
                return render_error(request, error)
            if not caller.admin:
                return render_error(request, NOT_AN_ADMIN)
        accept = (request.getHeader(b"accept") or b"").decode("latin-1")
        encode, content_type = choose_encoder(accept)
        request.setHeader(b"content-type", content_type.encode("ascii"))
        request.setHeader(b"cache-control", b"no-store")
        return encode(self._registry)


def metrics_root(metrics: IResource, health: IResource) -> Resource:
    """
    The tree of a ``metrics_listen`` listener: ``/metrics`` and
    ``/ccm/v1/health``, and ccm's 404 for anything else.
    """
    tree = Directory()
    tree.putChild(b"metrics", metrics)
    ccm = Directory()
    ccm_v1 = Directory()
    tree.putChild(b"ccm", ccm)
    ccm.putChild(b"v1", ccm_v1)
    ccm_v1.putChild(b"health", health)
    return Root(tree)
