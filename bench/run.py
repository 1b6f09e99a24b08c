"""
Benchmark harness: ccm next to nginx and the upstream itself, in one run.

Usage (from the repository root)::

    .venv/bin/python bench/run.py [--smoke] [--out docs/performance.md]

It starts, on loopback ports of its own: the fake upstream of
``bench/fake_upstream.py``, ccm as a real ``twistd -n ccm`` process (one user,
a credential file in a temporary directory, usage tracking on) and nginx (the
Debian package, a generated configuration with ``proxy_buffering off``) and
the floor proxy of ``bench/floor_proxy.py`` (the least a twisted.web proxy
does). An asyncio load generator then runs each workload against the four
paths (``direct``, ``nginx``, ``twisted``, ``ccm``; the slow client only
against nginx and ccm) and the script prints one markdown table; with
``--out`` the table replaces what is between the markers of that file.

``--smoke`` uses tiny sizes so the harness can run in CI; its figures mean
nothing. No figure is ever checked here: this is a measurement, not a test.

The throughput workload also reports each path's CPU per request (user plus
system time from ``/proc/<pid>/stat``). ``--processes N`` runs N ccm
processes behind an nginx of their own (least connections); with
``--redis-url URL`` their configuration gets a Redis ``state`` (Redis itself
is not started here), without it they share nothing. ``--profile FILE`` runs
ccm under twistd's cProfile profiler; ``--ccm-source DIR`` runs the ccm of
another checkout, to compare two versions in turn.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any, Optional

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH_DIR = os.path.join(REPO_ROOT, "bench")

ACCESS_TOKEN = "sk-ant-oat01-bench-access"
USER_TOKEN = "bench-user-token"
BEGIN_MARK = "<!-- bench:begin -->"
END_MARK = "<!-- bench:end -->"
PATHS = ("direct", "nginx", "twisted", "ccm")


@dataclass
class Sizes:
    latency_requests: int
    throughput_seconds: float
    throughput_concurrency: int
    sse_streams: int
    sse_rate: float
    sse_seconds: float
    sse_ramp: float
    memory_streams: int
    slow_bytes: int
    slow_rate: int
    big_body: int
    big_repeats: int


FULL = Sizes(
    latency_requests=300,
    throughput_seconds=5.0,
    throughput_concurrency=64,
    sse_streams=200,
    sse_rate=20.0,
    sse_seconds=5.0,
    sse_ramp=1.0,
    memory_streams=1000,
    slow_bytes=200 * 1024 * 1024,
    slow_rate=1024 * 1024,
    big_body=20 * 1024 * 1024,
    big_repeats=5,
)

SMOKE = Sizes(
    latency_requests=5,
    throughput_seconds=0.5,
    throughput_concurrency=4,
    sse_streams=5,
    sse_rate=20.0,
    sse_seconds=0.5,
    sse_ramp=0.1,
    memory_streams=5,
    slow_bytes=1024 * 1024,
    slow_rate=4 * 1024 * 1024,
    big_body=1024 * 1024,
    big_repeats=1,
)


# ---------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("{} exited with {} before listening".format(what, proc.returncode))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("{} did not listen on {} within {}s".format(what, port, timeout))


def rss_kb(pid: int) -> int:
    with open("/proc/{}/status".format(pid)) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def children(pid: int) -> list[int]:
    try:
        with open("/proc/{}/task/{}/children".format(pid, pid)) as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def tree_rss_kb(pid: int) -> int:
    return rss_kb(pid) + sum(tree_rss_kb(c) for c in children(pid))


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of one process, all its threads (``/proc/<pid>/stat``)."""
    try:
        with open("/proc/{}/stat".format(pid)) as f:
            # The command name is in parentheses and may hold spaces.
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # utime and stime are fields 14 and 15 of stat(5); fields[0] is field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process and its live children (nginx's master and workers)."""
    return cpu_seconds(pid) + sum(tree_cpu_seconds(c) for c in children(pid))


def group_rss_kb(pids: list[int]) -> int:
    """The RSS of several process trees, added together (several ccm processes)."""
    return sum(tree_rss_kb(pid) for pid in pids)


class RssSampler:
    """Samples the RSS of process trees in a thread; keeps the peak."""

    def __init__(self, pids: list[int], interval: float = 0.01) -> None:
        self.pids = pids
        self.interval = interval
        self.peak = self.start = group_rss_kb(pids)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, group_rss_kb(self.pids))

    def stop(self) -> int:
        """Stop; return the peak growth in kB."""
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, group_rss_kb(self.pids))
        return self.peak - self.start


NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
pid {dir}/{name}.pid;
error_log {dir}/{name}-error.log warn;
events {{ worker_connections 8192; }}
worker_rlimit_nofile 20000;
http {{
    access_log off;
    client_body_temp_path {dir}/{name}_body;
    proxy_temp_path {dir}/{name}_proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream {upstream} {{ {servers} keepalive 256; }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        client_max_body_size 0;
        location / {{
            proxy_pass http://{upstream};
            proxy_http_version 1.1;
            proxy_set_header Connection "";{headers}
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 600s;
        }}
    }}
}}
"""


def nginx_conf(workdir: str, upstream: int, port: int) -> str:
    """The nginx path: a plain streaming reverse proxy on ``port`` in front of the fake upstream."""
    servers = "server 127.0.0.1:{};".format(upstream)
    return NGINX_CONF.format(dir=workdir, name="nginx", upstream="fake", servers=servers, port=port, headers="")


def balancer_conf(workdir: str, ports: list[int], port: int) -> str:
    """nginx on ``port`` spreading requests over the ccm processes on ``ports`` (least connections)."""
    servers = "least_conn; " + " ".join("server 127.0.0.1:{};".format(p) for p in ports)
    headers = "\n            proxy_set_header Host $http_host;"
    return NGINX_CONF.format(dir=workdir, name="balancer", upstream="ccm", servers=servers, port=port, headers=headers)


def _die_with_parent() -> None:
    """
    In the child, before exec: get SIGTERM when the harness dies, so a
    killed harness (e.g. a timed-out test) leaves no servers behind (Linux).
    """
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Stack:
    """The fake upstream, ccm and nginx, each on a free loopback port."""

    def __init__(
        self,
        workdir: str,
        profile: Optional[str] = None,
        source: str = REPO_ROOT,
        processes: int = 1,
        redis_url: Optional[str] = None,
        redis_port: Optional[int] = None,
        team: bool = False,
    ) -> None:
        self.dir = workdir
        #: ccm serves from a balancer with a share (--team).
        self.team = team
        #: The redis-server this run starts (--redis), if any.
        self.redis_port = redis_port
        self.profile = profile
        self.source = source
        self.processes = processes
        self.redis_url = redis_url
        self.procs: list[subprocess.Popen] = []
        self.ports: dict[str, int] = {}
        #: The processes whose CPU and memory count for each path.
        self.pids: dict[str, list[int]] = {}
        #: The nginx in front of several ccm processes, if any.
        self.balancer: Optional[int] = None
        self.ccms: list[subprocess.Popen] = []

    def _spawn(self, name: str, argv: list[str], env: Optional[dict] = None) -> subprocess.Popen:
        log = open(os.path.join(self.dir, name + ".log"), "wb")
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.dir, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent
        )
        log.close()
        self.procs.append(proc)
        return proc

    def start(self, nginx: str) -> None:
        if self.redis_port is not None:
            server = shutil.which("redis-server")
            if server is None:
                raise RuntimeError("--redis: redis-server not found; on Debian: apt-get install redis-server")
            proc = self._spawn(
                "redis",
                [server, "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", self.dir],
            )
            wait_port(self.redis_port, proc, "redis-server (see {}/redis.log)".format(self.dir))
        up = free_port()
        proc = self._spawn("upstream", [sys.executable, os.path.join(BENCH_DIR, "fake_upstream.py"), str(up), ACCESS_TOKEN])
        wait_port(up, proc, "fake upstream")
        self.ports["direct"], self.pids["direct"] = up, [proc.pid]

        port = free_port()
        proc = self._spawn("twisted", [sys.executable, os.path.join(BENCH_DIR, "floor_proxy.py"), str(port), str(up), ACCESS_TOKEN])
        wait_port(port, proc, "twisted floor proxy (see {}/twisted.log)".format(self.dir))
        self.ports["twisted"], self.pids["twisted"] = port, [proc.pid]

        creds = os.path.join(self.dir, "credentials.json")
        with open(creds, "w") as f:
            json.dump(
                {
                    "claudeAiOauth": {
                        "accessToken": ACCESS_TOKEN,
                        "refreshToken": "sk-ant-ort01-bench-refresh",
                        "expiresAt": int((time.time() + 30 * 86400) * 1000),
                        "scopes": ["user:inference", "user:profile"],
                        "subscriptionType": "max",
                    }
                },
                f,
            )
        os.chmod(creds, 0o600)
        ccm_ports = [self._start_ccm(i, up, creds) for i in range(self.processes)]
        self.pids["ccm"] = [proc.pid for proc in self.ccms]
        if self.processes == 1:
            self.ports["ccm"] = ccm_ports[0]
        else:
            port = free_port()
            conf = os.path.join(self.dir, "balancer.conf")
            with open(conf, "w") as f:
                f.write(balancer_conf(self.dir, ccm_ports, port))
            proc = self._spawn("balancer", [nginx, "-c", conf, "-p", self.dir, "-e", os.path.join(self.dir, "balancer-error.log")])
            wait_port(port, proc, "balancer nginx (see {}/balancer-error.log)".format(self.dir))
            self.ports["ccm"], self.balancer = port, proc.pid

        port = free_port()
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(nginx_conf(self.dir, up, port))
        proc = self._spawn("nginx", [nginx, "-c", conf, "-p", self.dir, "-e", os.path.join(self.dir, "nginx-error.log")])
        wait_port(port, proc, "nginx (see {}/nginx-error.log)".format(self.dir))
        self.ports["nginx"], self.pids["nginx"] = port, [proc.pid]

    def _start_ccm(self, index: int, up: int, creds: str) -> int:
        """Start ccm process ``index`` (its own port and config); return its port."""
        port = free_port()
        name = "ccm" if self.processes == 1 else "ccm-{}".format(index)
        config = os.path.join(self.dir, name + ".json")
        upstream_url = "http://127.0.0.1:{}".format(up)
        document: dict[str, Any] = {
            "endpoint": "tcp:{}:interface=127.0.0.1:backlog=4096".format(port),
            "upstream_url": upstream_url,
            "oauth_token_url": upstream_url + "/v1/oauth/token",
            "credential_path": creds,
            # Without shared state each process keeps a usage file of its own.
            "usages_path": os.path.join(self.dir, "usages.json" if self.redis_url else name + "-usages.json"),
            "users": [{"name": "bench", "token": USER_TOKEN}],
            # The memory workload opens 1,000 streams from one address.
            "max_connections": 4096,
            "max_connections_per_address": 4096,
        }
        if self.team:
            # A team's set-up: the subscription in a balancer, whose sticky
            # sessions and windows ccm follows, and a share for the user.
            usages = document.pop("usages_path")
            document.pop("credential_path")
            document["credentials"] = [
                {"tag": "a", "credential_path": creds, "usages_path": usages},
                {"tag": "pool", "type": "balancer", "credentials": ["a"]},
            ]
            document["users"] = [{"name": "bench", "token": USER_TOKEN, "credential": "pool", "share_5h": 90}]
        if self.redis_url:
            document["state"] = {"type": "redis", "url": self.redis_url, "key_prefix": "bench:"}
        with open(config, "w") as f:
            json.dump(document, f)
        home = os.path.join(self.dir, "home")
        os.makedirs(home, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "ANTHROPIC_", "CLAUDE_")) and "proxy" not in k.lower()}
        env.update(HOME=home, PYTHONPATH=self.source, PYTHONUNBUFFERED="1")
        runner = "import sys; sys.argv[0] = 'twistd'; from twisted.scripts.twistd import run; run()"
        profile = self.profile if self.processes == 1 else "{}.{}".format(self.profile, index)
        profiling = ["--profile", profile, "--profiler", "cprofile", "--savestats"] if self.profile else []
        proc = self._spawn(name, [sys.executable, "-c", runner, "-n", "--pidfile=", *profiling, "ccm", "--config", config], env)
        wait_port(port, proc, "ccm (see {}/{}.log)".format(self.dir, name))
        self.ccms.append(proc)
        return port

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT if proc in self.ccms else signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# ---------------------------------------------------------------- client


class Response:
    def __init__(self, status: int, headers: dict[str, str]) -> None:
        self.status = status
        self.headers = headers


_SESSIONS = itertools.count(1)


class Conn:
    """One keep-alive HTTP/1.1 connection speaking just enough HTTP."""

    def __init__(self, port: int, path_name: str) -> None:
        self.port = port
        self.auth = USER_TOKEN if path_name == "ccm" else ACCESS_TOKEN
        # One Claude Code session per connection, as a team's clients are.
        self.session = "{:08x}-0000-4000-8000-{:012x}".format(os.getpid(), next(_SESSIONS))
        self.reader: Optional[asyncio.StreamReader] = None
        self.writer: Optional[asyncio.StreamWriter] = None

    async def open(self) -> None:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port, limit=1 << 20)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = self.reader = None

    async def send(self, body: bytes, query: str = "") -> Response:
        await self.open()
        head = (
            "POST /v1/messages{} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer {}\r\n"
            "anthropic-version: 2023-06-01\r\nX-Claude-Code-Session-Id: {}\r\n"
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n"
        ).format(query, self.port, self.auth, self.session, len(body))
        self.writer.write(head.encode())
        self.writer.write(body)
        await self.writer.drain()
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        return Response(status, headers)

    async def chunks(self, resp: Response, read_size: int = 65536):
        """Yield the body as it arrives (any framing)."""
        if resp.headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")
                    return
                while size > 0:
                    data = await self.reader.read(min(size, read_size))
                    if not data:
                        raise ConnectionError("eof in chunk")
                    size -= len(data)
                    yield data
                await self.reader.readexactly(2)
        elif "content-length" in resp.headers:
            left = int(resp.headers["content-length"])
            while left > 0:
                data = await self.reader.read(min(left, read_size))
                if not data:
                    raise ConnectionError("eof in body")
                left -= len(data)
                yield data
        else:
            while True:
                data = await self.reader.read(read_size)
                if not data:
                    self.close()
                    return
                yield data
        if resp.headers.get("connection", "").lower() == "close":
            self.close()

    async def request(self, body: bytes, query: str = "") -> bytes:
        resp = await self.send(body, query)
        out = b"".join([c async for c in self.chunks(resp)])
        if resp.status != 200:
            raise RuntimeError("HTTP {}: {!r}".format(resp.status, out[:300]))
        return out


def request_body(size: int, stream: bool = False) -> bytes:
    base = {"model": "claude-sonnet-4-5", "max_tokens": 1024, "stream": stream, "metadata": {"user_id": "bench"}}
    base["messages"] = [{"role": "user", "content": ""}]
    filler = size - len(json.dumps(base))
    base["messages"][0]["content"] = "a" * max(0, filler)
    return json.dumps(base).encode()


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, int(round(p / 100.0 * len(ordered) + 0.5)) - 1))
    return ordered[k]


# ---------------------------------------------------------------- workloads


async def latency(port: int, name: str, n: int, body: bytes) -> dict[str, float]:
    conn = Conn(port, name)
    for _ in range(max(3, n // 10)):
        await conn.request(body)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        await conn.request(body)
        times.append((time.perf_counter() - t) * 1000)
    conn.close()
    return {"p50": pct(times, 50), "p99": pct(times, 99)}


async def redis_commands(port: int) -> int:
    """The commands the Redis server on ``port`` has processed so far (``INFO stats``)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"INFO stats\r\n")
    header = await reader.readline()
    body = await reader.readexactly(int(header[1:]) + 2)
    writer.close()
    for line in body.decode().splitlines():
        if line.startswith("total_commands_processed:"):
            return int(line.split(":", 1)[1])
    raise RuntimeError("redis-server did not report total_commands_processed")


