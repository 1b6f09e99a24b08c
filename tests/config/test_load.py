"""
Tests for :obj:`ccm.config.load`: loading and validating a configuration file,
the seed documentation's examples, both document shapes, every problem
reported in one pass, the check of usage file paths, and the service's own
options (``upstream_url``, ``oauth_token_url``, ``max_request_body``,
``shutdown_grace``).  The parts a document is made of have the tests of their
modules: :obj:`tests.config.test_model`, :obj:`tests.config.test_reader`,
:obj:`tests.config.test_credentials`, :obj:`tests.config.test_detour`,
:obj:`tests.config.test_connections`, :obj:`tests.config.test_listen` and
:obj:`tests.config.test_headers`.
"""

from __future__ import annotations

import json
import os

from twisted.trial.unittest import SynchronousTestCase

from ccm.config.model import (
    DEFAULT_MAX_REQUEST_BODY_BYTES,
    DEFAULT_OAUTH_TOKEN_URL,
    DEFAULT_UPSTREAM_URL,
    AddressListener,
    BalancerCredentialConfig,
    Config,
    ConfigError,
    DefaultCredentialConfig,
    EndpointListener,
    UserConfig,
)
from ccm.config.load import load_config, parse_config
from tests.config.parsing import (
    SEED_BALANCER_CREDENTIAL,
    SEED_DEFAULT_CREDENTIAL,
    SEED_FALLBACK_CREDENTIAL,
    SEED_MULTIPLE_CREDENTIALS_EXAMPLE,
    SEED_SERVER_EXAMPLE,
    SOURCE,
    ProblemsTestMixin,
    multi,
    problems_of,
    service_of,
)


