# Run: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE REFVENV/bin/python bench/compare_torch.py [--isa both|native|avx2] [--arch ViT-B-32] [--batch 1,16] [--threads 2] [--precision fp32|int8] [--gclip CMD]
"""open_clip on PyTorch and gclip side by side, same architecture, inputs and thread count.

Builds the open_clip model with random weights, measures image and text throughput per batch
size, runs `gclip bench` (or the engine's bench example) with the same settings right after, and
prints items/s for both and the ratio gclip / PyTorch. Texts are `--text-tokens` long (start and
end tokens included) and padded to the 77-token context, as a tokenizer produces them; PyTorch
always computes all 77 positions, gclip stops at the last end token. Rounds alternate between
the two so that load from other processes hits both alike; the best round of each is reported.

`--isa avx2` caps both sides to AVX2 + FMA, as on a CPU without AVX-512: gclip through
`GCLIP_ISA=avx2`, PyTorch through its own dispatch (`ATEN_CPU_CAPABILITY`), oneDNN
(`ONEDNN_MAX_CPU_ISA`) and MKL, which does its matrix products and ignores the other two
(`MKL_ENABLE_INSTRUCTIONS`). `--isa both` (the default) runs the native ISA, then AVX2.
"""
import argparse
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Set before torch is imported: MKL and oneDNN read them when they load.
AVX2_ENV = {"GCLIP_ISA": "avx2", "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
            "MKL_ENABLE_INSTRUCTIONS": "AVX2", "OPENBLAS_CORETYPE": "Haswell"}


def default_gclip():
    gclip = ROOT / "target/release/gclip"
    if gclip.exists():
        help_ = subprocess.run([str(gclip), "bench", "--help"], capture_output=True, text=True)
        # The CLI wires the engine's bench only once it depends on gclip-engine.
        if help_.returncode == 0 and "--text-tokens" in help_.stdout:
            return [str(gclip), "bench"]
    example = ROOT / "target/release/examples/bench"
    if not example.exists():
        subprocess.run(["cargo", "build", "--release", "-p", "gclip-engine", "--example", "bench"],
                       cwd=ROOT, check=True)
    return [str(example)]


def run_gclip(cmd, args):
    argv = cmd + ["--arch", args.arch, "--batch", args.batch, "--precision", args.precision,
                  "--seconds", str(args.seconds), "--text-tokens", str(args.text_tokens),
                  "--threads", str(args.threads)]
    out = subprocess.run(argv, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"gclip bench failed: {' '.join(argv)}\n{out.stderr}")
    res, extra = {}, []
    for line in out.stdout.splitlines():
        m = re.match(r"bench tower=(\w+) batch=(\d+) .*items_per_s=([\d.]+)", line)
        if m:
            res[(m.group(1), int(m.group(2)))] = float(m.group(3))
        else:
            extra.append(line)
    return res, extra


def torch_bench(model, torch, args, batches):
    res = {}
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    g = torch.Generator().manual_seed(0)
    for b in batches:
        px = torch.rand(b, 3, size, size, generator=g) * 4 - 2
        ids = torch.zeros(b, 77, dtype=torch.long)
        ids[:, 0] = 49406
        ids[:, 1:args.text_tokens - 1] = torch.randint(1, 49405, (b, args.text_tokens - 2), generator=g)
        ids[:, args.text_tokens - 1] = 49407
        for tower, fn in (("image", lambda: model.encode_image(px)), ("text", lambda: model.encode_text(ids))):
            with torch.inference_mode():
                fn()
                t0 = time.perf_counter()
                calls = 0
                while calls < 2 or time.perf_counter() - t0 < args.seconds:
                    fn()
                    calls += 1
            res[(tower, b)] = calls * b / (time.perf_counter() - t0)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="ViT-B-32")
    ap.add_argument("--batch", default="1,16")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--precision", default="fp32", choices=["fp32", "int8"])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--text-tokens", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--isa", default="both", choices=["both", "native", "avx2"])
    ap.add_argument("--gclip", help="command running gclip bench (default: target/release/gclip bench, "
                    "else the gclip-engine bench example)")
    args = ap.parse_args()
    if args.isa == "both":
        for isa in ("native", "avx2"):
            argv = [a for a in sys.argv[1:]]
            if "--isa" in argv:
                i = argv.index("--isa")
                del argv[i:i + 2]
            argv = [a for a in argv if not a.startswith("--isa=")]
            print(f"== isa {isa}", flush=True)
            rc = subprocess.run([sys.executable, __file__, "--isa", isa] + argv).returncode
            if rc != 0:
                sys.exit(rc)
        return
    if args.isa == "avx2":
        os.environ.update(AVX2_ENV)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch
    import open_clip

    torch.set_num_threads(args.threads)
    batches = [int(b) for b in args.batch.split(",")]
    cmd = shlex.split(args.gclip) if args.gclip else default_gclip()
    model = open_clip.create_model(args.arch, pretrained=None).eval()
    best_t, best_g, notes = {}, {}, []
    for r in range(args.rounds):
        t = torch_bench(model, torch, args, batches)
        g, notes = run_gclip(cmd, args)
        for k, v in t.items():
            best_t[k] = max(best_t.get(k, 0.0), v)
        for k, v in g.items():
            best_g[k] = max(best_g.get(k, 0.0), v)
        print(f"round {r + 1}: torch {fmt(t)} | gclip {fmt(g)}", flush=True)
    print(f"isa {args.isa}, arch {args.arch}, threads {args.threads}, gclip precision {args.precision}, "
          f"torch {torch.__version__} fp32, texts of {args.text_tokens} tokens padded to 77, "
          f"best of {args.rounds} rounds")
    for line in notes:
        print("gclip:", line)
    print(f"{'tower':6} {'batch':>5} {'torch/s':>9} {'gclip/s':>9} {'ratio':>7}")
    for tower in ("image", "text"):
        for b in batches:
            tv, gv = best_t.get((tower, b)), best_g.get((tower, b))
            ratio = f"{gv / tv:6.2f}x" if tv and gv else "   n/a"
            print(f"{tower:6} {b:5} {tv or 0:9.2f} {gv or 0:9.2f} {ratio}")


def fmt(res):
    return " ".join(f"{k[0]}{k[1]}={v:.1f}" for k, v in sorted(res.items()))


if __name__ == "__main__":
    main()