async def throughput(
    port: int,
    name: str,
    concurrency: int,
    seconds: float,
    body: bytes,
    pids: list[int],
    balancer: Optional[int] = None,
    redis_port: Optional[int] = None,
) -> dict[str, float]:
    """
    Requests per second at ``concurrency``, and the CPU time the processes
    ``pids`` (with their children) spent per request meanwhile, in ms; that
    of the ``balancer`` in front of them on its own; and with ``redis_port``
    the Redis commands per request (every process's, pub/sub included).
    """
    done = 0
    deadline = 0.0

    async def worker() -> None:
        nonlocal done
        conn = Conn(port, name)
        while time.perf_counter() < deadline:
            await conn.request(body)
            done += 1
        conn.close()

    deadline = time.perf_counter() + min(1.0, seconds)  # warm-up
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    done = 0
    commands = await redis_commands(redis_port) if redis_port is not None else 0
    cpu = sum(tree_cpu_seconds(pid) for pid in pids)
    front = tree_cpu_seconds(balancer) if balancer is not None else 0.0
    start = time.perf_counter()
    deadline = start + seconds
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    cpu = sum(tree_cpu_seconds(pid) for pid in pids) - cpu
    result = {"rps": done / elapsed, "cpu_ms": cpu * 1000 / done if done else float("nan")}
    if balancer is not None and done:
        result["balancer_cpu_ms"] = (tree_cpu_seconds(balancer) - front) * 1000 / done
    if redis_port is not None and done:
        # Less the INFO command itself.
        result["redis_commands"] = (await redis_commands(redis_port) - commands - 1) / done
    return result


