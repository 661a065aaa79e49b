"""Issue 11 item 8: every custom error of DeviceRegistry and ShadowMeshToken (their ABIs in the compiled
artifacts, inherited OpenZeppelin errors included) is decoded into words: never a raw `Name(args)`."""

from __future__ import annotations

import json

import pytest
from eth_abi import encode
from eth_utils import function_signature_to_4byte_selector

from lab.chain import PROJECT_ROOT
from shadowmesh_client.chain.client import explain_error

ARTIFACTS = PROJECT_ROOT / ".build" / "__local__.json"
SAMPLE = {"address": "0x" + "11" * 20, "bytes32": b"\x22" * 32, "string": "x" * 40, "bool": True}


def _errors():
    if not ARTIFACTS.exists():
        pytest.skip("contracts not compiled: run `make compile`")
    types = json.loads(ARTIFACTS.read_text())["contractTypes"]
    out = []
    for contract in ("DeviceRegistry", "ShadowMeshToken"):
        abi = types[contract]["abi"]
        out += [(contract, item, abi) for item in abi if item["type"] == "error"]
    return out


ERRORS = _errors()


def test_both_contracts_have_custom_errors():
    names = {item["name"] for _, item, _ in ERRORS}
    assert {"DeviceRegistryUnknownNetwork", "ShadowMeshTokenEscrowOverflow", "ERC20InsufficientBalance"} <= names


@pytest.mark.parametrize("contract, item, abi", ERRORS, ids=[f"{c}.{i['name']}" for c, i, _ in ERRORS])
def test_every_custom_error_has_words(contract, item, abi):
    types = [i["type"] for i in item["inputs"]]
    args = [SAMPLE.get(t, 10**21 if t == "uint256" else 3) for t in types]
    data = function_signature_to_4byte_selector(f"{item['name']}({','.join(types)})") + encode(types, args)
    text = explain_error(data, abi)
    assert item["name"] not in text, text
    assert "unknown error" not in text and "the contract refused" not in text and "undecodable" not in text
    assert len(text) > 15


def test_token_amounts_are_in_smt():
    (_, item, abi), = [e for e in ERRORS if e[1]["name"] == "ShadowMeshTokenEscrowOverflow"]
    selector = function_signature_to_4byte_selector("ShadowMeshTokenEscrowOverflow(uint256)")
    data = selector + encode(["uint256"], [10**60])
    text = explain_error(data, abi)
    assert "SMT" in text and "1000000000000000000000000000000000000000000 SMT" in text
