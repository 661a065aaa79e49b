"""Reading the DeviceRegistry's logs over JSON-RPC: ``eth_getLogs`` in adaptive block ranges, with retries.

The thin I/O wrapper under the directory (docs/directory.md "Sync"). Plain JSON-RPC over HTTP(S) through
``requests`` (a web3 dependency): the directory needs four methods and raw hex logs, and skipping web3's
result formatters keeps a 100,000-log cold sync cheap.

Range sizing: a request covers ``range`` blocks. When the node refuses it (too many results, range too
large, response too big, timeout) the range is halved and the request repeated at once; after a request
returning more than ``target_logs`` logs the range shrinks proportionally, and after one returning fewer
than a quarter of that it doubles (up to ``max_range``). Connection failures and 5xx answers are retried
with exponential backoff (``backoff`` doubling up to ``max_backoff`` seconds, ``retries`` times) and then
raise :class:`RpcUnavailable`, which the syncer turns into "serving stale state".

One network per filter (registry v2, issue 10): with ``topics`` (``events.network_filter(network_id)``) a
request returns only that network's events (network id at topic 1), so a client no longer downloads every
network's logs.

Several endpoints (issue 10 "Trust in one RPC"): :class:`AgreeingReader` reads every range from each of
its readers and accepts it only where they all return the same logs (and the same block hashes); otherwise
it raises :class:`RpcDisagreement` naming the endpoint(s) that disagreed (those outside the majority; with
no majority, those that differ from the first endpoint), and the syncer keeps its last state. The head it
follows is the lowest of their heads, so a lagging endpoint is not taken for a liar.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import requests

from shadowmesh_client.errors import ChainError

log = logging.getLogger(__name__)

_TOO_MUCH = ("too many", "limit", "range", "exceed", "too large", "timeout", "timed out", "size", "10000")


class RpcError(ChainError):
    """The node answered with a JSON-RPC error."""

    def __init__(self, method: str, code: int | None, message: str) -> None:
        super().__init__(f"RPC {method} failed: {message} (code {code})")
        self.code = code
        self.rpc_message = message


class RpcUnavailable(ChainError, ConnectionError):
    """The RPC endpoint could not be reached (after retries)."""


class RpcDisagreement(ChainError):
    """Two or more RPC endpoints returned different chain data; ``disagreeing`` names the suspect URL(s)."""

    def __init__(self, what: str, disagreeing: list[str], answers: dict[str, str]) -> None:
        detail = "; ".join(f"{url}: {a}" for url, a in answers.items())
        super().__init__(f"RPC endpoints disagree on {what} ({detail}): not accepted; the endpoint that disagreed: "
                         f"{', '.join(disagreeing)} (check it, or drop it from rpc_url/rpc_urls)")
        self.disagreeing = disagreeing


class JsonRpc:
    """Minimal blocking JSON-RPC 2.0 client over HTTP(S). One instance per thread.

    ``timeout``: seconds per request (connect, and each read). ``watch(url, method)``: an optional context
    manager wrapped around every request (the CLI's chain.deadline.Deadline.watch: one overall deadline and a
    progress line); it may raise out of the request."""

    def __init__(self, url: str, timeout: float = 30.0,
                 watch: Callable[[str, str], contextlib.AbstractContextManager[Any]] | None = None) -> None:
        if not url.startswith(("http://", "https://")):
            raise ChainError(f"rpc_url {url!r} must be an http:// or https:// URL")
        self.url = url
        self.timeout = timeout
        self.watch = watch
        self._session = requests.Session()
        self._ids = itertools.count(1)

    def call(self, method: str, params: list[Any]) -> Any:
        try:
            with self.watch(self.url, method) if self.watch is not None else contextlib.nullcontext():
                resp = self._session.post(
                    self.url, json={"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params},
                    timeout=self.timeout,
                )
        except requests.Timeout as exc:
            if method == "eth_getLogs":  # most likely a range too large for the node: shrink it
                raise RpcError(method, None, "request timed out") from exc
            raise RpcUnavailable(f"the RPC endpoint {self.url} did not answer {method} in {self.timeout:g} s") from exc
        except requests.ConnectionError as exc:
            raise RpcUnavailable(f"cannot reach the RPC endpoint {self.url}: connection refused or no route "
                                 "(is the node running? check rpc_url)") from exc
        except requests.RequestException as exc:
            raise RpcUnavailable(f"cannot reach the RPC endpoint {self.url}: {type(exc).__name__}") from exc
        if resp.status_code >= 500 or resp.status_code in (429, 502, 503, 504):
            raise RpcUnavailable(f"RPC endpoint {self.url} answered HTTP {resp.status_code}")
        try:
            body = resp.json()
        except ValueError as exc:
            if resp.status_code == 413:
                raise RpcError(method, 413, "response too large") from exc
            raise RpcUnavailable(f"RPC endpoint {self.url} did not answer JSON (HTTP {resp.status_code})") from exc
        if "error" in body:
            err = body["error"] or {}
            raise RpcError(method, err.get("code"), str(err.get("message", err)))
        return body.get("result")

    def close(self) -> None:
        self._session.close()


class LogReader:
    """The registry's logs, head and block hashes through a :class:`JsonRpc` (see module docstring)."""

    def __init__(
        self,
        rpc: JsonRpc,
        registry: str,
        *,
        initial_range: int = 10_000,
        max_range: int = 1_000_000,
        target_logs: int = 20_000,
        retries: int = 5,
        backoff: float = 0.25,
        max_backoff: float = 8.0,
        sleep: Callable[[float], None] = time.sleep,
        topics: list | None = None,
    ) -> None:
        self.rpc = rpc
        self.registry = registry.lower()
        self.topics = topics   # eth_getLogs topic filter (events.network_filter), None: every registry log
        self.range = initial_range
        self.max_range = max_range
        self.target_logs = target_logs
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._sleep = sleep

    def _call(self, method: str, params: list[Any]) -> Any:  # the JSON "result"
        delay = self.backoff
        for attempt in itertools.count():
            try:
                return self.rpc.call(method, params)
            except RpcUnavailable:
                if attempt >= self.retries:
                    raise
                log.info("RPC %s unavailable, retry %d/%d in %.2fs", method, attempt + 1, self.retries, delay)
                self._sleep(delay)
                delay = min(delay * 2, self.max_backoff)
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close the HTTP session (no call may be running)."""
        self.rpc.close()

    def chain_id(self) -> int:
        return int(self._call("eth_chainId", []), 16)

    def head(self) -> int:
        return int(self._call("eth_blockNumber", []), 16)

    def block_hash(self, number: int) -> bytes | None:
        block = self._call("eth_getBlockByNumber", [hex(number), False])
        return bytes.fromhex(block["hash"][2:]) if block else None

    def get_logs(self, from_block: int, to_block: int) -> list[dict]:
        params: dict[str, Any] = {"address": self.registry, "fromBlock": hex(from_block), "toBlock": hex(to_block)}
        if self.topics is not None:
            params["topics"] = self.topics
        return self._call("eth_getLogs", [params])

    def ranges(self, from_block: int, to_block: int) -> Iterator[tuple[int, list[dict]]]:
        """Yield ``(range_end, logs)`` covering [from_block, to_block] in order, sizing ranges adaptively."""
        start = from_block
        while start <= to_block:
            end = min(to_block, start + self.range - 1)
            try:
                logs = self.get_logs(start, end)
            except RpcError as exc:
                msg = exc.rpc_message.lower()
                if end > start and any(s in msg for s in _TOO_MUCH):
                    self.range = max(1, (end - start + 1) // 2)
                    log.info("eth_getLogs refused %d blocks (%s); trying %d", end - start + 1, exc.rpc_message,
                             self.range)
                    continue
                raise
            n = len(logs)
            span = end - start + 1
            if n > self.target_logs:
                self.range = max(1, span * self.target_logs // n)
            elif n < self.target_logs // 4 and span == self.range:
                self.range = min(self.max_range, self.range * 2)
            yield end, logs
            start = end + 1


def _canonical(logs: list[dict]) -> list[tuple]:
    return sorted((str(x.get("blockNumber")).lower(), str(x.get("logIndex")).lower(), str(x.get("blockHash")).lower(),
                   tuple(str(t).lower() for t in x.get("topics") or []), str(x.get("data")).lower(),
                   str(x.get("address")).lower()) for x in logs)


def _suspects(answers: dict[str, Any]) -> list[str]:
    """The URLs outside the largest group of equal answers; with no strict majority, those that differ from
    the first URL's answer."""
    groups: dict[Any, list[str]] = {}
    for url, a in answers.items():
        groups.setdefault(a, []).append(url)
    ranked = sorted(groups.values(), key=len, reverse=True)
    if len(ranked) > 1 and len(ranked[0]) > len(ranked[1]):
        return [u for g in ranked[1:] for u in g]
    first = next(iter(answers.values()))
    return [u for u, a in answers.items() if a != first]