class SeedExampleTests(SynchronousTestCase):
    """
    The examples of the seed documentation load unchanged.
    """

    def load(self, text: str) -> Config:
        """
        Parse an example as :obj:`load_config` does, without the check of the
        usage files' directories: the examples name directories (such as
        ``/data``) that need not exist here.  :obj:`UsagePathCheckTests` covers
        that check.
        """
        return parse_config(json.loads(text), source="config.json")

    def test_server_example(self) -> None:
        """
        The single-credential server example gives one service listening
        on 0.0.0.0:8080 with the usage file, two users and the legacy
        default credential capped at 99 %.
        """
        config = self.load(SEED_SERVER_EXAMPLE)
        self.assertEqual(config.source, "config.json")
        self.assertEqual(config.warnings, ())
        [service] = config.services
        self.assertEqual(service.where, "services[0]")
        self.assertEqual(service.listeners, (AddressListener("0.0.0.0", 8080, None),))
        self.assertEqual(service.usages_path, "./claude-usages.json")
        self.assertEqual(
            service.users,
            (
                UserConfig(name="alice", token="ak-ccm-hello-world"),
                UserConfig(name="bob", token="ak-ccm-hello-bob"),
            ),
        )
        self.assertFalse(service.multi_credential)
        [credential] = service.default_credentials()
        self.assertEqual(credential.tag, "default")
        self.assertEqual(credential.usages_path, "./claude-usages.json")
        self.assertEqual((credential.cap_5h, credential.cap_weekly), (99, 99))
        self.assertEqual(service.upstream_url, DEFAULT_UPSTREAM_URL)
        self.assertEqual(service.oauth_token_url, DEFAULT_OAUTH_TOKEN_URL)
        self.assertEqual(service.max_request_body, DEFAULT_MAX_REQUEST_BODY_BYTES)

    def test_multiple_credentials_example(self) -> None:
        """
        The multi-credential example gives two default credentials with
        their reserves turned into caps, a least-used balancer over them
        polling every 60 s, and users bound to their credentials.
        """
        config = self.load(SEED_MULTIPLE_CREDENTIALS_EXAMPLE)
        [service] = config.services
        self.assertTrue(service.multi_credential)
        self.assertEqual(service.listeners, (AddressListener("0.0.0.0", 8080, None),))
        a, b, pool = service.credentials
        self.assertEqual(
            a,
            DefaultCredentialConfig(
                tag="a",
                credential_path="/home/user/.claude-a/.credentials.json",
                usages_path="/data/usages-a.json",
                reserve_5h=20,
                reserve_weekly=20,
            ),
        )
        assert isinstance(a, DefaultCredentialConfig)
        self.assertEqual((a.cap_5h, a.cap_weekly), (80, 80))
        self.assertEqual(
            b,
            DefaultCredentialConfig(
                tag="b",
                credential_path="/home/user/.claude-b/.credentials.json",
                reserve_5h=10,
                reserve_weekly=10,
            ),
        )
        assert isinstance(b, DefaultCredentialConfig)
        self.assertEqual((b.cap_5h, b.cap_weekly), (90, 90))
        self.assertEqual(
            pool,
            BalancerCredentialConfig(
                tag="pool", credentials=("a", "b"), strategy="least_used", poll_interval=60.0
            ),
        )
        self.assertEqual(service.default_credentials(), (a, b))
        self.assertEqual(
            [(u.name, u.token, u.credential) for u in service.users],
            [("alice", "ak-ccm-hello-world", "pool"), ("bob", "ak-ccm-hello-bob", "a")],
        )

    def test_credential_snippets(self) -> None:
        """
        The default, balancer and fallback credential snippets of the seed
        documentation load side by side: the empty detour means none, the
        empty strategy means least-used, and the fallback type is a balancer
        with the fallback strategy.
        """
        entries = [
            json.loads(SEED_DEFAULT_CREDENTIAL),
            {"tag": "b"},
            json.loads(SEED_BALANCER_CREDENTIAL),
            json.loads(SEED_FALLBACK_CREDENTIAL),
        ]
        service = service_of(multi(*entries))
        a, _, pool, backup = service.credentials
        assert isinstance(a, DefaultCredentialConfig)
        self.assertEqual(a.credential_path, "/path/to/.credentials.json")
        self.assertEqual(a.usages_path, "/path/to/usages.json")
        self.assertIsNone(a.detour)
        self.assertEqual((a.reserve_5h, a.reserve_weekly), (20, 20))
        self.assertEqual(pool, BalancerCredentialConfig("pool", ("a", "b"), "least_used", 60.0))
        self.assertEqual(backup, BalancerCredentialConfig("backup", ("a", "b"), "fallback", 30.0))

    def test_structure_with_empty_values(self) -> None:
        """
        The documented structure with every field empty loads as the legacy
        defaults (loopback port 8080, no users, no headers, no detour).
        """
        service = service_of(
            {
                "type": "ccm",
                "credential_path": "",
                "credentials": [],
                "usages_path": "",
                "users": [],
                "headers": {},
                "detour": "",
                "tls": {},
            }
        )
        self.assertEqual(service.listeners, (AddressListener("127.0.0.1", 8080, None),))
        self.assertFalse(service.multi_credential)
        self.assertEqual(
            (service.credential_path, service.usages_path, service.detour),
            ("", "", None),
        )
        self.assertEqual((service.users, service.headers), ((), ()))


