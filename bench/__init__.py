"""Benchmarks: ``python -m bench {protocol,directory,mesh,all}`` (``make bench``).

Each benchmark module exposes ``run(args) -> dict`` (figures by name) and prints its own table; the
dispatcher in ``__main__`` prints a combined JSON document at the end. ``directory`` and ``mesh`` are
written by other components and are skipped with a message while absent.
"""
