"""
Tests for ``ccm client-env`` (:obj:`ccm.cli.clientenv`): the variables of a
remote Claude Code in each shell's syntax, safely quoted, and the URLs and
tokens it refuses.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess

from twisted.trial.unittest import SynchronousTestCase

from ccm.cli.clientenv import InputError, base_url, render, variables
from ccm.cli.main import main

TOKEN = "ak-ccm-fake-token-for-tests"


def run_main(*argv: str, stdin: str = "") -> tuple[int, str, str]:
    """
    Run the command line: the status, stdout and stderr.
    """
    stdout, stderr = io.StringIO(), io.StringIO()
    status = main(list(argv), stdout, stderr, stdin=io.StringIO(stdin))
    return status, stdout.getvalue(), stderr.getvalue()


class ClientEnvTests(SynchronousTestCase):
    """
    ``ccm client-env``.
    """

    def test_sh(self) -> None:
        """
        The default is POSIX shell lines: the base URL without its trailing
        slash, the token, ``ANTHROPIC_API_KEY`` unset and the one-hour
        cache.
        """
        status, out, err = run_main("client-env", "--url", "http://ccm-host:8080/", "--token", TOKEN)
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(
            out,
            "export ANTHROPIC_BASE_URL=http://ccm-host:8080\n"
            f"export ANTHROPIC_AUTH_TOKEN={TOKEN}\n"
            "unset ANTHROPIC_API_KEY\n"
            "export ENABLE_PROMPT_CACHING_1H=1\n",
        )

    def test_options(self) -> None:
        """
        ``--no-cache-1h`` leaves the cache variable out and ``--only-ccm``
        adds ``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1``.
        """
        status, out, err = run_main(
            "client-env", "--url", "https://ccm.example:8443", "--token", TOKEN, "--no-cache-1h", "--only-ccm"
        )
        self.assertEqual(status, 0)
        self.assertNotIn("ENABLE_PROMPT_CACHING_1H", out)
        self.assertTrue(out.endswith("export CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1\n"), out)

    def test_json(self) -> None:
        """
        ``--shell json`` gives the ``env`` object of ``settings.json``, with
        the set variables only.
        """
        status, out, err = run_main("client-env", "--url", "http://h:1", "--token", TOKEN, "--shell", "json")
        self.assertEqual(status, 0)
        self.assertEqual(
            json.loads(out),
            {"env": {"ANTHROPIC_BASE_URL": "http://h:1", "ANTHROPIC_AUTH_TOKEN": TOKEN, "ENABLE_PROMPT_CACHING_1H": "1"}},
        )

    def test_fish_and_powershell(self) -> None:
        """
        fish and PowerShell lines set and unset the variables in their own
        syntax, with quotes inside a value escaped.
        """
        env = variables("http://h:1", "a'b\\c", cache_1h=False, only_ccm=False)
        self.assertEqual(
            render(env, "fish"),
            "set -gx ANTHROPIC_BASE_URL 'http://h:1'\nset -gx ANTHROPIC_AUTH_TOKEN 'a\\'b\\\\c'\nset -e ANTHROPIC_API_KEY\n",
        )
        self.assertEqual(
            render(env, "powershell"),
            "$env:ANTHROPIC_BASE_URL = 'http://h:1'\n$env:ANTHROPIC_AUTH_TOKEN = 'a''b\\c'\n"
            "Remove-Item Env:ANTHROPIC_API_KEY -ErrorAction SilentlyContinue\n",
        )

    def test_sh_quoting_is_safe(self) -> None:
        """
        A token with shell metacharacters comes out of a real ``sh`` exactly
        as given, running nothing.
        """
        sh = shutil.which("sh")
        if sh is None:
            self.skipTest("no sh")
        token = "a'$(touch${IFS}pwned)`x`;\"b"
        status, out, err = run_main("client-env", "--url", "http://h:1", "--token", token)
        self.assertEqual(status, 0)
        directory = self.mktemp()
        os.makedirs(directory)
        result = subprocess.run(
            [sh, "-c", out + 'printf %s "$ANTHROPIC_AUTH_TOKEN"'], cwd=directory, capture_output=True, check=True
        )
        self.assertEqual(result.stdout.decode(), token)
        self.assertEqual(os.listdir(directory), [])

    def test_token_from_stdin(self) -> None:
        """
        ``--token -`` reads the token from the first line of stdin, so that
        it stays out of the shell history and the process list.
        """
        status, out, err = run_main("client-env", "--url", "http://h:1", "--token", "-", stdin=TOKEN + "\n")
        self.assertEqual(status, 0)
        self.assertIn(f"export ANTHROPIC_AUTH_TOKEN={TOKEN}\n", out)

    def test_bad_urls(self) -> None:
        """
        URLs no client could use are refused with one line, status 1, and
        nothing on stdout; the token is not repeated.
        """
        for url, reason in [
            ("ccm-host:8080", "must start with http:// or https://"),
            ("ftp://ccm-host", "must start with http:// or https://"),
            ("http://", "names no host"),
            ("http://ccm-host:8080/v1", "no path, query or fragment"),
            ("http://ccm-host:8080/?a=b", "no path, query or fragment"),
            ("http://u:p@ccm-host:8080", "must not hold a user or password"),
            ("http://ccm-host:99999", "not a valid URL"),
            ("http://ccm host", "white space"),
        ]:
            status, out, err = run_main("client-env", "--url", url, "--token", TOKEN)
            self.assertEqual((status, out), (1, ""), url)
            self.assertTrue(err.startswith("ccm client-env: "), err)
            self.assertIn(reason, err)
            self.assertEqual(err.count("\n"), 1, err)
            self.assertNotIn(TOKEN, err)

    def test_bad_tokens(self) -> None:
        """
        An empty token or one with white space is refused, without being
        repeated.
        """
        for token in ["", " ak-ccm-x", "ak-ccm secret"]:
            status, out, err = run_main("client-env", "--url", "http://h:1", "--token", token)
            self.assertEqual((status, out), (1, ""), token)
            self.assertNotIn("secret", err)

    def test_missing_arguments(self) -> None:
        """
        ``--url`` and ``--token`` are required: status 2 without them.
        """
        status, out, err = run_main("client-env", "--url", "http://h:1")
        self.assertEqual((status, out), (2, ""))
        self.assertIn("--token", err)

    def test_base_url_keeps_ipv6(self) -> None:
        """
        An IPv6 literal with its port is kept as written.
        """
        self.assertEqual(base_url("http://[::1]:8080"), "http://[::1]:8080")
        self.assertRaises(InputError, base_url, "https://[::1")
