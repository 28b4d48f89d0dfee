#!/usr/bin/env python3
"""End-to-end test of `swiftgpt serve` from the outside, through the official `openai` Python package
and through raw HTTP.

    python3 Tools/serve/e2e_openai.py --model /tmp/qs7/dpo [--api-key sekrit]
    python3 Tools/serve/e2e_openai.py --url http://127.0.0.1:8080 --model-id dpo   # a running server

Starts the server binary on a free loopback port (unless --url is given), waits for GET /health,
runs every check, prints one PASS/FAIL/SKIP line per check, always stops the server, and exits 1
when any check failed. Most requests ask for --max-tokens (default 8) tokens and none for more than
16, so on a tiny model the whole run takes seconds. Checks can be left out by name with --skip NAME (repeatable).
"""

import argparse
import http.client
import json
import os
import re
import select
import socket
import sys
import threading
import time
import traceback
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import servelib  # noqa: E402

try:
    import openai
except ImportError:
    sys.exit("the official openai package is needed: python3 -m pip install openai")


# ---------------------------------------------------------------------------------------------
# A tiny check framework: every check is a function that raises CheckFailed (or any exception)
# to fail, Skip to be skipped, and may return a short detail string for the PASS line.

class CheckFailed(Exception):
    pass


class Skip(Exception):
    pass


def expect(cond, message):
    if not cond:
        raise CheckFailed(message)


class Runner:
    def __init__(self, skip=(), verbose=False):
        self.skip = set(skip)
        self.verbose = verbose
        self.passed, self.failed, self.skipped = [], [], []

    def run(self, name, fn):
        if name in self.skip:
            self.skipped.append(name)
            print(f"SKIP {name} (--skip)", flush=True)
            return
        t0 = time.monotonic()
        try:
            detail = fn()
        except Skip as e:
            self.skipped.append(name)
            print(f"SKIP {name}: {e}", flush=True)
            return
        except CheckFailed as e:
            self.failed.append(name)
            print(f"FAIL {name}: {e}", flush=True)
            return
        except Exception as e:  # an unexpected exception is a failure too, with its type
            self.failed.append(name)
            print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
            if self.verbose:
                traceback.print_exc()
            return
        ms = (time.monotonic() - t0) * 1000
        suffix = f" ({detail})" if detail else ""
        print(f"PASS {name} [{ms:.0f} ms]{suffix}", flush=True)
        self.passed.append(name)


# ---------------------------------------------------------------------------------------------
# Raw HTTP helpers (standard library only).

