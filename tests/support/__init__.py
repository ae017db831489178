"""Helpers for the integration tests: real services, real worker processes."""
