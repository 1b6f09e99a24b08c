# -*- test-case-name: tests.credentials -*-
"""
Credentials: one Claude subscription's OAuth login, where it is stored
(the Claude Code credentials file or the macOS keychain), how it is watched
and refreshed before it expires.
"""
