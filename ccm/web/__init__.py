# -*- test-case-name: tests.web -*-
"""
The web face of a service: its site and connections, the URL tree, path
normalization, authentication of ccm tokens, the status endpoint and
errors in the Anthropic shape.
"""
