"""
Tests for ``contrib/ccm.service``, the systemd unit: it runs ccm the way the
style guide and the deployment guide say, keeps its state writable under
the hardening, and passes ``systemd-analyze verify`` where that tool exists.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys

from twisted.scripts.twistd import ServerOptions
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from ccm.config.model import AddressListener

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UNIT_PATH = os.path.join(REPOSITORY, "contrib", "ccm.service")
STATE_DIRECTORY = "/var/lib/ccm"


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """
    Parse a systemd unit file into ``{section: {key: [values...]}}``.

    Keys may repeat (systemd accumulates most of them), so every value is
    kept in order.  Comments (``#`` or ``;`` at the start of a line) and blank
    lines are skipped, and a trailing backslash continues a line.
    """
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    pending = ""
    for number, raw in enumerate(text.splitlines(), 1):
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1].rstrip() + " "
            continue
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        if current is None or "=" not in line:
            raise ValueError(f"line {number}: not a section or an assignment: {raw!r}")
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def read_unit() -> dict[str, dict[str, list[str]]]:
    with open(UNIT_PATH, encoding="utf-8") as handle:
        return parse_unit(handle.read())


class ParseUnitTests(SynchronousTestCase):
    """
    The small unit parser the other tests rely on.
    """

    def test_repeated_keys_and_comments(self) -> None:
        """
        Repeated keys keep every value in order; comments and blank lines
        are skipped; an empty assignment is kept as an empty value.
        """
        parsed = parse_unit(
            "# comment\n[Service]\n; another\nA=1\n\nA=2\nB=\n[Install]\nC=x y\n"
        )
        self.assertEqual(
            parsed, {"Service": {"A": ["1", "2"], "B": [""]}, "Install": {"C": ["x y"]}}
        )

    def test_continuation(self) -> None:
        """
        A trailing backslash joins the next line to the value.
        """
        parsed = parse_unit("[Service]\nExecStart=/bin/a \\\n  --b\n")
        self.assertEqual(parsed["Service"]["ExecStart"], ["/bin/a --b"])

    def test_garbage_refused(self) -> None:
        """
        A line that is neither a section header nor an assignment is an error.
        """
        self.assertRaises(ValueError, parse_unit, "[Service]\nnonsense\n")


class UnitContentTests(SynchronousTestCase):
    """
    The essentials of ``contrib/ccm.service``.
    """

    def setUp(self) -> None:
        self.unit = read_unit()
        self.service = self.unit["Service"]

    def single(self, key: str) -> str:
        """
        The value of a key of [Service] that must be set exactly once.
        """
        values = self.service.get(key, [])
        self.assertEqual(len(values), 1, f"{key} is set {len(values)} times")
        return values[0]

    def exec_start(self) -> list[str]:
        return shlex.split(self.single("ExecStart"))

    def test_runs_twistd_in_the_foreground(self) -> None:
        """
        ExecStart runs the venv's twistd with ``-n --pidfile=`` and then the
        ccm plugin with an absolute ``--config`` path.
        """
        argv = self.exec_start()
        self.assertEqual(argv[0], "/opt/ccm/venv/bin/twistd")
        self.assertEqual(argv[1:4], ["-n", "--pidfile=", "ccm"])
        self.assertEqual(argv[4:], ["--config", "/etc/ccm/config.json"])

    def test_command_line_is_accepted_by_twistd(self) -> None:
        """
        twistd's own option parser accepts the unit's arguments as they are
        (with the configuration file swapped for a temporary one): no
        daemonizing, no pid file, and the ccm plugin loads the file.
        """
        config_path = self.mktemp()
        with open(config_path, "w", encoding="utf-8") as handle:
            json.dump({"listen": "127.0.0.1", "listen_port": 8443}, handle)
        arguments = self.exec_start()[1:]
        arguments[arguments.index("/etc/ccm/config.json")] = config_path
        options = ServerOptions()
        options.parseOptions(arguments)
        self.assertTrue(options["nodaemon"])
        self.assertEqual(options["pidfile"], "")
        self.assertEqual(options.subCommand, "ccm")
        config = options.subOptions["ccm-config"]
        listener = config.services[0].listeners[0]
        self.assertIsInstance(listener, AddressListener)
        self.assertEqual(listener.port, 8443)

    def test_reload_sends_sighup(self) -> None:
        """
        ``systemctl reload ccm`` sends SIGHUP to the main process, which
        makes ccm read its configuration again.
        """
        self.assertEqual(shlex.split(self.single("ExecReload")), ["/bin/kill", "-HUP", "$MAINPID"])

    def test_simple_service(self) -> None:
        """
        ``Type=simple``: twistd has no sd_notify support, so the unit must
        not wait for a readiness notification.
        """
        self.assertEqual(self.single("Type"), "simple")

    def test_private_files(self) -> None:
        """
        ``UMask=0077``, because ``twistd -n`` does not set that umask itself.
        """
        self.assertEqual(self.single("UMask"), "0077")

    def test_restarts_on_failure(self) -> None:
        """
        systemd restarts ccm when it fails, after a pause.
        """
        self.assertEqual(self.single("Restart"), "on-failure")
        self.assertGreater(int(self.single("RestartSec")), 0)

    def test_bounded_stop(self) -> None:
        """
        Stopping is bounded, below systemd's 90-second default.
        """
        self.assertLessEqual(int(self.single("TimeoutStopSec")), 90)
        self.assertGreater(int(self.single("TimeoutStopSec")), 0)

    def test_dedicated_user(self) -> None:
        """
        ccm runs as its own unprivileged user and group, not as root.
        """
        self.assertEqual(self.single("User"), "ccm")
        self.assertEqual(self.single("Group"), "ccm")

    def test_state_directory_is_writable(self) -> None:
        """
        The state directory is created by systemd, is the working directory
        (relative usage paths land there) and is listed in ReadWritePaths=.
        """
        self.assertEqual(self.single("StateDirectory"), "ccm")
        self.assertEqual(self.single("WorkingDirectory"), STATE_DIRECTORY)
        writable = " ".join(self.service.get("ReadWritePaths", [])).split()
        self.assertIn(STATE_DIRECTORY, writable)

    def test_credentials_in_state_directory(self) -> None:
        """
        ``CLAUDE_CONFIG_DIR`` puts the credentials file, which ccm must
        rewrite when it refreshes tokens, inside the writable state
        directory, while home directories are hidden.
        """
        environment = dict(
            item.split("=", 1)
            for value in self.service.get("Environment", [])
            for item in shlex.split(value)
        )
        config_dir = environment["CLAUDE_CONFIG_DIR"]
        self.assertTrue(config_dir.startswith(STATE_DIRECTORY + "/"), config_dir)
        self.assertEqual(self.single("ProtectHome"), "yes")

    def test_hardening(self) -> None:
        """
        The usual sandboxing is on: read-only system, private /tmp and
        /dev, no new privileges, no capabilities, kernel and cgroup
        protection, native system calls only, restricted namespaces.
        """
        expected = {
            "ProtectSystem": "strict",
            "PrivateTmp": "yes",
            "PrivateDevices": "yes",
            "NoNewPrivileges": "yes",
            "CapabilityBoundingSet": "",
            "ProtectKernelTunables": "yes",
            "ProtectKernelModules": "yes",
            "ProtectControlGroups": "yes",
            "RestrictNamespaces": "yes",
            "LockPersonality": "yes",
            "SystemCallArchitectures": "native",
        }
        self.assertEqual({key: self.single(key) for key in expected}, expected)
        self.assertNotIn("AmbientCapabilities", self.service)

    def test_address_families(self) -> None:
        """
        Only IPv4, IPv6 and Unix sockets may be created: enough to serve
        clients, reach the API and use ``unix:`` endpoints.
        """
        families = set(self.single("RestrictAddressFamilies").split())
        self.assertEqual(families, {"AF_INET", "AF_INET6", "AF_UNIX"})

    def test_write_execute_memory_allowed(self) -> None:
        """
        ``MemoryDenyWriteExecute`` is not enabled: pyOpenSSL's callbacks
        (made with cffi's ``ffi.callback``) need writable executable memory,
        and every TLS connection would fail without it.
        """
        self.assertNotIn("yes", self.service.get("MemoryDenyWriteExecute", []))

    def test_installed_for_boot(self) -> None:
        """
        ``systemctl enable`` starts it at boot, after the network is up.
        """
        self.assertEqual(self.unit["Install"]["WantedBy"], ["multi-user.target"])
        self.assertIn("network-online.target", self.unit["Unit"]["After"])
        self.assertIn("network-online.target", self.unit["Unit"]["Wants"])


class SystemdAnalyzeTests(SynchronousTestCase):
    """
    ``systemd-analyze verify`` on the unit, where the tool is installed.
    """

    def setUp(self) -> None:
        analyze = shutil.which("systemd-analyze")
        if analyze is None:
            raise SkipTest("systemd-analyze is not installed")
        self.analyze = analyze

    def verify(self, text: str) -> tuple[int, str]:
        """
        Verify a copy of the unit whose ExecStart names an executable that
        exists here (verify insists on it), so that what is checked is the
        unit's syntax and directives.

        :return: the exit status and the combined output.
        """
        here = os.path.join(os.path.dirname(sys.executable), "twistd")
        if not os.access(here, os.X_OK):
            here = sys.executable
        self.assertIn("ExecStart=/opt/ccm/venv/bin/twistd ", text)
        text = text.replace("ExecStart=/opt/ccm/venv/bin/twistd ", f"ExecStart={here} ")
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, "ccm.service")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        result = subprocess.run(
            [self.analyze, "verify", "--man=no", path],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=60,
            env={**os.environ, "SYSTEMD_LOG_COLOR": "0", "SYSTEMD_PAGER": ""},
        )
        return result.returncode, result.stdout

    def read_text(self) -> str:
        with open(UNIT_PATH, encoding="utf-8") as handle:
            return handle.read()

    def test_unit_verifies_cleanly(self) -> None:
        """
        The unit verifies with status 0 and no complaint at all (systemd
        reports unknown keys and bad values as warnings, status 0).
        """
        status, output = self.verify(self.read_text())
        self.assertEqual((status, output.strip()), (0, ""))

    def test_verification_catches_mistakes(self) -> None:
        """
        The check above can fail: a misspelt value and an unknown key in a
        copy of the unit are reported.
        """
        text = self.read_text().replace("Type=simple", "Type=simpel")
        text = text.replace("[Service]\n", "[Service]\nRestartt=always\n")
        status, output = self.verify(text)
        self.assertIn("simpel", output)
        self.assertIn("Restartt", output)
