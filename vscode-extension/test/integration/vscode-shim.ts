// A minimal stand-in for the `vscode` module (only what src/extension.ts uses), recording what the
// extension does, so activate() runs under plain node against a real daemon's API.
import Module from "node:module";

export const recorded = { commands: new Map<string, (...a: unknown[]) => unknown>(), trees: new Map<string, unknown>(),
  bars: [] as Record<string, unknown>[], output: [] as string[], opened: [] as string[], terminals: [] as string[] };

class EventEmitter<T> {
  listeners: ((e: T) => void)[] = [];
  event = (l: (e: T) => void) => { this.listeners.push(l); return { dispose() {} }; };
  fire(e: T) { for (const l of this.listeners) l(e); }
}
class TreeItem { id?: string; description?: string; tooltip?: string; iconPath?: unknown; constructor(public label: string, public collapsibleState: number) {} }
class ThemeIcon { constructor(public id: string) {} }

export const shim = {
  EventEmitter, TreeItem, ThemeIcon,
  TreeItemCollapsibleState: { None: 0 }, StatusBarAlignment: { Left: 1 },
  Uri: { parse: (s: string) => ({ toString: () => s }) },
  env: { openExternal: async (u: { toString(): string }) => { recorded.opened.push(u.toString()); return true; } },
  workspace: { getConfiguration: () => ({ get: (k: string) => ({ apiUrl: process.env.SHADOWMESH_API_URL, tokenFile: process.env.SHADOWMESH_TOKEN_FILE, refreshSeconds: 3600 } as Record<string, unknown>)[k] }) },
  window: {
    createStatusBarItem: () => { const b: Record<string, unknown> = { show() {}, dispose() {} }; recorded.bars.push(b); return b; },
    createOutputChannel: () => ({ clear() { recorded.output.length = 0; }, appendLine(s: string) { recorded.output.push(s); }, show() {}, dispose() {} }),
    registerTreeDataProvider: (id: string, p: unknown) => { recorded.trees.set(id, p); return { dispose() {} }; },
    createTerminal: () => ({ sendText(s: string) { recorded.terminals.push(s); }, show() {} }),
  },
  commands: { registerCommand: (id: string, f: (...a: unknown[]) => unknown) => { recorded.commands.set(id, f); return { dispose() {} }; } },
};

const resolve = (Module as unknown as { _resolveFilename: (...a: unknown[]) => string })._resolveFilename;
(Module as unknown as { _resolveFilename: (...a: unknown[]) => string })._resolveFilename = function (request: unknown, ...rest: unknown[]) {
  return request === "vscode" ? "vscode" : resolve.call(this, request, ...rest);
};
(require.cache as Record<string, unknown>)["vscode"] = { id: "vscode", filename: "vscode", loaded: true, exports: shim };
