"""
The replay simulator: a synthetic team week against ccm's real pools.

See ``bench/simulate.py`` for the command and docs/pools.md for the method
and the results.
"""
