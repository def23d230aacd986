# Run (after `pip install ./crates/gclip-python` into the interpreter that runs this):
#   python bench/python_overhead.py [--model DIR] [--texts 2000] [--images 128] [--threads 2] [--rounds 3]
# With open_clip and torch importable (e.g. a reference venv with the wheel installed in it),
# a random-weight --arch model (default ViT-B-32) is built and saved, and open_clip runs the
# same weights in the same process; without them, give --model (any checkpoint gclip loads).
"""Embedding throughput from Python against the `gclip` binary and against open_clip.

* Python: `gclip.load(...)` once, then `embed_texts` / `embed_images` timed (items/s).
* CLI: `gclip embed --texts FILE` / `--images DIR` with `--format npy`, timed as the marginal
  cost of N items over 1 item (two runs), so model loading and process start cancel out.
* open_clip: tokenizer + `encode_text`, PIL open + preprocess + `encode_image`, batch 16,
  `torch.no_grad`, `torch.set_num_threads(threads)`.

Rounds alternate between the three so that load from other processes hits all alike; the best
round of each is reported. The overhead is `1 - python / cli`.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
WORDS = ("red blue green black white leather suede silk cotton wool sneakers boots dress mug "
         "lamp chair bag hat scarf jacket vintage modern striped dotted women's men's kids").split()


def texts(n, seed=0):
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=rng.integers(3, 9))) for _ in range(n)]


def write_images(folder, n, size=256, seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        yy, xx = np.mgrid[0:size, 0:size]
        base = np.stack([xx, yy, (xx + yy) // 2], -1) + rng.normal(0, 30, (size, size, 3))
        p = folder / f"img{i:05d}.png"
        Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(p)
        paths.append(str(p))
    return paths


def build_open_clip(arch, out):
    import open_clip
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=None)
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "open_clip_model.safetensors"))
    cfg = open_clip.get_model_config(arch)
    (out / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": {}}))
    return model, preprocess, open_clip.get_tokenizer(arch)


def time_cli(gclip_bin, model, args_for, threads):
    def run(extra):
        cmd = [gclip_bin, "embed", "--model", str(model), "--threads", str(threads), "--format", "npy"] + extra
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        return time.perf_counter() - t

    full = run(args_for("full"))
    one = run(args_for("one"))
    return full - one


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="checkpoint for gclip (default: a random --arch model via open_clip)")
    ap.add_argument("--arch", default="ViT-B-32")
    ap.add_argument("--texts", type=int, default=2000)
    ap.add_argument("--images", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--gclip", default=str(ROOT / "target" / "release" / "gclip"))
    ap.add_argument("--no-open-clip", action="store_true")
    args = ap.parse_args()

    import gclip

    tmp = Path(tempfile.mkdtemp(prefix="gclip-bench-"))
    try:
        run(args, gclip, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(args, gclip, tmp):
    oc = None
    if args.model is None:
        try:
            oc = build_open_clip(args.arch, tmp / "model")
        except ImportError:
            sys.exit("open_clip is not importable here: give --model PATH")
        model_dir = tmp / "model"
    else:
        model_dir = Path(args.model)
        if not args.no_open_clip:
            print("note: open_clip runs only on the random --arch model (no --model)", file=sys.stderr)
    if args.no_open_clip:
        oc = None

    t_list = texts(args.texts)
    (tmp / "texts.txt").write_text("\n".join(t_list) + "\n")
    (tmp / "one.txt").write_text(t_list[0] + "\n")
    img_paths = write_images(tmp / "images", args.images)
    write_images(tmp / "one-image", 1)
    (tmp / "out.npy").unlink(missing_ok=True)

    m = gclip.load(model_dir, threads=args.threads)
    m.embed_texts(t_list[:32])  # warm up
    m.embed_images(img_paths[:4])
    n_txt, n_img = len(t_list) - 1, len(img_paths) - 1

    def py_text():
        t = time.perf_counter()
        m.embed_texts(t_list)
        return time.perf_counter() - t

    def py_image():
        t = time.perf_counter()
        m.embed_images(img_paths)
        return time.perf_counter() - t

    def cli_text():
        return time_cli(args.gclip, model_dir, lambda w: ["--texts", str(tmp / ("texts.txt" if w == "full" else "one.txt")),
                                                          "--output", str(tmp / "out.npy")], args.threads)

    def cli_image():
        return time_cli(args.gclip, model_dir, lambda w: ["--images", str(tmp / ("images" if w == "full" else "one-image")),
                                                          "--output", str(tmp / "out.npy")], args.threads)

    oc_text = oc_image = None
    if oc is not None:
        import torch
        from PIL import Image

        torch.set_num_threads(args.threads)
        ocm, pre, tok = oc

        def oc_text():
            t = time.perf_counter()
            with torch.no_grad():
                for s in range(0, len(t_list), 16):
                    ocm.encode_text(tok(t_list[s : s + 16]))
            return time.perf_counter() - t

        def oc_image():
            t = time.perf_counter()
            with torch.no_grad():
                for s in range(0, len(img_paths), 16):
                    ocm.encode_image(torch.stack([pre(Image.open(p)) for p in img_paths[s : s + 16]]))
            return time.perf_counter() - t

    best = {}
    for r in range(args.rounds):
        for name, fn, n in [("python text", py_text, len(t_list)), ("cli text", cli_text, n_txt),
                            ("open_clip text", oc_text, len(t_list)), ("python image", py_image, len(img_paths)),
                            ("cli image", cli_image, n_img), ("open_clip image", oc_image, len(img_paths))]:
            if fn is None:
                continue
            rate = n / fn()
            best[name] = max(best.get(name, 0.0), rate)
            print(f"round {r + 1} {name:16s} {rate:10.1f} items/s", file=sys.stderr)

    print(f"\nmodel {model_dir} ({m.dim}-d, image {m.image_size}px), threads {args.threads}, "
          f"{len(t_list)} texts, {len(img_paths)} images, best of {args.rounds}")
    print(f"{'tower':6s} {'python':>10s} {'cli':>10s} {'overhead':>9s} {'open_clip':>10s} {'gclip/open_clip':>16s}")
    for tower in ("text", "image"):
        py, cli = best[f"python {tower}"], best[f"cli {tower}"]
        ocr = best.get(f"open_clip {tower}")
        print(f"{tower:6s} {py:10.1f} {cli:10.1f} {100 * (1 - py / cli):8.1f}% "
              f"{(f'{ocr:10.1f}' if ocr else '         -')} {(f'{py / ocr:15.2f}x' if ocr else '               -')}")


if __name__ == "__main__":
    main()
