"""Prometheus rules and the Grafana dashboard, offline: ``promtool check rules`` and ``promtool test rules``
(Debian's prometheus package), one unit test per alert, every metric a query names exists in the metric
catalogue (or is Prometheus' ``up``, the process collector's, or a recording rule), every alert links a
runbook section that exists."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from shadowmesh_client.observability.catalogue import ALL

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "deploy" / "prometheus" / "rules" / "shadowmesh.rules.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "tests" / "shadowmesh.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "shadowmesh-overview.json"
RUNBOOK = ROOT / "docs" / "runbook.md"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="needs promtool (make debs: prometheus)")

PROMQL_WORDS = {"sum", "by", "rate", "increase", "max", "min", "avg", "avg_over_time", "and", "or", "on", "offset",
                "unless", "without", "ignoring", "group_left", "group_right", "count", "abs", "histogram_quantile"}


def _rules() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def _metric_names(expr: str) -> set[str]:
    """Identifiers of ``expr`` that name series: label matchers, strings and ranges removed first."""
    expr = re.sub(r"\{[^}]*\}|\"[^\"]*\"|\[[^\]]*\]", "", expr)
    return set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr)) - PROMQL_WORDS


def _known() -> set[str]:
    recorded = {r["record"] for r in _rules() if "record" in r}
    return {m.exposed for m in ALL} | recorded | {"up", "process_cpu_seconds_total", "process_resident_memory_bytes"}


@needs_promtool
def test_promtool_check_rules():
    r = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


@needs_promtool
def test_promtool_unit_tests_of_the_rules_pass():
    r = subprocess.run([PROMTOOL, "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_every_alert_has_unit_tests_that_fire_and_that_stay_quiet():
    alerts = {r["alert"] for r in _rules() if "alert" in r}
    assert len(alerts) >= 6
    cases: dict[str, list[bool]] = {}
    for t in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for case in t.get("alert_rule_test", []):
            cases.setdefault(case["alertname"], []).append(bool(case.get("exp_alerts")))
    assert set(cases) == alerts
    for name, fired in cases.items():
        assert True in fired and False in fired, f"{name}: needs a firing and a quiet case"


def test_the_spec_alert_list_is_covered():
    exprs = {r["alert"]: r["expr"] for r in _rules() if "alert" in r}
    assert "0.05" in exprs["ShadowMeshConnectionFailureRate"]                         # > 5 %
    cpu = [r for r in _rules() if r.get("alert") == "ShadowMeshRelayHighCPU"][0]
    assert "0.8" in cpu["expr"] and cpu["for"] == "5m"                               # > 80 % for 5 min
    assert "failed" in exprs["ShadowMeshClaimTransactionFailed"]                      # blockchain tx failure
    assert "ShadowMeshUnusualTraffic" in exprs and 'up{job="shadowmesh-relay"}' in exprs["ShadowMeshRelayMemberDown"]


def test_queries_name_only_metrics_the_daemons_export():
    known = _known()
    exprs = [r["expr"] for r in _rules()]
    exprs += [t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p["targets"]]
    for expr in exprs:
        names = {n for n in _metric_names(expr) if n.startswith(("shadowmesh", "process_", "up"))}
        assert names <= known, f"{expr}: unknown {names - known}"


def test_every_dashboard_panel_has_a_query_and_the_catalogue_families_are_shown():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and all(p["targets"] for p in dash["panels"])
    shown = " ".join(t["expr"] for p in dash["panels"] for t in p["targets"])
    for family in ("shadowmesh_relay_bytes_total", "shadowmesh_node_transport_bytes_total",
                   "shadowmesh_relay_handshakes_total", "shadowmesh_directory_lag_blocks",
                   "shadowmesh_directory_lag_seconds", "shadowmesh_rpc_errors_total", "shadowmesh_relay_receipts_total",
                   "shadowmesh_relay_dropped_messages_total", "process_cpu_seconds_total"):
        assert family in shown, family


def test_every_alert_links_an_existing_runbook_section():
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).strip().replace(" ", "-")
               for h in re.findall(r"^#+ (.+)$", RUNBOOK.read_text(), re.M)}
    for r in _rules():
        if "alert" in r:
            link = r["annotations"]["runbook"]
            assert link.startswith("docs/runbook.md#") and link.split("#")[1] in anchors, link
