"""Run Slither over contracts/ offline; exit non-zero on any High or Medium finding.

Route (docs: ../shared/notes/toolchain.md): a standard-JSON compiler input listing our sources by path, with
OpenZeppelin remapped into node_modules, analysed with `--compile-force-framework solc-json`; the `solc` that
Slither runs is tools/solc-bin/solc (solcjs behind tools/solc-wrapper.js), put first on PATH here.
A finding that is a false positive is answered at its line with `// slither-disable-next-line <detector>`
and a reason; Slither then omits it. Test-only contracts (contracts/test/) are not analysed.

    python tools/run_slither.py            # prints every finding, fails on High/Medium
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAIL_IMPACTS = {"High", "Medium"}


def standard_json_input() -> dict:
    """Compiler input: our sources by path; the same optimiser settings as ape-config.yaml."""
    sources = sorted(p for p in (ROOT / "contracts").rglob("*.sol")
                     if ".cache" not in p.parts and "test" not in p.relative_to(ROOT / "contracts").parts)
    return {
        "language": "Solidity",
        "sources": {str(p.relative_to(ROOT)): {"urls": [str(p.relative_to(ROOT))]} for p in sources},
        "settings": {
            "remappings": ["@openzeppelin/contracts/=node_modules/@openzeppelin/contracts/"],
            "optimizer": {"enabled": True, "runs": 20000},
            "evmVersion": "cancun",
            "outputSelection": {"*": {"*": ["abi", "evm.bytecode", "evm.deployedBytecode", "userdoc", "devdoc"],
                                      "": ["ast"]}},
        },
    }


def main() -> int:
    slither = shutil.which("slither") or str(Path(sys.executable).parent / "slither")
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(ROOT / "tools" / "solc-bin"), str(ROOT / "node_modules" / ".bin"),
                                   str(Path(sys.executable).parent), env.get("PATH", "")])
    with tempfile.TemporaryDirectory(prefix="slither-") as tmp:
        input_path = Path(tmp) / "input.json"
        report_path = Path(tmp) / "report.json"
        input_path.write_text(json.dumps(standard_json_input()))
        command = [slither, str(input_path), "--compile-force-framework", "solc-json",
                   "--solc-remaps", "@openzeppelin/contracts/=node_modules/@openzeppelin/contracts/",
                   "--filter-paths", "node_modules", "--exclude-dependencies",
                   "--json", str(report_path)]
        result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        if not report_path.exists():
            sys.stderr.write(result.stdout + result.stderr)
            print("slither: no report produced (see output above)", file=sys.stderr)
            return 2
        report = json.loads(report_path.read_text())
    if not report.get("success"):
        print(f"slither failed: {report.get('error')}", file=sys.stderr)
        return 2
    findings = report.get("results", {}).get("detectors", [])
    failing = 0
    for finding in findings:
        impact = finding.get("impact")
        mark = "FAIL" if impact in FAIL_IMPACTS else "info"
        failing += impact in FAIL_IMPACTS
        first_line = finding.get("description", "").strip().splitlines()[0] if finding.get("description") else ""
        print(f"[{mark}] {impact}/{finding.get('confidence')} {finding.get('check')}: {first_line}")
    print(f"slither: {len(findings)} findings, {failing} High/Medium")
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
