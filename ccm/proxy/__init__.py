# -*- test-case-name: tests.proxy -*-
"""
The proxy: a client's ``/v1/...`` request sent upstream with the
subscription's token, and the answer streamed back untouched.
"""
