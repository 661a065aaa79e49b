"""`shadowmesh-client` device-owner commands: init, register, revoke, renew, set-endpoint, status, peers (docs/cli.md).

Thin: each command parses its options, calls one library function (identity, devices, directory) and
prints the result, as text or with ``--json`` as JSON. Errors: one line on stderr, exit code 1.
The root group and the other command groups: cli/__init__.py.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from shadowmesh_client.chain import registry as devices
from shadowmesh_client.cli.common import State, dict_lines, emit, json_option, tx_lines, when
from shadowmesh_client.errors import ChainError, ConfigError

# ---------------------------------------------------------------- init


@click.command()
@click.option("--rpc-url", help="JSON-RPC URL of the chain (http[s]://...).")
@click.option("--deployments", type=click.Path(dir_okay=False), help="Deployment record written by the deploy script.")
@click.option("--network-id", type=click.IntRange(min=1), help="Network (tailnet) id to join.")
@click.option("--endpoint", help="This device's public WebSocket URL (wss://...), if reachable.")
@click.option("--owner-keystore", type=click.Path(dir_okay=False), help="eth-account keystore of the owner account.")
@click.option("--keystore-backend", type=click.Choice(["auto", "file", "keyring"]), default=None,
              help="Where the device key is kept (auto: OS keychain if available, else a sealed file).")
@json_option
@click.pass_obj
def init(state: State, rpc_url, deployments, network_id, endpoint, owner_keystore, keystore_backend, as_json):
    """Create the config (if missing) and the device's Ed25519 key, encrypted at rest.

    Writes nothing unless it succeeds: the config is validated and the passphrase read first; the key is
    written, then the config (a failed attempt leaves nothing behind that would block the retry)."""
    from shadowmesh_client.config import check_endpoint, default_config_path, parse_config, write_config
    from shadowmesh_client.identity import resolve_passphrase

    path = Path(state.config_path) if state.config_path else default_config_path()
    values = None
    if not path.exists():
        if endpoint:
            check_endpoint(endpoint)
        values = {k: v for k, v in {
            "rpc_url": rpc_url, "deployments": deployments and str(Path(deployments).resolve()),
            "network_id": network_id, "endpoint": endpoint,
            "owner_keystore": owner_keystore and str(Path(owner_keystore).resolve()),
            "keystore_backend": keystore_backend, "device_key": "device.key", "state_dir": "state",
        }.items() if v is not None}
        state._config = parse_config(values, str(path), path.parent.resolve())  # type: ignore[assignment]
    elif any(v is not None for v in (rpc_url, deployments, network_id, endpoint, owner_keystore, keystore_backend)):
        raise ConfigError(f"{path} already exists: edit it instead of passing options to init")
    state.config_path = str(path)
    ks = state.keystore()
    if ks.exists():
        pub, created_key = ks.public_key(), False
    else:
        passphrase = None
        if not ks.uses_keyring():
            prompt = (lambda: state._prompt("New device key passphrase", confirm=True)) if sys.stdin.isatty() else None
            passphrase = resolve_passphrase(state.passphrase_file, prompt)
        pub, created_key = ks.create(passphrase).public_key, True
    if values is not None:
        write_config(path, values)
    data = {"config": str(path), "config_created": values is not None, "device_key": str(ks.path),
            "key_created": created_key, "backend": "keyring" if ks.uses_keyring() else "file", "public_key": pub.hex()}
    emit(as_json, data, "\n".join([
        f"config: {path}{' (created)' if values is not None else ''}",
        f"device key: {ks.path} ({data['backend']}{', created' if created_key else ', already existed'})",
        f"public key: {pub.hex()}",
    ]))


# ---------------------------------------------------------------- device transactions


def _network(state: State, network_id: int | None) -> int:
    nid = network_id or state.config.network_id
    if nid is None:
        raise ConfigError("no network: pass --network ID or set `network_id:` in the config")
    return nid


def _this_device(state: State, network_id: int | None, device_id: str | None) -> str:
    if device_id:
        return device_id
    return devices.device_id_hex(_network(state, network_id), state.owner_address(), state.keystore().public_key())


network_opt = click.option("--network", "network_id", type=click.IntRange(min=1), help="Network id (default: config).")
device_opt = click.option("--device-id", help="Device id (0x + 64 hex; default: this device in the network).")


@click.command()
@network_opt
@click.option("--endpoint", help="Public WebSocket URL (default: `endpoint:` of the config; empty: none).")
@click.option("--relay", is_flag=True, help="Offer to relay traffic for other devices.")
@json_option
@click.pass_obj
def register(state: State, network_id, endpoint, relay, as_json):
    """Register this device in a network (signs the proof of possession with the device key)."""
    from shadowmesh_client.config import check_endpoint

    nid = _network(state, network_id)
    endpoint = endpoint if endpoint is not None else state.config.endpoint
    if endpoint:
        check_endpoint(endpoint)  # before any key is unlocked or gas estimated
    identity = state.identity()
    chain = state.chain()
    account = state.owner_account()
    r = devices.register(chain, account, identity, nid, endpoint=endpoint, relay=relay)
    emit(as_json, r.to_dict(), tx_lines(r))


@click.command()
@network_opt
@device_opt
@json_option
@click.pass_obj
def revoke(state: State, network_id, device_id, as_json):
    """Revoke a device (owner or network admin). Final: the key must be re-registered under a new owner or key."""
    did = _this_device(state, network_id, device_id)
    r = devices.revoke(state.chain(), state.owner_account(), did)
    emit(as_json, r.to_dict(), tx_lines(r))


@click.command()
@network_opt
@device_opt
@json_option
@click.pass_obj
def renew(state: State, network_id, device_id, as_json):
    """Extend a device's registration by the network's period (owner only)."""
    did = _this_device(state, network_id, device_id)
    r = devices.renew(state.chain(), state.owner_account(), did)
    emit(as_json, r.to_dict(), tx_lines(r))


@click.command("set-endpoint")
@click.argument("endpoint", required=False, default="")
@network_opt
@device_opt
@click.option("--relay/--no-relay", default=None,
              help="Offer (or stop offering) to relay traffic; without either, the current flag is kept.")
@json_option
@click.pass_obj
def set_endpoint(state: State, endpoint, network_id, device_id, relay, as_json):
    """Publish ENDPOINT (wss://...; omit to clear it) for a device; --relay/--no-relay also sets its relay flag."""
    from shadowmesh_client.config import check_endpoint

    if endpoint:
        check_endpoint(endpoint)
    did = _this_device(state, network_id, device_id)
    r = devices.set_endpoint(state.chain(), state.owner_account(), did, endpoint or None, relay)
    emit(as_json, r.to_dict(), tx_lines(r))


@click.command()
@network_opt
@json_option
@click.pass_obj
def status(state: State, network_id, as_json):
    """Show this device's registration on chain, and what relays said when they stopped carrying it (from the
    running `up` daemon's status file, <state_dir>/node-status.json)."""
    nid = _network(state, network_id)
    data = devices.device_status(state.chain(), nid, state.owner_address(), state.keystore().public_key())
    human = dict(data)
    if data["status"] == "expired":
        human["status"] = "expired (renew it with `shadowmesh-client renew`)"
    elif data["status"] == "pending approval":
        human["overlay_address"] = "none yet (given at the network admin's approval)"
    notices = _relay_notices(Path(state.config.state_dir) / "node-status.json")
    if notices:
        data["relay_notices"] = notices
        for relay, n in notices.items():
            human[f"relay {relay[:16]}.."] = (f"{'carrying' if n['carrying'] else 'STOPPED: ' + n['reason']}"
                                             + ("" if n["carrying"] else f" (what to do: {n['what_to_do']})"))
    emit(as_json, data, dict_lines(human))


def _relay_notices(path: Path) -> dict:
    """Relay key -> its latest RELAY_NOTICE, from the node's status file (empty if none or unreadable)."""
    import json

    try:
        st = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    relays = ((st.get("payments") or {}).get("relays") or {}) if isinstance(st, dict) else {}
    return {k: v["notice"] for k, v in relays.items() if isinstance(v, dict) and v.get("notice")}


# ---------------------------------------------------------------- the directory


@click.command()
@network_opt
@click.option("--all", "show_all", is_flag=True, help="Also list devices that are not trusted now (any status).")
@click.option("--no-sync", is_flag=True, help="Do not contact the chain; show the stored state.")
@json_option
@click.pass_obj
def peers(state: State, network_id, show_all, no_sync, as_json):
    """Sync the directory from the registry's events and list the network's peers.

    Checks first that the chain, the registry contract and the network exist; creates nothing (no state
    file) until they do. With --no-sync, only reads what an earlier `peers` or `up` stored."""
    from shadowmesh_client.directory.syncer import open_syncer

    cfg = state.config
    nid = _network(state, network_id)
    if cfg.deployments is not None:
        dep = state.deployment()
        chain_id, registry, start = dep.chain_id, dep.registry, dep.deploy_block
    else:
        chain_id, registry, start = cfg.chain_id, cfg.registry, cfg.deploy_block
    # The file open_syncer uses (directory/syncer.py): checked here so a read never creates one.
    stored = Path(cfg.state_dir) / f"directory-{chain_id}-{registry.lower()[:10]}-{nid}.sqlite"
    if no_sync and not stored.exists():
        raise ConfigError(f"nothing stored for network {nid} yet ({stored}): run `peers` without --no-sync first")
    if not no_sync and not stored.exists():
        _check_registry(state, cfg.rpc_url, chain_id, registry, nid)
    deadline = None if no_sync else state.deadline
    syncer = open_syncer(cfg.rpc_url, chain_id, registry, nid, cfg.state_dir, deploy_block=start,
                         confirmations=cfg.confirmations, retries=2, extra_rpc_urls=cfg.rpc_urls,
                         timeout=deadline.seconds + 5 if deadline else 30.0)
    if deadline is not None:
        syncer.reader.rpc.watch = deadline.watch
    try:
        warning = None
        if not no_sync:
            try:
                syncer.sync_once()
            except ChainError as exc:
                if syncer.store.synced_block is None:
                    raise
                warning = f"showing stored state: {exc}"
        now = time.time()
        st = syncer.status(now)
        d = syncer.directory
        rows = d.all_devices() if show_all else d.peers(now)
        names = _names(cfg, d, now)   # issue 14: device names from the signed records
    finally:
        syncer.close()
    if warning:
        stale = f"{st.stale_seconds:.0f} s" if st.stale_seconds is not None else "unknown"
        click.echo(f"warning: {warning} (synced to block {st.synced_block}, {stale} ago)", err=True)
    data: dict[str, Any] = {
        "network_id": nid, "synced_block": st.synced_block, "stale_seconds": st.stale_seconds, "error": st.error,
        "peers": [{
            "overlay_address": str(p.overlay_address), "public_key": p.public_key.hex(),
            "name": names.get(p.public_key), "device_id": "0x" + p.device_id.hex(),
            "owner": p.owner, "endpoint": p.endpoint, "relay": p.relay, "expires_at": p.expires_at,
            "status": _peer_status(p, now), "trusted": d.is_trusted(p.public_key, now),
        } for p in rows],
    }
    lines = [f"{'OVERLAY':<16} {'NAME':<20} {'PUBLIC KEY':<18} {'OWNER':<14} {'STATUS':<10} {'RELAY':<5} "
             f"{'EXPIRES':<23} ENDPOINT"]
    for p in data["peers"]:
        lines.append(f"{p['overlay_address']:<16} {p['name'] or '-':<20} {p['public_key'][:16] + '..':<18} "
                     f"{p['owner'][:12] + '..':<14} "
                     f"{p['status']:<10} {'yes' if p['relay'] else 'no':<5} {when(p['expires_at']):<23} "
                     f"{p['endpoint'] or '-'}")
    lines.append(f"{len(rows)} peer(s) in network {nid}, synced to block {st.synced_block}")
    emit(as_json, data, "\n".join(lines))


def _records_dir(cfg) -> Path:
    return Path(cfg.routing.records_dir) if cfg.routing.records_dir else Path(cfg.state_dir) / "records"


def _names(cfg, d, now: float) -> dict[bytes, str]:
    """{public key: NAME.NETWORK.SUFFIX} of the trusted devices (routing/names.py, records from the folder)."""
    from shadowmesh_client.directory.events import JoinPolicy
    from shadowmesh_client.routing.names import NameTable, network_label
    from shadowmesh_client.routing.records import RecordSet, load_folder

    rs = RecordSet(d.chain_id, "0x" + d.registry.hex(), d.network_id)
    rs.replace_all(load_folder(_records_dir(cfg)))
    info = d.network
    admin = "0x" + info.admin.hex() if info else None
    approval = info is not None and info.policy == int(JoinPolicy.APPROVAL)
    devices = []
    for p in d.peers(now):
        if p.relay:
            continue
        acc = rs.accepted(p.public_key, admin, approval)
        devices.append((p.public_key, p.registered_at, p.overlay_address, None, acc.name if acc else None))
    table = NameTable.build(f"{network_label(info.name if info else '', d.network_id)}.{cfg.routing.dns_suffix}",
                            devices)
    return {k: f"{e.name}.{table.zone}" for k, e in table.by_key.items()}


@click.command("approve-record")
@click.argument("record", type=click.Path(exists=True, dir_okay=False))
@json_option
@click.pass_obj
def approve_record(state: State, record, as_json):
    """Approve a device's signed record (its subnet routes; its exit in approval networks) with the owner key
    of the network admin (`owner_keystore`). The file is rewritten in place with the approval; nodes read
    it from their records folder (docs/routing.md)."""
    from shadowmesh_client.routing.records import SignedRecord, save

    signed = SignedRecord.from_json(Path(record).read_bytes())
    if not signed.device_signature_ok():
        raise ConfigError(f"{record}: the device signature does not verify: refusing to approve it")
    account = state.owner_account()
    approved = signed.approve(account.key)
    path = save(Path(record).parent, approved)
    r = signed.record
    emit(as_json, {"record": str(path), "approver": account.address, "name": r.name, "exit": r.exit,
                   "routes": list(r.routes)},
         f"approved {path}: name {r.name or '-'}, exit {'yes' if r.exit else 'no'}, "
         f"routes {', '.join(r.routes) or 'none'} (by {account.address})")


def _peer_status(p, now: float) -> str:
    name = p.status.name.lower()
    return "expired" if name == "active" and p.expires_at <= now else name


def _check_registry(state: State, rpc_url: str, chain_id: int, registry: str, nid: int) -> None:
    """The chain answers with ``chain_id``, a contract is deployed at ``registry``, and network ``nid`` exists
    there (raw JSON-RPC: works with a deployment record or with `chain_id` + `registry` alone)."""
    from eth_utils import keccak

    from shadowmesh_client.directory.reader import JsonRpc

    deadline = state.deadline
    rpc = JsonRpc(rpc_url, timeout=deadline.seconds + 5, watch=deadline.watch)
    try:
        got = int(rpc.call("eth_chainId", []), 16)
        if got != chain_id:
            raise ChainError(f"wrong chain: {rpc_url} is chain {got} but the config is for chain {chain_id}")
        if rpc.call("eth_getCode", [registry, "latest"]) in (None, "0x", "0x0"):
            local = " (a local chain restarted since? run `make chain` again)" if chain_id in (31337, 1337) else ""
            raise ChainError(f"there is no DeviceRegistry contract at {registry} on chain {chain_id}{local}: "
                             "check `deployments` (or `registry`) in the config")
        raw = rpc.call("eth_call", [{"to": registry, "data": "0x" + keccak(text="networkCount()")[:4].hex()}, "latest"])
        count = int(raw, 16) if raw and raw != "0x" else 0
    finally:
        rpc.close()
    if not 1 <= nid <= count:
        have = f"networks 1 to {count}" if count else "no network yet"
        raise ConfigError(f"network {nid} does not exist on the registry at {registry} (chain {chain_id} has {have}): "
                          "check `network_id`, or create one with `shadowmesh-client network create NAME`")


COMMANDS = (init, register, revoke, renew, set_endpoint, status, peers, approve_record)
