// VS Code entry point: status bar (connected peers, paths), a peers tree view, commands (doctor, show
// suggestions, open dashboard, refresh), all through the daemon's local API (src/agent.ts).
import * as vscode from "vscode";
import * as path from "node:path";
import { LocalApiAgent, Peer, Status } from "./agent";
import { findingLines, peerItems, statusBarText } from "./model";

export class PeersProvider implements vscode.TreeDataProvider<Peer> {
  private readonly changed = new vscode.EventEmitter<Peer | undefined>();
  readonly onDidChangeTreeData = this.changed.event;
  peers: Peer[] = [];

  update(peers: Peer[]): void { this.peers = peers; this.changed.fire(undefined); }
  getChildren(): Peer[] { return this.peers; }
  getTreeItem(p: Peer): vscode.TreeItem {
    const item = peerItems([p])[0];
    const t = new vscode.TreeItem(item.label, vscode.TreeItemCollapsibleState.None);
    t.id = item.id; t.description = item.description; t.tooltip = item.tooltip;
    t.iconPath = new vscode.ThemeIcon(item.icon);
    return t;
  }
}

export function agentFromSettings(): LocalApiAgent {
  const cfg = vscode.workspace.getConfiguration("shadowmesh");
  const tokenFile = cfg.get<string>("tokenFile") || process.env.SHADOWMESH_TOKEN_FILE ||
    path.join(process.cwd(), "state", "api-token");
  return new LocalApiAgent(cfg.get<string>("apiUrl") || "http://127.0.0.1:7780", { tokenFile });
}

export interface Handle { refresh(): Promise<void>; status: Status | null; peers: PeersProvider; bar: vscode.StatusBarItem }

export function activate(context: vscode.ExtensionContext): Handle {
  const agent = agentFromSettings();
  const peers = new PeersProvider();
  const bar = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Left, 50);
  bar.command = "shadowmesh.openDashboard";
  bar.show();
  const output = vscode.window.createOutputChannel("ShadowMesh");
  const handle: Handle = { status: null, peers, bar, refresh };

  async function refresh(): Promise<void> {
    try {
      const [status, list] = await Promise.all([agent.status(), agent.peers()]);
      handle.status = status;
      peers.update(list);
      Object.assign(bar, statusBarText(status, list));
    } catch (e) {
      handle.status = null;
      peers.update([]);
      Object.assign(bar, statusBarText(null, [], (e as Error).message));
    }
  }

  context.subscriptions.push(
    bar, output,
    vscode.window.registerTreeDataProvider("shadowmeshPeers", peers),
    vscode.commands.registerCommand("shadowmesh.refresh", refresh),
    vscode.commands.registerCommand("shadowmesh.openDashboard", async () => {
      const token = (agent as unknown as { token(): string }).token();
      await vscode.env.openExternal(vscode.Uri.parse(`${agent.baseUrl}/#token=${encodeURIComponent(token)}`));
    }),
    vscode.commands.registerCommand("shadowmesh.showSuggestions", async () => {
      const [opts, findings] = await Promise.all([agent.suggestions(), agent.findings()]);
      const lines = [...findingLines(findings), ...opts.map((o) => `${o.summary} → ${o.action}`)];
      output.clear();
      output.appendLine(lines.length ? lines.join("\n") : "No suggestions: every peer is on its best path, nothing unusual seen.");
      output.show(true);
      return lines;
    }),
    vscode.commands.registerCommand("shadowmesh.doctor", async () => {
      let lines: string[];
      try {
        lines = (await agent.doctor()).map((c) => `[${c.status}] ${c.name}: ${c.detail}${c.fix && c.status !== "ok" ? `\n    fix: ${c.fix}` : ""}`);
      } catch (e) {   // no daemon (or no config): the CLI runs every check itself
        const term = vscode.window.createTerminal("ShadowMesh doctor");
        term.sendText(`${vscode.workspace.getConfiguration("shadowmesh").get<string>("cliPath") || "shadowmesh-client"} doctor`);
        term.show();
        lines = [`(daemon API unavailable: ${(e as Error).message}; running the CLI in a terminal)`];
      }
      output.clear();
      output.appendLine(lines.join("\n"));
      output.show(true);
      return lines;
    }),
  );
  const seconds = vscode.workspace.getConfiguration("shadowmesh").get<number>("refreshSeconds") || 5;
  const timer = setInterval(() => void refresh(), seconds * 1000);
  context.subscriptions.push({ dispose: () => clearInterval(timer) });
  void refresh();
  return handle;
}

export function deactivate(): void { /* subscriptions are disposed by VS Code */ }
