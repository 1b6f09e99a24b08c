"""
Tests for :obj:`ccm.shares`.
"""