def raw_request(base_url, method, path, body=None, headers=None, timeout=30.0):
    """One request on a fresh connection; returns (status, headers dict (lower-case names), body bytes).
    `path` is sent exactly as given (no normalisation), which the path traversal checks rely on."""
    u = urllib.parse.urlsplit(base_url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        hdrs = dict(headers or {})
        if body is not None:
            hdrs.setdefault("Content-Length", str(len(body)))
        for k, v in hdrs.items():
            conn.putheader(k, v)
        conn.endheaders()
        if body is not None:
            conn.send(body)
        r = conn.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        conn.close()


def send_large_body(base_url, path, total_bytes, headers, declared_length=None, timeout=60.0, stall_seconds=5.0,
                    connection_close=False):
    """POSTs a body of `total_bytes` bytes (JSON-ish filler) on a raw socket while a second thread
    reads the response, so that an early reply (a 413 sent before the body is read) is seen even if
    the server then stops reading, closes or resets the connection. Sending stops when the server
    stops reading for `stall_seconds`. Returns (status or None, response bytes, a note on how the exchange ended)."""
    u = urllib.parse.urlsplit(base_url)
    sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
    received = bytearray()
    answered = threading.Event()  # the reader has a whole response, or the connection ended
    closed = []                   # how the reader ended: "closed", "reset" or "" (a whole response)

    def complete(data):
        # A whole response: the head, then Content-Length bytes or the last chunk of a chunked body.
        head, sep, body = bytes(data).partition(b"\r\n\r\n")
        if not sep:
            return False
        m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        if m:
            return len(body) >= int(m.group(1))
        if re.search(rb"(?im)^transfer-encoding:\s*chunked", head):
            return b"0\r\n\r\n" in body
        return False  # delimited by the close

    def reader():
        try:
            while not complete(received):
                chunk = sock.recv(65536)
                if not chunk:
                    closed.append("closed")
                    break
                received.extend(chunk)
        except OSError:
            closed.append("reset")
        answered.set()

    length = declared_length if declared_length is not None else total_bytes
    head = f"POST {path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nContent-Type: application/json\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head += f"Content-Length: {length}\r\n" + ("Connection: close\r\n" if connection_close else "") + "\r\n"
    t = threading.Thread(target=reader, daemon=True)
    deadline = time.monotonic() + timeout
    sent, answered_at = 0, None
    note = None
    try:
        sock.sendall(head.encode())
        t.start()
        block = b"[" + b"1," * 32767 + b"1]"  # 64 KiB of valid-looking JSON filler
        last_progress = time.monotonic()
        # Keep sending after an early answer too: a server may read and discard the rest (a
        # "lingering close") or close the connection; one that neither reads nor closes leaves a
        # client that writes its whole body before reading (httpx, the openai package) hanging.
        while sent < total_bytes:
            if answered_at is None and answered.is_set():
                answered_at = sent
            now = time.monotonic()
            if now > deadline:
                note = f"gave up after {timeout:.0f} s with {sent} bytes sent"
                break
            if now - last_progress > stall_seconds:
                note = (f"stalled: the server stopped reading after {sent} of {total_bytes} body bytes "
                        f"and kept the connection open for {stall_seconds:.0f} s")
                break
            # Send only what the socket takes now, so the loop keeps watching the clock and the answer.
            _, writable, _ = select.select([], [sock], [], 0.1)
            if writable:
                n = sock.send(block[: min(len(block), total_bytes - sent)])
                if n:
                    sent += n
                    last_progress = time.monotonic()
        # No shutdown(SHUT_WR) here: some servers take a half-close for a client that went away.
    except OSError as e:
        note = f"the server closed the connection after {sent} body bytes ({type(e).__name__})"
    answered.wait(max(0.0, deadline - time.monotonic()))
    if answered_at is None and answered.is_set() and sent < total_bytes:
        answered_at = sent
    parts = []
    if answered_at is not None:
        parts.append(f"answered after {answered_at} of {total_bytes} body bytes")
    parts.append(note or ("the rest of the body was read" if answered_at is not None else "the whole body was sent"))
    if closed:
        parts.append(f"connection {closed[0]} by the server")
    note = "; ".join(parts)
    sock.close()
    m = re.match(rb"HTTP/1\.[01] (\d{3})", bytes(received))
    return (int(m.group(1)) if m else None), bytes(received), note


def parse_sse(body):
    """Splits an SSE body into the `data:` payloads (strings), in order."""
    out = []
    for line in body.decode("utf-8").splitlines():
        if line.startswith("data:"):
            out.append(line[5:].strip())
    return out


def error_shape(status, body, expect_status=None, expect_code=None):
    """Checks OpenAI's error JSON shape {"error": {"message", "type", "param", "code"}} and returns the
    error object."""
    if expect_status is not None:
        allowed = expect_status if isinstance(expect_status, (tuple, list, set)) else (expect_status,)
        expect(status in allowed, f"status {status}, expected {'/'.join(map(str, allowed))}; body {body[:300]!r}")
    try:
        obj = json.loads(body)
    except ValueError:
        raise CheckFailed(f"error body is not JSON: {body[:300]!r}")
    expect(isinstance(obj, dict) and isinstance(obj.get("error"), dict), f"no 'error' object: {servelib.pretty(obj)}")
    err = obj["error"]
    missing = [k for k in ("message", "type", "param", "code") if k not in err]
    expect(not missing, f"error object lacks {missing}: {servelib.pretty(err)}")
    expect(isinstance(err["message"], str) and err["message"], f"error message is not a non-empty string: {servelib.pretty(err)}")
    expect(isinstance(err["type"], str), f"error type is not a string: {servelib.pretty(err)}")
    if expect_code is not None:
        expect(err["code"] == expect_code, f"error code {err['code']!r}, expected {expect_code!r}: {servelib.pretty(err)}")
    return err


# ---------------------------------------------------------------------------------------------
# The checks.

class E2E:
    def __init__(self, args, base_url, server):
        self.args = args
        self.base_url = base_url
        self.server = server
        self.max_tokens = args.max_tokens
        key = args.api_key or "no-key-needed"  # the client insists on a key; the server ignores it without --api-key
        self.client = openai.OpenAI(base_url=base_url + "/v1", api_key=key, max_retries=0, timeout=args.timeout)
        self.auth = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
        self.model = args.model_id  # filled in by check_models when not given
        self.greedy_text = None      # a greedy chat reply, for the stop-string checks
        self.vocab = self._load_vocab()
        self.context = self._load_context()

    def _load_vocab(self):
        if not self.args.model:
            return None
        path = servelib.find_tokenizer_json(self.args.model)
        if not path:
            return None
        try:
            with open(path) as f:
                return json.load(f).get("model", {}).get("vocab")
        except (OSError, ValueError):
            return None

    def _load_context(self):
        """The model's context length (n_positions in config.json), or None."""
        if not self.args.model:
            return None
        for sub in ("", "best", "last"):
            path = os.path.join(self.args.model, sub, "config.json")
            if os.path.isfile(path):
                try:
                    with open(path) as f:
                        return int(json.load(f).get("n_positions"))
                except (OSError, ValueError, TypeError):
                    return None
        return None

    def msgs(self, text="Hi!"):
        return [{"role": "user", "content": text}]

    def chat(self, **kw):
        kw.setdefault("model", self.model)
        kw.setdefault("messages", self.msgs())
        kw.setdefault("max_tokens", self.max_tokens)
        return self.client.chat.completions.create(**kw)

    def raw(self, method, path, body=None, headers=None, timeout=30.0):
        h = dict(self.auth)
        h.update(headers or {})
        return raw_request(self.base_url, method, path, body, h, timeout)

    def expect_usage(self, usage, max_completion, n=1):
        expect(usage is not None, "no usage")
        expect(usage.prompt_tokens > 0, f"prompt_tokens {usage.prompt_tokens} is not positive")
        expect(0 <= usage.completion_tokens <= max_completion * n,
               f"completion_tokens {usage.completion_tokens} not in [0, {max_completion * n}]")
        expect(usage.total_tokens == usage.prompt_tokens + usage.completion_tokens,
               f"total_tokens {usage.total_tokens} != {usage.prompt_tokens} + {usage.completion_tokens}")

    def expect_bad_request(self, fn, code=None, param=None, statuses=(400,)):
        """Runs fn, which must raise the client's error for one of `statuses`; returns the error."""
        try:
            r = fn()
        except openai.APIStatusError as e:
            expect(e.status_code in statuses, f"status {e.status_code}, expected {statuses}: {e.message}")
            body = e.body if isinstance(e.body, dict) else {}
            for k in ("message", "type", "param", "code"):
                expect(k in body, f"error object lacks {k!r}: {servelib.pretty(e.body)}")
            if code is not None:
                expect(e.code == code, f"error code {e.code!r}, expected {code!r}: {servelib.pretty(e.body)}")
            if param is not None:
                expect(e.param == param or param in (e.message or ""),
                       f"error neither has param {param!r} nor mentions it: {servelib.pretty(e.body)}")
            return e
        raise CheckFailed(f"no error raised; got {servelib.pretty(r.model_dump() if hasattr(r, 'model_dump') else r)}")

    def collect_chat_stream(self, **kw):
        """Runs a streaming chat and gathers it: per-choice text, finish reasons, roles, logprob
        entries, usage, chunk ids."""
        out = {"text": {}, "finish": {}, "roles": {}, "logprobs": {}, "usage": None, "ids": set(),
               "chunks": 0, "after_usage": 0, "objects": set()}
        for chunk in self.chat(stream=True, **kw):
            out["chunks"] += 1
            out["ids"].add(chunk.id)
            out["objects"].add(chunk.object)
            if out["usage"] is not None:
                out["after_usage"] += 1
            if chunk.usage is not None:
                out["usage"] = chunk.usage
                expect(chunk.choices == [], f"the usage chunk has choices: {servelib.pretty(chunk.model_dump())}")
            for c in chunk.choices:
                i = c.index
                if c.delta.role:
                    out["roles"].setdefault(i, c.delta.role)
                if c.delta.content:
                    out["text"][i] = out["text"].get(i, "") + c.delta.content
                if c.logprobs is not None and c.logprobs.content:
                    out["logprobs"].setdefault(i, []).extend(c.logprobs.content)
                if c.finish_reason is not None:
                    expect(i not in out["finish"], f"choice {i} got two finish_reasons")
                    out["finish"][i] = c.finish_reason
        return out

    # -- health, models, static ---------------------------------------------------------------

    def check_health(self):
        status, _, body = raw_request(self.base_url, "GET", "/health")  # no key: health should be public
        if status == 401 and self.args.api_key:
            status, _, body = self.raw("GET", "/health")
        expect(status == 200, f"GET /health -> {status} {body[:200]!r}")

    def check_models(self):
        models = self.client.models.list()
        ids = [m.id for m in models.data]
        expect(ids, "no models listed")
        for m in models.data:
            expect(m.object == "model", f"object {m.object!r}, expected 'model'")
        if self.args.model:
            want = servelib.model_id_candidates(self.args.model)
            expect(any(i in want for i in ids), f"model ids {ids}, expected one of {want}")
        if self.model is None:
            self.model = ids[0]
        expect(self.model in ids, f"model {self.model!r} not among {ids}")
        return f"ids {ids}"

    def check_model_retrieve(self):
        m = self.client.models.retrieve(self.model)
        expect(m.id == self.model, f"retrieved id {m.id!r}")

    def check_chat_page(self):
        status, headers, body = raw_request(self.base_url, "GET", "/")
        expect(status == 200, f"GET / -> {status}")
        expect("text/html" in headers.get("content-type", ""), f"content-type {headers.get('content-type')!r}")
        # The page may build its elements in script, so their ids are only reported here;
        # browser_test.py checks the page for real.
        html = body.decode("utf-8", "replace")
        found = [i for i in ("input", "send", "messages") if f'id="{i}"' in html or f"id='{i}'" in html]
        return f"{len(body)} bytes, ids in the HTML: {found}"

    # -- chat completions ------------------------------------------------------------------------

    def check_chat_plain(self):
        r = self.chat(messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello!"}],
                      temperature=0.8, seed=1)
        expect(r.object == "chat.completion", f"object {r.object!r}")
        expect(isinstance(r.id, str) and r.id, "no id")
        expect(isinstance(r.created, int), "created is not an int")
        expect(len(r.choices) == 1, f"{len(r.choices)} choices")
        c = r.choices[0]
        expect(c.index == 0, f"index {c.index}")
        expect(c.message.role == "assistant", f"role {c.message.role!r}")
        expect(isinstance(c.message.content, str), f"content is {type(c.message.content).__name__}")
        expect(c.finish_reason in ("stop", "length"), f"finish_reason {c.finish_reason!r}")
        self.expect_usage(r.usage, self.max_tokens)
        if c.finish_reason == "length" and r.usage.completion_tokens != self.max_tokens:
            # Only a full context window may end a sequence early with "length".
            full = self.context is not None and r.usage.total_tokens >= self.context
            expect(full, f"finish_reason length but completion_tokens {r.usage.completion_tokens} != max_tokens "
                         f"{self.max_tokens} and the context ({self.context}) is not full")
        return f"{r.usage.prompt_tokens}+{r.usage.completion_tokens} tokens, {c.finish_reason}: {c.message.content[:40]!r}"

    def check_chat_max_completion_tokens(self):
        r = self.chat(max_tokens=openai.NOT_GIVEN, max_completion_tokens=3, temperature=0.8, seed=2)
        expect(r.usage.completion_tokens <= 3, f"completion_tokens {r.usage.completion_tokens} > 3")
        self.expect_usage(r.usage, 3)

    def check_chat_content_parts(self):
        r = self.chat(messages=[{"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "!"}]}],
                      temperature=0)
        expect(isinstance(r.choices[0].message.content, str), "no content")

    def check_chat_multi_turn(self):
        r = self.chat(messages=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},
                                {"role": "user", "content": "Bye"}], temperature=0)
        expect(isinstance(r.choices[0].message.content, str), "no content")

    def check_chat_unknown_fields_ignored(self):
        r = self.chat(temperature=0, extra_body={"some_unknown_field": {"x": 1}})
        expect(isinstance(r.choices[0].message.content, str), "no content")

    def check_chat_greedy_deterministic(self):
        a = self.chat(temperature=0, max_tokens=16)
        b = self.chat(temperature=0, max_tokens=16)
        expect(a.choices[0].message.content == b.choices[0].message.content,
               f"two greedy replies differ: {a.choices[0].message.content!r} vs {b.choices[0].message.content!r}")
        self.greedy_text = a.choices[0].message.content
        self.greedy_finish = a.choices[0].finish_reason
        return repr(self.greedy_text[:50])

    def check_chat_seed_deterministic(self):
        kw = dict(temperature=1.0, top_p=0.95, seed=1234)
        a = self.chat(**kw).choices[0].message.content
        b = self.chat(**kw).choices[0].message.content
        expect(a == b, f"same seed, different replies: {a!r} vs {b!r}")

    def check_chat_sampling_fields(self):
        r = self.chat(temperature=0.7, top_p=0.9, presence_penalty=0.5, frequency_penalty=0.5, seed=3)
        self.expect_usage(r.usage, self.max_tokens)

    def check_chat_logit_bias(self):
        # A +100 bias makes one token all but certain at every step: the reply must be that token
        # repeated. The id is 'a' from the run's tokenizer.json when there is one, else 97.
        tid = 97
        if self.vocab and "a" in self.vocab:
            tid = self.vocab["a"]
        r = self.chat(temperature=0, logit_bias={str(tid): 100}, logprobs=True, max_tokens=5)
        c = r.choices[0]
        toks = [e.token for e in (c.logprobs.content if c.logprobs else [])]
        expect(len(toks) == 5, f"{len(toks)} logprob entries, expected 5 (finish {c.finish_reason})")
        expect(len(set(toks)) == 1, f"tokens differ despite logit_bias +100 on id {tid}: {toks}")
        expect(c.message.content == toks[0] * 5, f"content {c.message.content!r} != token {toks[0]!r} × 5")
        return f"id {tid} -> {toks[0]!r}"

    def check_chat_stream(self):
        s = self.collect_chat_stream(temperature=0.8, seed=5, stream_options={"include_usage": True})
        expect(s["objects"] == {"chat.completion.chunk"}, f"chunk objects {s['objects']}")
        expect(len(s["ids"]) == 1, f"chunks carry {len(s['ids'])} different ids")
        expect(s["roles"].get(0) == "assistant", f"first delta role {s['roles'].get(0)!r}")
        expect(s["finish"].get(0) in ("stop", "length"), f"finish_reason {s['finish'].get(0)!r}")
        expect(s["usage"] is not None, "include_usage but no usage chunk")
        expect(s["after_usage"] == 0, f"{s['after_usage']} chunks after the usage chunk")
        self.expect_usage(s["usage"], self.max_tokens)
        return f"{s['chunks']} chunks, {s['usage'].completion_tokens} tokens: {s['text'].get(0, '')[:40]!r}"

    def check_chat_stream_no_usage(self):
        s = self.collect_chat_stream(temperature=0.8, seed=6)
        expect(s["usage"] is None, "usage chunk sent without stream_options.include_usage")
        expect(0 in s["finish"], "no finish_reason")

    def check_chat_stream_matches_plain(self):
        plain = self.chat(temperature=0, max_tokens=16).choices[0]
        s = self.collect_chat_stream(temperature=0, max_tokens=16)
        expect(s["text"].get(0, "") == plain.message.content,
               f"streamed {s['text'].get(0, '')!r} != plain {plain.message.content!r}")
        expect(s["finish"].get(0) == plain.finish_reason, f"finish {s['finish'].get(0)!r} != {plain.finish_reason!r}")

    def check_chat_stream_raw_sse(self):
        body = json.dumps({"model": self.model, "messages": self.msgs(), "max_tokens": self.max_tokens,
                           "stream": True, "stream_options": {"include_usage": True}}).encode()
        status, headers, data = self.raw("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
        expect(status == 200, f"status {status}: {data[:200]!r}")
        expect(headers.get("content-type", "").startswith("text/event-stream"), f"content-type {headers.get('content-type')!r}")
        events = parse_sse(data)
        expect(events and events[-1] == "[DONE]", f"stream does not end with data: [DONE] (last {events[-1:]!r})")
        expect(events.count("[DONE]") == 1, "more than one [DONE]")
        for e in events[:-1]:
            json.loads(e)  # every other event is a JSON chunk
        # Events are separated by blank lines ("data: ...\n\n").
        expect(b"\n\n" in data, "events are not separated by blank lines")
        return f"{len(events)} events"

    def check_chat_logprobs(self):
        r = self.chat(temperature=0, logprobs=True, top_logprobs=3, max_tokens=6)
        c = r.choices[0]
        expect(c.logprobs is not None and c.logprobs.content is not None, "no logprobs.content")
        entries = c.logprobs.content
        expect(len(entries) == r.usage.completion_tokens,
               f"{len(entries)} logprob entries for {r.usage.completion_tokens} completion tokens")
        for e in entries:
            expect(isinstance(e.token, str), "token is not a string")
            expect(e.logprob <= 1e-4, f"logprob {e.logprob} > 0")
            expect(len(e.top_logprobs) == 3, f"{len(e.top_logprobs)} top_logprobs, expected 3")
            lps = [t.logprob for t in e.top_logprobs]
            expect(all(a >= b - 1e-6 for a, b in zip(lps, lps[1:])), f"top_logprobs not sorted: {lps}")
            # Greedy: the chosen token is the most likely one.
            expect(e.top_logprobs[0].token == e.token and abs(e.top_logprobs[0].logprob - e.logprob) < 1e-3,
                   f"greedy token {e.token!r} ({e.logprob}) is not top_logprobs[0] {e.top_logprobs[0].token!r} ({e.top_logprobs[0].logprob})")
        # The tokens put together give the content (through their bytes when given).
        if entries and all(e.bytes is not None for e in entries):
            joined = b"".join(bytes(e.bytes) for e in entries).decode("utf-8", "replace")
        else:
            joined = "".join(e.token for e in entries)
        expect(joined == c.message.content, f"tokens join to {joined!r}, content is {c.message.content!r}")
        return f"{len(entries)} tokens, first {entries[0].token!r} {entries[0].logprob:.3f}" if entries else "no tokens"

    def check_chat_stream_logprobs(self):
        s = self.collect_chat_stream(temperature=0.8, seed=8, logprobs=True, top_logprobs=2,
                                     stream_options={"include_usage": True})
        entries = s["logprobs"].get(0, [])
        expect(s["usage"] is not None, "include_usage but no usage chunk")
        expect(len(entries) == s["usage"].completion_tokens,
               f"{len(entries)} streamed logprob entries for {s['usage'].completion_tokens} tokens")
        expect(all(len(e.top_logprobs) == 2 for e in entries), "top_logprobs count != 2")

    def check_chat_n2(self):
        r = self.chat(n=2, temperature=1.0, seed=9)
        expect(len(r.choices) == 2, f"{len(r.choices)} choices")
        expect(sorted(c.index for c in r.choices) == [0, 1], f"indices {[c.index for c in r.choices]}")
        for c in r.choices:
            expect(isinstance(c.message.content, str), "content is not a string")
            expect(c.finish_reason in ("stop", "length"), f"finish_reason {c.finish_reason!r}")
        self.expect_usage(r.usage, self.max_tokens, n=2)
        return " | ".join(repr(c.message.content[:25]) for c in r.choices)

    def check_chat_n2_stream(self):
        s = self.collect_chat_stream(n=2, temperature=1.0, seed=10, stream_options={"include_usage": True})
        expect(sorted(s["finish"]) == [0, 1], f"finish_reasons for choices {sorted(s['finish'])}")
        self.expect_usage(s["usage"], self.max_tokens, n=2)

    def _stop_setup(self):
        if self.greedy_text is None:
            self.check_chat_greedy_deterministic()
        t = self.greedy_text
        if len(t) < 4:
            raise Skip(f"the greedy reply {t!r} is too short to cut with a stop string")
        # A stop string from the middle of the greedy reply: generation must end right before its first
        # occurrence, with finish_reason "stop", and the stop string must not be in the output.
        i = len(t) // 2
        stop = t[i:i + 2]
        return stop, t[: t.find(stop)]

    def check_chat_stop(self):
        stop, want = self._stop_setup()
        r = self.chat(temperature=0, max_tokens=16, stop=[stop, "\u2603never\u2603"])
        c = r.choices[0]
        expect(c.message.content == want, f"stop {stop!r}: got {c.message.content!r}, expected {want!r}")
        expect(c.finish_reason == "stop", f"finish_reason {c.finish_reason!r}")
        return f"stop {stop!r} -> {want!r}"

    def check_chat_stop_stream(self):
        stop, want = self._stop_setup()
        s = self.collect_chat_stream(temperature=0, max_tokens=16, stop=stop)
        got = s["text"].get(0, "")
        expect(got == want, f"stop {stop!r}: streamed {got!r}, expected {want!r} (held-back text leaked?)")
        expect(s["finish"].get(0) == "stop", f"finish_reason {s['finish'].get(0)!r}")

    def check_chat_concurrent(self):
        # A few requests at once (the load test does many): all must succeed.
        results, errors = [None] * 4, []

        def one(i):
            try:
                results[i] = self.chat(temperature=0.8, seed=100 + i).choices[0].message.content
            except Exception as e:  # noqa: BLE001 — reported below
                errors.append(f"{type(e).__name__}: {e}")
        threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(self.args.timeout)
        expect(not errors, f"errors: {errors}")
        expect(all(isinstance(r, str) for r in results), f"results {results}")

    # -- legacy completions ----------------------------------------------------------------------

    def completion(self, **kw):
        kw.setdefault("model", self.model)
        kw.setdefault("prompt", "Once upon a time")
        kw.setdefault("max_tokens", self.max_tokens)
        return self.client.completions.create(**kw)

    def check_completions_plain(self):
        r = self.completion(temperature=0.8, seed=11)
        expect(r.object == "text_completion", f"object {r.object!r}")
        expect(len(r.choices) == 1, f"{len(r.choices)} choices")
        c = r.choices[0]
        expect(isinstance(c.text, str), "text is not a string")
        expect(c.finish_reason in ("stop", "length"), f"finish_reason {c.finish_reason!r}")
        self.expect_usage(r.usage, self.max_tokens)
        return f"{r.usage.completion_tokens} tokens: {c.text[:40]!r}"

    def check_completions_stream(self):
        text, finish, usage, n = "", None, None, 0
        for chunk in self.completion(stream=True, temperature=0, stream_options={"include_usage": True}):
            n += 1
            if chunk.usage is not None:
                usage = chunk.usage
            for c in chunk.choices:
                text += c.text or ""
                if c.finish_reason is not None:
                    finish = c.finish_reason
        expect(finish in ("stop", "length"), f"finish_reason {finish!r}")
        expect(usage is not None, "include_usage but no usage chunk")
        self.expect_usage(usage, self.max_tokens)
        plain = self.completion(temperature=0).choices[0].text
        expect(text == plain, f"streamed {text!r} != plain {plain!r}")
        return f"{n} chunks: {text[:40]!r}"

    def check_completions_logprobs(self):
        r = self.completion(temperature=0, logprobs=2, max_tokens=5)
        lp = r.choices[0].logprobs
        expect(lp is not None, "no logprobs")
        expect(len(lp.tokens) == r.usage.completion_tokens, f"{len(lp.tokens)} tokens for {r.usage.completion_tokens}")
        expect(len(lp.token_logprobs) == len(lp.tokens), "token_logprobs length")
        expect(all(x <= 1e-4 for x in lp.token_logprobs), f"positive logprob in {lp.token_logprobs}")
        expect(all(1 <= len(d) <= 2 for d in lp.top_logprobs), f"top_logprobs sizes {[len(d) for d in lp.top_logprobs]}")
        expect(len(lp.text_offset) == len(lp.tokens), "text_offset length")
        expect("".join(lp.tokens) == r.choices[0].text, f"tokens {lp.tokens} do not join to the text {r.choices[0].text!r}")

    def check_completions_echo(self):
        r = self.completion(temperature=0, echo=True, max_tokens=3)
        expect(r.choices[0].text.startswith("Once upon a time"), f"echo text {r.choices[0].text!r}")

    def check_completions_prompt_list(self):
        try:
            r = self.completion(prompt=["Once", "The king"], temperature=0.8, seed=12, max_tokens=4)
        except openai.BadRequestError as e:
            # OpenAI accepts a list of prompts; a server may choose not to (and say so with a 400).
            raise Skip(f"the server refuses prompt lists: {e.message[:100]}")
        expect(len(r.choices) == 2, f"{len(r.choices)} choices for two prompts")
        expect(sorted(c.index for c in r.choices) == [0, 1], f"indices {[c.index for c in r.choices]}")

    def check_completions_stop(self):
        # A prompt whose greedy continuation is long enough to cut (a chat-tuned model may end a
        # plain-text prompt at once).
        for prompt in ("Once upon a time", "Tara has", "The", "Hello, my name is"):
            full = self.completion(prompt=prompt, temperature=0, max_tokens=16).choices[0].text
            if len(full) >= 4:
                break
        else:
            raise Skip(f"greedy completions too short to cut (last {full!r})")
        stop = full[len(full) // 2: len(full) // 2 + 2]
        r = self.completion(prompt=prompt, temperature=0, max_tokens=16, stop=stop)
        want = full[: full.find(stop)]
        expect(r.choices[0].text == want, f"stop {stop!r}: {r.choices[0].text!r}, expected {want!r}")
        expect(r.choices[0].finish_reason == "stop", f"finish_reason {r.choices[0].finish_reason!r}")

    # -- errors through the client ---------------------------------------------------------------

    def check_err_context_length(self):
        # Far more tokens than any small model's context window (and well under any sane body limit).
        words = self.args.long_prompt_words
        e = self.expect_bad_request(lambda: self.chat(messages=self.msgs("hello " * words)), code="context_length_exceeded")
        return e.message[:80]

    def check_err_context_length_completions(self):
        self.expect_bad_request(lambda: self.completion(prompt="hello " * self.args.long_prompt_words),
                                code="context_length_exceeded")

    def check_err_temperature(self):
        self.expect_bad_request(lambda: self.chat(temperature=-1), param="temperature")

    def check_err_temperature_type(self):
        self.expect_bad_request(lambda: self.chat(extra_body={"temperature": "hot"}), param="temperature")

    def check_err_top_p(self):
        self.expect_bad_request(lambda: self.chat(top_p=1.5), param="top_p")

    def check_err_n(self):
        self.expect_bad_request(lambda: self.chat(n=0), param="n")

    def check_err_max_tokens(self):
        self.expect_bad_request(lambda: self.chat(max_tokens=-1))

    def check_err_penalty(self):
        self.expect_bad_request(lambda: self.chat(presence_penalty=3.0), param="presence_penalty")

    def check_err_top_logprobs(self):
        self.expect_bad_request(lambda: self.chat(logprobs=True, top_logprobs=50))

    def check_err_logit_bias(self):
        self.expect_bad_request(lambda: self.chat(logit_bias={"not-a-token": 1}))
        self.expect_bad_request(lambda: self.chat(logit_bias={"1": 1000}))

    def check_err_empty_messages(self):
        self.expect_bad_request(lambda: self.chat(messages=[]))

    def check_err_bad_role(self):
        self.expect_bad_request(lambda: self.chat(messages=[{"role": "wizard", "content": "hi"}]))

    def check_err_missing_messages(self):
        self.expect_bad_request(lambda: self.client.chat.completions.create(model=self.model, messages=openai.NOT_GIVEN))

    def check_err_unknown_model(self):
        e = self.expect_bad_request(lambda: self.chat(model="no-such-model-xyz"), statuses=(400, 404))
        return f"{e.status_code} {e.code}"

    def check_err_auth(self):
        if not self.args.api_key:
            raise Skip("the server was not given --api-key")
        bad = openai.OpenAI(base_url=self.base_url + "/v1", api_key="wrong-" + self.args.api_key, max_retries=0,
                            timeout=self.args.timeout)
        try:
            bad.chat.completions.create(model=self.model, messages=self.msgs(), max_tokens=2)
            raise CheckFailed("a wrong key was accepted")
        except openai.AuthenticationError as e:
            expect(e.status_code == 401, f"status {e.status_code}")
        try:
            bad.models.list()
            raise CheckFailed("GET /v1/models accepted a wrong key")
        except openai.AuthenticationError:
            pass
        # No Authorization header at all, raw.
        status, _, body = raw_request(self.base_url, "POST", "/v1/chat/completions",
                                      json.dumps({"model": self.model, "messages": self.msgs()}).encode(),
                                      {"Content-Type": "application/json"})
        error_shape(status, body, 401)

    # -- raw HTTP ----------------------------------------------------------------------------------

    def check_raw_malformed_json(self):
        status, _, body = self.raw("POST", "/v1/chat/completions", b'{"model": "x", "messages": [', {"Content-Type": "application/json"})
        err = error_shape(status, body, 400)
        return err["message"][:60]

    def check_raw_not_an_object(self):
        status, _, body = self.raw("POST", "/v1/chat/completions", b'[1, 2, 3]', {"Content-Type": "application/json"})
        error_shape(status, body, 400)

    def check_raw_invalid_utf8(self):
        body = b'{"model": "' + (self.model or "x").encode() + b'", "messages": [{"role": "user", "content": "\xff\xfe\xc3("}]}'
        status, _, resp = self.raw("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
        error_shape(status, resp, 400)

    def check_raw_empty_body(self):
        status, _, body = self.raw("POST", "/v1/chat/completions", b"", {"Content-Type": "application/json"})
        error_shape(status, body, 400)

    def check_raw_huge_body(self):
        size = self.args.huge_body_mb * 1024 * 1024
        status, resp, note = send_large_body(self.base_url, "/v1/chat/completions", size, self.auth)
        expect(status == 413, f"status {status}, expected 413 ({note}); response {resp[:200]!r}")
        # The JSON error object, if the response has one (found by its braces, whatever the framing).
        body = resp.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in resp else b""
        if b"{" in body:
            error_shape(413, body[body.find(b"{"): body.rfind(b"}") + 1], 413)
        return note

    def check_raw_huge_body_conn_close(self):
        # The same with "Connection: close" (urllib and many scripts send it). After refusing the
        # body the server must read and discard the rest or close the connection; if it stops
        # reading but keeps the connection open, a client that writes its whole body before reading
        # the answer hangs until its own timeout.
        size = self.args.huge_body_mb * 1024 * 1024
        status, resp, note = send_large_body(self.base_url, "/v1/chat/completions", size, self.auth,
                                             connection_close=True)
        expect(status == 413, f"status {status}, expected 413 ({note}); response {resp[:200]!r}")
        expect("stalled" not in note and "gave up" not in note, note)
        return note

    def check_raw_huge_declared_length(self):
        # Only the header claims a huge body: the server must refuse from the header, not wait for it.
        status, resp, note = send_large_body(self.base_url, "/v1/chat/completions", 10, self.auth,
                                             declared_length=1 << 40, timeout=15.0)
        expect(status == 413, f"status {status}, expected 413 ({note}); response {resp[:200]!r}")
        return note

    def check_raw_unknown_path(self):
        status, _, body = self.raw("GET", "/v1/does-not-exist")
        error_shape(status, body, 404)

    def check_raw_wrong_method(self):
        status, _, body = self.raw("GET", "/v1/chat/completions")
        expect(status in (404, 405), f"GET /v1/chat/completions -> {status}")

    def check_raw_keep_alive(self):
        # Two requests on one connection (the openai client pools connections too).
        u = urllib.parse.urlsplit(self.base_url)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        try:
            for _ in range(2):
                conn.request("GET", "/v1/models", headers=self.auth)
                r = conn.getresponse()
                data = r.read()
                expect(r.status == 200, f"status {r.status}: {data[:200]!r}")
                expect(json.loads(data).get("object") == "list", f"body {data[:200]!r}")
        finally:
            conn.close()

    def check_raw_metrics(self):
        status, headers, body = self.raw("GET", "/metrics")
        expect(status == 200, f"GET /metrics -> {status}")
        expect(headers.get("content-type", "").startswith("text/plain"), f"content-type {headers.get('content-type')!r}")
        text = body.decode("utf-8")
        names = set()
        sample = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?|NaN|[-+]?Inf)(\s+-?\d+)?$')
        for line in text.splitlines():
            if not line.strip() or line.startswith("#"):
                if line.startswith("#"):
                    expect(re.match(r"^# (HELP|TYPE) \S+ ", line) or not re.match(r"^# (HELP|TYPE)", line),
                           f"malformed comment line {line!r}")
                continue
            m = sample.match(line)
            expect(m, f"not a Prometheus sample line: {line!r}")
            names.add(m.group(1))
        swift = sorted(n for n in names if n.startswith("swiftgpt_"))
        expect(swift, f"no swiftgpt_ metric among {sorted(names)[:10]}")
        return f"{len(swift)} swiftgpt_ series, e.g. {swift[:3]}"

    def check_raw_path_traversal(self):
        # Requests for files outside the static folder must not return them. Accepts any 4xx.
        probes = {
            "/../../etc/passwd": b"root:",
            "/../../../../../../etc/passwd": b"root:",
            "/%2e%2e/%2e%2e/etc/passwd": b"root:",
            "/%2e%2e/Package.swift": b"PackageDescription",
            "/..%2fPackage.swift": b"PackageDescription",
            "/static/../../Package.swift": b"PackageDescription",
            "/%2e%2e%2f%2e%2e%2fPackage.swift": b"PackageDescription",
            "//etc/passwd": b"root:",
            "/....//....//etc/passwd": b"root:",
        }
        seen = []
        for path, leak in probes.items():
            status, _, body = self.raw("GET", path)
            expect(leak not in body, f"GET {path} -> {status} returned file contents")
            expect(400 <= status < 500, f"GET {path} -> {status}, expected 404 (or another 4xx)")
            seen.append(status)
        return f"statuses {sorted(set(seen))}"

    def check_raw_disconnect_mid_stream(self):
        # A client that goes away during a stream must not break the server: open a stream, read the
        # first event, drop the connection, then the server must still answer.
        u = urllib.parse.urlsplit(self.base_url)
        body = json.dumps({"model": self.model, "messages": self.msgs(), "max_tokens": 16, "stream": True}).encode()
        sock = socket.create_connection((u.hostname, u.port), timeout=30)
        head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {u.hostname}\r\nContent-Type: application/json\r\n"
                + "".join(f"{k}: {v}\r\n" for k, v in self.auth.items())
                + f"Content-Length: {len(body)}\r\n\r\n").encode()
        sock.sendall(head + body)
        got = b""
        while b"data:" not in got:
            chunk = sock.recv(4096)
            if not chunk:
                break
            got += chunk
        sock.close()
        expect(b"data:" in got, f"no event before the disconnect: {got[:200]!r}")
        time.sleep(0.2)
        r = self.chat(temperature=0)
        expect(isinstance(r.choices[0].message.content, str), "no reply after a disconnect")
        status, _, _ = self.raw("GET", "/health")
        expect(status == 200, f"/health -> {status} after a disconnect")

    def check_shutdown(self):
        if self.server is None:
            raise Skip("attached to a running server (--url)")
        result = self.server.stop(grace=self.args.shutdown_grace)
        expect(result is not None, "server was not running")
        code, secs = result
        expect(secs <= self.args.shutdown_grace + 0.5, f"did not exit within {self.args.shutdown_grace} s of SIGINT (took {secs:.1f} s)")
        expect(code in (0, 130), f"exit status {code} after SIGINT (0 or 130 expected)")
        return f"exit {code} after {secs:.2f} s"


# Check order matters a little: check_models finds the model id the rest use, check_shutdown stops
# the server and so comes last.
CHECKS = [
    "health", "models", "model_retrieve", "chat_page",
    "chat_plain", "chat_max_completion_tokens", "chat_content_parts", "chat_multi_turn",
    "chat_unknown_fields_ignored", "chat_greedy_deterministic", "chat_seed_deterministic",
    "chat_sampling_fields", "chat_logit_bias",
    "chat_stream", "chat_stream_no_usage", "chat_stream_matches_plain", "chat_stream_raw_sse",
    "chat_logprobs", "chat_stream_logprobs", "chat_n2", "chat_n2_stream",
    "chat_stop", "chat_stop_stream", "chat_concurrent",
    "completions_plain", "completions_stream", "completions_logprobs", "completions_echo",
    "completions_prompt_list", "completions_stop",
    "err_context_length", "err_context_length_completions", "err_temperature", "err_temperature_type",
    "err_top_p", "err_n", "err_max_tokens", "err_penalty", "err_top_logprobs", "err_logit_bias",
    "err_empty_messages", "err_bad_role", "err_missing_messages", "err_unknown_model", "err_auth",
    "raw_malformed_json", "raw_not_an_object", "raw_invalid_utf8", "raw_empty_body", "raw_huge_body",
    "raw_huge_body_conn_close", "raw_huge_declared_length", "raw_unknown_path", "raw_wrong_method", "raw_keep_alive", "raw_metrics",
    "raw_path_traversal", "raw_disconnect_mid_stream",
    "shutdown",
]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=servelib.DEFAULT_BINARY, help="the swiftgpt executable (default: .build/release/swiftgpt)")
    ap.add_argument("--model", help="run folder to serve (also used to check the model id)")
    ap.add_argument("--api-key", help="start the server with this key (and test a wrong one)")
    ap.add_argument("--url", help="test a server that is already running here instead of starting one")
    ap.add_argument("--model-id", help="model name for requests (default: the first one /v1/models lists)")
    ap.add_argument("--server-arg", action="append", default=[], help="extra argument for `swiftgpt serve` (repeatable)")
    ap.add_argument("--max-tokens", type=int, default=8, help="max_tokens of most requests (default 8)")
    ap.add_argument("--long-prompt-words", type=int, default=20000, help="words in the over-long prompt (default 20000)")
    ap.add_argument("--huge-body-mb", type=int, default=20, help="size of the too-large body (default 20 MB)")
    ap.add_argument("--timeout", type=float, default=60.0, help="per-request timeout in seconds (default 60)")
    ap.add_argument("--startup-timeout", type=float, default=180.0, help="seconds to wait for /health (default 180)")
    ap.add_argument("--shutdown-grace", type=float, default=10.0, help="seconds the server has to exit after SIGINT")
    ap.add_argument("--skip", action="append", default=[], help="leave out a check by name (repeatable)")
    ap.add_argument("--only", action="append", default=[], help="run only these checks (repeatable; models always runs)")
    ap.add_argument("--list", action="store_true", help="list the check names and exit")
    ap.add_argument("-v", "--verbose", action="store_true", help="print tracebacks of unexpected exceptions")
    args = ap.parse_args()

    if args.list:
        print("\n".join(CHECKS))
        return 0
    unknown = [n for n in args.skip + args.only if n not in CHECKS]
    if unknown:
        ap.error(f"unknown check names: {unknown} (see --list)")
    if not args.url and not args.model:
        ap.error("give --model RUN (to start a server) or --url (to use a running one)")
    servelib.install_signal_handlers()

    server = None
    runner = Runner(args.skip, args.verbose)
    try:
        server, base_url = servelib.start_or_attach(args)
        if base_url is None:
            return 1
        t = E2E(args, base_url, server)
        names = [n for n in CHECKS if not args.only or n in args.only or n == "models"]
        for name in names:
            runner.run(name, getattr(t, "check_" + name))
        if server is not None and runner.failed:
            server.print_log_tail()
    finally:
        if server is not None:
            server.stop()
    total = len(runner.passed) + len(runner.failed)
    print(f"\n{len(runner.passed)}/{total} checks passed, {len(runner.failed)} failed, {len(runner.skipped)} skipped")
    if runner.failed:
        print("failed: " + " ".join(runner.failed))
    return 1 if runner.failed else 0


if __name__ == "__main__":
    sys.exit(main())
