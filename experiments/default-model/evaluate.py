#!/usr/bin/env python3
"""Evaluate a model on shops of seeds it never saw, against the protocol's ceiling.

For each seed: `gclip synth` (1,500 products, 500 queries), `gclip eval oracle` (the
attribute-overlap ranking), `gclip eval retrieval` on the four splits (documents
0.9 image + 0.1 title; in-domain / novel query over corpus_1.json, novel document /
zero-shot over corpus_2.json) and `gclip eval zeroshot` on the three class-folder sets
with three prompts: the CLIP prompt, the bare class name, and a prompt no caption
template uses. Prints a markdown table and writes everything as JSON.

    python3 experiments/default-model/evaluate.py --gclip target/release/gclip \
        --model DIR --seeds 42,43,44 --work /tmp/eval --out report.json

Without --model the embedded default model is evaluated. Standard library only.
"""

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

SPLITS = [
    ("in_domain", "test_in_domain.csv", "corpus_1.json"),
    ("novel_query", "test_novel_query.csv", "corpus_1.json"),
    ("novel_document", "test_novel_document.csv", "corpus_2.json"),
    ("zero_shot", "test_zero_shot.csv", "corpus_2.json"),
]
PROMPTS = [
    ("photo", "a photo of a {}."),
    ("bare", "{}"),
    ("unseen", "this item is a {}, shown on its own."),
]
SETS = ["category", "heldout_combo", "seen_combo"]


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr}")
    return r.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gclip", default="target/release/gclip")
    ap.add_argument("--model", help="model directory [default: the embedded default]")
    ap.add_argument("--seeds", default="42,43,44")
    ap.add_argument("--products", type=int, default=1500)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--work", default="/tmp/gclip-default-model-eval")
    ap.add_argument("--out", help="write the full report as JSON here")
    ap.add_argument("--threads", type=int)
    a = ap.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    model = ["--model", a.model] if a.model else []
    if a.threads:
        model += ["--threads", str(a.threads)]
    report = {"model": a.model or "embedded default", "seeds": {}}
    for seed in [int(s) for s in a.seeds.split(",")]:
        shop = work / f"shop{seed}"
        if not (shop / "manifest.json").is_file():
            run([a.gclip, "synth", "--out", str(shop), "--products", str(a.products),
                 "--queries", str(a.queries), "--seed", str(seed)])
        oracle_json = work / f"oracle{seed}.json"
        run([a.gclip, "eval", "oracle", "--shop", str(shop), "--output", str(oracle_json)])
        oracle = json.loads(oracle_json.read_text())
        per = {"retrieval": {}, "oracle": {}, "zeroshot": {}}
        for name, table, corpus in SPLITS:
            out = work / f"model{seed}_{name}.json"
            run([a.gclip, "eval", "retrieval", *model, "--no-cache", "--data", str(shop / table),
                 "--corpus", str(shop / corpus), "--output", str(out)])
            m = json.loads(out.read_text())
            per["retrieval"][name] = {k: m[k] for k in ("ndcg@10", "err", "rbp@0.9", "mrr@10", "map@1000")}
            per["oracle"][name] = {k: oracle[name][k] for k in ("ndcg@10", "err", "rbp@0.9", "mrr@10")}
        for s in SETS:
            for pname, template in PROMPTS:
                out = work / f"zs{seed}_{s}_{pname}.json"
                run([a.gclip, "eval", "zeroshot", *model, "--no-cache", "--images",
                     str(shop / "zeroshot" / s), "--template", template, "--output", str(out)])
                per["zeroshot"][f"{s}/{pname}"] = json.loads(out.read_text())["top1"]
        report["seeds"][seed] = per

    seeds = list(report["seeds"].values())

    def spread(values):
        m = statistics.mean(values)
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{m:.3f} ± {sd:.3f}" if len(values) > 1 else f"{m:.3f}"

    lines = [f"Model: {report['model']}; shops of seeds {a.seeds} ({a.products} products, "
             f"{a.queries} queries); mean ± sd across seeds.", "",
             "| split | model nDCG@10 | oracle nDCG@10 | model / oracle | model MRR@10 | model ERR |",
             "|---|---|---|---|---|---|"]
    for name, _, _ in SPLITS:
        mod = [s["retrieval"][name]["ndcg@10"] for s in seeds]
        orc = [s["oracle"][name]["ndcg@10"] for s in seeds]
        ratio = [m / o for m, o in zip(mod, orc)]
        lines.append(f"| {name.replace('_', ' ')} | {spread(mod)} | {spread(orc)} | {spread(ratio)} | "
                     f"{spread([s['retrieval'][name]['mrr@10'] for s in seeds])} | "
                     f"{spread([s['retrieval'][name]['err'] for s in seeds])} |")
    lines += ["", "| zero-shot set | " + " | ".join(f"top-1 `{t}`" for _, t in PROMPTS) + " |",
              "|---|" + "---|" * len(PROMPTS)]
    for s in SETS:
        cells = [spread([x["zeroshot"][f"{s}/{p}"] for x in seeds]) for p, _ in PROMPTS]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    print(text)
    report["markdown"] = text
    if a.out:
        Path(a.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
