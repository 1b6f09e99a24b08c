# -*- test-case-name: tests.web.test_listening -*-
"""
Where a service listens: endpoint strings as they are, and the sing-box
listen fields (address, port, TLS) turned into Twisted endpoints.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL, crypto
from twisted.application.internet import StreamServerEndpointService
from twisted.internet import ssl
from twisted.internet.endpoints import (
    SSL4ServerEndpoint,
    TCP4ServerEndpoint,
    TCP6ServerEndpoint,
    serverFromString,
)
from twisted.internet.interfaces import IProtocolFactory, IStreamServerEndpoint

from ccm.config.model import AddressListener, EndpointListener, Listener, TLSConfig

_TLS_METHODS = {
    "1.0": ssl.TLSVersion.TLSv1_0,
    "1.1": ssl.TLSVersion.TLSv1_1,
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}

#: The one ALPN protocol ccm serves.
_HTTP_1_1 = "http/1.1"


class ListenError(Exception):
    """
    A listener cannot be set up; the message says which and why.
    """


def describe(listener: Listener) -> str:
    """
    A listener for messages: its endpoint string or address and port.
    """
    if isinstance(listener, EndpointListener):
        return listener.description
    scheme = "https" if listener.tls is not None else "http"
    host = f"[{listener.address}]" if ":" in listener.address else listener.address
    return f"{scheme}://{host}:{listener.port}"


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


def _load_key(key_pem: bytes, source: str) -> crypto.PKey:
    """
    Load an unencrypted PEM private key, never prompting for a passphrase
    and never quoting key material in errors.
    """
    prefix = f"cannot load the TLS certificate or key: the key ({source})"
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise ListenError(f"{prefix} is encrypted; ccm needs an unencrypted key") from None
    except (ValueError, UnsupportedAlgorithm):
        raise ListenError(f"{prefix} is not a PEM private key") from None
    try:
        return crypto.PKey.from_cryptography_key(key)
    except (TypeError, ValueError):
        raise ListenError(f"{prefix} is of an unsupported type") from None


def _public_key_der(public_key: Any) -> bytes:
    """
    A public key as DER SubjectPublicKeyInfo, comparable across key types
    (RSA, EC, Ed25519, ...).
    """
    return bytes(
        public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def tls_options(tls: TLSConfig) -> ssl.CertificateOptions:
    """
    Server TLS options for a sing-box C{tls} object: the first certificate
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
    key = _load_key(key_pem, _source(tls.key_pem, tls.key_path))
    if _public_key_der(certificate.original.to_cryptography().public_key()) != (
        _public_key_der(key.to_cryptography_key().public_key())
    ):
        raise ListenError("the TLS key does not match the certificate")
    kwargs: dict[str, Any] = {}
    if tls.min_version:
        kwargs["raiseMinimumTo"] = _TLS_METHODS[tls.min_version]
    if tls.max_version:
        kwargs["lowerMaximumSecurityTo"] = _TLS_METHODS[tls.max_version]
    if tls.alpn:
        # twisted.web serves HTTP/2 only with the optional h2 package, and
        # ccm's request limits are HTTP/1.1's: offering "h2" (as sing-box
        # configurations often do) would break every client choosing it.
        if _HTTP_1_1 not in tls.alpn:
            raise ListenError(
                f"the TLS alpn list {list(tls.alpn)} lacks {_HTTP_1_1!r}, the only "
                "protocol ccm serves"
            )
        kwargs["acceptableProtocols"] = [_HTTP_1_1.encode("ascii")]
    return ssl.CertificateOptions(
        privateKey=key,
        certificate=certificate.original,
        extraCertChain=chain,
        **kwargs,
    )


def endpoint_for(reactor: Any, listener: Listener) -> IStreamServerEndpoint:
    """
    The Twisted endpoint for one listener.

    :raises ListenError: when TLS material cannot be loaded.
    """
    if isinstance(listener, EndpointListener):
        try:
            return serverFromString(reactor, listener.description)
        except Exception as error:
            raise ListenError(f"invalid endpoint {listener.description!r}: {error}") from None
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

    def __init__(self, endpoint: IStreamServerEndpoint, factory: IProtocolFactory, label: str) -> None:
        super().__init__(endpoint, factory)
        self.label = label
        # What strports.service does for twistd's --port options.
        self._raiseSynchronously = True

    def abandon(self) -> None:
        """
        Stop listening, if listening started, after a sibling failed to
        bind: start-up is being aborted.
        """
        waiting = self._waitingForPort
        self._waitingForPort = None
        if waiting is not None:
            waiting.addCallback(lambda port: port.stopListening())
            waiting.addErrback(lambda failure: None)
