#!/usr/bin/env python3
"""Load test for `swiftgpt serve`: many concurrent streaming chat completions.

    python3 Tools/serve/loadtest.py --model /tmp/qs7/dpo                 # start a server, 64 clients
    python3 Tools/serve/loadtest.py --url http://127.0.0.1:8080 --pid 1234  # a running server

Measures, against one server:
  1. single client: --single-requests sequential streaming chats -> tokens/s of one client;
  2. --rounds rounds of --clients concurrent streaming chats (each max_tokens --max-tokens,
     temperature 0.8, its own seed) -> aggregate completion tokens/s, time to first token
     (first non-empty content delta) p50/p99, total time, errors;
  3. the server's resident memory (VmRSS from /proc/PID/status) after each round.
Prints the speedup (concurrent tokens/s over single-client tokens/s; the goal is >= 4x).

Tokens are counted from the usage chunk (stream_options.include_usage). Every request has a timeout
(--request-timeout) and the whole run has one (--overall-timeout). Only loopback servers are used.
Exit status 1 when any request failed, the run timed out, or a --min-speedup / --max-rss-growth-mb
bound was not met. With --json the human summary goes to stderr and stdout gets one JSON line.
"""

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import servelib  # noqa: E402

try:
    import httpx
except ImportError:
    sys.exit("httpx is needed: python3 -m pip install httpx (it also comes with the openai package)")

PROMPTS = ["Hi!", "Tell me a story.", "Hello there.", "What is a cat?", "Say something nice.", "How are you?"]
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def log(*a):
    print(*a, file=LOG, flush=True)


LOG = sys.stdout


def percentile(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))
    return s[k]


class Result:
    __slots__ = ("ok", "error", "ttft", "tokens", "duration", "finish")

    def __init__(self):
        self.ok, self.error, self.ttft, self.tokens, self.duration, self.finish = False, None, None, 0, 0.0, None


