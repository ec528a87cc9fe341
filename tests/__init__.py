"""Threadline tests."""