async def sse_stream(conn: Conn, query: str, on_event, first: Optional[asyncio.Event] = None) -> int:
    resp = await conn.send(request_body(2000, True), query)
    if resp.status != 200:
        raise RuntimeError("stream HTTP {}".format(resp.status))
    buf = b""
    count = 0
    async for chunk in conn.chunks(resp):
        buf += chunk
        while b"\n\n" in buf:
            event, buf = buf.split(b"\n\n", 1)
            now = time.time()
            count += 1
            if first is not None:
                first.set()
            i = event.find(b'"t":')
            if i >= 0:
                on_event(now - float(event[i + 4 :].split(b"}", 1)[0].split(b",", 1)[0]))
    return count


async def event_delay(port: int, name: str, streams: int, rate: float, seconds: float, ramp: float) -> dict[str, float]:
    """
    Open ``streams`` SSE streams, their starts spread evenly over ``ramp``
    seconds (independent sessions do not start, or emit, in the same
    millisecond), each sending ``rate`` events per second. Each stream runs
    long enough that all of them are open together for ``seconds``.

    ``p50``/``p99`` cover the steady state: events received after every
    stream has received its first one. ``opening_p99`` covers the events
    received while streams were still being opened, when the proxy is also
    accepting and forwarding new requests; it is reported, not a target.
    """
    received: list[tuple[float, float]] = []
    first_event: list[float] = []
    query = "?stream={}&interval={}".format(int(rate * (seconds + ramp)), 1.0 / rate)

    async def one(i: int) -> None:
        await asyncio.sleep(ramp * i / streams)
        conn = Conn(port, name)
        opened = False

        def on_event(delay: float) -> None:
            nonlocal opened
            now = time.time()
            if not opened:
                first_event.append(now)
                opened = True
            received.append((now, delay * 1000))

        await sse_stream(conn, query, on_event)
        conn.close()

    await asyncio.gather(*(one(i) for i in range(streams)))
    all_open = max(first_event)
    steady = [d for t, d in received if t > all_open]
    opening = [d for t, d in received if t <= all_open]
    return {
        "p50": pct(steady, 50),
        "p99": pct(steady, 99),
        "n": len(steady),
        "opening_p99": pct(opening, 99),
        "opening_n": len(opening),
    }


