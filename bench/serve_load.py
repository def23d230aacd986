#!/usr/bin/env python3
"""Load benchmark for `gclip serve` on loopback: N concurrent clients mixing search and add
for T seconds; prints one JSON line per run with requests/s, p50 / p99 latency and errors per
operation, the text batcher's texts per forward pass and the add requests per merged commit
(both from /health).

  python3 bench/serve_load.py --gclip target/release/gclip --clients 1,4,16 --seconds 10
  python3 bench/serve_load.py --url http://127.0.0.1:8882 --clients 16 --add-fraction 0.2
  # side by side, alternating: two server configurations (here: add merging on / off)
  python3 bench/serve_load.py --gclip target/release/gclip --add-fraction 1 \
      --server-args '' --server-args '--max-add-batch-docs 1'
  # the same search workload on gclip's library path as the floor (no HTTP, no client)
  cargo build --release -p gclip-server --example search_floor
  python3 bench/serve_load.py --gclip target/release/gclip --add-fraction 0 \
      --floor target/release/examples/search_floor

Standard library only. With --gclip it starts its own servers on free ports with temporary
data directories (and stops them); with --url it uses a running one (and recreates index
`load`). Client counts, configurations and the floor are interleaved, each run on a freshly
seeded index, so that a noisy machine affects them alike; --rounds repeats the whole cycle.
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


def seed_documents(n):
    rng = random.Random(0)
    return [{"_id": f"seed{j}", "title": phrase(rng), "n": j} for j in range(n)]


def operations(k, add_fraction):
    """Client k's endless sequence of ("add", doc) / ("search", body): the same for the server
    and the library floor."""
    r = random.Random(k)
    n = 0
    while True:
        if r.random() < add_fraction:
            yield "add", {"_id": f"c{k}-{n}", "title": phrase(r)}
        else:
            yield "search", {"q": phrase(r, 3), "limit": 10}
        n += 1


def run(url, clients, seconds, add_fraction, seed_docs):
    c = Conn(url)
    c.call("DELETE", "/indexes/load")
    st, r = c.call("POST", "/indexes/load", {})
    assert st == 200, r
    docs = seed_documents(seed_docs)
    for i in range(0, len(docs), 64):
        st, r = c.call("POST", "/indexes/load/documents",
                       {"documents": docs[i:i + 64], "tensorFields": ["title"]})
        assert st == 200 and not r["errors"], r
    st, h0 = c.call("GET", "/health")
    lat = {"search": [], "add": []}
    errors = {"search": 0, "add": 0}
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client(k):
        conn = Conn(url)
        for op, payload in operations(k, add_fraction):
            if time.monotonic() >= stop:
                break
            t0 = time.perf_counter()
            try:
                if op == "add":
                    st, body = conn.call("POST", "/indexes/load/documents", {
                        "documents": [payload], "tensorFields": ["title"]})
                    ok = st == 200 and not body["errors"]
                else:
                    st, body = conn.call("POST", "/indexes/load/search", payload)
                    ok = st == 200 and len(body["hits"]) > 0
            except (OSError, http.client.HTTPException, ValueError):
                ok = False
                conn = Conn(url)
            dt = time.perf_counter() - t0
            with lock:
                lat[op].append(dt)
                errors[op] += 0 if ok else 1

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    st, h1 = c.call("GET", "/health")
    g0, g1 = h0.get("gclip", {}), h1.get("gclip", {})
    d = lambda k: g1.get(k, 0) - g0.get(k, 0)  # noqa: E731
    passes, texts = d("textBatches"), d("texts")
    commits, adds = d("addBatches"), d("addRequests")
    total = sum(len(v) for v in lat.values())
    row = {"clients": clients, "seconds": round(wall, 1), "req_per_s": round(total / wall, 1),
           "errors": sum(errors.values()),
           "texts_per_pass": round(texts / passes, 2) if passes else None,
           "adds_per_commit": round(adds / commits, 2) if commits else None}
    for op, v in lat.items():
        if not v:
            continue
        v.sort()
        row[op] = {"n": len(v), "per_s": round(len(v) / wall, 1),
                   "p50_ms": round(1e3 * v[len(v) // 2], 1),
                   "p99_ms": round(1e3 * v[min(len(v) - 1, int(len(v) * 0.99))], 1),
                   "errors": errors[op]}
    return row


def floor(binary, clients, seconds, seed_docs, tmpdir):
    """The same search workload on gclip's library path (the search_floor example)."""
    queries = []
    for k in range(clients):
        ops = operations(k, 0.0)
        queries.append([next(ops)[1] for _ in range(20000)])
    path = os.path.join(tmpdir, "workload.json")
    with open(path, "w") as f:
        json.dump({"seed_docs": seed_documents(seed_docs), "tensor_fields": ["title"],
                   "queries": queries}, f)
    out = subprocess.run([binary, path, str(clients), str(seconds)], check=True,
                         capture_output=True, text=True, timeout=seconds + 300)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gclip", help="gclip binary: start servers of its own")
    ap.add_argument("--url", help="a running server instead")
    ap.add_argument("--clients", default="1,16", help="comma-separated client counts")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--add-fraction", type=float, default=0.1)
    ap.add_argument("--seed-docs", type=int, default=500)
    ap.add_argument("--server-args", action="append",
                    help="extra `gclip serve` flags of one configuration, e.g. '--max-text-batch 1' "
                         "(text batching off); repeat to compare configurations side by side")
    ap.add_argument("--floor", help="the search_floor example binary: also run the search "
                                    "workload on the library path (searches only)")
    ap.add_argument("--rounds", type=int, default=1)
    a = ap.parse_args()
    if not (a.gclip or a.url):
        ap.error("give --gclip BINARY or --url URL")
    configs = a.server_args or [""]
    servers = []  # (label, url, proc)
    tmp = tempfile.TemporaryDirectory()
    try:
        if a.gclip:
            for i, extra in enumerate(configs):
                proc, url = start_server(a.gclip, os.path.join(tmp.name, f"data{i}"), extra.split())
                servers.append((extra or "default", url, proc))
        else:
            servers.append(("running", a.url, None))
        for _ in range(a.rounds):
            for n in [int(x) for x in a.clients.split(",")]:
                for label, url, _ in servers:
                    row = run(url, n, a.seconds, a.add_fraction, a.seed_docs)
                    print(json.dumps({"path": "server", "config": label, **row}), flush=True)
                if a.floor:
                    print(json.dumps(floor(a.floor, n, a.seconds, a.seed_docs, tmp.name)), flush=True)
    finally:
        for _, _, proc in servers:
            if proc:
                proc.terminate()
                proc.wait(timeout=30)
        tmp.cleanup()


if __name__ == "__main__":
    main()
