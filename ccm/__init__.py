# -*- test-case-name: tests -*-
"""
ccm, the Claude Code Multiplexer: a Twisted service that lets remote Claude
Code clients use the Claude subscriptions held on this machine.
"""

__version__ = "0.1.0"
