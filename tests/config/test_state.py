"""
Tests for :obj:`ccm.config.state`: a service's ``state`` object.
"""

from __future__ import annotations

import os

from cryptography.fernet import Fernet
from twisted.trial.unittest import SynchronousTestCase

from ccm.config.state import StateConfig
from tests.config.parsing import ProblemsTestMixin, problems_of, service_of

SECRET = "s3cret-pass"


class StateTests(SynchronousTestCase, ProblemsTestMixin):
    """
    ``state`` names the Redis server the processes share; without it the
    service keeps its state to itself.
    """

    def write(self, text: str) -> str:
        """
        A new file holding ``text``.
        """
        path: str = self.mktemp()
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_absent(self) -> None:
        """
        Without ``state`` a service has none.
        """
        self.assertIsNone(service_of({}).state)

    def test_minimal(self) -> None:
        """
        A URL with a host alone gets the default port, database 0, no TLS
        and the ``ccm:`` key prefix.
        """
        state = service_of({"state": {"type": "redis", "url": "redis://cache.internal"}}).state
        self.assertEqual(state, StateConfig(host="cache.internal"))
        self.assertEqual(state.address if state else "", "redis://cache.internal:6379/0")

    def test_everything(self) -> None:
        """
        A ``rediss://`` URL with user, password, port and database, a CA
        file, a key prefix and an encryption key file are all read.
        """
        ca = self.write("pem")
        key = self.write(Fernet.generate_key().decode("ascii"))
        state = service_of(
            {
                "state": {
                    "type": "redis",
                    "url": f"rediss://ccm:{SECRET}@10.0.0.5:6380/3",
                    "key_prefix": "team:",
                    "tls_ca_file": ca,
                    "encryption_key_file": key,
                }
            }
        ).state
        self.assertEqual(
            state,
            StateConfig(
                host="10.0.0.5",
                port=6380,
                database=3,
                tls=True,
                username="ccm",
                password=SECRET,
                key_prefix="team:",
                tls_ca_file=ca,
                encryption_key_file=key,
            ),
        )
        self.assertNotIn(SECRET, repr(state))

    def test_password_file(self) -> None:
        """
        The password may come from a file, its surrounding white space
        removed.
        """
        path = self.write(f"  {SECRET}\n")
        state = service_of(
            {"state": {"type": "redis", "url": "redis://h", "password_file": path}}
        ).state
        self.assertEqual(state.password if state else "", SECRET)

    def test_problems(self) -> None:
        """
        Each bad value is one line naming its JSON path, and no line
        repeats the URL's password.
        """
        cases = {
            "type": ({"type": "memcached", "url": "redis://h"}, "config.json: state.type: must be \"redis\", got 'memcached'"),
            "no type": ({"url": "redis://h"}, "config.json: state.type: must be \"redis\" (it is missing)"),
            "no url": ({"type": "redis"}, "config.json: state.url: is missing: a redis:// or rediss:// URL"),
            "scheme": ({"type": "redis", "url": "http://h"}, "config.json: state.url: must start with redis:// or rediss://, not 'http'"),
            "host": ({"type": "redis", "url": f"redis://:{SECRET}@"}, "config.json: state.url: names no host"),
            "port": ({"type": "redis", "url": f"redis://:{SECRET}@h:99999"}, "config.json: state.url: is not a valid URL (its port is not a number from 1 to 65535)"),
            "database": ({"type": "redis", "url": "redis://h/cache"}, "config.json: state.url: its path must be a database number, such as /0"),
            "query": ({"type": "redis", "url": "redis://h/0?x=1"}, "config.json: state.url: must not have a query or fragment"),
            "prefix": ({"type": "redis", "url": "redis://h", "key_prefix": "a b"}, "config.json: state.key_prefix: must be a non-empty string without spaces"),
            "ca without tls": ({"type": "redis", "url": "redis://h", "tls_ca_file": "/etc/hostname"}, "config.json: state.tls_ca_file: is only used with a rediss:// URL"),
            "key file": ({"type": "redis", "url": "redis://h", "encryption_key_file": "/nonexistent/key"}, "config.json: state.encryption_key_file: no such file: /nonexistent/key"),
            "unknown": ({"type": "redis", "url": "redis://h", "prefix": "x"}, "config.json: state.prefix: unknown key; did you mean 'key_prefix'?"),
        }
        for name, (state, line) in cases.items():
            lines = problems_of({"state": state})
            self.assertEqual(lines, [line], name)
            self.assertNotIn(SECRET, "\n".join(lines))

    def test_not_an_object(self) -> None:
        """
        ``state`` must be an object.
        """
        self.assertEqual(problems_of({"state": "redis://h"}), ["config.json: state: must be an object, got a string"])

    def test_password_twice(self) -> None:
        """
        A password both in the URL and in a file is refused rather than
        one of them silently ignored.
        """
        path = self.write(SECRET)
        self.assertEqual(
            problems_of(
                {"state": {"type": "redis", "url": f"redis://:{SECRET}@h", "password_file": path}}
            ),
            ["config.json: state.password_file: the URL has a password already: give it in one place only"],
        )

    def test_unreadable_password_file(self) -> None:
        """
        A password file that is missing or empty stops startup.
        """
        missing = os.path.join(self.mktemp(), "absent")
        lines = problems_of({"state": {"type": "redis", "url": "redis://h", "password_file": missing}})
        self.assertEqual(len(lines), 1)
        self.assertTrue(lines[0].startswith(f"config.json: state.password_file: cannot read {missing}"), lines)
        empty = self.write("\n")
        self.assertEqual(
            problems_of({"state": {"type": "redis", "url": "redis://h", "password_file": empty}}),
            [f"config.json: state.password_file: {empty} is empty"],
        )
