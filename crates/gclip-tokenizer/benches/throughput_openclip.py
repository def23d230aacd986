# open_clip tokenizer speed on the fixture corpus: /work/refvenv/bin/python crates/gclip-tokenizer/benches/throughput_openclip.py
import gzip
import json
import os
import time

from open_clip.tokenizer import SimpleTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
path = os.path.join(HERE, "..", "..", "..", "tests", "fixtures", "reference", "tokenizer", "corpus.jsonl.gz")
with gzip.open(path, "rt", encoding="utf-8") as f:
    texts = [json.loads(line)["text"] for line in f]
tok = SimpleTokenizer()
total = sum(len(tok.encode(t)) for t in texts)  # warms the BPE cache
rounds = 3
start = time.perf_counter()
for _ in range(rounds):
    for t in texts:
        tok.encode(t)
secs = time.perf_counter() - start
print(f"open_clip encode (warm cache): {len(texts)} texts, {total} tokens/round, "
      f"{total * rounds / secs / 1e6:.3f} M tokens/s, {secs * 1e6 / (len(texts) * rounds):.1f} µs/text")
