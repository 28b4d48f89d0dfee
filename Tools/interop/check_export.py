#!/usr/bin/env python3
"""Check what `swiftgpt convert` wrote against the run it came from.

  check_export.py hf   --run RUN --hf DIR     [options]   Hugging Face directory (transformers)
  check_export.py gguf --run RUN --gguf FILE  [options]   GGUF v3 file (gguf package, llama.cpp)

Every check prints one row of a PASS / FAIL / WARN / SKIP / INFO table; the exit status is 1
when any row is FAIL, 2 when the check could not run at all (missing swiftgpt, unreadable file).
Run with --help on a subcommand for its options. See README.md next to this file.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

# Strings the tokenizers are compared on: ASCII, accents, emoji (incl. ZWJ sequences and flags),
# newlines/tabs/runs of spaces, digits and contractions, CJK.
SAMPLE_TEXTS = [
    "Hello, world! This is a test.",
    "Café, naïve, façade, déjà vu, Ångström, Straße, Œuvre",
    "Emoji: 🤖🚀✨ and a family 👩\u200d👩\u200d👧 plus a flag 🇫🇷!",
    "first line\nsecond line\n\n\tindented with a tab\n   three spaces\r\nwindows line",
    "Numbers 1234567 and 3.14159; it's, we'll, they've, I'M, DON'T",
    "  leading and trailing spaces  ",
    "中文字符 and 日本語のテキスト, 한국어",
]

DEFAULT_PROMPT = "Once upon a time"

LOSS_TEXT = (
    "The old lighthouse stood at the edge of the cliff, its white paint peeling in long strips. "
    "Every evening the keeper climbed the one hundred and twelve steps to light the lamp, and every "
    "morning he climbed them again to put it out. Ships passed far below, and sometimes a sailor "
    "would wave, though the keeper could never be sure that anyone saw him wave back.\n"
    "One winter a storm came in from the north. The wind howled for three days, and on the third "
    "night the keeper heard a knock at the door."
)

# --- the result table ------------------------------------------------------------------------------


class Report:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str]] = []

    def add(self, check: str, status: str, detail: str = "") -> None:
        assert status in ("PASS", "FAIL", "WARN", "SKIP", "INFO"), status
        self.rows.append((check, status, detail))

    def ok(self, check: str, detail: str = "") -> None:
        self.add(check, "PASS", detail)

    def fail(self, check: str, detail: str = "") -> None:
        self.add(check, "FAIL", detail)

    def warn(self, check: str, detail: str = "") -> None:
        self.add(check, "WARN", detail)

    def skip(self, check: str, detail: str = "") -> None:
        self.add(check, "SKIP", detail)

    def info(self, check: str, detail: str = "") -> None:
        self.add(check, "INFO", detail)

    def check(self, check: str, good: bool, detail: str = "") -> bool:
        self.add(check, "PASS" if good else "FAIL", detail)
        return good

    @property
    def failed(self) -> bool:
        return any(s == "FAIL" for _, s, _ in self.rows)

    def print(self, title: str) -> None:
        width = min(max([display_width(c) for c, _, _ in self.rows] + [5]), 44)
        print()
        print(title)
        print(f"{'check':<{width}}  result  detail")
        print(f"{'-' * width}  ------  {'-' * 40}")
        for check, status, detail in self.rows:
            lines = detail.split("\n") if detail else [""]
            pad = " " * max(width - display_width(check), 0)
            print(f"{check}{pad}  {status:<6}  {lines[0]}")
            for extra in lines[1:]:
                print(f"{'':<{width}}          {extra}")
        counts = {s: sum(1 for _, r, _ in self.rows if r == s) for s in ("PASS", "FAIL", "WARN", "SKIP")}
        verdict = "FAIL" if self.failed else "PASS"
        print(f"\n{verdict}: " + ", ".join(f"{n} {s.lower()}" for s, n in counts.items() if n))

    def to_json(self) -> dict:
        return {
            "ok": not self.failed,
            "rows": [{"check": c, "result": s, "detail": d} for c, s, d in self.rows],
        }


def display_width(text: str) -> int:
    """Terminal columns: wide (CJK, most emoji) characters take two, combining/zero-width ones none."""
    import unicodedata

    cols = 0
    for ch in text:
        if unicodedata.combining(ch) or ch in "\u200d\ufe0f":
            continue
        cols += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return cols


# --- swiftgpt -------------------------------------------------------------------------------------


class SwiftGPTError(RuntimeError):
    pass


class SetupError(RuntimeError):
    """The check cannot run at all (exit status 2)."""


def find_swiftgpt(explicit: str | None) -> str:
    if explicit:
        path = Path(explicit)
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
        found = shutil.which(explicit)
        if found:
            return found
        raise SetupError(f"--swiftgpt {explicit!r} is not an executable file")
    built = REPO_ROOT / ".build" / "release" / "swiftgpt"
    if built.is_file() and os.access(built, os.X_OK):
        return str(built)
    found = shutil.which("swiftgpt")
    if found:
        return found
    raise SetupError(f"no swiftgpt binary: build it (swift build -c release -> {built}) or pass --swiftgpt PATH")


def run_swiftgpt(exe: str, args: list[str], timeout: float) -> dict:
    """Runs swiftgpt and returns the JSON object on the last non-empty stdout line."""
    cmd = [exe] + args
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SwiftGPTError(f"timed out after {timeout:.0f} s: {shell_join(cmd)}")
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise SwiftGPTError(f"exit {proc.returncode}: {shell_join(cmd)}\n" + "\n".join(tail))
    lines = [l for l in proc.stdout.splitlines() if l.strip()]
    if not lines:
        raise SwiftGPTError(f"no output: {shell_join(cmd)}")
    try:
        value = json.loads(lines[-1])
    except json.JSONDecodeError as e:
        raise SwiftGPTError(f"last stdout line is not JSON ({e}): {lines[-1][:200]!r}")
    if not isinstance(value, dict):
        raise SwiftGPTError(f"last stdout line is not a JSON object: {lines[-1][:200]!r}")
    return value


def shell_join(cmd: list[str]) -> str:
    import shlex

    return " ".join(shlex.quote(c) for c in cmd)


def resolve_tokenizer(run: Path, explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    for candidate in (run / "tokenizer.json", run / "best" / "tokenizer.json", run / "last" / "tokenizer.json"):
        if candidate.is_file():
            return candidate
    raise SetupError(f"no tokenizer.json in {run} (nor best/ or last/); pass --tokenizer FILE")


def swift_encode(exe: str, tokenizer: Path, text: str, timeout: float) -> list[int]:
    out = run_swiftgpt(exe, ["tokenizer", "encode", "--tokenizer", str(tokenizer), "--text", text, "--json"], timeout)
    ids = out.get("ids")
    if not isinstance(ids, list):
        raise SwiftGPTError(f"tokenizer encode: no 'ids' list in {out}")
    return [int(i) for i in ids]


def swift_generate(exe: str, run: Path, prompt: str, max_tokens: int, timeout: float) -> dict:
    out = run_swiftgpt(
        exe,
        ["generate", "--model", str(run), "--prompt", prompt, "--temperature", "0",
         "--max-tokens", str(max_tokens), "--json"],
        timeout,
    )
    if not isinstance(out.get("ids"), list):
        raise SwiftGPTError(f"generate: no 'ids' list in {out}")
    return out


def describe_text(text: str, limit: int = 28) -> str:
    shown = text if len(text) <= limit else text[: limit - 1] + "…"
    return json.dumps(shown, ensure_ascii=False)


def first_difference(a: list[int], b: list[int]) -> int | None:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def ids_excerpt(ids: list[int], at: int, radius: int = 4) -> str:
    lo = max(0, at - radius)
    part = ids[lo: at + radius + 1]
    return ("…" if lo > 0 else "") + str(part)[1:-1] + ("…" if at + radius + 1 < len(ids) else "")


def cut_at_eos(ids: list[int], eos: set[int]) -> list[int]:
    for i, t in enumerate(ids):
        if t in eos:
            return ids[:i]
    return ids


def compare_tokenization(report: Report, label: str, texts: list[str], swift_ids_of, other_ids_of) -> None:
    bad = 0
    for text in texts:
        try:
            want = swift_ids_of(text)
        except SwiftGPTError as e:
            report.fail(f"{label} {describe_text(text, 18)}", f"swiftgpt: {e}")
            bad += 1
            continue
        got = other_ids_of(text)
        at = first_difference(want, got)
        if at is None:
            report.ok(f"{label} {describe_text(text, 18)}", f"{len(want)} ids identical")
        else:
            bad += 1
            report.fail(
                f"{label} {describe_text(text, 18)}",
                f"first difference at {at}: swiftgpt [{ids_excerpt(want, at)}] vs [{ids_excerpt(got, at)}]"
                f" ({len(want)} vs {len(got)} ids)",
            )


def compare_greedy(report: Report, label: str, swift: dict, other: list[int], eos: set[int],
                   exact_upto: float, other_name: str, other_logprobs: list[float] | None = None,
                   other_logits: list | None = None, tie_margin: float = 0.0) -> None:
    """Compares greedy completions. Both lists are cut at their first end-of-sequence token (one side may
    include it, the other stop before it). Tokens before `exact_upto` must agree; later ones are reported.
    With the other side's logits per step, a first divergence where the other side's logit for swiftgpt's
    token is within `tie_margin` of its own choice is a near-tie (rounding, not a bug): a warning."""
    mine = [int(i) for i in swift["ids"]]
    a, b = cut_at_eos(mine, eos), cut_at_eos(other, eos)
    at = first_difference(a, b)
    reason = swift.get("finish_reason")
    summary = f"{len(a)} tokens (swiftgpt finish_reason={reason})"
    if at is None:
        report.ok(label, f"identical: {summary}")
    else:
        detail = (f"diverges at completion token {at}: swiftgpt [{ids_excerpt(a, at)}] vs "
                  f"{other_name} [{ids_excerpt(b, at)}]; lengths {len(a)} vs {len(b)}")
        gap = None
        if other_logits is not None and at < len(a) and at < len(b) and at < len(other_logits):
            row = other_logits[at]
            gap = float(row[b[at]]) - float(row[a[at]])
            detail += (f"\n{other_name}'s logit for its token {b[at]} exceeds swiftgpt's token {a[at]} by {gap:.4g}"
                       f" (tie margin {tie_margin:g})")
        if at >= exact_upto:
            report.warn(label, detail + (f" (allowed after {int(exact_upto)})" if exact_upto > 0 else " (report only)"))
        elif gap is not None and gap <= tie_margin:
            report.warn(label, detail + "; a near-tie: rounding, not a conversion error")
        else:
            report.fail(label, detail)
    swift_lp = swift.get("logprobs")
    if other_logprobs and isinstance(swift_lp, list) and swift_lp:
        n = min(len(swift_lp), len(other_logprobs), at if at is not None else len(a))
        if n > 0:
            diffs = [abs(float(swift_lp[i]) - other_logprobs[i]) for i in range(n)]
            report.info(f"{label}: logprobs", f"max |Δ logprob| {max(diffs):.2e} over {n} agreeing tokens")


# --- hf -------------------------------------------------------------------------------------------


def context_length_of(config) -> int | None:
    for key in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def fit_text(text: str, encode, limit: int) -> str:
    """Longest prefix of `text`, cut at whitespace, whose encoding has at most `limit` tokens."""
    if len(encode(text)) <= limit:
        return text
    cuts = [i for i, ch in enumerate(text) if ch.isspace()] or [len(text)]
    lo, hi, best = 0, len(cuts) - 1, ""
    while lo <= hi:
        mid = (lo + hi) // 2
        candidate = text[: cuts[mid]]
        if len(encode(candidate)) <= limit:
            best, lo = candidate, mid + 1
        else:
            hi = mid - 1
    return best


def cmd_hf(args: argparse.Namespace) -> int:
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    transformers.utils.logging.disable_progress_bar()
    if args.threads:
        torch.set_num_threads(args.threads)
    exe = find_swiftgpt(args.swiftgpt)
    run = Path(args.run)
    tok_file = resolve_tokenizer(run, args.tokenizer)
    report = Report()

    try:
        tokenizer = AutoTokenizer.from_pretrained(args.hf)
        model = AutoModelForCausalLM.from_pretrained(args.hf, dtype=torch.float32, attn_implementation="eager")
    except Exception as e:  # noqa: BLE001 - any load error is the answer
        report.fail("load with transformers", f"{type(e).__name__}: {e}")
        return finish(report, args, f"hf: {args.hf}")
    model.eval()
    n_params = sum(p.numel() for p in model.parameters())
    ctx = context_length_of(model.config)
    report.ok("load with transformers",
              f"{type(model).__name__} ({model.config.model_type}), {n_params:,} parameters, context {ctx}, "
              f"{type(tokenizer).__name__} vocab {len(tokenizer)}")
    emb_rows = model.get_input_embeddings().weight.shape[0]
    report.check("vocab size", len(tokenizer) <= emb_rows,
                 f"tokenizer {len(tokenizer)}, embedding rows {emb_rows}, config.vocab_size {model.config.vocab_size}")

    def hf_encode(text: str) -> list[int]:
        return list(tokenizer.encode(text, add_special_tokens=False))

    # (a) tokenizer parity
    texts = SAMPLE_TEXTS + list(args.text or []) + [args.prompt]
    compare_tokenization(report, "encode", texts,
                         lambda t: swift_encode(exe, tok_file, t, args.timeout), hf_encode)

    # (b) greedy generation, (c) loss parity
    for name, step in (("generate", check_generate_hf), ("loss", check_loss)):
        try:
            step(report, args, exe, run, model, tokenizer, hf_encode, ctx)
        except Exception as e:  # noqa: BLE001 - report it as a failed row
            report.fail(f"{name}: error", f"{type(e).__name__}: {e}")
    return finish(report, args, f"hf: {args.hf}  (run {run}, swiftgpt {exe})")


def check_generate_hf(report: Report, args, exe: str, run: Path, model, tokenizer, hf_encode, ctx) -> None:
    import torch
    from transformers import GenerationConfig

    prompt_ids = hf_encode(args.prompt)
    if not prompt_ids:
        report.fail("generate", "the prompt encodes to no tokens")
        return
    max_new = args.max_tokens
    if ctx is not None and len(prompt_ids) + max_new > ctx:
        max_new = max(ctx - len(prompt_ids), 0)
        report.warn("generate: length", f"--max-tokens {args.max_tokens} clipped to {max_new} by the context {ctx}")
    try:
        swift = swift_generate(exe, run, args.prompt, args.max_tokens, args.timeout)
    except SwiftGPTError as e:
        report.fail("generate: swiftgpt", str(e))
        return
    if isinstance(swift.get("prompt_tokens"), int) and swift["prompt_tokens"] != len(prompt_ids):
        report.warn("generate: prompt tokens",
                    f"swiftgpt says {swift['prompt_tokens']}, HF tokenizer gives {len(prompt_ids)}")
    gen_config = GenerationConfig(
        do_sample=False, max_new_tokens=max_new, num_beams=1,
        output_scores=True, output_logits=True, return_dict_in_generate=True,
        eos_token_id=model.generation_config.eos_token_id,
        pad_token_id=(model.generation_config.pad_token_id
                      if model.generation_config.pad_token_id is not None
                      else tokenizer.eos_token_id or 0),
    )
    input_ids = torch.tensor([prompt_ids], dtype=torch.long)
    with torch.no_grad():
        out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                             generation_config=gen_config)
    hf_ids = out.sequences[0, len(prompt_ids):].tolist()
    hf_logprobs, hf_logits = [], []
    for step, token in enumerate(hf_ids):
        logits = out.logits[step][0].double()
        hf_logits.append(logits)
        hf_logprobs.append(float(torch.log_softmax(logits, dim=-1)[token]))
    eos = eos_ids(model, tokenizer)
    margin = args.tie_margin if args.tie_margin is not None else 1e-3
    compare_greedy(report, "generate (greedy)", swift, hf_ids, eos, math.inf, "HF",
                   hf_logprobs, hf_logits, margin)


def eos_ids(model, tokenizer) -> set[int]:
    found: set[int] = set()
    for value in (getattr(model.generation_config, "eos_token_id", None), getattr(model.config, "eos_token_id", None),
                  tokenizer.eos_token_id):
        if isinstance(value, int):
            found.add(value)
        elif isinstance(value, (list, tuple)):
            found.update(int(v) for v in value)
    return found


def check_loss(report: Report, args, exe: str, run: Path, model, tokenizer, hf_encode, ctx: int | None) -> None:
    import torch

    text = Path(args.loss_text).read_text(encoding="utf-8") if args.loss_text else LOSS_TEXT
    limit = (ctx - 1) if ctx else 1 << 30
    fitted = fit_text(text, hf_encode, limit)
    if not fitted:
        report.fail("loss", "the loss text does not fit in the context at all")
        return
    if fitted != text:
        report.info("loss: text", f"cut to {len(fitted)} of {len(text)} characters to fit the context {ctx}")
    ids = hf_encode(fitted)
    if len(ids) < 2:
        report.fail("loss", "the loss text encodes to fewer than 2 tokens")
        return
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "loss_text.txt"
        data.write_text(fitted, encoding="utf-8")
        try:
            swift = run_swiftgpt(exe, ["eval", "--model", str(run), "--task", "perplexity", "--data", str(data), "--json"],
                                 args.timeout)
        except SwiftGPTError as e:
            report.fail("loss: swiftgpt eval", str(e))
            return
    if not isinstance(swift.get("loss"), (int, float)):
        report.fail("loss: swiftgpt eval", f"no numeric 'loss' in {swift}")
        return

    def mean_ce(seq: list[int]) -> tuple[float, float, int]:
        x = torch.tensor([seq], dtype=torch.long)
        with torch.no_grad():
            logits = model(input_ids=x).logits[0, :-1].double()
        targets = x[0, 1:]
        ce = torch.nn.functional.cross_entropy(logits, targets, reduction="sum").item()
        return ce / len(targets), ce, len(targets)

    candidates = {"plain": mean_ce(ids)}
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if start is not None and len(ids) + 1 <= (ctx or 1 << 30):
        candidates[f"after {tokenizer.convert_ids_to_tokens(start)} (id {start})"] = mean_ce([start] + ids)
    sw_loss = float(swift["loss"])
    best = min(candidates, key=lambda k: abs(candidates[k][0] - sw_loss))
    hf_loss, hf_sum, hf_n = candidates[best]
    diff = abs(hf_loss - sw_loss)
    others = "; ".join(f"{k}: {v[0]:.6f} ({v[2]} predictions)" for k, v in candidates.items() if k != best)
    detail = (f"swiftgpt {sw_loss:.6f} vs HF {hf_loss:.6f} ({best}, {hf_n} predictions), |Δ| {diff:.2e}, "
              f"tolerance {args.loss_tol:g}; swiftgpt tokens={swift.get('tokens')}")
    if others:
        detail += f"\nother HF conventions: {others}"
    report.check("loss (perplexity eval)", diff <= args.loss_tol, detail)
    if isinstance(swift.get("bits_per_byte"), (int, float)):
        n_bytes = swift.get("bytes") if isinstance(swift.get("bytes"), int) else len(fitted.encode("utf-8"))
        hf_bpb = hf_sum / math.log(2) / n_bytes
        report.info("bits per byte", f"swiftgpt {float(swift['bits_per_byte']):.6f}, HF {hf_bpb:.6f} ({n_bytes} bytes)")


# --- gguf: layout -----------------------------------------------------------------------------------

# GGUF value types (gguf/constants.py GGUFValueType)
T_U8, T_I8, T_U16, T_I16, T_U32, T_I32, T_F32, T_BOOL, T_STR, T_ARR, T_U64, T_I64, T_F64 = range(13)
SCALAR_SIZES = {T_U8: 1, T_I8: 1, T_U16: 2, T_I16: 2, T_U32: 4, T_I32: 4, T_F32: 4, T_BOOL: 1,
                T_U64: 8, T_I64: 8, T_F64: 8}
TYPE_NAMES = {T_U8: "u8", T_I8: "i8", T_U16: "u16", T_I16: "i16", T_U32: "u32", T_I32: "i32", T_F32: "f32",
              T_BOOL: "bool", T_STR: "string", T_ARR: "array", T_U64: "u64", T_I64: "i64", T_F64: "f64"}
GGML_MAX_NAME = 64  # llama.cpp rejects tensor names of 64 bytes or more
GGML_MAX_DIMS = 4


class GGUFLayoutError(ValueError):
    pass


def scan_gguf(path: Path) -> dict:
    """Walks the header, key/values and tensor infos without reading tensor data (an independent
    second opinion next to gguf.GGUFReader, which gives up without detail on broken files)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        blob = f.read(min(size, 64 << 20))
    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos, blob
        while pos + n > len(blob):
            if len(blob) >= size:
                raise GGUFLayoutError(f"header runs past the end of the file at byte {pos}")
            with open(path, "rb") as f2:
                blob = f2.read(min(size, len(blob) * 4))
        out = blob[pos: pos + n]
        pos += n
        return out

    def u32() -> int:
        return struct.unpack("<I", take(4))[0]

    def u64() -> int:
        return struct.unpack("<Q", take(8))[0]

    def string() -> str:
        n = u64()
        if n > size:
            raise GGUFLayoutError(f"string length {n} at byte {pos - 8} exceeds the file")
        raw = take(n)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise GGUFLayoutError(f"string at byte {pos - n} is not valid UTF-8: {raw[:40]!r}")

    def skip_value(vtype: int) -> None:
        if vtype in SCALAR_SIZES:
            take(SCALAR_SIZES[vtype])
        elif vtype == T_STR:
            string()
        else:
            raise GGUFLayoutError(f"unknown value type {vtype} at byte {pos - 4}")

    if take(4) != b"GGUF":
        raise GGUFLayoutError("not a GGUF file (magic is not 'GGUF')")
    version = u32()
    n_tensors, n_kv = u64(), u64()
    kv: dict[str, dict] = {}
    for _ in range(n_kv):
        key = string()
        vtype = u32()
        entry = {"type": vtype}
        if vtype == T_ARR:
            itype, count = u32(), u64()
            entry.update(item_type=itype, count=count)
            if itype in SCALAR_SIZES:
                take(SCALAR_SIZES[itype] * count)
            elif itype == T_STR:
                for _ in range(count):
                    string()
            else:
                raise GGUFLayoutError(f"key {key}: array of unsupported type {itype}")
        else:
            skip_value(vtype)
        if key in kv:
            raise GGUFLayoutError(f"duplicate key {key}")
        kv[key] = entry
    tensors = []
    for _ in range(n_tensors):
        name = string()
        n_dims = u32()
        if n_dims > GGML_MAX_DIMS:
            raise GGUFLayoutError(f"tensor {name}: {n_dims} dimensions")
        dims = [u64() for _ in range(n_dims)]
        ttype = u32()
        offset = u64()
        tensors.append({"name": name, "dims": dims, "type": ttype, "offset": offset})
    return {"version": version, "n_tensors": n_tensors, "n_kv": n_kv, "kv": kv, "tensors": tensors,
            "info_end": pos, "file_size": size}


