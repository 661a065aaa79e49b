"""Offline checks of deploy/ (issue 13 "Deployment"): Terraform parsed with python-hcl2 and each module's
variables, outputs and templates consistent with its use; Kubernetes base and every kustomize overlay
rendered (a small renderer: strategic-merge patches of maps, JSON-patch ``add``) and validated object by
object with kubernetes-validate's bundled schemas; the Dockerfile and systemd units hold their promises;
checkov (in .venv-ops, see the Makefile) finds no failed check. Prometheus rules: tests/client/ops/test_rules.py.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path

import hcl2
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
TF = DEPLOY / "terraform"
K8S = DEPLOY / "kubernetes"
CLOUDS = ("aws", "azure", "gcp", "upcloud")
K8S_VERSION = "1.30.0"   # the oldest version the managed services of the four clouds still run


# ---- Terraform ----------------------------------------------------------------------------------------
def _load(path: Path) -> dict:
    """The parsed file with python-hcl2's quoting and bookkeeping taken out: labels and strings bare,
    ``__is_block__`` / ``__comments__`` keys dropped."""
    with path.open() as f:
        return _clean(hcl2.load(f))


def _clean(value):
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items() if k not in ("__is_block__", "__comments__")}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _module(cloud: str) -> dict:
    """Variables (name -> has default), outputs (name -> value text), resources {(type, name)}, raw text."""
    d = TF / "modules" / cloud
    variables, outputs, resources, text = {}, {}, set(), ""
    for f in sorted(d.glob("*.tf")):
        text += f.read_text()
        doc = _load(f)
        for block in doc.get("variable", []):
            for name, body in block.items():
                variables[name] = "default" in body
        for block in doc.get("output", []):
            for name, body in block.items():
                outputs[name] = str(body["value"])
        for kind in ("resource", "data"):
            for block in doc.get(kind, []):
                for rtype, named in block.items():
                    for rname in named:
                        resources.add((rtype, rname) if kind == "resource" else (f"data.{rtype}", rname))
    return {"variables": variables, "outputs": outputs, "resources": resources, "text": text, "dir": d}


@pytest.mark.parametrize("cloud", CLOUDS)
def test_every_module_file_parses_and_its_variables_are_exactly_the_ones_used(cloud):
    m = _module(cloud)
    used = set(re.findall(r"\bvar\.([a-z0-9_]+)", m["text"]))
    assert used == set(m["variables"]), (f"declared, unused: {set(m['variables']) - used}; "
                                         f"used, undeclared: {used - set(m['variables'])}")
    for line in m["text"].splitlines():   # every variable has a description and a type
        assert "variable \"" not in line or line.rstrip().endswith("{")
    for f in (m["dir"] / "variables.tf",):
        for block in _load(f)["variable"]:
            for name, body in block.items():
                assert body.get("description") and body.get("type"), name


@pytest.mark.parametrize("cloud", CLOUDS)
def test_every_output_references_a_resource_or_variable_of_its_module(cloud):
    m = _module(cloud)
    assert m["outputs"], "a module without outputs"
    names = {f"{t}.{n}" for t, n in m["resources"]}
    for out, value in m["outputs"].items():
        refs = re.findall(r"(?<![\w.])((?:data\.)?(?:aws|google|azurerm|upcloud)_[a-z0-9_]+\.[a-z0-9_]+)", value)
        refs = [r for r in refs if not r.startswith("var.")]
        assert refs or "var." in value, f"{out}: {value}"
        for ref in refs:
            assert ref in names, f"output {out} references {ref}, not a resource of the module"
    # every resource reference in the module's own text resolves too
    for ref in set(re.findall(r"(?<![\w.])((?:data\.)?(?:aws|google|azurerm|upcloud)_[a-z0-9_]+\.[a-z0-9_]+)\.",
                             m["text"])):
        assert ref in names, f"{cloud}: {ref} is referenced but not declared"


@pytest.mark.parametrize("cloud", CLOUDS)
def test_templates_get_exactly_the_placeholders_they_use(cloud):
    m = _module(cloud)
    for call in re.finditer(r'templatefile\("\$\{path\.module\}/([^"]+)", \{(.*?)\}\)', m["text"], re.S):
        path, args = m["dir"] / call.group(1), call.group(2)
        assert path.exists(), path
        given = set(re.findall(r"^\s*([a-z_]+)\s*=", args, re.M))
        used = set(re.findall(r"\$\{([a-z_]+)\}", path.read_text()))
        assert used == given, f"{path.name}: template uses {used}, templatefile passes {given}"


@pytest.mark.parametrize("cloud", CLOUDS)
def test_the_example_root_module_passes_every_required_variable_and_uses_real_outputs(cloud):
    m = _module(cloud)
    ex = TF / "examples" / cloud / "main.tf"
    doc = _load(ex)
    (call,) = [body for block in doc["module"] for body in block.values()]
    args = {k for k in call if k not in ("source", "providers", "depends_on", "count", "for_each")}
    assert (ex.parent / call["source"]).resolve() == m["dir"].resolve()
    assert args <= set(m["variables"]), f"unknown arguments: {args - set(m['variables'])}"
    required = {v for v, has_default in m["variables"].items() if not has_default}
    assert required <= args, f"required variables not set: {required - args}"
    for ref in re.findall(r"module\.relay\.([a-z0-9_]+)", ex.read_text()):
        assert ref in m["outputs"], f"example uses missing output {ref}"
    for f in re.findall(r'file\("\$\{path\.module\}/([^"]+)"\)', ex.read_text()):
        assert (ex.parent / f).exists(), f
    # the example pins the same provider as the module
    mod_req = _load(m["dir"] / "versions.tf")["terraform"][0]["required_providers"][0]
    ex_req = doc["terraform"][0]["required_providers"][0]
    assert mod_req == ex_req


def test_networks_use_the_spec_cidrs():
    text = "".join((TF / "modules" / c / "variables.tf").read_text() for c in CLOUDS)
    assert text.count('"10.0.1.0/24"') >= 4 and text.count('"10.0.10.0/24"') == 4 and '"10.0.0.0/16"' in text


# ---- Kubernetes ---------------------------------------------------------------------------------------
def _merge(base, patch):
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            out[k] = _merge(base[k], v) if k in base else copy.deepcopy(v)
        return out
    return copy.deepcopy(patch)


def _json_patch_add(obj, path: str, value) -> None:
    parts = [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]
    for p in parts[:-1]:
        obj = obj[int(p)] if isinstance(obj, list) else obj[p]
    last = parts[-1]
    if isinstance(obj, list):
        obj.insert(len(obj) if last == "-" else int(last), value)
    else:
        obj[last] = value


def render(directory: Path) -> list[dict]:
    """kustomize build, for what these kustomizations use: resources, namespace, images, patches."""
    k = yaml.safe_load((directory / "kustomization.yaml").read_text())
    objs: list[dict] = []
    for res in k.get("resources", []):
        path = directory / res
        objs += render(path) if path.is_dir() else [o for o in yaml.safe_load_all(path.read_text()) if o]
    for o in objs:
        if k.get("namespace") and o["kind"] != "Namespace":
            o["metadata"]["namespace"] = k["namespace"]
    for img in k.get("images", []):
        for o in objs:
            for c in o.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
                name, _, tag = c["image"].partition(":")
                if name == img["name"]:
                    c["image"] = f"{img.get('newName', name)}:{img.get('newTag', tag)}"
    for p in k.get("patches", []):
        if "path" in p:
            patch = yaml.safe_load((directory / p["path"]).read_text())
            matches = [i for i, o in enumerate(objs) if o["kind"] == patch["kind"]
                       and o["metadata"]["name"] == patch["metadata"]["name"]]
            assert len(matches) == 1, f"{p['path']} matches {len(matches)} objects"
            objs[matches[0]] = _merge(objs[matches[0]], patch)
        else:
            t = p["target"]
            targets = [o for o in objs if o["kind"] == t["kind"] and o["metadata"]["name"] == t["name"]]
            assert len(targets) == 1, t
            for op in yaml.safe_load(p["patch"]):
                assert op["op"] == "add", op
                _json_patch_add(targets[0], op["path"], op["value"])
    return objs


def _validate(objs: list[dict]) -> None:
    for o in objs:
        if "." in o["apiVersion"].split("/")[0] and not o["apiVersion"].startswith(
                ("apps/", "networking.k8s.io/", "policy/", "autoscaling/")):
            continue   # custom resources (GKE BackendConfig): no bundled schema
        kubernetes_validate.validate(o, K8S_VERSION, strict=True)


@pytest.mark.parametrize("overlay", [None, *CLOUDS])
def test_manifests_render_and_validate_against_the_kubernetes_schemas(overlay):
    objs = render(K8S / "base" if overlay is None else K8S / "overlays" / overlay)
    _validate(objs)
    kinds = {o["kind"] for o in objs}
    assert {"StatefulSet", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy",
            "ServiceAccount", "ConfigMap", "Namespace"} <= kinds
    (sts,) = [o for o in objs if o["kind"] == "StatefulSet"]
    pod = sts["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/healthz" and c["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert pod["securityContext"]["runAsNonRoot"] and c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert any(v.get("secret", {}).get("secretName") == "shadowmesh-relay-key" for v in pod["volumes"])
    assert "--metrics-host" in c["args"] and "json" in c["args"]
    assert not c["image"].endswith(":latest") and ":" in c["image"]
    ingress = [o for o in objs if o["kind"] == "Ingress"]
    svc = [o for o in objs if o["kind"] == "Service"][0]
    annotations = [o["metadata"].get("annotations", {}) for o in (*ingress, svc)]
    timeouts = json.dumps(annotations)
    assert "3600" in timeouts or overlay == "gcp", "WebSocket timeouts of 1 h"
    if overlay == "gcp":
        assert any(o["kind"] == "BackendConfig" and o["spec"]["timeoutSec"] == 3600 for o in objs)


def test_every_manifest_file_is_valid_yaml_and_full_objects_validate():
    for f in sorted(K8S.rglob("*.yaml")):
        for o in yaml.safe_load_all(f.read_text()):
            assert isinstance(o, dict), f


# ---- Dockerfile and systemd ---------------------------------------------------------------------------
def test_dockerfile_is_multi_stage_pinned_and_the_relay_runs_as_a_numeric_non_root_user():
    text = (DEPLOY / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2
    assert re.search(r"^ARG PYTHON_IMAGE=python:\d+\.\d+\.\d+-slim-\w+$", text, re.M)
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1].split(":")[0].isdigit() and users[-1].split(":")[0] != "0"
    assert "HEALTHCHECK" in text and "--constraint requirements.lock" in text


def test_systemd_units_are_hardened_and_up_gets_only_cap_net_admin():
    relay = (DEPLOY / "systemd" / "shadowmesh-relay.service").read_text()
    up = (DEPLOY / "systemd" / "shadowmesh-up.service").read_text()
    for unit in (relay, up):
        for opt in ("NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
                    "RestrictNamespaces=yes", "SystemCallFilter=@system-service", "LoadCredential=passphrase"):
            assert opt in unit, opt
    assert re.search(r"^CapabilityBoundingSet=$", relay, re.M) and "DynamicUser=yes" in relay
    assert re.findall(r"^CapabilityBoundingSet=(.*)$", up, re.M) == ["CAP_NET_ADMIN"]
    assert "DeviceAllow=/dev/net/tun rw" in up


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_units_verify():
    for unit in (DEPLOY / "systemd").glob("*.service"):
        r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
        problems = [ln for ln in r.stderr.splitlines() if "is not executable" not in ln and ln.strip()]
        assert not problems, problems   # the binary itself is installed by the operator


# ---- checkov ------------------------------------------------------------------------------------------
CHECKOV = ROOT / ".venv-ops" / "bin" / "checkov"


@pytest.mark.skipif(not CHECKOV.exists(), reason="checkov not installed (make ops-venv)")
def test_checkov_finds_no_failed_check_and_every_skip_is_justified():
    r = subprocess.run([str(CHECKOV), "-d", str(DEPLOY), "--framework", "terraform", "kubernetes", "dockerfile",
                        "--skip-download", "--compact", "--output", "json", "--quiet"],
                       capture_output=True, text=True, timeout=300)
    reports = json.loads(r.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    results = [rep.get("results", {}) for rep in reports]
    failed = [(c["check_id"], c["file_path"]) for res in results for c in res.get("failed_checks", [])]
    assert not failed, failed
    skipped = [c for rep in reports for c in rep.get("results", {}).get("skipped_checks", [])]
    for c in skipped:
        assert len((c.get("check_result") or {}).get("suppress_comment") or "") > 15, c["check_id"]
