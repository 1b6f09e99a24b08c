"""
Tests for :obj:`ccm.metrics`.
"""
