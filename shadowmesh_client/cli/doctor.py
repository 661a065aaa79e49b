"""`shadowmesh-client doctor`: the configuration assistant (agents/assistant.py; docs/agents.md).

Thin: parse, call ``assistant.run_checks`` (or ``suggest_config`` / ``troubleshoot``), print. Exit code 1
when a check fails (warnings alone exit 0), so scripts and CI can gate on it.
"""

from __future__ import annotations

import json
import sys

import click

from shadowmesh_client.cli.common import emit

MARK = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL", "skip": "skip"}


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--suggest", metavar="TEXT",
              help='Describe a use case ("home server behind NAT for 3 laptops, gaming"): print a config for it.')
@click.option("--logs", "logs_file", type=click.File("r"), metavar="FILE",
              help="Match a daemon log (or - for stdin) against known problems and print their fixes.")
@click.option("--api", "api_url", default="http://127.0.0.1:7780", show_default=True,
              help="Local API of a running daemon to check too (`off`: skip).")
@click.option("--token-file", type=click.Path(dir_okay=False),
              help="API token file (default: <state_dir>/api-token).")
@click.option("--llm-summary", is_flag=True,
              help="Add a plain-language summary from $SHADOWMESH_LLM_URL (an OpenAI-compatible endpoint) if set.")
@click.pass_obj
def doctor(state, as_json, suggest, logs_file, api_url, token_file, llm_summary):
    """Check everything a working device needs, and say how to fix what is wrong.

    Checks: config, device key file, DNS, RPC reachable and on the right chain, contracts deployed, network
    exists, device registered/active/expiring, clock skew against the chain, TUN permission, listen port
    free and matching the endpoint, pinned relays reachable, escrow, the running daemon's local API."""
    from shadowmesh_client.agents import assistant, llm

    if suggest:
        out = assistant.suggest_config(suggest)
        human = "# " + "\n# ".join(out["reasons"]) + "\n" + out["yaml"]
        emit(as_json, out, human.rstrip())
        return
    if logs_file is not None:
        out = assistant.troubleshoot(logs_file.read().splitlines())
        human = "\n".join([out["summary"], *(f"- {p['problem']}: {p['fix']}\n    seen: {p['evidence']}"
                                              for p in out["problems"])])
        emit(as_json, out, human)
        return
    if token_file is None and api_url != "off":
        try:
            token_file = str(state.config.state_dir / "api-token")
        except Exception:  # noqa: BLE001 - no config: the config check reports it
            token_file = None
    ctx = assistant.Context(state.config_path, api_url=None if api_url == "off" else api_url, token_file=token_file)
    checks = assistant.run_checks(ctx)
    data = {"checks": [c.as_dict() for c in checks], "failed": sum(c.status == "fail" for c in checks),
            "warnings": sum(c.status == "warn" for c in checks)}
    if llm_summary:
        data["summary"] = llm.summarize("doctor results", data["checks"])
    lines = []
    for c in checks:
        lines.append(f"[{MARK[c.status]}] {c.name:<10} {c.detail}")
        if c.fix and c.status in ("fail", "warn"):
            lines.append(f"{'':17} fix: {c.fix}")
    lines.append(f"{data['failed']} failed, {data['warnings']} warning(s)")
    if data.get("summary"):
        lines.append(data["summary"])
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo("\n".join(lines))
    if data["failed"]:
        sys.exit(1)


COMMANDS = (doctor,)
