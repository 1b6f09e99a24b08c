"""
Tests for ccm.
"""
