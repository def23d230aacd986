# Run (from the repository root, with a Python that has torch + open_clip):
#   python bench/compare_train.py [--isa both|native|avx2] [--model tiny|experiment] [--batch 32] [--steps 20] [--threads 2] [--rounds 2]
"""Training steps/s: open_clip on PyTorch vs gclip's fast CPU step vs gclip-train on candle, side by side.

Models: `tiny` starts every side from tests/fixtures/reference/train/tiny (open_clip layout);
`experiment` is the GCL-vs-CLIP experiment's architecture (ViT 64 px / patch 16 / width 128 x 4,
text width 64 x 3, 64-d) with random weights on each side. All sides use the same batch
shape (random images, full-length texts ending in the largest id), the CLIP loss, a full backward,
global-norm clipping at 1.0 and AdamW (no decay on gains/biases/embeddings/logit scale). PyTorch
runs open_clip's model in train mode; gclip runs `cargo bench -p gclip-fasttrain --bench fast_step`
(the default CPU backend of `gclip train`) and `cargo bench -p gclip-train --bench train_step` (candle). Rounds
alternate between the two; the best round of each is reported with the ratio gclip / PyTorch.
On a shared, loaded machine PyTorch's 2-thread OpenMP pool suffers most from contention: also
run `--threads 1` and check `uptime` before trusting a ratio.

Each PyTorch measurement runs in a fresh child process, so its peak RSS (VmHWM) is its own; the
fast step's bench reports its own peak too. `--isa avx2` caps both sides to AVX2 + FMA as on a
CPU without AVX-512 (gclip by GCLIP_ISA; PyTorch by ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA and
MKL_ENABLE_INSTRUCTIONS); `--isa both` (the default) runs the native ISA, then AVX2.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AVX2_ENV = {"GCLIP_ISA": "avx2", "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
            "MKL_ENABLE_INSTRUCTIONS": "AVX2", "OPENBLAS_CORETYPE": "Haswell"}
TINY = ROOT / "tests/fixtures/reference/train/tiny"


EXPERIMENT = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "patch_size": 16, "width": 128, "head_width": 32, "layers": 4},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 3},
}


def torch_steps_per_s(batch, steps, threads, model_name):
    import open_clip
    import torch
    import torch.nn.functional as F
    from safetensors.torch import load_file

    torch.set_num_threads(threads)
    if model_name == "tiny":
        cfg = json.loads((TINY / "open_clip_config.json").read_text())["model_cfg"]
    else:
        cfg = EXPERIMENT
    with tempfile.TemporaryDirectory() as td:
        p = Path(td) / f"{model_name}-bench.json"
        p.write_text(json.dumps(cfg))
        open_clip.add_model_config(p)
        model = open_clip.create_model(f"{model_name}-bench", pretrained=None)
    if model_name == "tiny":
        model.load_state_dict(load_file(str(TINY / "open_clip_model.safetensors")), strict=True)
    model.train()
    s = cfg["vision_cfg"]["image_size"]
    ctx = cfg["text_cfg"]["context_length"]
    vocab = cfg["text_cfg"]["vocab_size"]
    images = torch.randn(batch, 3, s, s)
    ids = torch.tensor([[(vocab - 1) if j == ctx - 1 else 1 + ((i * ctx + j) * 7919) % (vocab - 2) for j in range(ctx)] for i in range(batch)])

    def nd(n, p):
        return p.ndim < 2 or "ln" in n or "bias" in n or "logit_scale" in n or "embedding" in n

    params = list(model.named_parameters())
    opt = torch.optim.AdamW(
        [{"params": [p for n, p in params if nd(n, p)], "weight_decay": 0.0},
         {"params": [p for n, p in params if not nd(n, p)], "weight_decay": 0.2}],
        lr=1e-4, betas=(0.9, 0.98), eps=1e-6)
    labels = torch.arange(batch)

    def step():
        opt.zero_grad(set_to_none=True)
        img = F.normalize(model.encode_image(images), dim=-1)
        txt = F.normalize(model.encode_text(ids), dim=-1)
        logits = model.logit_scale.exp() * img @ txt.T
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        return loss.item()

    for _ in range(3):
        step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - t)


def peak_rss_mib():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    return None


def torch_child(batch, steps, threads, model_name, env):
    """PyTorch in a fresh process: (steps/s, peak RSS MiB)."""
    out = subprocess.run(
        [sys.executable, __file__, "--torch-child", "--batch", str(batch), "--steps", str(steps),
         "--threads", str(threads), "--model", model_name],
        env=env, capture_output=True, text=True, check=True,
    ).stdout
    r = json.loads([l for l in out.splitlines() if l.startswith("{")][-1])
    return r["steps_per_s"], r["peak_rss_mib"]


def gclip_steps_per_s(batch, steps, threads, model_name, crate, bench, env):
    env = dict(env, RAYON_NUM_THREADS=str(threads))
    out = subprocess.run(
        ["cargo", "bench", "-q", "-p", crate, "--bench", bench, "--", str(batch), str(steps), model_name],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True,
    ).stdout
    r = json.loads([l for l in out.splitlines() if l.startswith("{")][-1])
    return r["steps_per_s"], r.get("peak_rss_mib")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=["tiny", "experiment"], default="tiny")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--isa", choices=["both", "native", "avx2"], default="both")
    ap.add_argument("--no-candle", action="store_true", help="skip the (slow) candle backend")
    ap.add_argument("--torch-child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.torch_child:
        sps = torch_steps_per_s(a.batch, a.steps, a.threads, a.model)
        print(json.dumps({"steps_per_s": sps, "peak_rss_mib": peak_rss_mib()}))
        return
    for isa in (["native", "avx2"] if a.isa == "both" else [a.isa]):
        env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
        if isa == "avx2":
            env.update(AVX2_ENV)
        best = {"torch": 0.0, "fast": 0.0, "candle": 0.0}
        rss = {}
        for _ in range(a.rounds):
            sps, rss["torch"] = torch_child(a.batch, a.steps, a.threads, a.model, env)
            best["torch"] = max(best["torch"], sps)
            sps, rss["fast"] = gclip_steps_per_s(a.batch, a.steps, a.threads, a.model,
                                                 "gclip-fasttrain", "fast_step", env)
            best["fast"] = max(best["fast"], sps)
            if not a.no_candle:
                sps, _ = gclip_steps_per_s(a.batch, a.steps, a.threads, a.model,
                                           "gclip-train", "train_step", env)
                best["candle"] = max(best["candle"], sps)
        print(f"isa {isa}, model {a.model}, batch {a.batch}, {a.threads} threads, best of {a.rounds}")
        names = {"torch": "open_clip / torch", "fast": "gclip fast step", "candle": "gclip-train (candle)"}
        for k, label in names.items():
            if best[k] > 0:
                mem = f", peak RSS {rss[k]} MiB" if rss.get(k) else ""
                print(f"  {label:22}: {best[k]:8.2f} steps/s  ({best[k] * a.batch:8.1f} pairs/s)  "
                      f"x{best[k] / best['torch']:.2f} torch{mem}", flush=True)


if __name__ == "__main__":
    main()
