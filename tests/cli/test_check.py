"""
Tests for ``ccm check`` (:obj:`ccm.cli.check`): start-up's validation
without starting: the problems and status 1, or the warnings and a final OK
line with status 0; nothing written, and no secret repeated.
"""

from __future__ import annotations

import io
import json
import os
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from ccm.cli.main import main
from tests.certs import make_pki


class CheckTests(SynchronousTestCase):
    """
    ``ccm check CONFIG``.
    """

    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.path = os.path.join(self.directory, "config.json")

    def check(self, document: Any) -> tuple[int, str, str]:
        """
        Write ``document`` as the configuration and check it; the directory
        must hold nothing else afterwards.

        :return: the status, stdout and stderr.
        """
        with open(self.path, "w") as handle:
            handle.write(document if isinstance(document, str) else json.dumps(document))
        before = sorted(os.listdir(self.directory))
        stdout, stderr = io.StringIO(), io.StringIO()
        status = main(["check", self.path], stdout, stderr)
        self.assertEqual(sorted(os.listdir(self.directory)), before)
        return status, stdout.getvalue(), stderr.getvalue()

    def test_ok(self) -> None:
        """
        A good file gives one OK line naming the file and what it holds, no
        warning, and status 0.
        """
        status, out, err = self.check(
            {"listen": "127.0.0.1", "listen_port": 8080, "users": [{"name": "alice", "token": "ak-ccm-secret"}]}
        )
        self.assertEqual(
            (status, out, err), (0, "config.json: OK (1 service, 1 listener, 1 credential, 1 user)\n", "")
        )

    def test_problems(self) -> None:
        """
        Every problem is one line on stderr, as start-up prints it, then a
        line counting them; status 1, nothing on stdout, and the token in
        the file is not repeated.
        """
        status, out, err = self.check(
            {
                "listen_port": 8080,
                "users": [{"name": "alice", "token": "ak-ccm-secret", "credential": "nope"}],
                "usages_path": 5,
                "lisen": "0.0.0.0",
            }
        )
        self.assertEqual((status, out), (1, ""))
        lines = err.splitlines()
        self.assertTrue(all(line.startswith("config.json: ") for line in lines[:-1]), lines)
        self.assertIn("lisen", err)
        self.assertIn("usages_path", err)
        self.assertEqual(lines[-1], f"ccm check: {len(lines) - 1} problems in {self.path}: ccm would not start")
        self.assertNotIn("ak-ccm-secret", err)
        self.assertNotIn("Traceback", err)

    def test_not_json(self) -> None:
        """
        A file that is not JSON is one problem naming its line.
        """
        status, out, err = self.check("{\n  nope")
        self.assertEqual((status, out), (1, ""))
        self.assertIn("config.json: invalid JSON at line 2", err)
        self.assertTrue(err.endswith(f"ccm check: 1 problem in {self.path}: ccm would not start\n"), err)

    def test_missing_file(self) -> None:
        """
        A file that does not exist is named by its path; status 1.
        """
        stdout, stderr = io.StringIO(), io.StringIO()
        missing = os.path.join(self.directory, "missing.json")
        status = main(["check", missing], stdout, stderr)
        self.assertEqual((status, stdout.getvalue()), (1, ""))
        self.assertIn(f"{missing}: cannot read: No such file or directory", stderr.getvalue())

    def test_usage_directory_missing(self) -> None:
        """
        A ``usages_path`` in a missing directory stops start-up, so it is a
        problem here too (start-up's check of the file system).
        """
        status, out, err = self.check({"usages_path": os.path.join(self.directory, "no", "u.json")})
        self.assertEqual(status, 1)
        self.assertIn("config.json: usages_path: ", err)

    def test_warnings(self) -> None:
        """
        Start-up's warnings are printed on stderr, each starting with
        ``warning:``, before the OK line: a service open to anyone, and a
        usage file ccm would move aside.
        """
        usages = os.path.join(self.directory, "usages.json")
        with open(usages, "w") as handle:
            handle.write("{broken")
        status, out, err = self.check({"listen": "0.0.0.0", "listen_port": 8080, "usages_path": usages})
        self.assertEqual(status, 0)
        self.assertTrue(out.startswith("config.json: OK"), out)
        warnings = err.splitlines()
        self.assertEqual(len(warnings), 2, warnings)
        self.assertTrue(all(line.startswith("warning: config.json: ") for line in warnings), warnings)
        self.assertIn("anyone who can reach it can use the subscription", warnings[0])
        self.assertIn(f"usages_path {usages}: it is not valid JSON", warnings[1])
        self.assertIn("move it aside", warnings[1])
        with open(usages) as handle:
            self.assertEqual(handle.read(), "{broken")

    def test_open_metrics_listener(self) -> None:
        """
        A ``metrics_listen`` endpoint beyond this machine gets start-up's
        warning (it asks for no token), naming the endpoint; a loopback one
        gets none.
        """
        service = {"listen": "127.0.0.1", "listen_port": 8080, "users": [{"name": "alice", "token": "ak-ccm-secret"}]}
        status, out, err = self.check({**service, "metrics_listen": ["tcp:9464:interface=127.0.0.1", "tcp:9465"]})
        self.assertEqual(status, 0)
        self.assertTrue(out.startswith("config.json: OK"), out)
        self.assertEqual(
            err.splitlines(),
            [
                "warning: config.json: metrics_listen tcp:9465 is reachable beyond this machine "
                "and asks for no token: whoever reaches it reads every user's and credential's figures"
            ],
        )

    def test_dashboard_over_plain_http(self) -> None:
        """
        An admin and a plain HTTP listener beyond this machine get
        start-up's warning about the dashboard; the same service on
        loopback gets none, and the admin's token is not repeated.
        """
        admin = [{"name": "root", "token": "ak-ccm-secret", "admin": True}]
        status, out, err = self.check({"listen": "0.0.0.0", "listen_port": 8080, "users": admin})
        self.assertEqual(status, 0)
        self.assertTrue(out.startswith("config.json: OK"), out)
        [warning] = err.splitlines()
        self.assertTrue(
            warning.startswith(
                "warning: config.json: the dashboard (/ccm/) is reachable over plain HTTP beyond this machine"
            ),
            warning,
        )
        self.assertNotIn("ak-ccm-secret", err)
        self.assertEqual(self.check({"listen": "127.0.0.1", "listen_port": 8080, "users": admin})[2], "")

    def test_tls_material(self) -> None:
        """
        TLS files are loaded as start-up loads them: a key that does not
        match the certificate, or a missing file, is a problem, for the
        ``tls`` object and for an ``ssl:`` endpoint alike; good ones pass.
        """
        pki = make_pki()
        cert = os.path.join(self.directory, "cert.pem")
        key = os.path.join(self.directory, "key.pem")
        other = os.path.join(self.directory, "other.pem")
        for name, content in [(cert, pki.server_pem), (key, pki.server_key_pem), (other, pki.other_key_pem)]:
            with open(name, "wb") as handle:
                handle.write(content)
        tls = {"enabled": True, "certificate_path": cert, "key_path": key}
        good = {"listen": "127.0.0.1", "listen_port": 8443, "tls": tls}
        self.assertEqual(self.check(good)[0], 0)
        status, out, err = self.check({**good, "tls": {**tls, "key_path": other}})
        self.assertEqual((status, out), (1, ""))
        self.assertIn("config.json: the TLS key does not match the certificate", err)
        endpoint = f"ssl:8443:interface=127.0.0.1:privateKey={os.path.join(self.directory, 'none.pem')}:certKey={cert}"
        status, out, err = self.check({"endpoint": endpoint})
        self.assertEqual((status, out), (1, ""))
        self.assertIn("invalid endpoint", err)
        good_endpoint = f"ssl:8443:interface=127.0.0.1:privateKey={key}:certKey={cert}"
        self.assertEqual(self.check({"endpoint": good_endpoint})[0], 0)

    def test_no_argument(self) -> None:
        """
        Without CONFIG the command line is wrong: status 2.
        """
        stdout, stderr = io.StringIO(), io.StringIO()
        self.assertEqual(main(["check"], stdout, stderr), 2)
        self.assertIn("CONFIG", stderr.getvalue())