class DocumentShapeTests(SynchronousTestCase, ProblemsTestMixin):
    """
    Both document shapes are accepted, and anything else is refused with a
    line naming the file.
    """

    def write(self, data: bytes, name: str = "config.json") -> str:
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, name)
        with open(path, "wb") as handle:
            handle.write(data)
        return path

    def assert_load_fails(self, path: str, expected: list[str]) -> None:
        with self.assertRaises(ConfigError) as caught:
            load_config(path)
        self.assertEqual(caught.exception.problems, expected)
        self.assertEqual(str(caught.exception), "\n".join(expected))

    def test_bare_service_object(self) -> None:
        """
        A bare ccm service object, with or without ``type``, is one service
        whose JSON paths have no prefix.
        """
        for document in ({"listen_port": 9000}, {"type": "ccm", "listen_port": 9000}):
            service = service_of(document)
            self.assertEqual(service.where, "")
            self.assertEqual(service.listeners, (AddressListener("127.0.0.1", 9000, None),))
        self.assert_problem(
            {"listen_port": "9000"},
            "config.json: listen_port: must be a whole number, got a string",
        )

    def test_bare_object_of_another_type(self) -> None:
        """
        A bare object whose ``type`` is not ``ccm`` is refused, with a hint
        about the sing-box document shape.
        """
        [line] = problems_of({"type": "shadowsocks", "listen_port": 8388})
        self.assertTrue(line.startswith('config.json: type: must be "ccm"'), line)
        self.assertIn("'shadowsocks'", line)
        self.assertIn('"services" array', line)

    def test_singbox_document_with_several_services(self) -> None:
        """
        In a sing-box document every ccm service is served, in order, each
        knowing its JSON path; other services are ignored, whatever they
        hold.
        """
        config = parse_config(
            {
                "log": {"level": "info"},
                "services": [
                    {"type": "ccm", "listen_port": 8001},
                    {"type": "derp", "listen_port": 443, "anything": [1, 2]},
                    {"type": "ccm", "endpoint": "tcp:8002:interface=127.0.0.1"},
                ],
                "outbounds": [{"type": "direct", "tag": "direct"}],
            },
            source=SOURCE,
        )
        self.assertEqual([s.where for s in config.services], ["services[0]", "services[2]"])
        self.assertEqual(
            [s.listeners for s in config.services],
            [
                (AddressListener("127.0.0.1", 8001, None),),
                (EndpointListener("tcp:8002:interface=127.0.0.1"),),
            ],
        )

    def test_singbox_document_without_ccm_service(self) -> None:
        """
        A sing-box document with no ccm service is refused rather than
        starting nothing.
        """
        expected = 'config.json: services: has no service of type "ccm"'
        self.assert_problem({"services": [{"type": "derp"}]}, expected)
        self.assert_problem({"services": []}, expected)

    def test_services_not_an_array(self) -> None:
        """
        ``services`` must be an array of objects.
        """
        self.assert_problem(
            {"services": {"type": "ccm"}},
            "config.json: services: must be an array, got an object",
        )
        self.assert_problem(
            {"services": [{"type": "ccm"}, "ccm"]},
            "config.json: services[1]: must be an object, got a string",
        )

    def test_outbounds_not_an_array(self) -> None:
        """
        ``outbounds``, when present, must be an array.
        """
        self.assert_problem(
            {"services": [{"type": "ccm"}], "outbounds": {"direct": {}}},
            "config.json: outbounds: must be an array, got an object",
        )

    def test_not_an_object(self) -> None:
        """
        A document that is not a JSON object is refused, naming what it is.
        """
        for document, kind in (
            ([], "an array"),
            ("ccm", "a string"),
            (None, "null"),
            (3, "a number"),
        ):
            self.assert_problem(document, f"config.json: must be a JSON object, got {kind}")

    def test_load_file(self) -> None:
        """
        :obj:`load_config` reads a file and names it by its base name in the
        configuration and in its problems.
        """
        path = self.write(b'{"listen_port": 9001}')
        config = load_config(path)
        self.assertEqual(config.source, "config.json")
        self.assertEqual(config.services[0].listeners, (AddressListener("127.0.0.1", 9001, None),))

    def test_design_example_line(self) -> None:
        """
        The problem line of the design contract comes out exactly so.
        """
        path = self.write(
            json.dumps(
                {
                    "services": [
                        {
                            "type": "ccm",
                            "credentials": [{"tag": "a"}, {"tag": "b", "reserve_5h": 120}],
                        }
                    ]
                }
            ).encode("utf-8")
        )
        self.assert_load_fails(
            path,
            [
                "config.json: services[0].credentials[1].reserve_5h: must be between 1 and 99, got 120"
            ],
        )

    def test_invalid_json(self) -> None:
        """
        Invalid JSON is reported on one line with its line and column.
        """
        path = self.write(b'{\n  "listen": "127.0.0.1",\n  "listen_port": 80 80\n}\n')
        self.assert_load_fails(
            path,
            ["config.json: invalid JSON at line 3 column 21: Expecting ',' delimiter"],
        )

    def test_empty_file(self) -> None:
        """
        An empty file is invalid JSON at its very start.
        """
        self.assert_load_fails(
            self.write(b""), ["config.json: invalid JSON at line 1 column 1: Expecting value"]
        )

    def test_not_utf8(self) -> None:
        """
        A file that is not UTF-8 text is refused in one line.
        """
        self.assert_load_fails(self.write(b'{"tag": "caf\xe9"}'), ["config.json: not UTF-8 text"])

    def test_beyond_the_decoder(self) -> None:
        """
        JSON nested deeper than the decoder goes, or with a number longer
        than Python converts, is refused in one line instead of a
        traceback.
        """
        self.assert_load_fails(self.write(b"[" * 200_000), ["config.json: nested too deeply"])
        self.assert_load_fails(
            self.write(b'{"listen_port": ' + b"1" * 5000 + b"}"),
            ["config.json: a number has too many digits"],
        )

    def test_missing_file(self) -> None:
        """
        A file that does not exist is reported with its full path and the
        reason.
        """
        path = os.path.join(os.path.abspath(self.mktemp()), "config.json")
        self.assert_load_fails(path, [f"{path}: cannot read: No such file or directory"])

    def test_unreadable_file(self) -> None:
        """
        A path that cannot be read as a file is reported with its reason.
        """
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        self.assert_load_fails(directory, [f"{directory}: cannot read: Is a directory"])