# --- gguf: what llama.cpp expects ------------------------------------------------------------------

# tokenizer.ggml.pre values known to llama.cpp (src/llama-vocab.cpp, llama_vocab::impl::load) at the
# commit llama-cpp-python 0.3.36 vendors (0c1e570, Oct 2026). An unknown value makes llama.cpp refuse the file.
KNOWN_PRE = {
    "default", "minicpm5", "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0",
    "lfm2", "jina-v5-nano", "deepseek-llm", "deepseek-coder", "deepseek-v3", "spark2_5", "youtu", "falcon", "mpt",
    "starcoder", "gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "a.x-4.0", "mellum",
    "modern-bert", "jais-2", "gemma4", "granite-embed-multi-311m", "sarvam-moe", "jina-v1-en", "jina-v2-code",
    "roberta-bpe", "whitespace", "refact", "command-r", "qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "qwen35",
    "stablelm2", "olmo", "dbrx", "smaug-bpe", "poro-chat", "chatglm-bpe", "glm4", "glm5", "viking", "jais",
    "tekken", "smollm", "codeshell", "bloom", "gpt3-finnish", "exaone", "exaone4", "exaone-moe", "chameleon",
    "minerva-7b", "megrez", "gpt-4o", "llama4", "kanana2", "talkie", "granite-embed-multi-97m", "tiny_aya",
    "cohere2moe", "superbpe", "trillion", "granite-docling", "bailingmoe", "bailingmoe2", "llada-moe",
    "seed-coder", "hunyuan", "hunyuan-dense", "hy_v4", "joyai-llm", "kimi-k2", "ufakzeka", "grok-2", "afmoe",
    "laguna", "minimax-m2", "solar-open", "mellum2",
}

