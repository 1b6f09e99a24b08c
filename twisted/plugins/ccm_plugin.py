# -*- test-case-name: tests.test_tap -*-
from twisted.application.service import ServiceMaker

ccm = ServiceMaker(
    "ccm",
    "ccm.tap",
    "Claude Code Multiplexer: share Claude subscriptions with remote Claude Code clients",
    "ccm",
)
