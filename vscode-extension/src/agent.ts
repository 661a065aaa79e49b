// The spec's `ShadowMeshAgent` interface ("VSCode Extension Integration") over the local API of a running
// daemon (docs/api.md). No vscode import here: unit-testable under plain node. Node 20's global fetch.
import { readFileSync } from "node:fs";

export interface Config { [key: string]: unknown }
export interface Analysis { valid: boolean; issues: { severity: string; field: string; problem: string; fix: string }[] }
export interface Metrics { peers: Peer[] }
export interface Optimization { kind: string; subject: string; summary: string; action: string; gain_ms?: number }
export type CloudProvider = "aws" | "gcp" | "hetzner";
export interface Solution { summary: string; problems: { problem: string; fix: string; evidence: string }[] }

export interface Peer {
  public_key: string; overlay?: string | null; session?: string; path?: string | null; rtt_ms?: number | null;
  direct?: boolean; relay_paths?: { name: string; up: boolean; rtt_ms: number | null }[];
  bytes_sent?: number; bytes_received?: number;
}
export interface Status {
  kind: string; public_key: string; overlay?: string | null; peers_connected: number; peers_total: number;
  uptime_s: number; findings_open?: number;
}
export interface Finding { id: number; kind: string; severity: string; subject: string; summary: string; action: string; open: boolean }

export interface ShadowMeshAgent {
  analyzeConfiguration(config: Config): Promise<Analysis>;
  suggestOptimizations(metrics: Metrics): Promise<Optimization[]>;
  generateTerraformModule(cloud: CloudProvider): Promise<string>;
  troubleshootConnection(logs: string[]): Promise<Solution>;
}

export class ApiError extends Error {
  constructor(message: string, readonly status?: number) { super(message); }
}

/** The agents behind the daemon's local API. `token` or `tokenFile` (read on every request: it may be
 * created after the extension starts). Requests time out after `timeoutMs`. */
export class LocalApiAgent implements ShadowMeshAgent {
  constructor(readonly baseUrl: string, private readonly opts: { token?: string; tokenFile?: string; timeoutMs?: number } = {}) {}

  private token(): string {
    if (this.opts.token) return this.opts.token;
    if (!this.opts.tokenFile) throw new ApiError("no API token: set shadowmesh.tokenFile");
    try { return readFileSync(this.opts.tokenFile, "utf8").trim(); }
    catch (e) { throw new ApiError(`cannot read the API token file ${this.opts.tokenFile}: ${(e as Error).message}`); }
  }

  async request<T>(path: string, body?: unknown, asText = false): Promise<T> {
    let res: Response;
    try {
      res = await fetch(this.baseUrl.replace(/\/$/, "") + path, {
        method: body === undefined ? "GET" : "POST",
        headers: { Authorization: `Bearer ${this.token()}`, "Content-Type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.opts.timeoutMs ?? 5000),
      });
    } catch (e) {
      if (e instanceof ApiError) throw e;
      throw new ApiError(`no ShadowMesh daemon at ${this.baseUrl} (${(e as Error).message}): start it with \`shadowmesh-client up\``);
    }
    if (!res.ok) {
      const text = await res.text();
      throw new ApiError(res.status === 401 ? "the API refused the token: check shadowmesh.tokenFile" : `HTTP ${res.status}: ${text.slice(0, 200)}`, res.status);
    }
    return (asText ? await res.text() : await res.json()) as T;
  }

  status(): Promise<Status> { return this.request("/api/v1/status"); }
  async peers(): Promise<Peer[]> { return (await this.request<{ peers: Peer[] }>("/api/v1/peers")).peers; }
  async findings(): Promise<Finding[]> { return (await this.request<{ active: Finding[] }>("/api/v1/findings")).active; }
  async suggestions(): Promise<Optimization[]> {
    return (await this.request<{ optimizations: Optimization[] }>("/api/v1/agents/suggestions")).optimizations;
  }
  async doctor(): Promise<{ name: string; status: string; detail: string; fix: string }[]> {
    return (await this.request<{ checks: { name: string; status: string; detail: string; fix: string }[] }>("/api/v1/agents/doctor")).checks;
  }

  analyzeConfiguration(config: Config): Promise<Analysis> { return this.request("/api/v1/agents/analyze", { config }); }
  async suggestOptimizations(metrics: Metrics): Promise<Optimization[]> {
    return (await this.request<{ optimizations: Optimization[] }>("/api/v1/agents/optimize", { metrics })).optimizations;
  }
  generateTerraformModule(cloud: CloudProvider): Promise<string> {
    return this.request(`/api/v1/agents/terraform?cloud=${encodeURIComponent(cloud)}`, undefined, true);
  }
  troubleshootConnection(logs: string[]): Promise<Solution> { return this.request("/api/v1/agents/troubleshoot", { logs }); }
}
