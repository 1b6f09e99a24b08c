# -*- test-case-name: tests.upstream.test_identity -*-
"""
Which Claude Code ccm's own API calls claim to be: the token refresh, the
usage poll and the profile fetch go out as the Claude Code release that
last talked through ccm would send them.

Claude Code 2.1.332 (read from its binary) sends:

- the OAuth refresh with axios's defaults: ``User-Agent: axios/<the axios
  it bundles>`` and ``Accept: application/json, text/plain, */*``;
- the usage poll through its API client: ``User-Agent: claude-cli/<version>
  (external, cli)``, as on its ``/v1/messages`` requests;
- the profile fetch with ``User-Agent: claude-code/<version>``.

The version is the newest that clients proxied through ccm name in their
own ``User-Agent`` (``claude-cli/2.1.332 (external, cli)``), never lower
than the release ccm was last checked against.  The axios version cannot
be seen from outside, so it stays the one read from that release.
"""

from __future__ import annotations

import re

from twisted.logger import Logger

# The Claude Code release whose requests ccm's own were last compared
# with, and the axios that release bundles.  To re-check a new release:
# install it (npm install @anthropic-ai/claude-code@<version>), run
# ``strings -n 6`` on node_modules/@anthropic-ai/claude-code/bin/claude.exe,
# and look for ``axios/`` (the bundled version, e.g. ``axios/1.15.2``),
# ``TOKEN_URL,`` (the refresh's headers), ``/api/oauth/profile`` and
# ``fetchUtilization`` (the usage poll's).
CHECKED_CLAUDE_CODE_VERSION = "2.1.332"
CHECKED_AXIOS_VERSION = "1.15.2"
AXIOS_ACCEPT = "application/json, text/plain, */*"

# A release number as Claude Code writes it in its User-Agent.  A version
# more than one major release ahead of the checked one is not believed:
# any ccm user can send any User-Agent.
_CLAUDE_CLI = re.compile(r"claude-cli/(\d{1,4})\.(\d{1,4})\.(\d{1,4})(?: |$)")
_MAJOR_RELEASES_AHEAD = 1

Version = tuple[int, int, int]


def parse_version(text: str) -> Version:
    """
    The numbers of a version such as ``2.1.332``.

    :raises ValueError: when ``text`` is not three dot-separated numbers.
    """
    parts = text.split(".")
    if len(parts) != 3 or not all(part.isdigit() for part in parts):
        raise ValueError(f"not a version: {text!r}")
    return (int(parts[0]), int(parts[1]), int(parts[2]))


class ClientIdentity:
    """
    The Claude Code ccm's own calls identify as; one per service, told of
    every proxied request's ``User-Agent``.

    :param floor: the lowest version claimed (the checked release).
    :param axios: the axios version of the refresh's ``User-Agent``.
    """

    log = Logger()

    def __init__(
        self, floor: str = CHECKED_CLAUDE_CODE_VERSION, axios: str = CHECKED_AXIOS_VERSION
    ) -> None:
        self._floor = parse_version(floor)
        self._version = self._floor
        self._axios = axios

    @property
    def version(self) -> str:
        """
        The Claude Code version claimed, e.g. ``2.1.332``.
        """
        return "{}.{}.{}".format(*self._version)

    def observe(self, user_agent: bytes | str | None) -> None:
        """
        Note the ``User-Agent`` of a proxied request: a newer Claude Code
        release than the one claimed becomes the one claimed.
        """
        if isinstance(user_agent, bytes):
            user_agent = user_agent.decode("latin-1")
        if not user_agent:
            return
        match = _CLAUDE_CLI.match(user_agent)
        if match is None:
            return
        seen = (int(match.group(1)), int(match.group(2)), int(match.group(3)))
        if seen <= self._version or seen[0] > self._floor[0] + _MAJOR_RELEASES_AHEAD:
            return
        self._version = seen
        self.log.info(
            "Claude Code {version} talks through ccm: ccm's own calls now identify as it",
            version=self.version,
        )

    @property
    def refresh_user_agent(self) -> str:
        """
        The ``User-Agent`` of a token refresh: axios's own.
        """
        return f"axios/{self._axios}"

    @property
    def usage_user_agent(self) -> str:
        """
        The ``User-Agent`` of a usage poll: Claude Code's API client's.
        """
        return f"claude-cli/{self.version} (external, cli)"

    @property
    def profile_user_agent(self) -> str:
        """
        The ``User-Agent`` of a profile fetch.
        """
        return f"claude-code/{self.version}"
