# How to run: /work/refvenv/bin/python bench/compare_preprocess.py [IMAGE]  (from the repo root; builds and runs the Rust bench too)
"""Time open_clip's preprocessing (PIL decode + convert + torchvision Resize/CenterCrop +
ToTensor + Normalize) and gclip-image's on the same image, in one run, and print the ratio."""

import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import open_clip
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
IMAGE = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "tests/fixtures/reference/images/files/huge_4000x3000.jpg"


def median_ms(fn, n=9):
    fn()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t) * 1e3)
    return statistics.median(ts)


def main():
    torch.set_num_threads(2)
    tf = open_clip.transform.image_transform(224, is_train=False)
    data = IMAGE.read_bytes()
    import io

    def decode():
        return Image.open(io.BytesIO(data)).convert("RGB")

    img = decode()
    py_decode = median_ms(decode)
    py_pre = median_ms(lambda: tf(img))
    py_total = median_ms(lambda: tf(decode()))
    print(f"PIL {Image.__version__} + open_clip {open_clip.__version__}: {IMAGE.name} {img.size[0]}x{img.size[1]} -> 224x224")
    print(f"  decode {py_decode:8.2f} ms  resize+crop+norm {py_pre:8.2f} ms  total {py_total:8.2f} ms")

    out = subprocess.run(
        ["cargo", "bench", "-q", "-p", "gclip-image", "--bench", "preprocess", "--", str(IMAGE)],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout
    print("gclip-image:")
    print("  " + "\n  ".join(out.strip().splitlines()))
    m = dict(re.findall(r"(\w+)=([\d.]+)", out.splitlines()[-1]))
    rs_total = float(m["total_ms"])
    print(f"speed-up total (decode + preprocess): {py_total / rs_total:.2f}x "
          f"(decode {py_decode / float(m['decode_ms']):.2f}x, preprocess {py_pre / float(m['preprocess_ms']):.2f}x)")


if __name__ == "__main__":
    main()
