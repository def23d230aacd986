"""Starting and stopping `gclip serve` for the tests: a free loopback port (the server binds
port 0 and prints the address), bounded waits, and a stop that always ends the process."""

import json
import os
import pathlib
import queue
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request


class Server:
    def __init__(self, gclip_bin, data_dir, *extra, env=None, start_timeout=60.0):
        self.gclip_bin = pathlib.Path(gclip_bin)
        self.data_dir = pathlib.Path(data_dir)
        self.extra = [str(x) for x in extra]
        self.env = dict(os.environ, **(env or {}))
        self.env.setdefault("RUST_LOG", "warn")
        self.start_timeout = start_timeout
        self.proc = None
        self.url = None
        self.stderr_lines = []

    def start(self):
        cmd = [str(self.gclip_bin), "serve", "--addr", "127.0.0.1:0",
               "--data-dir", str(self.data_dir), *self.extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=self.env)
        lines = queue.Queue()

        def pump(stream, sink):
            for line in stream:
                sink(line)

        threading.Thread(target=pump, args=(self.proc.stdout, lines.put), daemon=True).start()
        threading.Thread(target=pump, args=(self.proc.stderr, self.stderr_lines.append),
                         daemon=True).start()
        deadline = time.monotonic() + self.start_timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("gclip serve did not start: " + "".join(self.stderr_lines[-20:]))
            try:
                line = lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if "listening on " in line:
                self.url = line.strip().split("listening on ", 1)[1]
                break
        return self

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def raw(self, method, path, body=None, headers=None, timeout=30):
        """One request without the client: (status, parsed JSON or None, raw bytes)."""
        data = body if isinstance(body, (bytes, type(None))) else body.encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw = r.read()
                status = r.status
        except urllib.error.HTTPError as e:
            raw = e.read()
            status = e.code
        try:
            return status, json.loads(raw), raw
        except ValueError:
            return status, None, raw
