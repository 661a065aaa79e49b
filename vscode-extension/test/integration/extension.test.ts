// The extension against a REAL running daemon's local API (tests/client/api/test_vscode_extension.py and
// tests/e2e/test_dashboard.py start one and set SHADOWMESH_API_URL, SHADOWMESH_TOKEN_FILE and
// SHADOWMESH_EXPECT_PEERS); only the `vscode` module is shimmed.
import { test } from "node:test";
import assert from "node:assert/strict";
import { recorded } from "./vscode-shim";

const url = process.env.SHADOWMESH_API_URL;

test("activate shows the daemon's peers in the status bar and the tree, and the commands answer", { skip: !url && "no SHADOWMESH_API_URL" }, async () => {
  const ext = await import("../../src/extension");
  const subscriptions: { dispose(): void }[] = [];
  const handle = ext.activate({ subscriptions } as never);
  try {
    await handle.refresh();
    const expected = Number(process.env.SHADOWMESH_EXPECT_PEERS ?? "1");
    assert.ok(handle.status, "status from the API");
    assert.equal(handle.status.peers_connected, expected);
    assert.match(String(handle.bar.text), new RegExp(`^\\$\\(globe\\) ${expected}/\\d+ peers`));
    const tree = recorded.trees.get("shadowmeshPeers") as { getChildren(): { public_key: string }[]; getTreeItem(p: unknown): { description: string } };
    const children = tree.getChildren();
    assert.ok(children.length >= expected);
    assert.match(tree.getTreeItem(children[0]).description, /direct|relay/);
    for (const id of ["shadowmesh.refresh", "shadowmesh.doctor", "shadowmesh.showSuggestions", "shadowmesh.openDashboard"]) {
      assert.ok(recorded.commands.has(id), id);
    }
    const lines = await recorded.commands.get("shadowmesh.showSuggestions")!() as string[];
    assert.ok(recorded.output.length >= 1 && Array.isArray(lines));
    await recorded.commands.get("shadowmesh.openDashboard")!();
    assert.match(recorded.opened[0], new RegExp(`^${url}/#token=.{20,}`));
    const doctor = await recorded.commands.get("shadowmesh.doctor")!() as string[];
    assert.ok(doctor.length >= 1);
  } finally {
    for (const s of subscriptions) s.dispose();
  }
});
