# -*- test-case-name: tests.pool -*-
"""
Pools: which subscription serves a request.  Each credential's 5-hour and
weekly windows, the strategies that spread sessions over several
subscriptions, the sticky sessions, and the background usage poller.
"""
