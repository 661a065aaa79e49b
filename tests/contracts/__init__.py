"""Contract tests (Ape)."""
