# -*- test-case-name: tests.web.test_listening -*-
"""
Where a service listens: endpoint strings as they are, and the sing-box
listen fields (address, port, TLS) turned into Twisted endpoints.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from OpenSSL import SSL, crypto
from twisted.application.internet import StreamServerEndpointService
from twisted.internet import ssl
from twisted.internet.endpoints import (
    SSL4ServerEndpoint,
    TCP4ServerEndpoint,
    TCP6ServerEndpoint,
    serverFromString,
)
from twisted.internet.interfaces import (
    IProtocolFactory,
    IReactorTCP,
    IStreamServerEndpoint,
)

from ccm.config.model import (
    SERVED_ALPN_PROTOCOL,
    AddressListener,
    EndpointListener,
    Listener,
    TLSConfig,
)

if TYPE_CHECKING:
    # Only for annotations: older cryptography releases lack the module.
    from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

_TLS_METHODS = {
    "1.0": ssl.TLSVersion.TLSv1_0,
    "1.1": ssl.TLSVersion.TLSv1_1,
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}


class ListenError(Exception):
    """
    A listener cannot be set up; the message says which and why.
    """


def _read_pem(inline: str, path: str, what: str) -> bytes:
    if inline:
        try:
            return inline.encode("ascii")
        except UnicodeEncodeError:
            raise ListenError(f"the inline TLS {what} is not ASCII PEM text") from None
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as error:
        raise ListenError(f"cannot read TLS {what} {path}: {error.strerror}") from None


def _source(inline: str, path: str) -> str:
    """
    Where TLS material came from, for messages: its file or "inline".
    """
    return "inline" if inline else path


def _openssl_reason(error: Exception) -> str:
    """
    The reasons of an OpenSSL error, without pyOpenSSL's list-of-tuples
    dress.
    """
    details = error.args[0] if error.args else None
    if isinstance(details, list) and details and all(
        isinstance(d, tuple) and len(d) == 3 for d in details
    ):
        return "; ".join(f"{lib}: {reason}" if lib else str(reason) for lib, _, reason in details)
    return str(error) or type(error).__name__


#: The kinds of private key pyOpenSSL can serve with.
_SERVABLE_KEYS = (
    rsa.RSAPrivateKey,
    ec.EllipticCurvePrivateKey,
    dsa.DSAPrivateKey,
    ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey,
)


def _load_key(key_pem: bytes, source: str) -> tuple[crypto.PKey, bytes]:
    """
    Load an unencrypted PEM private key, never prompting for a passphrase
    and never quoting key material in errors.

    :return: the key, and its public key as DER (see :obj:`_public_key_der`).
    """
    prefix = f"cannot load the TLS certificate or key: the key ({source})"
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise ListenError(f"{prefix} is encrypted; ccm needs an unencrypted key") from None
    except (ValueError, UnsupportedAlgorithm):
        raise ListenError(f"{prefix} is not a PEM private key") from None
    if not isinstance(key, _SERVABLE_KEYS):
        raise ListenError(f"{prefix} is of an unsupported type")
    try:
        servable = crypto.PKey.from_cryptography_key(key)
    except (TypeError, ValueError):
        raise ListenError(f"{prefix} is of an unsupported type") from None
    return servable, _public_key_der(key.public_key())


def _public_key_der(public_key: PublicKeyTypes) -> bytes:
    """
    A public key as DER SubjectPublicKeyInfo, comparable across key types
    (RSA, EC, Ed25519, ...).
    """
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def tls_options(tls: TLSConfig) -> ssl.CertificateOptions:
    """
    Server TLS options for a sing-box ``tls`` object: the first certificate
    in the chain is the server's, the rest are served as intermediates.
    """
    chain_pem = _read_pem(tls.certificate_pem, tls.certificate_path, "certificate")
    key_pem = _read_pem(tls.key_pem, tls.key_path, "key")
    blocks = [
        b"-----BEGIN CERTIFICATE-----" + part
        for part in chain_pem.split(b"-----BEGIN CERTIFICATE-----")[1:]
    ]
    if not blocks:
        raise ListenError("the TLS certificate holds no PEM certificate")
    try:
        certificate = ssl.Certificate.loadPEM(blocks[0])
        chain = [ssl.Certificate.loadPEM(b).original for b in blocks[1:]]
    except (SSL.Error, crypto.Error, ValueError) as error:
        raise ListenError(
            "cannot load the TLS certificate or key: the certificate "
            f"({_source(tls.certificate_pem, tls.certificate_path)}) is not valid PEM: "
            f"{_openssl_reason(error)}"
        ) from None
    key, key_public_der = _load_key(key_pem, _source(tls.key_pem, tls.key_path))
    if _public_key_der(certificate.original.to_cryptography().public_key()) != key_public_der:
        raise ListenError("the TLS key does not match the certificate")
    kwargs: dict[str, Any] = {}
    if tls.min_version:
        kwargs["raiseMinimumTo"] = _TLS_METHODS[tls.min_version]
    if tls.max_version:
        kwargs["lowerMaximumSecurityTo"] = _TLS_METHODS[tls.max_version]
    if tls.alpn:
        # The configuration made sure the list holds the one protocol ccm
        # serves; only that one is offered (see ccm.config.listen).
        kwargs["acceptableProtocols"] = [SERVED_ALPN_PROTOCOL.encode("ascii")]
    return ssl.CertificateOptions(
        privateKey=key,
        certificate=certificate.original,
        extraCertChain=chain,
        **kwargs,
    )


def endpoint_for(reactor: IReactorTCP, listener: Listener) -> IStreamServerEndpoint:
    """
    The Twisted endpoint for one listener.

    :param reactor: listens on TCP, with TLS for a listener with ``tls``
        (:obj:`twisted.internet.interfaces.IReactorSSL`), or as an endpoint string says.
    :raises ListenError: when TLS material cannot be loaded.
    """
    if isinstance(listener, EndpointListener):
        try:
            endpoint: IStreamServerEndpoint = serverFromString(reactor, listener.description)
        except Exception as error:
            raise ListenError(f"invalid endpoint {listener.description!r}: {error}") from None
        return endpoint
    assert isinstance(listener, AddressListener)
    if listener.tls is not None:
        return SSL4ServerEndpoint(
            reactor, listener.port, tls_options(listener.tls), interface=listener.address
        )
    if ipaddress.ip_address(listener.address).version == 6:
        return TCP6ServerEndpoint(reactor, listener.port, interface=listener.address)
    return TCP4ServerEndpoint(reactor, listener.port, interface=listener.address)


class ListeningService(StreamServerEndpointService):
    """
    Listen on one endpoint; a failure to bind stops start-up instead of
    being logged while the process runs on deaf.
    """

    def __init__(self, endpoint: IStreamServerEndpoint, factory: IProtocolFactory) -> None:
        super().__init__(endpoint, factory)
        # A private of StreamServerEndpointService with no public
        # counterpart: twisted.application.strports.service sets it for
        # twistd's own --port services, so that a failure to bind raises
        # from privilegedStartService instead of being logged.
        self._raiseSynchronously = True

    def abandon(self) -> None:
        """
        Stop listening, if listening started, after a sibling failed to
        bind: start-up is being aborted.

        (:obj:`stopService` cannot do it: it fails on a service that never
        started listening, so this reads the private ``_waitingForPort``
        that :obj:`StreamServerEndpointService` keeps the listening attempt in.)
        """
        waiting = self._waitingForPort
        self._waitingForPort = None
        if waiting is not None:
            waiting.addCallback(lambda port: port.stopListening())
            waiting.addErrback(lambda failure: None)
