# -*- test-case-name: tests.shares -*-
"""
Shares: the part of its pool's window capacity each user may use, in
subscription units.  :obj:`ccm.shares.ledger` attributes the rises of each
credential's utilization to the requests that ran, :obj:`ccm.shares.standing`
reads a user's use against their share and makes the 429 that refuses
them, :obj:`ccm.shares.gate` is the proxy's seam, and
:obj:`ccm.shares.files` keeps the charges across restarts.
"""
