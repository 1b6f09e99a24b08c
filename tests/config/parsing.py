"""
Shared by the configuration tests and the plugin's: the examples of the
seed documentation, verbatim, a bare service object with a ``credentials``
list, and parsing a document into its one service or into its problem
lines.
"""

from __future__ import annotations

from typing import Any

from ccm.config.load import parse_config
from ccm.config.model import ConfigError, ServiceConfig

# The two server examples of the seed documentation, verbatim.
SEED_SERVER_EXAMPLE = """\
{
"services": [
{
"type": "ccm",
"listen": "0.0.0.0",
"listen_port": 8080,
"usages_path": "./claude-usages.json",
"users": [
{
"name": "alice",
"token": "ak-ccm-hello-world"
},
{
"name": "bob",
"token": "ak-ccm-hello-bob"
}
]
}
]
}
"""

SEED_MULTIPLE_CREDENTIALS_EXAMPLE = """\
{
"services": [
{
"type": "ccm",
"listen": "0.0.0.0",
"listen_port": 8080,
"credentials": [
{
"tag": "a",
"credential_path": "/home/user/.claude-a/.credentials.json",
"usages_path": "/data/usages-a.json",
"reserve_5h": 20,
"reserve_weekly": 20
},
{
"tag": "b",
"credential_path": "/home/user/.claude-b/.credentials.json",
"reserve_5h": 10,
"reserve_weekly": 10
},
{
"tag": "pool",
"type": "balancer",
"poll_interval": "60s",
"credentials": ["a", "b"]
}
],
"users": [
{
"name": "alice",
"token": "ak-ccm-hello-world",
"credential": "pool"
},
{
"name": "bob",
"token": "ak-ccm-hello-bob",
"credential": "a"
}
]
}
]
}
"""

# The credential snippets of the seed documentation, verbatim.
SEED_DEFAULT_CREDENTIAL = """\
{
"tag": "a",
"credential_path": "/path/to/.credentials.json",
"usages_path": "/path/to/usages.json",
"detour": "",
"reserve_5h": 20,
"reserve_weekly": 20
}
"""

SEED_BALANCER_CREDENTIAL = """\
{
"tag": "pool",
"type": "balancer",
"strategy": "",
"credentials": ["a", "b"],
"poll_interval": "60s"
}
"""

SEED_FALLBACK_CREDENTIAL = """\
{
"tag": "backup",
"type": "fallback",
"credentials": ["a", "b"],
"poll_interval": "30s"
}
"""

SOURCE = "config.json"


def problems_of(document: object) -> list[str]:
    """
    The problem lines :obj:`parse_config` reports for ``document``; fails the
    calling test (through the exception) when there are none.
    """
    try:
        parse_config(document, source=SOURCE)
    except ConfigError as error:
        return error.problems
    raise AssertionError(f"no problem reported for {document!r}")


def service_of(document: dict[str, Any]) -> ServiceConfig:
    """
    The only service of a valid ``document``.
    """
    config = parse_config(document, source=SOURCE)
    assert len(config.services) == 1, config.services
    return config.services[0]


def multi(*credentials: dict[str, Any], **service: Any) -> dict[str, Any]:
    """
    A bare service object with a ``credentials`` list.
    """
    return {"credentials": list(credentials), **service}


class ProblemsTestMixin:
    """
    Assertions on problem lines.
    """

    def assert_problems(self, document: object, expected: list[str]) -> None:
        """
        ``document`` is refused with exactly the ``expected`` lines, in order.
        """
        self.assertEqual(problems_of(document), expected)  # type: ignore[attr-defined]

    def assert_problem(self, document: object, expected: str) -> None:
        """
        ``document`` is refused with ``expected`` as its one problem line.
        """
        self.assert_problems(document, [expected])
