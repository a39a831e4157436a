"""Shared pytest configuration for the medspace test suite."""
