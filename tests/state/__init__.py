"""
Tests of the shared state, against a real ``redis-server``.
"""
