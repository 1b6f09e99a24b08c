# -*- test-case-name: tests.metrics -*-
"""
Prometheus metrics: what the proxy, the refreshes and the usage polls
count, and the credentials' state read at each scrape.
"""
