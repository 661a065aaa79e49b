"""Shared test helpers (real chain processes: tests/support/chain.py)."""