class OnePassTests(SynchronousTestCase):
    """
    Every problem of a configuration is reported together, one line each.
    """

    def test_all_problems_at_once(self) -> None:
        """
        Problems in different parts of a document are all reported, each on
        its own line naming the file and the JSON path.
        """
        problems = problems_of(
            {
                "services": [
                    {
                        "type": "ccm",
                        "listen": "localhost",
                        "listen_port": 99999,
                        "credentials": [{"tag": "a", "reserve_5h": 120}],
                        "users": [{"name": "u", "token": "t"}],
                        "max_request_body": "huge",
                    },
                    {"type": "ccm", "upstream_url": "ftp://example.test"},
                ]
            }
        )
        self.assertEqual(len(problems), 6, problems)
        for line in problems:
            self.assertNotIn("\n", line)
            self.assertTrue(line.startswith("config.json: services["), line)
        self.assertEqual(
            [line.split(":")[1].strip() for line in problems],
            [
                "services[0].listen",
                "services[0].listen_port",
                "services[0].credentials[0].reserve_5h",
                "services[0].users[0].credential",
                "services[0].max_request_body",
                "services[1].upstream_url",
            ],
        )


class UsagePathCheckTests(SynchronousTestCase):
    """
    :obj:`load_config` refuses a ``usages_path`` whose directory is missing or
    not writable, naming its JSON path, so that start-up fails instead of
    the usage being lost at shutdown.
    """

    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)

    def write(self, document: object) -> str:
        path = os.path.join(self.directory, "config.json")
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(document, handle)
        return path

    def load_fails(self, document: object) -> list[str]:
        error: ConfigError = self.assertRaises(ConfigError, load_config, self.write(document))
        return error.problems

    def test_missing_directory(self) -> None:
        """
        A service-level ``usages_path`` in a directory that does not exist
        is one problem line naming the key, the path and the directory;
        nothing is created.
        """
        missing = os.path.join(self.directory, "nowhere")
        usages = os.path.join(missing, "usages.json")
        self.assertEqual(
            self.load_fails({"usages_path": usages}),
            [
                f"config.json: usages_path: cannot save usage to {usages}: directory "
                f"{missing} does not exist; create it (writable by the user ccm runs as) "
                "or fix the path"
            ],
        )
        self.assertFalse(os.path.exists(missing))

    def test_credential_paths(self) -> None:
        """
        In a sing-box document, each credential's ``usages_path`` is checked
        and named by its own JSON path; good ones pass silently.
        """
        good = os.path.join(self.directory, "a.json")
        bad = os.path.join(self.directory, "gone", "b.json")
        document = {
            "services": [
                {"type": "direct", "tag": "other"},
                {
                    "type": "ccm",
                    "credentials": [
                        {"tag": "a", "usages_path": good},
                        {"tag": "pool", "type": "balancer", "credentials": ["a", "b"]},
                        {"tag": "b", "usages_path": bad},
                    ],
                },
            ]
        }
        [line] = self.load_fails(document)
        self.assertTrue(
            line.startswith(
                f"config.json: services[1].credentials[2].usages_path: cannot save usage to {bad}:"
            ),
            line,
        )

    def test_parent_is_a_file(self) -> None:
        """
        A path under a regular file is refused: that "directory" is not one.
        """
        blocker = os.path.join(self.directory, "file")
        open(blocker, "w").close()
        [line] = self.load_fails({"usages_path": os.path.join(blocker, "usages.json")})
        self.assertIn(f": {blocker} is not a directory; fix the path", line)

    def test_path_is_a_directory(self) -> None:
        """
        A ``usages_path`` naming a directory is refused with a suggestion.
        """
        [line] = self.load_fails({"usages_path": self.directory})
        self.assertEqual(
            line,
            f"config.json: usages_path: {self.directory} is a directory; name a file in "
            f"it, such as {os.path.join(self.directory, 'usages.json')}",
        )

    def test_directory_not_writable(self) -> None:
        """
        A directory the system reports as not writable is refused.  The
        answer is simulated (as root every directory is writable); the check
        asks for write and search permission on the directory itself.
        """
        usages = os.path.join(self.directory, "usages.json")
        asked: list[tuple[str, int]] = []

        def access(path: str, mode: int) -> bool:
            asked.append((path, mode))
            return False

        self.patch(os, "access", access)
        [line] = self.load_fails({"usages_path": usages})
        self.assertEqual(
            line,
            f"config.json: usages_path: cannot save usage to {usages}: directory "
            f"{self.directory} is not writable by the user ccm runs as; make it writable "
            "or choose another path",
        )
        self.assertEqual(asked, [(self.directory, os.W_OK | os.X_OK)])

    def test_usable_paths(self) -> None:
        """
        A usage file that does not exist yet in a writable directory, an
        existing one, and one reached through a symbolic link all load, and
        the check creates nothing.
        """
        existing = os.path.join(self.directory, "existing.json")
        open(existing, "w").close()
        link = os.path.join(self.directory, "link.json")
        os.symlink(existing, link)
        for usages in (os.path.join(self.directory, "new.json"), existing, link):
            config = load_config(self.write({"usages_path": usages}))
            self.assertEqual(config.services[0].usages_path, usages)
        self.assertEqual(sorted(os.listdir(self.directory)), ["config.json", "existing.json", "link.json"])

    def test_problems_of_parsing_come_first(self) -> None:
        """
        A document with other problems reports those, and the file system
        is not looked at: :obj:`parse_config` alone never touches it.
        """
        missing = os.path.join(self.directory, "nowhere", "usages.json")
        self.assertEqual(
            self.load_fails({"usages_path": missing, "listen_port": "x"}),
            ["config.json: listen_port: must be a whole number, got a string"],
        )
        self.assertEqual(
            parse_config({"usages_path": missing}, "config.json").services[0].usages_path, missing
        )


