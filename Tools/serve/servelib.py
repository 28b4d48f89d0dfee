"""Shared helpers for the `swiftgpt serve` test tools: start the server on a free loopback port,
wait until it is ready, stop it again, read its memory use.

Only the standard library is used here, so every tool can import it.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

DEFAULT_BINARY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".build", "release", "swiftgpt")


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=5.0, headers=None):
    """GET `url`; returns (status, body bytes). HTTP errors are returned, not raised."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def rss_mb(pid):
    """Resident set size of process `pid` in MiB (from /proc/PID/status), or None if unreadable."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0  # the value is in kB
    except OSError:
        pass
    return None


def model_id_candidates(model_path):
    """Names the server may use as the model id: the run folder's name, or its parent's name when
    the path points at a checkpoint folder inside a run (best/last)."""
    p = os.path.normpath(os.path.abspath(model_path))
    names = [os.path.basename(p)]
    if os.path.basename(p) in ("best", "last"):
        names.append(os.path.basename(os.path.dirname(p)))
    return names


def find_tokenizer_json(model_path):
    """tokenizer.json of a run folder or checkpoint folder, or None."""
    for sub in ("", "best", "last"):
        path = os.path.join(model_path, sub, "tokenizer.json")
        if os.path.isfile(path):
            return path
    return None


class Server:
    """A `swiftgpt serve` child process on 127.0.0.1:<free port>.

    Use as a context manager; the process is always stopped on exit (SIGINT, then SIGTERM, then
    SIGKILL, each after a grace period). Its combined stdout/stderr goes to a log file whose tail is
    printed when start-up fails.
    """

    def __init__(self, binary, model, api_key=None, extra_args=(), startup_timeout=180.0, quiet=False):
        self.binary = binary
        self.model = model
        self.api_key = api_key
        self.extra_args = list(extra_args)
        self.startup_timeout = startup_timeout
        self.quiet = quiet
        self.proc = None
        self.port = None
        self.log = tempfile.NamedTemporaryFile(prefix="swiftgpt-serve-", suffix=".log", delete=False)
        self.log_path = self.log.name
        self._listening = threading.Event()
        self._reader = None

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def command(self):
        cmd = [self.binary, "serve", "--model", self.model, "--host", "127.0.0.1", "--port", str(self.port)]
        if self.api_key:
            cmd += ["--api-key", self.api_key]
        return cmd + self.extra_args

    def _pump(self):
        # Copies the child's output to the log file and watches for the "listening on" line.
        for raw in iter(self.proc.stdout.readline, b""):
            self.log.write(raw)
            self.log.flush()
            if b"listening on http://" in raw:
                self._listening.set()

    def start(self):
        if not os.path.isfile(self.binary) or not os.access(self.binary, os.X_OK):
            raise RuntimeError(f"server binary not found or not executable: {self.binary}")
        # A port picked by free_port() can be taken by someone else before the server binds it;
        # try a few times when the process dies right away.
        last_error = None
        for _attempt in range(3):
            self.port = free_port()
            self._listening.clear()
            cmd = self.command()
            if not self.quiet:
                print("starting:", " ".join(cmd), flush=True)
            # A new session, so that a Ctrl-C in the terminal reaches only us; we stop the child ourselves.
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, start_new_session=True)
            self._reader = threading.Thread(target=self._pump, daemon=True)
            self._reader.start()
            try:
                self._wait_ready()
                if not self.quiet:
                    print(f"server ready at {self.base_url} (pid {self.proc.pid}, log {self.log_path})", flush=True)
                return self
            except RuntimeError as e:
                last_error = e
                exited = self.proc.poll() is not None
                self.stop()
                if not (exited and self._log_mentions_port_in_use()):
                    break  # not a lost race for the port: do not retry
        self.print_log_tail()
        raise last_error

    def _log_mentions_port_in_use(self):
        try:
            with open(self.log_path, "rb") as f:
                text = f.read().decode("utf-8", "replace").lower()
        except OSError:
            return False
        return "in use" in text or "eaddrinuse" in text

    def _wait_ready(self):
        deadline = time.monotonic() + self.startup_timeout
        while not self._listening.is_set():
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with status {self.proc.returncode} before listening")
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not print 'listening on http://' within {self.startup_timeout:.0f} s")
            self._listening.wait(0.1)
        # Listening; the model may still be loading: poll /health until it answers 200.
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with status {self.proc.returncode} before /health was ready")
            try:
                status, _ = http_get(self.base_url + "/health", timeout=2.0)
                if status == 200:
                    return
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"GET /health did not return 200 within {self.startup_timeout:.0f} s")
            time.sleep(0.1)

    def stop(self, grace=10.0):
        """Stops the server; returns (exit status, seconds it took after SIGINT), or None if not running."""
        if self.proc is None:
            return None
        proc, self.proc = self.proc, None
        if proc.poll() is not None:
            return proc.returncode, 0.0
        t0 = time.monotonic()
        for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            try:
                proc.send_signal(sig)  # by pid: only our own child
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                if not self.quiet:
                    print(f"server did not exit after {signal.Signals(sig).name}; escalating", flush=True)
        if self._reader:
            self._reader.join(timeout=2.0)
        return proc.returncode, time.monotonic() - t0

    def print_log_tail(self, lines=40):
        try:
            with open(self.log_path, "rb") as f:
                tail = f.read().decode("utf-8", "replace").splitlines()[-lines:]
        except OSError:
            return
        print(f"--- last {len(tail)} lines of the server log ({self.log_path}) ---", file=sys.stderr)
        for line in tail:
            print("  " + line, file=sys.stderr)
        print("---", file=sys.stderr, flush=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False


def start_or_attach(args, extra_args=None, quiet=False, report=print):
    """`--url`: use that server; otherwise start one from --binary/--model/--api-key/--server-arg.
    Returns (server or None, base_url), or (None, None) when the server did not start (reported)."""
    if args.url:
        return None, args.url.rstrip("/")
    extra = list(args.server_arg) + list(extra_args or [])
    server = Server(args.binary, args.model, args.api_key, extra, args.startup_timeout, quiet=quiet)
    try:
        server.start()
    except RuntimeError as e:
        report(f"FAIL startup: {e}")
        return None, None
    return server, server.base_url


def install_signal_handlers():
    """Turns SIGTERM into SystemExit, so that `with Server(...)` blocks and `finally:` clauses run
    (and the child is stopped) when the test tool itself is terminated. Ctrl-C already raises
    KeyboardInterrupt."""
    def _exit(signum, _frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, _exit)


def pretty(obj, limit=600):
    """A short, single-line rendering of a value for failure messages."""
    try:
        s = json.dumps(obj, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        s = repr(obj)
    return s if len(s) <= limit else s[:limit] + "…"