# The split regexes SwiftGPT writes into tokenizer.json, and the tokenizer.ggml.pre values whose
# llama.cpp regex is the same split.
GPT2_REGEX = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
CL100K_REGEX = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
                r"""\s*[\r\n]+|\s+(?!\S)|\s+""")
# tiktoken's cl100k pattern as SwiftGPT writes it (possessive quantifiers); the same split as CL100K_REGEX
SWIFTGPT_GPT4_REGEX = (r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|"""
                       r"""\s*[\r\n]|\s+(?!\S)|\s""")
PRE_FOR_REGEX = {
    GPT2_REGEX: {"gpt-2", "phi-2", "mpt", "olmo", "jais", "trillion", "granite-docling", "exaone4",
                 "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "a.x-4.0", "mellum", "modern-bert"},
    # llama-bpe/llama3 also turn on "ignore_merges" (a piece that is a whole token is taken as is) and add_bos
    # unless tokenizer.ggml.add_bos_token says otherwise; dbrx and smaug-bpe use the same regex without either.
    CL100K_REGEX: {"llama-bpe", "llama3", "llama-v3", "dbrx", "smaug-bpe", "falcon3", "pixtral"},
}
PRE_FOR_REGEX[SWIFTGPT_GPT4_REGEX] = PRE_FOR_REGEX[CL100K_REGEX]

REQUIRED_KEYS = [  # (key, allowed GGUF types); "{arch}" is replaced
    ("general.architecture", {T_STR}),
    ("{arch}.context_length", {T_U32}),
    ("{arch}.embedding_length", {T_U32}),
    ("{arch}.block_count", {T_U32}),
    ("{arch}.feed_forward_length", {T_U32, T_ARR}),
    ("{arch}.attention.head_count", {T_U32, T_ARR}),
    ("tokenizer.ggml.model", {T_STR}),
    ("tokenizer.ggml.tokens", {T_ARR}),
]
ARCH_KEYS = {
    "gpt2": [("gpt2.attention.layer_norm_epsilon", {T_F32})],
    "llama": [("llama.attention.layer_norm_rms_epsilon", {T_F32})],
}
OPTIONAL_KEY_TYPES = {  # llama.cpp reads these with exactly this type when present
    "general.alignment": {T_U32},
    "general.file_type": {T_U32},
    "general.name": {T_STR},
    "{arch}.attention.head_count_kv": {T_U32, T_ARR},
    "{arch}.attention.key_length": {T_U32},
    "{arch}.attention.value_length": {T_U32},
    "{arch}.rope.dimension_count": {T_U32},
    "{arch}.rope.freq_base": {T_F32},
    "{arch}.vocab_size": {T_U32},
    "tokenizer.ggml.pre": {T_STR},
    "tokenizer.ggml.merges": {T_ARR},
    "tokenizer.ggml.token_type": {T_ARR},
    "tokenizer.ggml.scores": {T_ARR},
    "tokenizer.ggml.bos_token_id": {T_U32},
    "tokenizer.ggml.eos_token_id": {T_U32},
    "tokenizer.ggml.eot_token_id": {T_U32},
    "tokenizer.ggml.unknown_token_id": {T_U32},
    "tokenizer.ggml.padding_token_id": {T_U32},
    "tokenizer.ggml.add_bos_token": {T_BOOL},
    "tokenizer.ggml.add_eos_token": {T_BOOL},
}


def expected_tensors(arch: str, meta: dict, names: set[str]) -> tuple[dict, set[str]]:
    """Returns ({name: ggml shape (ne order)} required, set of optional names with shapes in the first dict).
    Mirrors load_arch_tensors of src/models/gpt2.cpp and src/models/llama.cpp."""
    E = meta["embd"]
    V = meta["vocab"]
    L = meta["layers"]
    F = meta["ff"]
    Hq = meta["heads"]
    Hkv = meta["heads_kv"]
    hd = meta["head_dim"]
    shapes: dict[str, list[int]] = {}
    optional: set[str] = set()

    def req(name: str, shape: list[int]) -> None:
        shapes[name] = shape

    def opt(name: str, shape: list[int]) -> None:
        shapes[name] = shape
        optional.add(name)

    req("token_embd.weight", [E, V])
    req("output_norm.weight", [E])
    opt("output.weight", [E, V])  # absent: tied to token_embd.weight
    if arch == "gpt2":
        req("position_embd.weight", [E, meta["ctx"]])
        req("output_norm.bias", [E])
        for i in range(L):
            b = f"blk.{i}."
            req(b + "attn_norm.weight", [E]); req(b + "attn_norm.bias", [E])
            req(b + "attn_qkv.weight", [E, E + 2 * Hkv * hd]); req(b + "attn_qkv.bias", [E + 2 * Hkv * hd])
            req(b + "attn_output.weight", [E, E]); req(b + "attn_output.bias", [E])
            req(b + "ffn_norm.weight", [E]); req(b + "ffn_norm.bias", [E])
            req(b + "ffn_up.weight", [E, F]); req(b + "ffn_up.bias", [F])
            req(b + "ffn_down.weight", [F, E]); req(b + "ffn_down.bias", [E])
    elif arch == "llama":
        q, k = Hq * hd, Hkv * hd
        for i in range(L):
            b = f"blk.{i}."
            req(b + "attn_norm.weight", [E])
            if b + "attn_qkv.weight" in names:
                req(b + "attn_qkv.weight", [E, q + 2 * k]); opt(b + "attn_qkv.bias", [q + 2 * k])
            else:
                req(b + "attn_q.weight", [E, q]); req(b + "attn_k.weight", [E, k]); req(b + "attn_v.weight", [E, k])
                opt(b + "attn_q.bias", [q]); opt(b + "attn_k.bias", [k]); opt(b + "attn_v.bias", [k])
            req(b + "attn_output.weight", [q, E]); opt(b + "attn_output.bias", [E])
            req(b + "ffn_norm.weight", [E])
            req(b + "ffn_gate.weight", [E, F]); req(b + "ffn_down.weight", [F, E]); req(b + "ffn_up.weight", [E, F])
            opt(b + "ffn_gate.bias", [F]); opt(b + "ffn_down.bias", [E]); opt(b + "ffn_up.bias", [F])
        opt("rope_freqs.weight", [meta["rot"] // 2])
    return shapes, optional


def package_version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "?"


def field_value(reader, key: str):
    field = reader.get_field(key)
    return None if field is None else field.contents()


def cmd_gguf(args: argparse.Namespace) -> int:
    path = Path(args.gguf)
    run = Path(args.run) if args.run else None
    report = Report()
    if not path.is_file():
        raise SetupError(f"{path} is not a file")

    # (a1) raw layout, without the gguf package
    try:
        layout = scan_gguf(path)
    except (GGUFLayoutError, struct.error) as e:
        report.fail("GGUF header", str(e))
        return finish(report, args, f"gguf: {path}")
    report.check("GGUF version", layout["version"] == 3,
                 f"version {layout['version']}, {layout['n_kv']} keys, {layout['n_tensors']} tensors, "
                 f"{layout['file_size']:,} bytes")

    # (a2) the gguf package's reader
    try:
        import gguf
        from gguf import GGMLQuantizationType, GGUFReader
    except ImportError:
        report.fail("gguf package", "not installed: pip install gguf")
        return finish(report, args, f"gguf: {path}")
    try:
        reader = GGUFReader(path)
    except Exception as e:  # noqa: BLE001
        reader = None
        report.fail("gguf.GGUFReader", f"{type(e).__name__}: {e}")
    else:
        report.ok("gguf.GGUFReader", f"gguf {package_version('gguf')}: "
                                     f"{len(reader.fields) - 3} keys, {len(reader.tensors)} tensors")

    kv = layout["kv"]
    arch = None
    if reader is not None:
        arch = field_value(reader, "general.architecture")
    print(f"file: {path}")
    print(f"architecture: {arch}")
    alignment = 32
    if "general.alignment" in kv and reader is not None:
        alignment = int(field_value(reader, "general.alignment"))
    print(f"alignment: {alignment}")
    print_metadata(reader, kv)

    # tensor layout: llama.cpp requires the infos' offsets to be exactly the running sum of the tensor
    # sizes, each padded to the alignment, and the data section to start at the next aligned byte.
    quant_sizes = gguf.GGML_QUANT_SIZES
    data_start = layout["info_end"] + (-layout["info_end"]) % alignment
    running = 0
    layout_errors = []
    seen = set()
    type_counts: dict[str, int] = {}
    print(f"\ntensors ({layout['n_tensors']}), data section at byte {data_start}:")
    print(f"  {'name':<34} {'type':<6} {'shape (ggml order)':<22} {'offset':>12} {'bytes':>12}")
    for t in layout["tensors"]:
        try:
            qtype = GGMLQuantizationType(t["type"])
            block, type_size = quant_sizes[qtype]
            tname = qtype.name
        except (ValueError, KeyError):
            layout_errors.append(f"{t['name']}: unknown ggml type {t['type']}")
            continue
        type_counts[tname] = type_counts.get(tname, 0) + 1
        n_el = math.prod(t["dims"]) if t["dims"] else 1
        if t["dims"] and t["dims"][0] % block != 0:
            layout_errors.append(f"{t['name']}: row of {t['dims'][0]} not a multiple of the {tname} block {block}")
        nbytes = n_el // block * type_size
        print(f"  {t['name']:<34} {tname:<6} {str(t['dims']):<22} {t['offset']:>12} {nbytes:>12}")
        if len(t["name"].encode()) >= GGML_MAX_NAME:
            layout_errors.append(f"{t['name']}: name has {len(t['name'].encode())} bytes (llama.cpp max 63)")
        if t["name"] in seen:
            layout_errors.append(f"{t['name']}: duplicate name")
        seen.add(t["name"])
        if t["offset"] != running:
            layout_errors.append(f"{t['name']}: offset {t['offset']}, llama.cpp expects {running} "
                                 f"(previous tensors packed, each padded to {alignment})")
        if t["offset"] % alignment:
            layout_errors.append(f"{t['name']}: offset {t['offset']} not a multiple of {alignment}")
        end = data_start + t["offset"] + nbytes
        if end > layout["file_size"]:
            layout_errors.append(f"{t['name']}: data ends at byte {end}, beyond the file ({layout['file_size']})")
        running = t["offset"] + nbytes + (-nbytes) % alignment
    report.check("tensor data layout", not layout_errors,
                 "\n".join(layout_errors[:12] + ([f"... {len(layout_errors) - 12} more"] if len(layout_errors) > 12 else []))
                 or f"all {layout['n_tensors']} tensors inside the file, aligned to {alignment}, packed in order; "
                    f"types {type_counts}")
    trailing = layout["file_size"] - (data_start + running)
    if trailing < 0:
        pass  # already reported
    elif trailing > alignment:
        report.warn("file size", f"{trailing} bytes after the last tensor's padded data")

    if not arch:
        report.fail("general.architecture", "missing")
        return finish(report, args, f"gguf: {path}")
    if arch not in ARCH_KEYS:
        report.warn("general.architecture", f"{arch!r}: this checker knows gpt2 and llama only")

    # metadata: presence and exact types
    key_errors = []
    for key, types in REQUIRED_KEYS + ARCH_KEYS.get(arch, []):
        key = key.format(arch=arch)
        if key not in kv:
            key_errors.append(f"missing {key}")
        elif kv[key]["type"] not in types:
            key_errors.append(f"{key} is {TYPE_NAMES.get(kv[key]['type'])}, llama.cpp wants "
                              + "/".join(TYPE_NAMES[t] for t in types))
    for key, types in OPTIONAL_KEY_TYPES.items():
        key = key.format(arch=arch)
        if key in kv and kv[key]["type"] not in types:
            key_errors.append(f"{key} is {TYPE_NAMES.get(kv[key]['type'])}, llama.cpp wants "
                              + "/".join(TYPE_NAMES[t] for t in types))
    for key in (f"{arch}.feed_forward_length", f"{arch}.attention.head_count", f"{arch}.attention.head_count_kv"):
        if key in kv and kv[key]["type"] == T_ARR and kv[key].get("item_type") not in (T_U32, T_I32):
            key_errors.append(f"{key}: per-layer array must hold u32/i32")
    report.check("required metadata", not key_errors, "\n".join(key_errors) or
                 "general.architecture, context/embedding/feed-forward lengths, block and head counts, "
                 "norm epsilon, tokenizer model and tokens present with llama.cpp's types")
    if reader is None or key_errors:
        return gguf_tail(report, args, path, None, arch, run)

    meta = read_hparams(reader, arch, kv)
    # expected tensors
    names = {t["name"] for t in layout["tensors"]}
    shapes = {t["name"]: list(t["dims"]) for t in layout["tensors"]}
    want, optional = expected_tensors(arch, meta, names)
    problems = []
    for name, shape in want.items():
        if name not in shapes:
            if name not in optional:
                problems.append(f"missing {name} {shape}")
        elif shapes[name] != shape:
            problems.append(f"{name}: shape {shapes[name]}, llama.cpp expects {shape}")
    extra = sorted(names - set(want))
    if extra:
        problems.append(f"{len(extra)} tensor(s) llama.cpp would not use (it refuses the file: wrong number of "
                        f"tensors): {', '.join(extra[:6])}{' ...' if len(extra) > 6 else ''}")
    tied = "output.weight" not in names
    report.check(f"tensors for {arch}", not problems, "\n".join(problems[:12]) or
                 f"{len(names)} tensors with the expected names and shapes (E={meta['embd']}, V={meta['vocab']}, "
                 f"L={meta['layers']}, F={meta['ff']}, heads {meta['heads']}/{meta['heads_kv']}, "
                 f"head dim {meta['head_dim']}; output {'tied to token_embd' if tied else 'separate'})")
    if arch == "llama" and meta["rot"] != meta["head_dim"]:
        report.fail("llama.rope.dimension_count", f"{meta['rot']} != head dim {meta['head_dim']} (llama.cpp refuses)")

    # 1-D tensors (norms, biases) must stay F32: ggml's CPU add/mul have no f32 (activations) x f16 (weight) kernel.
    bad_1d = [t["name"] for t in layout["tensors"] if len(t["dims"]) == 1 and t["type"] != int(GGMLQuantizationType.F32)]
    report.check("1-D tensors are F32", not bad_1d,
                 (f"not F32: {', '.join(bad_1d[:6])}" if bad_1d else "norm weights and biases are F32"))
    check_tensor_values(report, reader, args)
    file_kind = detect_kind(reader, layout)
    report.info("weight type", file_kind)

    check_tokenizer_metadata(report, reader, kv, arch, run, args)
    return gguf_tail(report, args, path, reader, arch, run, file_kind=file_kind, meta=meta)


def read_hparams(reader, arch: str, kv: dict) -> dict:
    def get(key: str, default=None):
        value = field_value(reader, key.format(arch=arch))
        if isinstance(value, list):  # per-layer arrays: the checker handles uniform layers only
            value = value[0] if value else default
        return default if value is None else value

    embd = int(get("{arch}.embedding_length"))
    heads = int(get("{arch}.attention.head_count"))
    heads_kv = int(get("{arch}.attention.head_count_kv", heads))
    head_dim = int(get("{arch}.attention.key_length", embd // max(heads, 1)))
    return {
        "embd": embd,
        "ctx": int(get("{arch}.context_length")),
        "layers": int(get("{arch}.block_count")),
        "ff": int(get("{arch}.feed_forward_length", 0)),
        "heads": heads,
        "heads_kv": heads_kv,
        "head_dim": head_dim,
        "rot": int(get("{arch}.rope.dimension_count", head_dim)),
        "vocab": int(kv["tokenizer.ggml.tokens"]["count"]),
    }


def detect_kind(reader, layout) -> str:
    from gguf import GGMLQuantizationType

    types = {GGMLQuantizationType(t["type"]).name for t in layout["tensors"] if len(t["dims"]) >= 2}
    if "Q8_0" in types:
        return "q8_0"
    if "F16" in types:
        return "f16"
    if types == {"F32"}:
        return "f32"
    return ",".join(sorted(types)).lower()


def check_tensor_values(report: Report, reader, args) -> None:
    """Dequantizes every tensor and checks that it is finite (skipped with --no-values)."""
    if args.no_values:
        report.skip("tensor values finite", "--no-values")
        return
    import numpy as np
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize

    bad = []
    total = 0
    for t in reader.tensors:
        try:
            if t.tensor_type in (GGMLQuantizationType.F32, GGMLQuantizationType.F16):
                values = np.asarray(t.data, dtype=np.float32)
            else:
                values = dequantize(t.data, t.tensor_type)
        except Exception as e:  # noqa: BLE001
            bad.append(f"{t.name}: cannot read ({type(e).__name__}: {e})")
            continue
        total += values.size
        if not np.all(np.isfinite(values)):
            bad.append(f"{t.name}: {int(np.sum(~np.isfinite(values)))} non-finite values")
        elif values.size and float(np.max(np.abs(values))) == 0.0 and not t.name.endswith(".bias"):
            bad.append(f"{t.name}: all zeros")
    report.check("tensor values finite", not bad, "\n".join(bad[:8]) or f"{total:,} values, none NaN/inf")


def check_tokenizer_metadata(report: Report, reader, kv: dict, arch: str, run: Path | None, args) -> None:
    model = field_value(reader, "tokenizer.ggml.model")
    tokens = field_value(reader, "tokenizer.ggml.tokens")
    n = len(tokens)
    if kv["tokenizer.ggml.tokens"].get("item_type") != T_STR:
        report.fail("tokenizer.ggml.tokens", "must be an array of strings")
        return
    problems = []
    if model != "gpt2":
        report.warn("tokenizer.ggml.model", f"{model!r} (SwiftGPT writes 'gpt2' = byte-level BPE)")
    dupes = n - len(set(tokens))
    if dupes:
        problems.append(f"{dupes} duplicate token strings (llama.cpp asserts they are unique)")
    empty = [i for i, t in enumerate(tokens) if t == ""]
    if empty:
        problems.append(f"empty token strings at {empty[:5]}")
    if model == "gpt2":
        byte_chars = set(byte_level_alphabet().values())
        missing = sorted(byte_chars - set(tokens))
        if missing:
            problems.append(f"{len(missing)} of the 256 byte-level single-character tokens missing "
                            f"(e.g. {missing[:4]}): text with those bytes cannot be encoded")
        if "tokenizer.ggml.merges" not in kv:
            problems.append("tokenizer.ggml.merges missing (llama.cpp: 'cannot find tokenizer merges')")
        elif kv["tokenizer.ggml.merges"].get("item_type") != T_STR:
            problems.append("tokenizer.ggml.merges must be an array of strings")
        else:
            merges = field_value(reader, "tokenizer.ggml.merges")
            vocab = set(tokens)
            # llama.cpp splits a merge at the first space after its first character
            malformed = [m for m in merges if m.find(" ", 1) < 0]
            unknown = [m for m in merges if m.find(" ", 1) >= 0
                       and m[: m.find(" ", 1)] + m[m.find(" ", 1) + 1:] not in vocab]
            if malformed:
                problems.append(f"{len(malformed)} merges without a separating space, e.g. {malformed[:3]}")
            if unknown:
                problems.append(f"{len(unknown)} merges whose result is not a token, e.g. {unknown[:3]}")
    types = field_value(reader, "tokenizer.ggml.token_type") if "tokenizer.ggml.token_type" in kv else None
    if types is not None:
        if kv["tokenizer.ggml.token_type"].get("item_type") != T_I32:
            problems.append("tokenizer.ggml.token_type must be an array of i32")
        elif len(types) < n:
            problems.append(f"tokenizer.ggml.token_type has {len(types)} entries for {n} tokens")
    for key in ("tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"):
        value = field_value(reader, key) if key in kv else None
        if value is not None and not (0 <= int(value) < n):
            problems.append(f"{key} = {value} outside the vocabulary of {n}")
    report.check("tokenizer metadata", not problems, "\n".join(problems) or
                 f"{n} unique tokens, {kv.get('tokenizer.ggml.merges', {}).get('count', 0)} merges, "
                 f"token_type {'present' if types is not None else 'absent'}")
    if types is None:
        report.warn("tokenizer.ggml.token_type",
                    "absent: every token is NORMAL, so special tokens are not parsed with special=True and are "
                    "printed as text (write 1 = normal, 3 = control for <|endoftext|> and the chat tokens)")
    for key in ("tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"):
        if key not in kv:
            report.warn(key, "absent: llama.cpp's default for tokenizer model gpt2 is id 11")

    pre = field_value(reader, "tokenizer.ggml.pre") if "tokenizer.ggml.pre" in kv else None
    if pre is None:
        report.warn("tokenizer.ggml.pre", "absent: llama.cpp falls back to its 'default' split, which is not "
                                          "GPT-2's (it splits punctuation runs and 3-digit groups differently)")
    elif pre not in KNOWN_PRE:
        report.fail("tokenizer.ggml.pre", f"{pre!r} unknown to llama.cpp (it refuses the file)")
    else:
        report.ok("tokenizer.ggml.pre", f"{pre!r}")

    if run is None:
        return
    # compare with the run's tokenizer.json
    try:
        tok_file = resolve_tokenizer(run, args.tokenizer)
    except SetupError as e:
        report.skip("tokens vs run tokenizer.json", str(e))
        return
    spec = json.loads(tok_file.read_text(encoding="utf-8"))
    run_tokens: dict[int, str] = {int(i): s for s, i in spec.get("model", {}).get("vocab", {}).items()}
    specials = {int(t["id"]): t["content"] for t in spec.get("added_tokens", [])}
    run_tokens.update(specials)
    mism = [i for i in range(n) if i in run_tokens and run_tokens[i] != tokens[i]]
    missing = sorted(set(run_tokens) - set(range(n)))
    extra = [i for i in range(n) if i not in run_tokens]
    detail = f"{len(run_tokens)} tokens in {tok_file}"
    problems = []
    if mism:
        i = mism[0]
        problems.append(f"{len(mism)} token strings differ, first id {i}: run {run_tokens[i]!r} vs gguf {tokens[i]!r}")
    if missing:
        problems.append(f"{len(missing)} run token ids beyond the GGUF vocabulary, e.g. {missing[:5]}")
    if extra:
        problems.append(f"{len(extra)} GGUF ids the run's tokenizer does not have (padding?) e.g. {extra[:5]}")
    report.check("tokens vs run tokenizer.json", not mism and not missing, "\n".join(problems) or detail)
    run_merges = spec.get("model", {}).get("merges")
    if isinstance(run_merges, list) and "tokenizer.ggml.merges" in kv:
        norm = [m if isinstance(m, str) else " ".join(m) for m in run_merges]
        merges = field_value(reader, "tokenizer.ggml.merges")
        at = next((i for i, (x, y) in enumerate(zip(norm, merges)) if x != y), None)
        if at is None and len(norm) == len(merges):
            report.ok("merges vs run tokenizer.json", f"{len(norm)} merges identical, same order")
        else:
            at = at if at is not None else min(len(norm), len(merges))
            report.fail("merges vs run tokenizer.json", f"{len(norm)} vs {len(merges)} merges, first difference at {at}")
    if types is not None:
        wrong = [i for i in specials if i < len(types) and types[i] not in (3, 4)]
        plain = [i for i in range(min(n, len(types))) if i not in specials and types[i] != 1]
        report.check("token_type of special tokens", not wrong,
                     (f"special ids typed {sorted({types[i] for i in wrong})} not control(3)/user-defined(4): "
                      f"{wrong[:6]}") if wrong else
                     f"{len(specials)} special tokens control/user-defined; {len(plain)} other non-normal")
    eos = field_value(reader, "tokenizer.ggml.eos_token_id") if "tokenizer.ggml.eos_token_id" in kv else None
    eot = next((i for i, s in specials.items() if s == "<|endoftext|>"), None)
    if eot is not None and eos is not None and int(eos) != eot:
        report.warn("tokenizer.ggml.eos_token_id", f"{eos}, but <|endoftext|> is {eot}")
    pattern = split_regex(spec)
    if pattern is not None and pre is not None:
        good = PRE_FOR_REGEX.get(pattern)
        if good is None:
            report.warn("pre-tokenizer vs run", f"run's split regex is not one this checker knows: {pattern[:60]!r}")
        else:
            report.check("pre-tokenizer vs run", pre in good,
                         f"{pre!r} for the run's {'GPT-2' if pattern == GPT2_REGEX else 'GPT-4 (cl100k)'} split"
                         + ("" if pre in good else f"; use one of {sorted(good)}"))


def split_regex(spec: dict) -> str | None:
    def walk(node):
        if not isinstance(node, dict):
            return None
        if node.get("type") == "Split":
            pat = node.get("pattern", {})
            return pat.get("Regex") or pat.get("String")
        if node.get("type") == "ByteLevel" and node.get("use_regex", True):
            return GPT2_REGEX
        for child in node.get("pretokenizers", []) or []:
            found = walk(child)
            if found:
                return found
        return None

    return walk(spec.get("pre_tokenizer"))


def byte_level_alphabet() -> dict[int, str]:
    """GPT-2's byte -> printable character map (tokens are stored as these characters in GGUF)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def print_metadata(reader, kv: dict) -> None:
    print(f"\nmetadata ({len(kv)} keys):")
    for key, entry in kv.items():
        vtype = entry["type"]
        if vtype == T_ARR:
            item = TYPE_NAMES.get(entry["item_type"], "?")
            shown = f"[{item} x {entry['count']}]"
            if reader is not None and entry["count"]:
                field = reader.get_field(key)
                first = field.contents(slice(0, 3)) if field is not None else []
                shown += " " + json.dumps(first, ensure_ascii=False)[:70] + (" ..." if entry["count"] > 3 else "")
        else:
            shown = TYPE_NAMES.get(vtype, "?")
            if reader is not None:
                value = field_value(reader, key)
                text = json.dumps(value, ensure_ascii=False) if not isinstance(value, float) else f"{value:g}"
                shown += " " + (text if len(text) <= 80 else text[:77] + "...")
        print(f"  {key:<44} {shown}")


# --- gguf: llama.cpp ----------------------------------------------------------------------------------


def gguf_tail(report: Report, args, path: Path, reader, arch, run: Path | None, file_kind: str = "?",
              meta: dict | None = None) -> int:
    title = f"gguf: {path}"
    if args.no_llama:
        report.skip("llama.cpp", "--no-llama")
        return finish(report, args, title)
    try:
        import llama_cpp
    except ImportError as e:
        report.skip("llama.cpp", f"llama_cpp does not import ({e}); pip install llama-cpp-python")
        return finish(report, args, title)
    if report.failed:
        report.skip("llama.cpp", "skipped: the file already fails the checks above")
        return finish(report, args, title)
    n_ctx = args.n_ctx or min(meta["ctx"] if meta else 512, 4096)
    # llama.cpp keeps K and V in f16 by default; f32 takes that rounding out of the comparison
    kv_type = 0 if args.kv_cache == "f32" else 1  # GGML_TYPE_F32, GGML_TYPE_F16
    # ggml aborts the whole process on some bad files (e.g. an f16 norm weight: "binary_op: unsupported
    # types"), so load and evaluate once in a child process first.
    smoke_ok, smoke_log = llama_smoke_test(path, n_ctx, kv_type)
    if not smoke_ok:
        report.fail("llama.cpp load + eval", smoke_log)
        return finish(report, args, title)
    try:
        llm = llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, logits_all=False, verbose=False,
                              n_threads=args.threads or None, n_gpu_layers=0, type_k=kv_type, type_v=kv_type)
    except Exception as e:  # noqa: BLE001
        report.fail("llama.cpp load", f"{type(e).__name__}: {e}")
        return finish(report, args, title)
    report.ok("llama.cpp load", f"llama-cpp-python {package_version('llama_cpp_python')}, n_ctx {n_ctx}, "
                                f"KV cache {args.kv_cache}, "
                                f"n_vocab {llm.n_vocab()}, bos {llm.token_bos()}, eos {llm.token_eos()}")
    if run is None:
        report.skip("llama.cpp vs swiftgpt", "no --run")
        return finish(report, args, title)
    exe = find_swiftgpt(args.swiftgpt)
    tok_file = resolve_tokenizer(run, args.tokenizer)

    def compare_with_llama() -> None:
        def llama_encode(text: str) -> list[int]:
            return list(llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

        texts = SAMPLE_TEXTS + list(args.text or []) + [args.prompt]
        compare_tokenization(report, "llama.cpp encode", texts,
                             lambda t: swift_encode(exe, tok_file, t, args.timeout), llama_encode)
        round_trip = [t for t in texts if llama_decode(llm, llama_encode(t)) != t.encode("utf-8")]
        report.check("llama.cpp decode(encode(x)) == x", not round_trip,
                     f"differs for {[describe_text(t, 20) for t in round_trip]}" if round_trip else f"{len(texts)} texts")

        # greedy decoding: argmax over the last position's logits after each llm.eval
        prompt_ids = llama_encode(args.prompt)
        if not prompt_ids:
            report.fail("llama.cpp generate", "the prompt encodes to no tokens")
            return
        try:
            swift = swift_generate(exe, run, args.prompt, args.max_tokens, args.timeout)
        except SwiftGPTError as e:
            report.fail("generate: swiftgpt", str(e))
            return
        import numpy as np

        budget = min(args.max_tokens, n_ctx - len(prompt_ids))
        if budget < args.max_tokens:
            report.warn("llama.cpp generate: length", f"--max-tokens {args.max_tokens} clipped to {budget} by n_ctx {n_ctx}")
        llm.reset()
        llm.eval(prompt_ids)
        out_ids: list[int] = []
        out_lp: list[float] = []
        out_logits = []
        n_vocab = llm.n_vocab()
        eos = {llm.token_eos()}
        for _ in range(budget):
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(n_vocab,)).astype(np.float64)
            token = int(np.argmax(logits))
            out_logits.append(logits)
            shifted = logits - logits.max()
            out_lp.append(float(shifted[token] - np.log(np.exp(shifted).sum())))
            out_ids.append(token)
            if token in eos:
                break
            llm.eval([token])
        if args.allow_divergence_after is not None:
            exact_upto = float(args.allow_divergence_after)
        else:
            exact_upto = 0.0 if file_kind == "q8_0" else math.inf
        margin = args.tie_margin if args.tie_margin is not None else {"f32": 0.01, "f16": 0.05}.get(file_kind, 0.1)
        compare_greedy(report, f"llama.cpp generate ({file_kind})", swift, out_ids, eos, exact_upto, "llama.cpp",
                       out_lp, out_logits, margin)

    try:
        compare_with_llama()
    except Exception as e:  # noqa: BLE001 - report it as a failed row
        report.fail("llama.cpp: error", f"{type(e).__name__}: {e}")
    return finish(report, args, title)


