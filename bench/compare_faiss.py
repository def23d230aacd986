#!/usr/bin/env python3
"""gclip's HNSW against faiss's on the same vectors, in one run.

Generates BASE (default 100k x 512) clustered unit vectors and 1000 queries as .npy, then
runs faiss IndexHNSWFlat (M=16, efConstruction=200, inner product) and `gclip index bench`
with the same parameters, and prints one JSON line per measurement and a summary table.

    python3 -m venv /work/faissvenv && /work/faissvenv/bin/pip install faiss-cpu numpy
    cargo build -p gclip-cli
    /work/faissvenv/bin/python bench/compare_faiss.py --gclip target/debug/gclip

Each engine builds with --build-threads threads and answers queries one at a time on
--threads threads. Ground truth is exact inner-product search.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROUNDS = 3


def make_data(n, nq, dim, clusters, seed):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, dim)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)

    def draw(m):
        c = rng.integers(0, clusters, m)
        x = centers[c] + 0.6 * rng.standard_normal((m, dim)).astype(np.float32) / np.sqrt(dim) * 4
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x.astype(np.float32)

    return draw(n), draw(nq)


def ground_truth(base, queries, k):
    out = np.empty((len(queries), k), dtype=np.int64)
    for s in range(0, len(queries), 100):
        sims = queries[s:s + 100] @ base.T
        part = np.argpartition(-sims, k, axis=1)[:, :k]
        out[s:s + 100] = part
    return out


def passes(n, sel):
    """The rows gclip's bench lets through a filter of selectivity `sel`."""
    h = (np.arange(n, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(40)
    return h.astype(np.float64) < sel * float(1 << 24)


def recall(got, gt):
    k = gt.shape[1]
    return float(np.mean([len(set(g[:k]) & set(t)) / k for g, t in zip(got, gt)]))


def run_faiss(base, queries, gt, args):
    import faiss

    faiss.omp_set_num_threads(args.build_threads)
    dim = base.shape[1]
    index = faiss.IndexHNSWFlat(dim, args.m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = args.ef_construction
    t = time.perf_counter()
    index.add(base)
    build_s = time.perf_counter() - t
    # Memory per vector from the serialised size (vectors + links), and the time to load it back.
    path = os.path.join(args.workdir_resolved, "faiss.index")
    faiss.write_index(index, path)
    t = time.perf_counter()
    faiss.read_index(path)
    reopen_s = time.perf_counter() - t
    yield {"engine": "faiss", "build_s": build_s, "threads": args.build_threads,
           "bytes_per_vector": os.path.getsize(path) // len(base), "reopen_s": reopen_s}
    faiss.omp_set_num_threads(1)
    for ef in args.ef:
        index.hnsw.efSearch = ef
        got = np.empty((len(queries), args.k), dtype=np.int64)
        # Fastest of ROUNDS passes, as gclip's bench reports (other jobs only slow a pass).
        secs = float("inf")
        for _ in range(ROUNDS):
            t = time.perf_counter()
            if args.threads == 1:
                for i in range(len(queries)):
                    _, ids = index.search(queries[i:i + 1], args.k)
                    got[i] = ids[0]
            else:
                from concurrent.futures import ThreadPoolExecutor

                def one(i):
                    _, ids = index.search(queries[i:i + 1], args.k)
                    got[i] = ids[0]

                with ThreadPoolExecutor(args.threads) as ex:
                    list(ex.map(one, range(len(queries))))
            secs = min(secs, time.perf_counter() - t)
        yield {"engine": "faiss", "ef": ef, f"recall_at_{args.k}": recall(got, gt), "qps": len(queries) / secs,
               "rounds": ROUNDS}
    # Filtered search with the same rows allowed as gclip's bench (a hash of the row number),
    # through faiss's ID selector inside the HNSW search (faiss has no exact fall-back).
    for sel in [float(x) for x in args.filter_selectivity.split(",") if x]:
        allowed = passes(len(base), sel)
        fbase = base[allowed]
        fgt_local = ground_truth(fbase, queries, args.k)
        fgt = np.flatnonzero(allowed)[fgt_local]
        bitmap = np.packbits(allowed, bitorder="little")
        selector = faiss.IDSelectorBitmap(len(base), faiss.swig_ptr(bitmap))
        for ef in args.ef:
            params = faiss.SearchParametersHNSW(sel=selector, efSearch=ef)
            got = np.empty((len(queries), args.k), dtype=np.int64)
            secs = float("inf")
            for _ in range(ROUNDS):
                t = time.perf_counter()
                for i in range(len(queries)):
                    _, ids = index.search(queries[i:i + 1], args.k, params=params)
                    got[i] = ids[0]
                secs = min(secs, time.perf_counter() - t)
            yield {"engine": "faiss", "filter_selectivity": sel, "allowed": int(allowed.sum()), "ef": ef,
                   "mode": "graph", f"recall_at_{args.k}": recall(got, fgt), "qps": len(queries) / secs,
                   "rounds": ROUNDS}


def run_gclip(base_path, q_path, args, precision, extra):
    cmd = [
        args.gclip, "index", "bench", "--base", base_path, "--queries", q_path,
        "--k", str(args.k), "--ef", ",".join(map(str, args.ef)), "--m", str(args.m),
        "--ef-construction", str(args.ef_construction), "--threads", str(args.threads),
        "--build-threads", str(args.build_threads), "--precision", precision,
    ] + extra
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"gclip failed ({p.returncode}):\n{p.stderr}")
    for line in p.stdout.splitlines():
        if line.strip():
            d = json.loads(line)
            d["engine"] = f"gclip-{precision}"
            yield d


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gclip", default="target/release/gclip")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--clusters", type=int, default=100)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--ef", type=lambda s: [int(x) for x in s.split(",")], default=[16, 24, 32, 64, 128])
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--build-threads", type=int, default=2)
    ap.add_argument("--precisions", default="float32,int8,float16")
    ap.add_argument("--filter-selectivity", default="0.01,0.1")
    ap.add_argument("--skip-faiss", action="store_true")
    ap.add_argument("--workdir", default=None, help="where the .npy files go (default: a temp dir)")
    args = ap.parse_args()

    work = args.workdir or tempfile.mkdtemp(prefix="gclip-faiss-")
    args.workdir_resolved = work
    os.makedirs(work, exist_ok=True)
    base, queries = make_data(args.n, args.queries, args.dim, args.clusters, 7)
    bp, qp = os.path.join(work, "base.npy"), os.path.join(work, "queries.npy")
    np.save(bp, base)
    np.save(qp, queries)
    gt = ground_truth(base, queries, args.k)
    results = []

    def emit(d):
        results.append(d)
        print(json.dumps(d), flush=True)

    if not args.skip_faiss:
        for d in run_faiss(base, queries, gt, args):
            emit(d)
    for i, precision in enumerate(args.precisions.split(",")):
        extra = ["--filter-selectivity", args.filter_selectivity] if i == 0 and args.filter_selectivity else []
        for d in run_gclip(bp, qp, args, precision, extra):
            emit(d)

    key = f"recall_at_{args.k}"
    print(f"\n{'engine':<16} {'ef':>5} {'recall':>8} {'qps':>9}  (n={args.n}, dim={args.dim}, "
          f"{args.threads} query thread(s), shared machine)", file=sys.stderr)
    for d in results:
        if "build_s" in d:
            print(f"{d['engine']:<16} build {d['build_s']:.1f} s on {d.get('build_threads', args.build_threads)} threads"
                  + (f", {d['bytes_per_vector']} B/vector" if "bytes_per_vector" in d else "")
                  + (f", loads in {d['reopen_s']:.2f} s" if "reopen_s" in d else ""), file=sys.stderr)
        elif key in d:
            tag = f" filter {d['filter_selectivity']} ({d['mode']})" if "filter_selectivity" in d else ""
            print(f"{d['engine']:<16} {d['ef']:>5} {d[key]:>8.4f} {d['qps']:>9.0f}{tag}", file=sys.stderr)


if __name__ == "__main__":
    main()
