#!/usr/bin/env python3
"""Load benchmark for `gclip serve` on loopback: N concurrent clients mixing search and add
for T seconds; prints requests/s, p50 / p99 latency and errors per operation, and the text
batcher's texts per forward pass (from /health).

  python3 bench/serve_load.py --gclip target/release/gclip --clients 1,4,16 --seconds 10
  python3 bench/serve_load.py --url http://127.0.0.1:8882 --clients 16 --add-fraction 0.2

Standard library only. With --gclip it starts its own server on a free port with a temporary
data directory (and stops it); with --url it uses a running one (and creates index `load`).
"""

import argparse
import http.client
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

WORDS = ("red blue green black white brown tan grey pink orange suede leather wool silk cotton "
         "linen canvas denim sneakers boots sandals dress shirt scarf jacket mug vase lamp bag "
         "hat belt sofa chair table rug vintage classic slim oversized striped plain").split()


def phrase(rng, n=4):
    return " ".join(rng.choice(WORDS) for _ in range(n))


class Conn:
    def __init__(self, url):
        u = urllib.parse.urlparse(url)
        self.c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body)
        self.c.request(method, path, body=data, headers={"Content-Type": "application/json"})
        r = self.c.getresponse()
        raw = r.read()
        return r.status, json.loads(raw) if raw else None


def start_server(gclip, data_dir, extra):
    p = subprocess.Popen([gclip, "serve", "--addr", "127.0.0.1:0", "--data-dir", data_dir, *extra],
                         stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    if "listening on " not in line:
        p.kill()
        sys.exit(f"server did not start: {line!r}")
    return p, line.strip().split("listening on ", 1)[1]


def run(url, clients, seconds, add_fraction, seed_docs):
    rng = random.Random(0)
    c = Conn(url)
    c.call("DELETE", "/indexes/load")
    st, r = c.call("POST", "/indexes/load", {})
    assert st == 200, r
    for i in range(0, seed_docs, 64):
        docs = [{"_id": f"seed{j}", "title": phrase(rng), "n": j}
                for j in range(i, min(i + 64, seed_docs))]
        st, r = c.call("POST", "/indexes/load/documents", {"documents": docs, "tensorFields": ["title"]})
        assert st == 200 and not r["errors"], r
    st, h0 = c.call("GET", "/health")
    lat = {"search": [], "add": []}
    errors = {"search": 0, "add": 0}
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client(k):
        r = random.Random(k)
        conn = Conn(url)
        n = 0
        while time.monotonic() < stop:
            add = r.random() < add_fraction
            t0 = time.perf_counter()
            try:
                if add:
                    st, body = conn.call("POST", "/indexes/load/documents", {
                        "documents": [{"_id": f"c{k}-{n}", "title": phrase(r)}], "tensorFields": ["title"]})
                    ok = st == 200 and not body["errors"]
                else:
                    st, body = conn.call("POST", "/indexes/load/search", {"q": phrase(r, 3), "limit": 10})
                    ok = st == 200 and len(body["hits"]) > 0
            except (OSError, http.client.HTTPException, ValueError):
                ok = False
                conn = Conn(url)
            dt = time.perf_counter() - t0
            op = "add" if add else "search"
            with lock:
                lat[op].append(dt)
                errors[op] += 0 if ok else 1
            n += 1

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    st, h1 = c.call("GET", "/health")
    g0, g1 = h0.get("gclip", {}), h1.get("gclip", {})
    passes = g1.get("textBatches", 0) - g0.get("textBatches", 0)
    texts = g1.get("texts", 0) - g0.get("texts", 0)
    total = sum(len(v) for v in lat.values())
    row = {"clients": clients, "seconds": round(wall, 1), "req_per_s": round(total / wall, 1),
           "errors": sum(errors.values()),
           "texts_per_pass": round(texts / passes, 2) if passes else None}
    for op, v in lat.items():
        if not v:
            continue
        v.sort()
        row[op] = {"n": len(v), "per_s": round(len(v) / wall, 1),
                   "p50_ms": round(1e3 * v[len(v) // 2], 1),
                   "p99_ms": round(1e3 * v[min(len(v) - 1, int(len(v) * 0.99))], 1),
                   "errors": errors[op]}
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gclip", help="gclip binary: start a server of its own")
    ap.add_argument("--url", help="a running server instead")
    ap.add_argument("--clients", default="1,16", help="comma-separated client counts")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--add-fraction", type=float, default=0.1)
    ap.add_argument("--seed-docs", type=int, default=500)
    ap.add_argument("--server-args", default="",
                    help="extra `gclip serve` flags, e.g. '--max-text-batch 1' (batching off)")
    a = ap.parse_args()
    if not (a.gclip or a.url):
        ap.error("give --gclip BINARY or --url URL")
    proc, tmp = None, None
    url = a.url
    if a.gclip:
        tmp = tempfile.TemporaryDirectory()
        proc, url = start_server(a.gclip, os.path.join(tmp.name, "data"), a.server_args.split())
    try:
        for n in [int(x) for x in a.clients.split(",")]:
            print(json.dumps(run(url, n, a.seconds, a.add_fraction, a.seed_docs)), flush=True)
    finally:
        if proc:
            proc.terminate()
            proc.wait(timeout=30)
        if tmp:
            tmp.cleanup()


if __name__ == "__main__":
    main()
