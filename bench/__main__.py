"""Dispatcher: ``python -m bench <protocol|directory|mesh|relay|all> [--json PATH] [--quick] [--readme]``.

``mesh`` is the side-by-side run against every peer (issue 17, bench/mesh.py); ``--json`` keeps every figure.

Benchmark modules are imported lazily, so a missing one (not written yet) is skipped with a message
instead of breaking the others.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

BENCHMARKS = ("protocol", "directory", "mesh", "relay", "cluster", "userspace", "qos", "peers5000",
              "peers-netns")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("which", choices=BENCHMARKS + ("all",), help="benchmark to run")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON to PATH")
    parser.add_argument("--quick", action="store_true", help="shorter runs (noisier figures)")
    parser.add_argument("--seconds", type=float, help="mesh: seconds per iperf3 run (overrides --quick)")
    parser.add_argument("--no-loss", action="store_true", help="mesh: skip the 1 %% loss scenario")
    parser.add_argument("--readme", action="store_true", help="mesh: rewrite README.md's figures table from this run")
    args = parser.parse_args(argv)
    names = BENCHMARKS if args.which == "all" else (args.which,)
    results: dict[str, dict] = {}
    for name in names:
        try:
            module = importlib.import_module(f"bench.{name.replace('-', '_')}")   # peers-netns: peers_netns.py
        except ModuleNotFoundError as exc:
            if exc.name != f"bench.{name.replace('-', '_')}":
                raise
            print(f"[{name}] skipped: shadowmesh_client/bench/{name}.py does not exist yet", file=sys.stderr)
            continue
        print(f"== {name} ==", flush=True)
        results[name] = module.run(args)
    text = json.dumps(results, indent=2, sort_keys=True)
    print(text)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
