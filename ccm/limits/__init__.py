# -*- test-case-name: tests.limits -*-
"""
Per-user request limits: how many of a user's generations may be in flight
at once (``max_concurrent``, with a short queue for the rest) and how many
may start in a minute (``requests_per_minute``), and the 429s that refuse
the excess.
"""
