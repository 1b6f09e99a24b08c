# -*- test-case-name: tests.state.test_redis -*-
"""
Where the shared Redis server is, as a Twisted client endpoint: TCP, with
TLS for ``rediss://``.
"""

from __future__ import annotations

import re

from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.internet.ssl import Certificate, optionsForClientTLS, platformTrust, trustRootFromCertificates

from ccm.config.state import StateConfig

CONNECT_TIMEOUT_SECONDS = 5.0
_PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL
)


def endpoint_for(config: StateConfig, reactor: IReactorTime) -> IStreamClientEndpoint:
    """
    Where the server is: TCP, wrapped in TLS verified against the CA file
    (or the system's authorities) for ``rediss://``.  ``reactor`` makes TCP
    connections too (the service's reactor does).
    """
    endpoint: IStreamClientEndpoint = HostnameEndpoint(
        reactor, config.host, config.port, timeout=CONNECT_TIMEOUT_SECONDS
    )
    if not config.tls:
        return endpoint
    if config.tls_ca_file:
        with open(config.tls_ca_file, "rb") as pem:
            blocks = _PEM_CERTIFICATE.findall(pem.read())
        trust = trustRootFromCertificates([Certificate.loadPEM(block) for block in blocks])
    else:
        trust = platformTrust()
    return wrapClientTLS(optionsForClientTLS(config.host, trustRoot=trust), endpoint)
