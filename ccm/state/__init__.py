# -*- test-case-name: tests.state -*-
"""
What several ccm processes share through Redis (the ``state`` key): the
connection (:obj:`ccm.state.redis`), leases that make one process at a time
do a job (:obj:`ccm.state.lease`), and the Redis side of each piece of
state whose seam the other rooms define.
"""
