// What the extension shows, as pure functions of the API's answers (unit-tested without VS Code).
import type { Finding, Peer, Status } from "./agent";

export function statusBarText(status: Status | null, peers: Peer[], error?: string): { text: string; tooltip: string } {
  if (!status) return { text: "$(debug-disconnect) ShadowMesh: off", tooltip: error ?? "no daemon" };
  const direct = peers.filter((p) => p.session === "established" && p.path === "direct").length;
  const relayed = peers.filter((p) => p.session === "established" && (p.path ?? "").startsWith("relay")).length;
  const alert = status.findings_open ? ` $(warning) ${status.findings_open}` : "";
  return {
    text: `$(globe) ${status.peers_connected}/${status.peers_total} peers${alert}`,
    tooltip: `ShadowMesh ${status.kind} ${status.overlay ?? ""}: ${direct} direct, ${relayed} relayed` +
      (status.findings_open ? `, ${status.findings_open} open security finding(s)` : ""),
  };
}

export interface PeerItem { id: string; label: string; description: string; tooltip: string; icon: string }

export function peerItems(peers: Peer[]): PeerItem[] {
  return [...peers]
    .sort((a, b) => Number(b.session === "established") - Number(a.session === "established") || a.public_key.localeCompare(b.public_key))
    .map((p) => {
      const up = p.session === "established";
      const rtt = p.rtt_ms != null ? `${p.rtt_ms.toFixed(1)} ms` : "";
      return {
        id: p.public_key, label: p.overlay ?? p.public_key.slice(0, 12),
        description: up ? [p.path ?? "?", rtt].filter(Boolean).join(" · ") : (p.session ?? "unknown"),
        tooltip: `${p.public_key}\nsession ${p.session}\npath ${p.path ?? "-"}` +
          (p.relay_paths?.length ? `\nrelays: ${p.relay_paths.map((r) => `${r.name} ${r.up ? `${r.rtt_ms} ms` : "down"}`).join(", ")}` : ""),
        icon: up ? (p.path === "direct" ? "arrow-both" : "arrow-swap") : "circle-slash",
      };
    });
}

export function findingLines(findings: Finding[]): string[] {
  return findings.map((f) => `[${f.severity}] ${f.kind}: ${f.summary} → ${f.action}`);
}