def llama_decode(llm, ids: list[int]) -> bytes:
    """Concatenated token pieces (llama_token_to_piece, no special tokens, no space clean-up).
    Llama.detokenize does the same with a 32-byte buffer, too small for long tokens."""
    import ctypes

    import llama_cpp

    vocab = getattr(getattr(llm, "_model", None), "vocab", None)
    if vocab is None:
        return llm.detokenize(ids)
    out = b""
    buf = ctypes.create_string_buffer(1024)
    for t in ids:
        n = llama_cpp.llama_token_to_piece(vocab, llama_cpp.llama_token(t), buf, len(buf), 0, False)
        out += buf.raw[: max(n, 0)]
    return out


def llama_smoke_test(path: Path, n_ctx: int, kv_type: int) -> tuple[bool, str]:
    """Loads the file and evaluates two tokens in a child process with llama.cpp's log on; returns
    (worked, llama.cpp's error lines). llama-cpp-python itself only says 'Failed to load model'."""
    code = (
        "import llama_cpp\n"
        f"llm = llama_cpp.Llama(model_path={str(path)!r}, n_ctx={n_ctx}, verbose=True, n_gpu_layers=0, "
        f"n_threads=1, type_k={kv_type}, type_v={kv_type})\n"
        "ids = llm.tokenize(b'Hello world', add_bos=False, special=False) or [0]\n"
        "llm.eval(ids[:2])\n"
        "print('SMOKE-OK', flush=True)\n"
    )
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        return False, "llama.cpp load + eval timed out (600 s)"
    if proc.returncode == 0 and "SMOKE-OK" in proc.stdout:
        return True, ""
    lines = [l for l in (proc.stderr + proc.stdout).splitlines() if l.strip() and not l.startswith("#")]
    keep = [l for l in lines if any(w in l.lower() for w in ("error", "failed", "wrong", "expected", "invalid",
                                                             "unknown", "missing", "unsupported", "abort",
                                                             "exception", "assert"))]
    return False, f"child exited {proc.returncode}:\n" + "\n".join(dict.fromkeys(keep or lines[-8:]).keys())