class URLTests(SynchronousTestCase, ProblemsTestMixin):
    """
    ``upstream_url`` and ``oauth_token_url``.
    """

    def test_defaults(self) -> None:
        """
        Without them, the real API and token endpoint are used.
        """
        service = service_of({})
        self.assertEqual(service.upstream_url, "https://api.anthropic.com")
        self.assertEqual(service.oauth_token_url, "https://platform.claude.com/v1/oauth/token")

    def test_custom(self) -> None:
        """
        Custom URLs are kept; the upstream base loses its trailing slash and
        the token URL is kept exactly.
        """
        service = service_of(
            {
                "upstream_url": "http://127.0.0.1:9000/base/",
                "oauth_token_url": "http://127.0.0.1:9000/token/",
            }
        )
        self.assertEqual(service.upstream_url, "http://127.0.0.1:9000/base")
        self.assertEqual(service.oauth_token_url, "http://127.0.0.1:9000/token/")

    def test_bad_urls(self) -> None:
        """
        Only http and https URLs with a host and without query or fragment
        are accepted.
        """
        self.assert_problems(
            {"upstream_url": "ftp://example.test", "oauth_token_url": "https://"},
            [
                "config.json: upstream_url: must be an http:// or https:// URL, got 'ftp://example.test'",
                "config.json: oauth_token_url: must be an http:// or https:// URL, got 'https://'",
            ],
        )
        self.assert_problems(
            {
                "upstream_url": "https://example.test/?x=1",
                "oauth_token_url": "https://example.test/t#f",
            },
            [
                "config.json: upstream_url: must not have a query or fragment",
                "config.json: oauth_token_url: must not have a query or fragment",
            ],
        )
        self.assert_problem(
            {"upstream_url": "api.anthropic.com"},
            "config.json: upstream_url: must be an http:// or https:// URL, got 'api.anthropic.com'",
        )