class AgreeingReader:
    """A LogReader over several endpoints that accepts only what they all agree on (module docstring). The
    first reader sizes the ranges; ``rpc`` is its JsonRpc (the CLI's watch hooks onto it)."""

    def __init__(self, readers: list[LogReader]) -> None:
        if not readers:
            raise ValueError("AgreeingReader needs at least one LogReader")
        self.readers = readers
        self.rpc = readers[0].rpc
        self.disagreements = 0

    @property
    def urls(self) -> list[str]:
        return [r.rpc.url for r in self.readers]

    def _agree(self, what: str, answers: dict[str, Any], shown: Callable[[Any], str]) -> Any:
        values = list(answers.values())
        if all(v == values[0] for v in values[1:]):
            return values[0]
        self.disagreements += 1
        raise RpcDisagreement(what, _suspects(answers), {u: shown(a) for u, a in answers.items()})

    def chain_id(self) -> int:
        return self._agree("the chain id", {r.rpc.url: r.chain_id() for r in self.readers}, str)

    def head(self) -> int:
        return min(r.head() for r in self.readers)

    def block_hash(self, number: int) -> bytes | None:
        return self._agree(f"the hash of block {number}", {r.rpc.url: r.block_hash(number) for r in self.readers},
                           lambda h: "none" if h is None else "0x" + h.hex()[:16] + "..")

    def ranges(self, from_block: int, to_block: int) -> Iterator[tuple[int, list[dict]]]:
        first, others = self.readers[0], self.readers[1:]
        start = from_block
        for end, logs in first.ranges(from_block, to_block):
            answers = {first.rpc.url: tuple(_canonical(logs))}
            for r in others:
                theirs: list[dict] = []
                for _end, part in r.ranges(start, end):
                    theirs += part
                answers[r.rpc.url] = tuple(_canonical(theirs))
            self._agree(f"the registry's logs of blocks {start}-{end}", answers, lambda a: f"{len(a)} log(s)")
            yield end, logs
            start = end + 1

    def close(self) -> None:
        for r in self.readers:
            r.close()
