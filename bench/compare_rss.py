# Run: cd /work/main && cargo build --release -p gclip-cli && /work/refvenv/bin/python bench/compare_rss.py [--arch ViT-B-32] [--gclip target/release/gclip] [--rounds 1] [--keep DIR]
"""Peak resident memory of loading a checkpoint: open_clip on PyTorch vs gclip, in one run.

Writes a random-weight open_clip checkpoint directory (`open_clip_config.json` +
`open_clip_model.safetensors`) to a temporary directory, then runs, each in a fresh process:

- PyTorch: what an open_clip user does, `open_clip.create_model(arch, pretrained=<safetensors>)`
  and one text encode;
- gclip: `gclip embed --model DIR --text "a photo"` with `--precision fp32` and `int8`
  (the CPU engine, which streams the memory-mapped safetensors into its packed layout), and
  `--reference` (the candle backend, which materialises every tensor) for context.

The peak is the child's maximum resident set size (`ru_maxrss` from wait4, which counts
file-backed mapped pages too). Also printed: the checkpoint size and each ratio gclip / PyTorch.
The parent process stays small (it never imports torch) and starts children without copying
itself, so nothing but the child's own memory is counted.
"""
import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

MAKE_CKPT = r"""
import json, sys, torch, open_clip
from safetensors.torch import save_file
arch, out = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
model = open_clip.create_model(arch)
sd = {k: v.contiguous() for k, v in model.state_dict().items()}
save_file(sd, f"{out}/open_clip_model.safetensors")
cfg = {"model_cfg": open_clip.get_model_config(arch),
       "preprocess_cfg": {"mean": list(open_clip.OPENAI_DATASET_MEAN),
                          "std": list(open_clip.OPENAI_DATASET_STD),
                          "interpolation": "bicubic", "resize_mode": "shortest"}}
json.dump(cfg, open(f"{out}/open_clip_config.json", "w"), indent=2)
"""

TORCH_USER = r"""
import sys, torch, open_clip
arch, weights = sys.argv[1], sys.argv[2]
model = open_clip.create_model(arch, pretrained=weights)
model.eval()
tok = open_clip.get_tokenizer(arch)
with torch.no_grad():
    e = model.encode_text(tok(["a photo"]))
print("embed_dim", e.shape[-1])
"""


def run_measured(argv, env):
    """Runs argv to completion; returns (its peak RSS in MiB, its stdout) from wait4's rusage."""
    with tempfile.TemporaryFile() as err:
        # Popen starts the child with vfork/posix_spawn where it can, so no copy of this
        # process's pages is charged to the child before its exec.
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, env=env)
        out = proc.stdout.read()
        proc.stdout.close()
        _, status, ru = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            tail = err.read().decode(errors="replace")[-2000:]
            sys.exit(f"failed ({proc.returncode}): {' '.join(map(str, argv))}\n{tail}")
    # Linux reports ru_maxrss in KiB.
    return ru.ru_maxrss / 1024.0, out.decode()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="ViT-B-32")
    ap.add_argument("--gclip", default=str(ROOT / "target/release/gclip"))
    ap.add_argument("--python", default=sys.executable, help="interpreter with torch + open_clip")
    ap.add_argument("--rounds", type=int, default=1, help="repeat each measurement; min is kept")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--keep", help="write the checkpoint here (and keep it) instead of a temp dir")
    args = ap.parse_args()

    if not Path(args.gclip).exists():
        sys.exit(f"{args.gclip} not found: cargo build --release -p gclip-cli")
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(args.threads)
    # The machine's OpenBLAS hints break numpy in the reference venv.
    env.pop("OPENBLAS_CORETYPE", None)
    env.pop("OPENBLAS_L2_SIZE", None)

    tmp = None
    if args.keep:
        ckpt = Path(args.keep)
        ckpt.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="gclip_rss_")
        ckpt = Path(tmp.name)
    weights = ckpt / "open_clip_model.safetensors"
    if not weights.exists():
        subprocess.run([args.python, "-c", MAKE_CKPT, args.arch, str(ckpt)], check=True, env=env)
    size_mib = weights.stat().st_size / 2**20
    print(f"checkpoint {ckpt} ({args.arch}, {size_mib:.0f} MiB safetensors, f32)")

    runs = {
        "pytorch open_clip": [args.python, "-c", TORCH_USER, args.arch, str(weights)],
    }
    base = [args.gclip, "embed", "--model", str(ckpt), "--text", "a photo",
            "--threads", str(args.threads)]
    runs["gclip engine fp32"] = base + ["--precision", "fp32"]
    runs["gclip engine int8"] = base + ["--precision", "int8"]
    runs["gclip candle (--reference)"] = base + ["--reference"]

    peaks = {}
    for _ in range(args.rounds):
        # Alternate the runs so page-cache state affects all alike.
        for name, argv in runs.items():
            mib, _ = run_measured(argv, env)
            peaks[name] = min(peaks.get(name, float("inf")), mib)
    torch_peak = peaks["pytorch open_clip"]
    print(f"{'run':<28} {'peak RSS MiB':>12} {'vs PyTorch':>10}")
    for name, mib in peaks.items():
        print(f"{name:<28} {mib:>12.0f} {mib / torch_peak:>9.2f}x")
    ok = all(peaks[k] <= 0.5 * torch_peak for k in ("gclip engine fp32", "gclip engine int8"))
    print(f"target gclip engine <= 0.5x PyTorch: {'met' if ok else 'NOT met'}")
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