class MaxRequestBodyTests(SynchronousTestCase, ProblemsTestMixin):
    """
    ``max_request_body``: a byte count or a size with a unit, 64 MiB by
    default.
    """

    def test_default(self) -> None:
        """
        The default is 64 MiB.
        """
        self.assertEqual(service_of({}).max_request_body, 64 * 1024 * 1024)

    def test_values(self) -> None:
        """
        A byte count and sizes with units are read in bytes.
        """
        for value, size in (
            (1000, 1000),
            ("64MiB", 64 * 1024 * 1024),
            ("10MB", 10_000_000),
            ("512", 512),
        ):
            self.assertEqual(service_of({"max_request_body": value}).max_request_body, size, value)

    def test_bad_values(self) -> None:
        """
        Zero, negative, fractional and other values are refused.
        """
        self.assert_problem(
            {"max_request_body": 0}, "config.json: max_request_body: must be at least 1 byte"
        )
        self.assert_problem(
            {"max_request_body": -1}, "config.json: max_request_body: must not be negative, got -1"
        )
        self.assert_problem(
            {"max_request_body": 1.5},
            'config.json: max_request_body: must be a whole number of bytes or a size such as "64MiB", got 1.5',
        )
        self.assert_problem(
            {"max_request_body": True},
            'config.json: max_request_body: must be a whole number of bytes or a size such as "64MiB", got a boolean',
        )
        [line] = problems_of({"max_request_body": "huge"})
        self.assertTrue(line.startswith("config.json: max_request_body: invalid size 'huge'"), line)


class ShutdownGraceTests(SynchronousTestCase, ProblemsTestMixin):
    """
    ``shutdown_grace``: how long a shutdown waits for requests in progress,
    a duration string, 30 seconds by default; zero turns the wait off.
    """

    def test_default(self) -> None:
        """
        The default is 30 seconds.
        """
        self.assertEqual(service_of({}).shutdown_grace, 30.0)

    def test_values(self) -> None:
        """
        Duration strings are read in seconds, zero included.
        """
        for text, seconds in (("90s", 90.0), ("2m", 120.0), ("1m30s", 90.0), ("0s", 0.0), ("0", 0.0)):
            self.assertEqual(service_of({"shutdown_grace": text}).shutdown_grace, seconds, text)

    def test_bad_values(self) -> None:
        """
        Negative durations, numbers and words are refused, naming the key.
        """
        self.assert_problem(
            {"shutdown_grace": "-5s"}, "config.json: shutdown_grace: must be zero or positive, got '-5s'"
        )
        self.assert_problem(
            {"shutdown_grace": 30}, "config.json: shutdown_grace: must be a string, got a number"
        )
        [line] = problems_of({"shutdown_grace": "soon"})
        self.assertTrue(line.startswith("config.json: shutdown_grace: invalid duration 'soon'"), line)
