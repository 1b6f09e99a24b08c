# -*- test-case-name: tests.upstream -*-
"""
Reaching the Anthropic API: the HTTP client, its connection pool, and the
HTTP CONNECT and SOCKS5 tunnels of detours.
"""
