import { test } from "node:test";
import assert from "node:assert/strict";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { findingLines, peerItems, statusBarText } from "../../src/model";
import { ApiError, LocalApiAgent } from "../../src/agent";

const peers = [
  { public_key: "bb".repeat(32), overlay: "100.64.0.3", session: "handshaking", path: null },
  { public_key: "aa".repeat(32), overlay: "100.64.0.2", session: "established", path: "direct", rtt_ms: 1.25 },
  { public_key: "cc".repeat(32), overlay: "100.64.0.4", session: "established", path: "relay:0b0bfafe", rtt_ms: 20,
    relay_paths: [{ name: "relay:0b0bfafe", up: true, rtt_ms: 20 }] },
];

test("status bar counts connected peers and their paths, and flags findings", () => {
  const s = statusBarText({ kind: "node", public_key: "k", overlay: "100.64.0.1", peers_connected: 2, peers_total: 3, uptime_s: 1, findings_open: 1 }, peers);
  assert.equal(s.text, "$(globe) 2/3 peers $(warning) 1");
  assert.match(s.tooltip, /1 direct, 1 relayed, 1 open security finding/);
  assert.equal(statusBarText(null, [], "no daemon at x").text, "$(debug-disconnect) ShadowMesh: off");
});

test("peer items: connected first, path and RTT in the description", () => {
  const items = peerItems(peers);
  assert.deepEqual(items.map((i) => i.label), ["100.64.0.2", "100.64.0.4", "100.64.0.3"]);
  assert.equal(items[0].description, "direct · 1.3 ms");
  assert.equal(items[1].icon, "arrow-swap");
  assert.match(items[1].tooltip, /relays: relay:0b0bfafe 20 ms/);
  assert.equal(items[2].description, "handshaking");
});

test("finding lines carry the action", () => {
  assert.deepEqual(findingLines([{ id: 1, kind: "handshake_flood", severity: "high", subject: "network", summary: "40 refused", action: "block it", open: true }]),
    ["[high] handshake_flood: 40 refused → block it"]);
});

test("the agent sends the token, and names a refused token and a missing daemon", async () => {
  const seen: string[] = [];
  const server = http.createServer((req, res) => {
    seen.push(String(req.headers.authorization));
    res.writeHead(req.headers.authorization === "Bearer good" ? 200 : 401, { "Content-Type": "application/json" });
    res.end(JSON.stringify({ peers: [] }));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    assert.deepEqual(await new LocalApiAgent(url, { token: "good" }).peers(), []);
    await assert.rejects(new LocalApiAgent(url, { token: "bad" }).peers(), (e: ApiError) => e.status === 401 && /token/.test(e.message));
    assert.deepEqual(seen, ["Bearer good", "Bearer bad"]);
  } finally { server.close(); }
  await assert.rejects(new LocalApiAgent(url, { token: "good", timeoutMs: 1000 }).status(), /no ShadowMesh daemon/);
  await assert.rejects(new LocalApiAgent(url, { tokenFile: "/nonexistent/token" }).status(), /cannot read the API token file/);
});
