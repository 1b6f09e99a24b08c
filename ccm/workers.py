# -*- test-case-name: tests.test_build -*-
"""
The background workers the builder starts beside the web side: a watcher
per credentials file and a usage poller per detour.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

from treq.client import HTTPClient
from twisted.internet.interfaces import IReactorFDSet, IReactorTime

from ccm.config.model import DEFAULT_POLL_INTERVAL_SECONDS, BalancerCredentialConfig, Detour, ServiceConfig
from ccm.credentials.credential import Credential
from ccm.credentials.file import CredentialFile
from ccm.credentials.watch import FileWatcher
from ccm.state.shared import local_store
from ccm.pool.poller import UsagePoller
from ccm.upstream.identity import ClientIdentity


class WatchingReactor(IReactorTime, IReactorFDSet):
    """
    What a file watcher needs of the reactor: time, and inotify's file
    descriptor.
    """


def file_watchers(
    credentials: Sequence[Credential], reactor: WatchingReactor, with_inotify: bool
) -> list[FileWatcher]:
    """
    A watcher for each credentials file, which reloads its credential when
    the file changes.  The keychain is not watched, as in sing-box.
    """
    return [
        FileWatcher(
            local_store(credential.store).path,
            credential.reload,
            clock=reactor,
            reactor=reactor if with_inotify else None,
        )
        for credential in credentials
        if isinstance(local_store(credential.store), CredentialFile)
    ]


def usage_pollers(
    config: ServiceConfig,
    credentials: Sequence[Credential],
    detours: Mapping[str, Detour | None],
    clients: Mapping[Detour | None, HTTPClient],
    clock: IReactorTime,
    identity: ClientIdentity,
    polls: Callable[[str], bool] | None = None,
) -> list[UsagePoller]:
    """
    A poller of the credentials' utilization per detour, through that
    detour's client (and always one for the direct client), as often as
    the most eager balancer asks; only the credentials ``polls`` says
    this process polls (all without it).
    """
    interval = min(
        [DEFAULT_POLL_INTERVAL_SECONDS]
        + [c.poll_interval for c in config.credentials if isinstance(c, BalancerCredentialConfig)]
    )
    pollers = []
    for detour, client in clients.items():
        polled = [c for c in credentials if detours[c.tag] == detour]
        if polled or detour is None:
            pollers.append(
                UsagePoller(
                    polled, client, clock, config.upstream_url, interval, identity=identity,
                    polls=polls,
                )
            )
    return pollers
