# -*- test-case-name: tests.accounting -*-
"""
Accounting: the tokens each response used and what they cost, counted
while it is relayed (meters), kept per user, model and week (the book), and
saved to and reported from the usage file.
"""