async def one_chat(client, base_url, model, headers, index, args, seed):
    """One streaming chat completion; never raises, returns a Result."""
    res = Result()
    body = {
        "model": model,
        "messages": [{"role": "user", "content": PROMPTS[index % len(PROMPTS)]}],
        "max_tokens": args.max_tokens,
        "temperature": args.temperature,
        "seed": seed,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    t0 = time.perf_counter()
    try:
        async with client.stream("POST", base_url + "/v1/chat/completions", json=body, headers=headers) as r:
            if r.status_code != 200:
                text = (await r.aread())[:200]
                res.error = f"HTTP {r.status_code}: {text!r}"
                return res
            done, usage = False, None
            async for line in r.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    done = True
                    break
                chunk = json.loads(data)
                if chunk.get("usage"):
                    usage = chunk["usage"]
                for c in chunk.get("choices") or []:
                    if (c.get("delta") or {}).get("content") and res.ttft is None:
                        res.ttft = time.perf_counter() - t0
                    if c.get("finish_reason"):
                        res.finish = c["finish_reason"]
            res.duration = time.perf_counter() - t0
            if not done:
                res.error = "stream ended without data: [DONE]"
            elif usage is None:
                res.error = "no usage chunk despite stream_options.include_usage"
            elif res.finish is None:
                res.error = "no finish_reason"
            else:
                res.tokens = int(usage.get("completion_tokens", 0))
                res.ok = True
    except (httpx.HTTPError, OSError, ValueError) as e:
        res.error = f"{type(e).__name__}: {e}"
    return res


async def bounded_chat(client, base_url, model, headers, index, args, seed):
    try:
        return await asyncio.wait_for(one_chat(client, base_url, model, headers, index, args, seed), args.request_timeout)
    except asyncio.TimeoutError:
        r = Result()
        r.error = f"timed out after {args.request_timeout} s"
        return r


async def run_round(client, base_url, model, headers, args, clients, seed_base):
    """`clients` chats at once; returns (results, wall seconds)."""
    t0 = time.perf_counter()
    results = await asyncio.gather(*(bounded_chat(client, base_url, model, headers, i, args, seed_base + i)
                                     for i in range(clients)))
    return results, time.perf_counter() - t0


def summarize(results, wall):
    toks = sum(r.tokens for r in results if r.ok)
    ttfts = [r.ttft for r in results if r.ok and r.ttft is not None]
    errors = [r.error for r in results if not r.ok]
    return {
        "tokens": toks,
        "wall": wall,
        "tps": toks / wall if wall > 0 else 0.0,
        "ttfts": ttfts,
        "errors": errors,
    }


async def load_test(args, base_url, pid):
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    limits = httpx.Limits(max_connections=args.clients + 8, max_keepalive_connections=args.clients + 8)
    timeout = httpx.Timeout(args.request_timeout, connect=10.0)
    async with httpx.AsyncClient(limits=limits, timeout=timeout, trust_env=False) as client:
        # The model id: given, or the first one the server lists.
        model = args.model_id
        if model is None:
            r = await client.get(base_url + "/v1/models", headers=headers)
            r.raise_for_status()
            model = r.json()["data"][0]["id"]
        log(f"model {model!r}, {args.clients} clients x max_tokens {args.max_tokens}, {args.rounds} rounds")

        # Warm-up (not measured): the first request may pay for lazy set-up.
        warm = await bounded_chat(client, base_url, model, headers, 0, args, 1)
        if not warm.ok:
            log(f"warm-up request failed: {warm.error}")

        # 1. One client, a few sequential requests.
        single = [await bounded_chat(client, base_url, model, headers, i, args, 1000 + i)
                  for i in range(args.single_requests)]
        single_wall = sum(r.duration for r in single if r.ok)
        single_tokens = sum(r.tokens for r in single if r.ok)
        single_errors = [r.error for r in single if not r.ok]
        single_tps = single_tokens / single_wall if single_wall > 0 else 0.0
        single_ttft = [r.ttft for r in single if r.ok and r.ttft is not None]
        log(f"single client: {single_tokens} tokens in {single_wall:.2f} s = {single_tps:.1f} tokens/s"
            + (f", TTFT p50 {percentile(single_ttft, 50) * 1000:.0f} ms" if single_ttft else "")
            + (f", {len(single_errors)} errors" if single_errors else ""))

        # 2. Concurrent rounds, RSS after each.
        rounds, rss = [], []
        for k in range(args.rounds):
            results, wall = await run_round(client, base_url, model, headers, args, args.clients, args.seed + k * args.clients)
            s = summarize(results, wall)
            rounds.append(s)
            mem = servelib.rss_mb(pid) if pid else None
            rss.append(round(mem, 1) if mem is not None else None)
            ttft_txt = (f"TTFT p50 {percentile(s['ttfts'], 50) * 1000:.0f} ms p99 {percentile(s['ttfts'], 99) * 1000:.0f} ms"
                        if s["ttfts"] else "no TTFT")
            log(f"round {k + 1}: {args.clients} clients, {s['tokens']} tokens in {wall:.2f} s = {s['tps']:.1f} tokens/s, "
                f"{ttft_txt}, {len(s['errors'])} errors" + (f", RSS {mem:.1f} MiB" if mem is not None else ""))
            for e in sorted(set(s["errors"]))[:5]:
                log(f"    error x{s['errors'].count(e)}: {e}")
    return single_tps, single_errors, rounds, rss


def main():
    global LOG
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=servelib.DEFAULT_BINARY, help="the swiftgpt executable (default: .build/release/swiftgpt)")
    ap.add_argument("--model", help="run folder to serve (starts a server)")
    ap.add_argument("--url", help="use a running loopback server instead, e.g. http://127.0.0.1:8080")
    ap.add_argument("--pid", type=int, help="with --url: the server's process id, for the RSS readings")
    ap.add_argument("--api-key", help="API key (passed to the started server too)")
    ap.add_argument("--model-id", help="model name for requests (default: the first one /v1/models lists)")
    ap.add_argument("--server-arg", action="append", default=[], help="extra argument for `swiftgpt serve` (repeatable)")
    ap.add_argument("--max-concurrent", type=int, help="passed to the started server as --max-concurrent")
    ap.add_argument("--clients", type=int, default=64, help="concurrent clients per round (default 64)")
    ap.add_argument("--max-tokens", type=int, default=32, help="max_tokens per request (default 32)")
    ap.add_argument("--temperature", type=float, default=0.8, help="sampling temperature (default 0.8)")
    ap.add_argument("--seed", type=int, default=42, help="seed of client 0; client i uses seed+i (+ round offset)")
    ap.add_argument("--rounds", type=int, default=3, help="concurrent rounds (default 3)")
    ap.add_argument("--single-requests", type=int, default=3, help="sequential requests for the single-client rate (default 3)")
    ap.add_argument("--request-timeout", type=float, default=120.0, help="seconds per request (default 120)")
    ap.add_argument("--overall-timeout", type=float, default=900.0, help="seconds for the whole test (default 900)")
    ap.add_argument("--startup-timeout", type=float, default=180.0, help="seconds to wait for the server's /health")
    ap.add_argument("--min-speedup", type=float, default=0.0, help="fail when the speedup is below this (default: report only)")
    ap.add_argument("--max-rss-growth-mb", type=float, help="fail when RSS grows more than this from round 1 to the last")
    ap.add_argument("--json", action="store_true", help="print one JSON line on stdout (the summary goes to stderr)")
    args = ap.parse_args()

    if args.json:
        LOG = sys.stderr
    if not args.url and not args.model:
        ap.error("give --model RUN (to start a server) or --url (to use a running one)")
    if args.url:
        host = urllib.parse.urlsplit(args.url).hostname
        if host not in LOOPBACK:
            ap.error(f"--url must be a loopback address (127.0.0.1, localhost, ::1), not {host!r}")
    if min(args.clients, args.max_tokens, args.rounds, args.single_requests) < 1:
        ap.error("--clients, --max-tokens, --rounds and --single-requests must be positive")
    servelib.install_signal_handlers()

    server = None
    try:
        extra = ["--max-concurrent", str(args.max_concurrent)] if args.max_concurrent else []
        server, base_url = servelib.start_or_attach(args, extra, quiet=args.json, report=log)
        if base_url is None:
            return 1
        pid = server.pid if server is not None else args.pid
        try:
            single_tps, single_errors, rounds, rss = asyncio.run(
                asyncio.wait_for(load_test(args, base_url, pid), args.overall_timeout))
        except asyncio.TimeoutError:
            log(f"FAIL: the load test did not finish within --overall-timeout {args.overall_timeout} s")
            return 1
        if server is not None and server.proc is not None and server.proc.poll() is not None:
            log(f"FAIL: the server exited during the test (status {server.proc.returncode})")
            server.print_log_tail()
            return 1
    finally:
        if server is not None:
            server.stop()

    # Summary over all rounds.
    all_ttft = [t for s in rounds for t in s["ttfts"]]
    errors = len(single_errors) + sum(len(s["errors"]) for s in rounds)
    tps = statistics.median(s["tps"] for s in rounds)
    speedup = tps / single_tps if single_tps > 0 else 0.0
    p50 = percentile(all_ttft, 50) * 1000 if all_ttft else None
    p99 = percentile(all_ttft, 99) * 1000 if all_ttft else None
    growth = None
    if len(rss) >= 2 and rss[0] is not None and rss[-1] is not None:
        growth = rss[-1] - rss[0]

    log("")
    log(f"clients {args.clients}, rounds {args.rounds}, max_tokens {args.max_tokens}")
    log(f"aggregate throughput (median of rounds): {tps:.1f} tokens/s; single client {single_tps:.1f} tokens/s; "
        f"speedup {speedup:.2f}x (goal >= 4x)")
    if all_ttft:
        log(f"time to first token: p50 {p50:.0f} ms, p99 {p99:.0f} ms; total time per round "
            + ", ".join(f"{s['wall']:.2f} s" for s in rounds))
    log(f"errors: {errors}")
    log("RSS after each round (MiB): " + (", ".join("?" if m is None else f"{m:.1f}" for m in rss))
        + (f"; growth from round 1 to {len(rss)}: {growth:+.1f} MiB" if growth is not None else ""))

    failures = []
    if errors:
        failures.append(f"{errors} requests failed")
    if args.min_speedup and speedup < args.min_speedup:
        failures.append(f"speedup {speedup:.2f}x < --min-speedup {args.min_speedup}")
    if args.max_rss_growth_mb is not None and growth is not None and growth > args.max_rss_growth_mb:
        failures.append(f"RSS grew {growth:.1f} MiB > --max-rss-growth-mb {args.max_rss_growth_mb}")
    log("RESULT: " + ("PASS" if not failures else "FAIL (" + "; ".join(failures) + ")"))

    if args.json:
        print(json.dumps({
            "clients": args.clients,
            "rounds": args.rounds,
            "max_tokens": args.max_tokens,
            "tokens_per_sec": round(tps, 2),
            "tokens_per_sec_per_round": [round(s["tps"], 2) for s in rounds],
            "single_client_tokens_per_sec": round(single_tps, 2),
            "speedup": round(speedup, 3),
            "ttft_p50_ms": round(p50, 1) if p50 is not None else None,
            "ttft_p99_ms": round(p99, 1) if p99 is not None else None,
            "errors": errors,
            "rss_mb_per_round": rss,
        }), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
