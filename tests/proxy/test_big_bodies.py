"""
Tests for large request bodies: ccm streams them upstream from twisted.web's
temporary file instead of holding them in memory, also when a 429 sends the
request again on another credential.
"""

from __future__ import annotations

import json
import os
from typing import cast

from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import ServerFactory
from twisted.trial import unittest
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.server import Site

from ccm.config.model import (
    BalancerCredentialConfig,
    CredentialConfig,
    DefaultCredentialConfig,
    ServiceConfig,
    UserConfig,
)
from ccm.proxy.resource import IN_MEMORY_BODY_BYTES
from tests.fake_anthropic import FakeAnthropic, error_reply, text_reply
from tests.fixtures import write_credentials
from tests.proxyharness import serve_on_loopback

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
        site = cast(ServerFactory, Site(self.fake.resource()))
        upstream_port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(upstream_port.stopListening)
        self.addCleanup(self.fake.abort_all)
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        credentials: list[CredentialConfig] = []
        for tag, access in (("a", self.fake.access_token), ("b", SECOND_ACCESS)):
            path = os.path.join(directory, f"{tag}.json")
            write_credentials(path, access, f"sk-ant-ort01-{tag}", 0)
            credentials.append(DefaultCredentialConfig(tag, path))
        credentials.append(BalancerCredentialConfig("pool", ("a", "b"), strategy="fallback"))
        config = ServiceConfig(
            where="",
            listeners=(),
            credentials=tuple(credentials),
            users=(UserConfig(name="alice", token=TOKEN, credential="pool"),),
            upstream_url=f"http://127.0.0.1:{cast(IPv4Address, upstream_port.getHost()).port}",
            max_request_body=64 * 1024 * 1024,
        )
        _, port = serve_on_loopback(self, reactor, config)
        self.url = f"http://127.0.0.1:{port}/v1/messages"
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
        headers: dict[bytes | str, bytes | str] = {
            "authorization": f"Bearer {TOKEN}",
            "content-type": "application/json",
        }
        response = await self.client.post(self.url, data=self.body, headers=headers)
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
