"""
End-to-end tests of TLS listening: a real ``twistd -n ccm`` process serving
HTTPS from the sing-box ``tls`` object (certificate files or inline arrays of
lines) and from an ``ssl:`` endpoint string, with a certificate chain made by
:obj:`tests.certs` (root, intermediate, server).

The clients trust only the test root, so every successful handshake proves
that ccm serves the intermediate: a treq-style :obj:`Agent` in this process, and
the real Claude Code CLI with ``NODE_EXTRA_CA_CERTS``.  Ed25519 chains work
too, and ALPN only ever settles on ``http/1.1``.  Start-up failures (missing
file, mismatched key, not PEM, encrypted key, ACME/ECH/REALITY, an ``alpn``
list without ``http/1.1``) must end the process with a clear message and no
traceback.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any, cast

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol, wrapClientTLS
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.python.failure import Failure
from twisted.trial import unittest
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from ccm.upstream.client import BytesProducer

from tests import e2e
from tests.certs import TestPKI, encrypted_key_pem, make_pki
from tests.fake_anthropic import text_reply
from tests.fixtures import expiry_ms, write_credentials

USER_TOKEN = "ak-ccm-tls-alice"
USERS = [{"name": "alice", "token": USER_TOKEN}]
MODEL = "claude-sonnet-4-5-20250929"


@implementer(IPolicyForHTTPS)
class _TrustTestRoot:
    """
    An HTTPS policy for :obj:`Agent` that trusts only the test root CA (not the
    system's) and checks the server's name against ``localhost``.
    """

    def __init__(self, root_pem: bytes) -> None:
        self._root = Certificate.loadPEM(root_pem)

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        return optionsForClientTLS(hostname.decode("ascii"), trustRoot=self._root)


def _lines(pem: bytes) -> list[str]:
    """
    PEM text as the sing-box inline form: a JSON array of its lines.
    """
    return pem.decode("ascii").splitlines()


class _TLSTestCase(unittest.TestCase):
    """
    A certificate chain on disk, a fake upstream, and helpers to start ccm
    with a TLS listener and to talk to it over HTTPS.
    """

    timeout = 300
    #: The key algorithm of the test certificate chain (see :obj:`make_pki`).
    algorithm = "ec"

    def setUp(self) -> None:
        self.fake, self.fake_url = e2e.serve_fake_anthropic(self)
        self.pki: TestPKI = make_pki(self.algorithm)
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.root_path = self.write("root.pem", self.pki.root_pem)
        self.chain_path = self.write(
            "chain.pem", self.pki.server_pem + self.pki.intermediate_pem
        )
        self.server_path = self.write("server.pem", self.pki.server_pem)
        self.intermediate_path = self.write("intermediate.pem", self.pki.intermediate_pem)
        self.key_path = self.write("server.key", self.pki.server_key_pem)
        self.credential_path = os.path.join(self.directory, ".credentials.json")
        write_credentials(
            self.credential_path, self.fake.access_token, self.fake.refresh_token, expiry_ms(3600)
        )
        self.ccm: e2e.CcmProcess | None = None

    def write(self, name: str, content: bytes) -> str:
        """
        Write ``content`` to ``name`` in the test's directory; return its path.
        """
        path = os.path.join(self.directory, name)
        with open(path, "wb") as handle:
            handle.write(content)
        return path

    def config_with_tls(self, tls: dict[str, Any]) -> dict[str, Any]:
        """
        A ccm configuration in front of the fake, listening with the sing-box
        listen fields on a free loopback port with this ``tls`` object.
        """
        config = e2e.ccm_config(self.fake_url, self.credential_path, USERS)
        del config["endpoint"]
        config.update({"listen": "127.0.0.1", "listen_port": 0, "tls": tls})
        return config

    def config_with_endpoint(self, endpoint: str) -> dict[str, Any]:
        """
        A ccm configuration in front of the fake listening on ``endpoint``.
        """
        config = e2e.ccm_config(self.fake_url, self.credential_path, USERS)
        config["endpoint"] = endpoint
        return config

    @inlineCallbacks
    def start_ccm(self, config: dict[str, Any]) -> Any:
        """
        Start ccm; once it stopped, its output is checked for secrets and
        tracebacks.
        """
        # Registered before start_ccm registers the stop: runs after it.
        self.addCleanup(self.check_ccm_output)
        self.ccm = yield e2e.start_ccm(self, config)
        return self.ccm

    def check_ccm_output(self) -> None:
        """
        Nothing ccm printed holds a token, a private key or a traceback.
        """
        if self.ccm is None:
            return
        output = self.ccm.output()
        for secret in (USER_TOKEN, self.fake.access_token, self.fake.refresh_token):
            self.assertNotIn(secret, output)
        self.assertNotIn("PRIVATE KEY", output)
        self.assertNotIn("Traceback", output)

    def https_url(self) -> str:
        """
        ccm's base URL over HTTPS, by the name its certificate holds.
        """
        assert self.ccm is not None
        return f"https://localhost:{self.ccm.port}"

    @inlineCallbacks
    def request(self, method: bytes, path: str, body: bytes | None = None) -> Any:
        """
        Send one request to ccm over HTTPS, trusting only the test root.

        :return: a Deferred firing with ``(code, headers, body)``.
        """
        pool = HTTPConnectionPool(reactor, persistent=True)
        self.addCleanup(pool.closeCachedConnections)
        agent = Agent(reactor, contextFactory=_TrustTestRoot(self.pki.root_pem), pool=pool)
        headers = Headers(
            {
                b"authorization": [b"Bearer " + USER_TOKEN.encode()],
                b"content-type": [b"application/json"],
                b"anthropic-version": [b"2023-06-01"],
            }
        )
        response = yield agent.request(
            method,
            (self.https_url() + path).encode(),
            headers,
            BytesProducer(body) if body is not None else None,
        )
        content = yield readBody(response)
        return response.code, response.headers, content

    @inlineCallbacks
    def assert_serves_https(self) -> Any:
        """
        ccm answers ``/`` with its JSON 404 and proxies a ``/v1/messages``
        request to the fake, over HTTPS verified against the test root.
        """
        code, headers, body = yield self.request(b"GET", "/")
        self.assertEqual(code, 404, body)
        self.assertEqual(headers.getRawHeaders(b"content-type"), [b"application/json"])
        self.assertEqual(json.loads(body)["type"], "error")

        self.fake.enqueue(text_reply("Hello over TLS."))
        message = json.dumps(
            {"model": MODEL, "max_tokens": 32, "messages": [{"role": "user", "content": "hi"}]}
        ).encode()
        code, headers, body = yield self.request(b"POST", "/v1/messages", message)
        self.assertEqual(code, 200, body)
        self.assertEqual(json.loads(body)["content"][0]["text"], "Hello over TLS.")
        [post] = [r for r in self.fake.requests if r.path.startswith("/v1/messages")]
        self.assertEqual(post.header("authorization"), "Bearer " + self.fake.access_token)

    @inlineCallbacks
    def assert_claude_code_works(self) -> Any:
        """
        The real Claude Code CLI, trusting the test root through
        ``NODE_EXTRA_CA_CERTS``, gets the fake's answer through ccm over HTTPS
        (for the test cases :obj:`e2e.RealClaudeCode` makes, which have
        ``run_claude``).
        """
        self.fake.enqueue(text_reply("Hello from TLS ccm."))
        result = yield cast(e2e.RealClaudeCode, self).run_claude(
            self.https_url(),
            USER_TOKEN,
            "say hi",
            extra_env={"NODE_EXTRA_CA_CERTS": self.root_path},
        )
        self.assertEqual(
            (result.rc, result.stdout.strip()), (0, "Hello from TLS ccm."), result.stderr
        )


class TLSObjectTests(_TLSTestCase):
    """
    ccm listening with the sing-box ``tls`` object.
    """

    @inlineCallbacks
    def test_certificate_files_served_with_intermediate(self) -> Any:
        """
        With ``certificate_path`` holding the server certificate followed by
        the intermediate, a client trusting only the root gets ccm's JSON 404
        and a proxied message: the intermediate is served.
        """
        yield self.start_ccm(
            self.config_with_tls(
                {"enabled": True, "certificate_path": self.chain_path, "key_path": self.key_path}
            )
        )
        yield self.assert_serves_https()


if TYPE_CHECKING:
    _Base = _TLSTestCase
else:
    _Base = object


class ClaudeCodeTLSTestsMixin(e2e.RealClaudeCode, _Base):
    """
    The real Claude Code CLI through ccm listening with the sing-box ``tls``
    object.
    """

    @inlineCallbacks
    def test_claude_code_with_certificate_files(self) -> Any:
        """
        The real Claude Code CLI works through ccm serving TLS from
        certificate files, trusting the test root by ``NODE_EXTRA_CA_CERTS``.
        """
        yield self.start_ccm(
            self.config_with_tls(
                {"enabled": True, "certificate_path": self.chain_path, "key_path": self.key_path}
            )
        )
        yield self.assert_claude_code_works()

    @inlineCallbacks
    def test_claude_code_with_inline_certificate_and_key(self) -> Any:
        """
        Inline ``certificate`` and ``key`` arrays of lines (chain included),
        with ``min_version``, serve the real Claude Code CLI and a client
        trusting only the root.
        """
        yield self.start_ccm(
            self.config_with_tls(
                {
                    "enabled": True,
                    "certificate": _lines(self.pki.server_pem + self.pki.intermediate_pem),
                    "key": _lines(self.pki.server_key_pem),
                    "min_version": "1.2",
                }
            )
        )
        yield self.assert_serves_https()
        yield self.assert_claude_code_works()


globals().update(ClaudeCodeTLSTestsMixin.make_test_case_classes(_TLSTestCase))


@implementer(IHandshakeListener)
class _Handshake(Protocol):
    """
    A TLS client protocol that records the protocol ALPN chose once the
    handshake is over, then hangs up.
    """

    def __init__(self) -> None:
        self.negotiated: Deferred[bytes | None] = Deferred()
        self.closed: Deferred[None] = Deferred()

    def handshakeCompleted(self) -> None:
        assert self.transport is not None
        self.negotiated.callback(self.transport.negotiatedProtocol)  # type: ignore[attr-defined]
        self.transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if not self.negotiated.called:
            self.negotiated.errback(reason)
        self.closed.callback(None)


class ALPNTests(_TLSTestCase):
    """
    ccm offers the ALPN protocols of the ``tls`` object.
    """

    @inlineCallbacks
    def test_http_1_1_negotiated_when_h2_listed(self) -> Any:
        """
        With the usual sing-box ``alpn: ["h2", "http/1.1"]``, a client
        offering ``h2`` first still gets ``http/1.1`` (ccm serves HTTP/1.1
        only), and requests work as usual.
        """
        yield self.start_ccm(
            self.config_with_tls(
                {
                    "enabled": True,
                    "certificate_path": self.chain_path,
                    "key_path": self.key_path,
                    "alpn": ["h2", "http/1.1"],
                }
            )
        )
        assert self.ccm is not None
        options = optionsForClientTLS(
            "localhost",
            trustRoot=Certificate.loadPEM(self.pki.root_pem),
            acceptableProtocols=[b"h2", b"http/1.1"],
        )
        endpoint = wrapClientTLS(
            options, TCP4ClientEndpoint(reactor, "127.0.0.1", self.ccm.port)
        )
        handshake = yield connectProtocol(endpoint, _Handshake())
        negotiated = yield handshake.negotiated
        yield handshake.closed
        self.assertEqual(negotiated, b"http/1.1")
        yield self.assert_serves_https()


class Ed25519Tests(_TLSTestCase):
    """
    ccm serving a certificate chain whose keys are all Ed25519.
    """

    algorithm = "ed25519"

    @inlineCallbacks
    def test_ed25519_chain_served(self) -> Any:
        """
        An Ed25519 server certificate and key load, and a client trusting
        only the Ed25519 root gets ccm's answers over HTTPS.
        """
        yield self.start_ccm(
            self.config_with_tls(
                {"enabled": True, "certificate_path": self.chain_path, "key_path": self.key_path}
            )
        )
        yield self.assert_serves_https()

    @inlineCallbacks
    def test_ed25519_key_does_not_match(self) -> Any:
        """
        Another Ed25519 key is refused with the one-line mismatch message,
        not a traceback.
        """
        other_key = self.write("other.key", self.pki.other_key_pem)
        code, out, err = yield e2e.run_ccm_expecting_exit(
            self,
            self.config_with_tls(
                {"enabled": True, "certificate_path": self.chain_path, "key_path": other_key}
            ),
        )
        self.assertNotEqual(code, 0, out + err)
        self.assertEqual(
            (out + err).strip().splitlines(),
            ["config.json: the TLS key does not match the certificate"],
        )


class SSLEndpointTestsMixin(e2e.RealClaudeCode, _Base):
    """
    ccm listening on an ``ssl:`` endpoint string.
    """

    @inlineCallbacks
    def test_ssl_endpoint_with_extra_chain(self) -> Any:
        """
        An ``ssl:`` endpoint with ``extraCertChain`` serves the intermediate:
        both a client trusting only the root and the real Claude Code CLI
        get through.
        """
        yield self.start_ccm(
            self.config_with_endpoint(
                "ssl:0:interface=127.0.0.1:privateKey={}:certKey={}:extraCertChain={}".format(
                    self.key_path, self.server_path, self.intermediate_path
                )
            )
        )
        yield self.assert_serves_https()
        yield self.assert_claude_code_works()


globals().update(SSLEndpointTestsMixin.make_test_case_classes(_TLSTestCase))


class StartupFailureTests(_TLSTestCase):
    """
    TLS material ccm cannot use stops start-up with one clear line.
    """

    @inlineCallbacks
    def assert_refused(self, config: dict[str, Any], *fragments: str) -> Any:
        """
        ccm exits by itself, non-zero, without a traceback or key material,
        and its output holds every one of ``fragments``.

        :return: a Deferred firing with the output.
        """
        code, out, err = yield e2e.run_ccm_expecting_exit(self, config)
        output = out + err
        self.assertNotEqual(code, 0, output)
        self.assertNotIn("Traceback", output)
        self.assertNotIn("PRIVATE KEY", output)
        self.assertNotIn(USER_TOKEN, output)
        for fragment in fragments:
            self.assertIn(fragment, output)
        return output

    @inlineCallbacks
    def test_missing_certificate_file(self) -> Any:
        """
        A ``certificate_path`` that does not exist is a configuration error
        naming the JSON path of the key and the file.
        """
        missing = os.path.join(self.directory, "no-such-cert.pem")
        yield self.assert_refused(
            self.config_with_tls(
                {"enabled": True, "certificate_path": missing, "key_path": self.key_path}
            ),
            "tls.certificate_path",
            missing,
        )

    @inlineCallbacks
    def test_key_does_not_match_certificate(self) -> Any:
        """
        A key that is not the certificate's gives exactly one line saying
        so, with no traceback.
        """
        other_key = self.write("other.key", self.pki.other_key_pem)
        output = yield self.assert_refused(
            self.config_with_tls(
                {"enabled": True, "certificate_path": self.chain_path, "key_path": other_key}
            ),
            "the TLS key does not match the certificate",
        )
        lines = [line for line in output.splitlines() if line.strip()]
        self.assertEqual(len(lines), 1, output)

    @inlineCallbacks
    def test_certificate_file_not_pem(self) -> Any:
        """
        A certificate file that holds no PEM certificate is refused with a
        message saying so.
        """
        garbage = self.write("garbage.pem", b"this is not a certificate\n")
        yield self.assert_refused(
            self.config_with_tls(
                {"enabled": True, "certificate_path": garbage, "key_path": self.key_path}
            ),
            "no PEM certificate",
        )

    @inlineCallbacks
    def test_key_file_not_pem(self) -> Any:
        """
        A key file that is not a PEM key is refused with a message naming
        the file.
        """
        garbage = self.write("garbage.key", b"this is not a key\n")
        yield self.assert_refused(
            self.config_with_tls(
                {"enabled": True, "certificate_path": self.chain_path, "key_path": garbage}
            ),
            "cannot load the TLS certificate or key",
            f"the key ({garbage}) is not a PEM private key",
        )

    @inlineCallbacks
    def test_encrypted_key_refused_without_prompt(self) -> Any:
        """
        A passphrase-protected key is refused at once with a message saying
        it is encrypted, instead of prompting for the passphrase.
        """
        encrypted = self.write(
            "encrypted.key", encrypted_key_pem(self.pki.server_key_pem, b"secret phrase")
        )
        output = yield self.assert_refused(
            self.config_with_tls(
                {"enabled": True, "certificate_path": self.chain_path, "key_path": encrypted}
            ),
            encrypted,
            "is encrypted",
        )
        self.assertNotIn("pass phrase", output.lower())

    @inlineCallbacks
    def test_ssl_endpoint_with_mismatched_key(self) -> Any:
        """
        An ``ssl:`` endpoint whose key is not the certificate's is refused as
        an invalid endpoint, with OpenSSL's reason and no traceback.
        """
        other_key = self.write("other.key", self.pki.other_key_pem)
        yield self.assert_refused(
            self.config_with_endpoint(
                "ssl:0:interface=127.0.0.1:privateKey={}:certKey={}".format(
                    other_key, self.server_path
                )
            ),
            "invalid endpoint",
            "do not match",
        )

    @inlineCallbacks
    def test_acme_refused(self) -> Any:
        """
        A ``tls`` object asking for ACME is refused with a message naming
        the key and saying it is not supported.
        """
        yield self.assert_refused(
            self.config_with_tls({"enabled": True, "acme": {"domain": ["example.com"]}}),
            "tls.acme",
            "not supported",
        )

    @inlineCallbacks
    def test_alpn_without_http_1_1_refused(self) -> Any:
        """
        An ``alpn`` list without ``http/1.1`` is refused at start-up, as a
        configuration error naming its JSON path: ccm could not serve any
        client that agreed to it.
        """
        yield self.assert_refused(
            self.config_with_tls(
                {
                    "enabled": True,
                    "certificate_path": self.chain_path,
                    "key_path": self.key_path,
                    "alpn": ["h2"],
                }
            ),
            'config.json: tls.alpn: lacks "http/1.1", the only protocol ccm serves',
        )

    @inlineCallbacks
    def test_ech_refused(self) -> Any:
        """
        A ``tls`` object asking for ECH is refused as not supported, even
        with a usable certificate and key.
        """
        yield self.assert_refused(
            self.config_with_tls(
                {
                    "enabled": True,
                    "certificate_path": self.chain_path,
                    "key_path": self.key_path,
                    "ech": {"enabled": True},
                }
            ),
            "tls.ech",
            "not supported",
        )

    @inlineCallbacks
    def test_reality_refused(self) -> Any:
        """
        A ``tls`` object asking for REALITY is refused as not supported.
        """
        yield self.assert_refused(
            self.config_with_tls({"enabled": True, "reality": {"enabled": True}}),
            "tls.reality",
            "not supported",
        )
