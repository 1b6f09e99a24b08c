"""
Tests for large request bodies: ccm streams them upstream from twisted.web's
temporary file instead of holding them in memory, also when a 429 sends the
request again on another credential.
"""

from __future__ import annotations

import json
import os

from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial import unittest
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.server import Site

from ccm.web.auth import Authenticator
from ccm.config.model import UserConfig
from ccm.credentials.file import CredentialFile
from ccm.credentials.credential import Credential
from ccm.pool.select import BalancerPool, PoolMember
from ccm.proxy.resource import IN_MEMORY_BODY_BYTES, ProxyResource
from ccm.web.site import CcmSite, build_root
from ccm.web.status import StatusResource
from ccm.upstream.client import make_http_client
from tests.fake_anthropic import FakeAnthropic, error_reply, text_reply
from tests.proxyharness import write_credentials

TOKEN = "ak-ccm-big-body"
SECOND_ACCESS = "sk-ant-oat01-big-body-second"


class BigBodyTests(unittest.TestCase):
    """
    A request body larger than what ccm keeps in memory, through a real
    ccm site on loopback in front of the fake upstream.
    """

    def setUp(self) -> None:
        self.fake = FakeAnthropic(reactor)
        self.fake.extra_access_tokens.add(SECOND_ACCESS)
        upstream_port = reactor.listenTCP(0, Site(self.fake.resource()), interface="127.0.0.1")
        self.addCleanup(upstream_port.stopListening)
        self.addCleanup(self.fake.abort_all)
        http_client, upstream_pool = make_http_client(reactor)
        self.addCleanup(upstream_pool.closeCachedConnections)
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        members = []
        for tag, access in (("a", self.fake.access_token), ("b", SECOND_ACCESS)):
            path = os.path.join(directory, f"{tag}.json")
            write_credentials(path, access, f"sk-ant-ort01-{tag}", 0)
            credential = Credential(tag, CredentialFile(path), lambda token: Deferred(), reactor)
            credential.reload()
            members.append(PoolMember(credential))
        pool = BalancerPool("pool", members, "fallback", reactor)
        authenticator = Authenticator([UserConfig(name="alice", token=TOKEN)])
        proxy = ProxyResource(
            authenticator=authenticator,
            pool_for=lambda caller: pool,
            http_client=http_client,
            clock=reactor,
            upstream_url=f"http://127.0.0.1:{upstream_port.getHost().port}",
            max_request_body=64 * 1024 * 1024,
        )
        site = CcmSite(
            build_root(proxy, StatusResource(authenticator, lambda caller: pool)),
            64 * 1024 * 1024,
        )
        ccm_port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(ccm_port.stopListening)
        self.url = f"http://127.0.0.1:{ccm_port.getHost().port}/v1/messages"
        client_pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(client_pool.closeCachedConnections)
        self.client = HTTPClient(Agent(reactor, pool=client_pool))
        text = "x" * (IN_MEMORY_BODY_BYTES + 1024 * 1024)
        self.body = json.dumps(
            {
                "model": "claude-sonnet-4-5",
                "max_tokens": 8,
                "messages": [{"role": "user", "content": text}],
            }
        ).encode("utf-8")

    async def post(self) -> bytes:
        """
        Send the big body as alice and return the answer's body.
        """
        response = await self.client.post(
            self.url,
            data=self.body,
            headers={"authorization": f"Bearer {TOKEN}", "content-type": "application/json"},
        )
        self.assertEqual(response.code, 200)
        content: bytes = await response.content()
        return content

    async def test_streamed_byte_for_byte(self) -> None:
        """
        A body over the in-memory limit reaches the upstream byte for byte,
        and the answer comes back.
        """
        self.fake.enqueue(text_reply("Read it all."))
        content = await self.post()
        self.assertIn(b"Read it all.", content)
        [request] = [r for r in self.fake.requests if r.path.startswith("/v1/messages")]
        self.assertEqual(request.body, self.body)

    async def test_sent_again_after_429(self) -> None:
        """
        After a 429 the same big body is read again from the start and sent
        whole to the other credential.
        """
        self.fake.enqueue(
            error_reply(429, "rate_limit_error", "Used up."), text_reply("Second subscription.")
        )
        content = await self.post()
        self.assertIn(b"Second subscription.", content)
        first, second = [r for r in self.fake.requests if r.path.startswith("/v1/messages")]
        self.assertEqual(first.body, self.body)
        self.assertEqual(second.body, self.body)
        self.assertEqual(second.header("authorization"), f"Bearer {SECOND_ACCESS}")