async def memory_per_stream(port: int, name: str, pids: list[int], streams: int) -> float:
    """Open N streams, wait until each got its first event, measure RSS."""
    before = group_rss_kb(pids)
    firsts = [asyncio.Event() for _ in range(streams)]
    conns = [Conn(port, name) for _ in range(streams)]
    query = "?stream=600&interval=1"

    async def one(conn: Conn, first: asyncio.Event) -> None:
        try:
            await sse_stream(conn, query, lambda d: None, first)
        except (ConnectionError, asyncio.CancelledError, asyncio.IncompleteReadError):
            pass

    tasks = []
    for i in range(streams):
        tasks.append(asyncio.ensure_future(one(conns[i], firsts[i])))
        if i % 50 == 49:
            await asyncio.sleep(0.05)
    await asyncio.wait_for(asyncio.gather(*(f.wait() for f in firsts)), timeout=120)
    await asyncio.sleep(1.5)
    after = group_rss_kb(pids)
    for t in tasks:
        t.cancel()
    for c in conns:
        c.close()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(1.0)
    return (after - before) / streams


async def slow_client(port: int, name: str, pids: list[int], total: int, rate: int) -> float:
    """Read a big stream at ``rate`` bytes/s; return the peak RSS growth in MB."""
    pad = 16 * 1024
    sampler = RssSampler(pids, 0.1)
    conn = Conn(port, name)
    resp = await conn.send(request_body(2000, True), "?stream={}&interval=0&pad={}".format(total // pad, pad))
    got = 0
    start = time.perf_counter()
    async for chunk in conn.chunks(resp, 16384):
        got += len(chunk)
        ahead = got / rate - (time.perf_counter() - start)
        if ahead > 0:
            await asyncio.sleep(ahead)
    conn.close()
    growth = sampler.stop()
    if got < total:
        raise RuntimeError("slow client got {} of {} bytes".format(got, total))
    return growth / 1024.0


async def big_request(port: int, name: str, pids: list[int], body: bytes, repeats: int) -> dict[str, float]:
    sampler = RssSampler(pids)
    times = []
    for _ in range(repeats):
        conn = Conn(port, name)
        t = time.perf_counter()
        await conn.request(body)
        times.append((time.perf_counter() - t) * 1000)
        conn.close()
    return {"ms": statistics.median(times), "rss_mb": sampler.stop() / 1024.0}


# ---------------------------------------------------------------- report


def machine() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import twisted

    try:
        nginx_v = subprocess.run([find_nginx() or "nginx", "-v"], capture_output=True, text=True).stderr.strip()
    except OSError:
        nginx_v = "nginx ?"
    return "{}, {} cores; Linux {}; Python {}; Twisted {}; {}".format(
        model, os.cpu_count(), platform.release(), platform.python_version(), twisted.__version__, nginx_v.replace("nginx version: ", "")
    )


def fmt(v: float, digits: int = 2) -> str:
    return "{:.{}f}".format(v, digits)


def ccm_setup(processes: int, redis_url: Optional[str], team: bool = False) -> str:
    """How the ccm path is set up, for the report."""
    if team:
        return ccm_setup(processes, redis_url).rstrip(".") + "; serving from a balancer, with a share for the user."
    if processes == 1:
        return "ccm: one process" + (" with Redis state" if redis_url else "") + "."
    shared = "sharing Redis state" if redis_url else "sharing nothing (no Redis: sessions, windows and usage are per process)"
    return (
        "ccm: {} processes behind nginx (least_conn, keep-alive), {}; ccm's CPU per request is the sum over "
        "the processes, the balancer's is not in it.".format(processes, shared)
    )


def render(r: dict[str, dict[str, Any]], sizes: Sizes, smoke: bool, setup: str = "ccm: one process.") -> str:
    d, n, c = r["direct"], r["nginx"], r["ccm"]

    def added(path: dict, key: str, sub: str) -> float:
        return path[key][sub] - d[key][sub]

    lines = []
    lines.append("Machine: " + machine())
    lines.append("")
    lines.append(
        "Mode: {}. Sizes: latency {} requests of {} KB at concurrency 1; throughput {} s at concurrency {}; "
        "event delay {} streams x {:g} events/s, starts spread over {:g} s, measured for {:g} s once all are open; memory {} open streams; slow client {} MB read at {:g} MB/s; "
        "big request {} MB x {}.".format(
            "smoke (figures meaningless)" if smoke else "full",
            sizes.latency_requests,
            85,
            sizes.throughput_seconds,
            sizes.throughput_concurrency,
            sizes.sse_streams,
            sizes.sse_rate,
            sizes.sse_ramp,
            sizes.sse_seconds,
            sizes.memory_streams,
            sizes.slow_bytes // (1024 * 1024),
            sizes.slow_rate / (1024 * 1024),
            sizes.big_body // (1024 * 1024),
            sizes.big_repeats,
        )
    )
    lines.append("")
    lines.append(
        "| path | latency p50 ms | latency p99 ms | throughput req/s | CPU per request ms | event delay p50 ms | event delay p99 ms "
        "| RSS per stream KB | slow client RSS growth MB | big request ms | big request RSS growth MB |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in PATHS:
        p = r[name]
        mem = "—" if name == "direct" else fmt(p["memory"], 1)
        slow = "—" if name in ("direct", "twisted") else fmt(p["slow"], 1)
        bigrss = "—" if name == "direct" else fmt(p["big"]["rss_mb"], 1)
        lines.append(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
                name,
                fmt(p["latency"]["p50"]),
                fmt(p["latency"]["p99"]),
                fmt(p["throughput"], 0),
                fmt(p["cpu"], 3),
                fmt(p["events"]["p50"]),
                fmt(p["events"]["p99"]),
                mem,
                slow,
                fmt(p["big"]["ms"], 1),
                bigrss,
            )
        )
    lines.append("")
    lines.append(
        "CPU per request: user plus system CPU time of the process (nginx: master and worker) during the "
        "throughput workload, divided by the requests it served; on the direct row, the fake upstream's. "
        "The twisted row is the floor of ccm's shape (bench/floor_proxy.py: twisted.web and Twisted's HTTP client, "
        "headers copied, the token swapped, the body streamed back, nothing else); "
        "ccm spent {} ms per request above it.".format(fmt(c["cpu"] - r["twisted"]["cpu"], 3))
    )
    lines.append("")
    lines.append(
        setup
        + ("" if "balancer_cpu" not in c else " The balancer used {} ms per request.".format(fmt(c["balancer_cpu"], 3)))
        + ("" if "redis_commands" not in c else " Redis ran {} commands per request.".format(fmt(c["redis_commands"], 2)))
    )
    lines.append("")
    body_mb = sizes.big_body / (1024 * 1024)
    checks = [
        ("added latency p50", "≤ 1 ms", added(c, "latency", "p50"), added(n, "latency", "p50"), 1.0, "ms"),
        ("added latency p99", "≤ 3 ms", added(c, "latency", "p99"), added(n, "latency", "p99"), 3.0, "ms"),
        ("throughput", "≥ 1000 req/s", c["throughput"], n["throughput"], None, "req/s"),
        ("CPU per request (throughput workload)", "≤ 0.5 ms", c["cpu"], n["cpu"], 0.5, "ms"),
        ("added event delay p50", "≤ 1 ms", added(c, "events", "p50"), added(n, "events", "p50"), 1.0, "ms"),
        ("added event delay p99", "≤ 10 ms", added(c, "events", "p99"), added(n, "events", "p99"), 10.0, "ms"),
        ("RSS per stream", "≤ 64 KB", c["memory"], n["memory"], 64.0, "KB"),
        ("slow client RSS growth", "≤ 16 MB", c["slow"], n["slow"], 16.0, "MB"),
        ("big request added latency", "≤ 100 ms", c["big"]["ms"] - d["big"]["ms"], n["big"]["ms"] - d["big"]["ms"], 100.0, "ms"),
        ("big request RSS growth", "≤ 3x body ({:g} MB)".format(3 * body_mb), c["big"]["rss_mb"], n["big"]["rss_mb"], 3 * body_mb, "MB"),
    ]
    lines.append("| ccm target | target | ccm | nginx | met |")
    lines.append("|---|---|---|---|---|")
    for label, target, cv, nv, limit, unit in checks:
        if limit is None:
            met = cv >= 1000
            cell = "{} {} ({:.2f}x nginx)".format(fmt(cv, 0), unit, cv / nv if nv else float("nan"))
            ncell = "{} {}".format(fmt(nv, 0), unit)
        else:
            met = cv <= limit
            cell = "{} {}".format(fmt(cv), unit)
            ncell = "{} {}".format(fmt(nv), unit)
        lines.append("| {} | {} | {} | {} | {} |".format(label, target, cell, ncell, "yes" if met else "**no**"))
    lines.append(
        "| added event delay p99 while the streams open | none (reported) | {} ms | {} ms | — |".format(
            fmt(added(c, "events", "opening_p99")), fmt(added(n, "events", "opening_p99"))
        )
    )
    return "\n".join(lines) + "\n"


def write_out(path: str, table: str) -> None:
    block = BEGIN_MARK + "\n" + table + END_MARK
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if BEGIN_MARK in text and END_MARK in text:
            head, rest = text.split(BEGIN_MARK, 1)
            tail = rest.split(END_MARK, 1)[1]
            text = head + block + tail
        else:
            text = text.rstrip("\n") + "\n\n" + block + "\n"
    else:
        text = "# Performance\n\n" + block + "\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def find_nginx() -> Optional[str]:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)


async def measure(
    stack: Stack, sizes: Sizes, only: Optional[list[str]], paths: tuple[str, ...] = PATHS
) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {name: {} for name in paths}
    body85 = request_body(85 * 1024)
    big = request_body(sizes.big_body)

    def say(msg: str) -> None:
        print("bench:", msg, file=sys.stderr, flush=True)

    for name in paths:
        port = stack.ports[name]
        pids = stack.pids[name]
        res = results[name]
        if only is None or "latency" in only:
            say("{}: latency".format(name))
            res["latency"] = await latency(port, name, sizes.latency_requests, body85)
        if only is None or "throughput" in only:
            say("{}: throughput".format(name))
            balancer = stack.balancer if name == "ccm" else None
            redis_port = stack.redis_port if name == "ccm" else None
            measured = await throughput(
                port, name, sizes.throughput_concurrency, sizes.throughput_seconds, body85, pids, balancer, redis_port
            )
            res["throughput"], res["cpu"] = measured["rps"], measured["cpu_ms"]
            for key in ("balancer_cpu_ms", "redis_commands"):
                if key in measured:
                    res[key.removesuffix("_ms")] = measured[key]
        if only is None or "events" in only:
            say("{}: event delay".format(name))
            res["events"] = await event_delay(port, name, sizes.sse_streams, sizes.sse_rate, sizes.sse_seconds, sizes.sse_ramp)
        if only is None or "memory" in only:
            say("{}: memory per stream".format(name))
            res["memory"] = 0.0 if name == "direct" else await memory_per_stream(port, name, pids, sizes.memory_streams)
    if only is None or "slow" in only:
        say("nginx and ccm: slow client (concurrently)")
        results.setdefault("direct", {})["slow"] = 0.0
        # The floor proxy does no backpressure: it would buffer the stream.
        results.setdefault("twisted", {})["slow"] = 0.0
        slow = await asyncio.gather(
            *(slow_client(stack.ports[n], n, stack.pids[n], sizes.slow_bytes, sizes.slow_rate) for n in ("nginx", "ccm"))
        )
        results.setdefault("nginx", {})["slow"], results.setdefault("ccm", {})["slow"] = slow
    # Last: memory a big body leaves behind in the allocator would hide the
    # growth of the workloads above.
    if only is None or "big" in only:
        for name in paths:
            say("{}: big request".format(name))
            results[name]["big"] = await big_request(stack.ports[name], name, stack.pids[name], big, sizes.big_repeats)
    return results


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes; checks the harness works, figures meaningless")
    parser.add_argument("--out", help="write the table into this markdown file, between {} and {}".format(BEGIN_MARK, END_MARK))
    parser.add_argument(
        "--only",
        action="append",
        choices=["latency", "throughput", "events", "memory", "big", "slow"],
        help="run this workload only (may be repeated); prints JSON, no table",
    )
    parser.add_argument("--path", action="append", choices=PATHS, help="with --only: measure this path only (may be repeated)")
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="run ccm under twistd's cProfile profiler, writing its stats to FILE when ccm stops",
    )
    parser.add_argument(
        "--ccm-source",
        metavar="DIR",
        default=REPO_ROOT,
        help="run the ccm found in DIR (another checkout, to compare two versions in turn); default: this one",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        metavar="N",
        help="run N ccm processes, one port each, behind an nginx balancing them (least_conn); they share nothing without --redis-url",
    )
    parser.add_argument(
        "--redis-url",
        metavar="URL",
        help='add "state": {"type": "redis", "url": URL, "key_prefix": "bench:"} to the ccm configuration (Redis is not started here)',
    )
    parser.add_argument(
        "--redis",
        action="store_true",
        help="start a redis-server (the Debian package) on a free port for this run and give ccm its URL as --redis-url does; "
        "the report then counts Redis commands per request",
    )
    parser.add_argument(
        "--team",
        action="store_true",
        help="serve from a balancer with a share for the user (sticky sessions, windows and share charges followed), as a team does",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, configs)")
    args = parser.parse_args(argv)
    nginx = find_nginx()
    if nginx is None:
        print("bench: nginx not found; on Debian: apt-get install nginx-light", file=sys.stderr)
        return 2
    if args.processes < 1:
        parser.error("--processes must be at least 1")
    if args.path and not args.only:
        parser.error("--path needs --only (the table has every path)")
    if args.redis and args.redis_url:
        parser.error("--redis starts a server of its own: give --redis or --redis-url, not both")
    redis_port = free_port() if args.redis else None
    if redis_port is not None:
        args.redis_url = "redis://127.0.0.1:{}/0".format(redis_port)
    sizes = SMOKE if args.smoke else FULL
    print("bench:", ccm_setup(args.processes, args.redis_url, args.team), file=sys.stderr, flush=True)
    workdir = tempfile.mkdtemp(prefix="ccm-bench-")
    stack = Stack(
        workdir,
        os.path.abspath(args.profile) if args.profile else None,
        os.path.abspath(args.ccm_source),
        args.processes,
        args.redis_url,
        redis_port,
        args.team,
    )
    try:
        stack.start(nginx)
        results = asyncio.run(measure(stack, sizes, args.only, tuple(args.path or PATHS)))
    finally:
        stack.stop()
        if args.keep:
            print("bench: kept", workdir, file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.only:
        print(json.dumps(results, indent=1))
        return 0
    table = render(results, sizes, args.smoke, ccm_setup(args.processes, args.redis_url, args.team))
    print(table)
    if args.out:
        write_out(args.out, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
