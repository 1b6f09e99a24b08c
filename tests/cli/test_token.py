"""
Tests for ``ccm token`` (:obj:`ccm.cli.token`): a new random token with its
``users`` entry on stdout, instructions without the token on stderr.
"""

from __future__ import annotations

import io
import json
import re

from twisted.trial.unittest import SynchronousTestCase

from ccm.cli.main import main
from ccm.cli.token import TOKEN_PREFIX, new_token
from ccm.config.load import parse_config


def run_main(*argv: str) -> tuple[int, str, str]:
    """
    Run the command line: the status, stdout and stderr.
    """
    stdout, stderr = io.StringIO(), io.StringIO()
    status = main(list(argv), stdout, stderr)
    return status, stdout.getvalue(), stderr.getvalue()


class TokenTests(SynchronousTestCase):
    """
    ``ccm token``.
    """

    def test_token_and_entry(self) -> None:
        """
        The first line is the token, the second a ``users`` entry holding it
        and the name; the entry is accepted by the configuration loader.
        """
        status, out, err = run_main("token", "--name", "alice")
        self.assertEqual(status, 0)
        token, entry_line = out.splitlines()
        entry = json.loads(entry_line)
        self.assertEqual(entry, {"name": "alice", "token": token})
        config = parse_config({"listen_port": 8080, "users": [entry]}, source="config.json")
        self.assertEqual(config.services[0].users[0].token, token)
        self.assertIn("alice's ANTHROPIC_AUTH_TOKEN", err)

    def test_entropy_and_shape(self) -> None:
        """
        A token is the ``ak-ccm-`` prefix and 43 URL-safe characters (32
        random bytes, 256 bits); two tokens differ.
        """
        tokens = {new_token() for _ in range(20)}
        self.assertEqual(len(tokens), 20)
        for token in tokens:
            self.assertTrue(token.startswith(TOKEN_PREFIX), token)
            self.assertRegex(token[len(TOKEN_PREFIX) :], r"\A[A-Za-z0-9_-]{43}\Z")

    def test_no_secret_on_stderr(self) -> None:
        """
        The token appears on stdout only, never in the instructions.
        """
        status, out, err = run_main("token")
        token = out.splitlines()[0]
        self.assertEqual(status, 0)
        self.assertNotIn(token, err)
        self.assertNotIn(TOKEN_PREFIX, err)

    def test_placeholder_name(self) -> None:
        """
        Without ``--name`` the entry's name is ``NAME``, to replace.
        """
        status, out, err = run_main("token")
        self.assertEqual(json.loads(out.splitlines()[1])["name"], "NAME")

    def test_unprintable_name(self) -> None:
        """
        A name with a control character is refused with status 1 and no
        token is printed.
        """
        status, out, err = run_main("token", "--name", "al\x1bice")
        self.assertEqual((status, out), (1, ""))
        self.assertEqual(err, "ccm token: --name must be printable text\n")

    def test_unknown_option(self) -> None:
        """
        An unknown option is a wrong command line: status 2, nothing on
        stdout.
        """
        status, out, err = run_main("token", "--length", "9")
        self.assertEqual((status, out), (2, ""))
        self.assertTrue(re.search("unrecognized arguments", err), err)
