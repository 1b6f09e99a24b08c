"""
A keyring backend holding the items of the macOS keychain in a dict, for the
tests of the keychain store and of the services that read it.
"""

from __future__ import annotations

from keyring.backend import KeyringBackend
from keyring.compat import properties


class DictKeyring(KeyringBackend):
    """
    A keyring backend keeping generic passwords in a dict, as the macOS
    keychain keeps them by service and account.  ``failure``, when set, is
    raised by every call.
    """

    @properties.classproperty
    def priority(cls) -> float:
        """
        Low but viable, so it is never chosen over a real backend.
        """
        return 0.1

    def __init__(self) -> None:
        super().__init__()
        self.items: dict[tuple[str, str], str] = {}
        self.failure: Exception | None = None
        self.set_failure: Exception | None = None
        self.calls: list[tuple[str, str, str]] = []

    def get_password(self, service: str, username: str) -> str | None:
        """
        The stored item, or None as keyring returns for a missing one.
        """
        self.calls.append(("get", service, username))
        if self.failure is not None:
            raise self.failure
        return self.items.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        """
        Store the item.
        """
        self.calls.append(("set", service, username))
        if self.failure is not None:
            raise self.failure
        if self.set_failure is not None:
            raise self.set_failure
        self.items[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        """
        Remove the item.
        """
        del self.items[(service, username)]


# keyring registers every backend class it sees as a candidate for
# keyring.get_keyring(); this one is for these tests only.
KeyringBackend._classes.discard(DictKeyring)
