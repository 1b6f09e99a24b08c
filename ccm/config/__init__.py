# -*- test-case-name: tests.config -*-
"""
Configuration: the frozen model of what ccm serves, and reading it from a
sing-box document or a bare ccm service object, with one line per problem
naming its JSON path.
"""