# --- main ---------------------------------------------------------------------------------------------


def finish(report: Report, args, title: str) -> int:
    report.print(title)
    if getattr(args, "report", None):
        Path(args.report).write_text(json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 1 if report.failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--swiftgpt", metavar="PATH",
                       help="swiftgpt binary (default: .build/release/swiftgpt in the repo, else swiftgpt on PATH)")
        p.add_argument("--tokenizer", metavar="FILE",
                       help="the run's tokenizer.json (default: RUN/tokenizer.json, RUN/best/..., RUN/last/...)")
        p.add_argument("--prompt", default=DEFAULT_PROMPT, help=f"generation prompt (default {DEFAULT_PROMPT!r})")
        p.add_argument("--max-tokens", type=int, default=32, help="tokens to generate greedily (default 32)")
        p.add_argument("--text", action="append", metavar="TEXT", help="extra string to compare tokenization on "
                                                                        "(repeatable)")
        p.add_argument("--threads", type=int, default=0, help="CPU threads for torch / llama.cpp (default: theirs)")
        p.add_argument("--timeout", type=float, default=600, help="seconds per swiftgpt call (default 600)")
        p.add_argument("--report", metavar="FILE", help="also write the result table as JSON")
        p.add_argument("--tie-margin", type=float, metavar="X",
                       help="a greedy divergence where the reference's logit for swiftgpt's token is within X of its "
                            "own choice is only a warning (default: 1e-3 for hf; 0.01 f32, 0.05 f16 for gguf)")

    hf = sub.add_parser("hf", help="check a Hugging Face directory written by `swiftgpt convert --to-hf`")
    hf.add_argument("--run", required=True, help="the SwiftGPT run (or checkpoint folder) that was converted")
    hf.add_argument("--hf", required=True, metavar="DIR", help="the Hugging Face directory")
    common(hf)
    hf.add_argument("--loss-tol", type=float, default=1e-3,
                    help="largest accepted |swiftgpt loss - HF loss| in nats (default 1e-3)")
    hf.add_argument("--loss-text", metavar="FILE", help="UTF-8 text for the loss comparison (cut to the context)")

    gg = sub.add_parser("gguf", help="check a GGUF file written by `swiftgpt convert --to-gguf`")
    gg.add_argument("--run", help="the SwiftGPT run that was converted (without it only the file is checked)")
    gg.add_argument("--gguf", required=True, metavar="FILE", help="the GGUF file")
    common(gg)
    gg.add_argument("--allow-divergence-after", type=int, metavar="K",
                    help="greedy tokens that must match before llama.cpp may diverge "
                         "(default: all for f32/f16, report only for q8_0)")
    gg.add_argument("--n-ctx", type=int, default=0, help="llama.cpp context (default: the model's, at most 4096)")
    gg.add_argument("--kv-cache", choices=("f32", "f16"), default="f32",
                    help="llama.cpp KV cache type (default f32; llama.cpp's own default is f16)")
    gg.add_argument("--no-llama", action="store_true", help="do not load the file with llama.cpp")
    gg.add_argument("--no-values", action="store_true", help="do not dequantize tensors to check they are finite")

    args = parser.parse_args(argv)
    if args.max_tokens < 1:
        parser.error("--max-tokens must be at least 1")
    try:
        if args.command == "hf":
            if not Path(args.hf).is_dir():
                raise SetupError(f"--hf {args.hf} is not a directory")
            return cmd_hf(args)
        return cmd_gguf(args)
    except SetupError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
