# Run: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /work/refvenv/bin/python crates/gclip-engine/benches/gemm_ref.py [THREADS]
"""sgemm GFLOPS of numpy (OpenBLAS) and torch at the shapes of benches/gemm.rs."""
import os
import sys
import time

threads = int(sys.argv[1]) if len(sys.argv) > 1 else os.cpu_count()
os.environ.setdefault("OPENBLAS_NUM_THREADS", str(threads))
import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(threads)
SHAPES = [(800, 768, 768), (800, 768, 2304), (800, 768, 3072), (800, 3072, 768),
          (50, 768, 768), (50, 768, 3072), (192, 512, 2048), (12, 512, 2048)]


def best_rate(fn, flops):
    """Best of 5 windows by wall clock and by process CPU time (see benches/gemm.rs)."""
    fn()
    best, best_cpu = 0.0, 0.0
    for _ in range(5):
        t0, c0 = time.perf_counter(), time.process_time()
        it = 0
        while time.perf_counter() - t0 < 0.3:
            fn()
            it += 1
        work = flops * it / 1e9
        best = max(best, work / (time.perf_counter() - t0))
        best_cpu = max(best_cpu, work / (time.process_time() - c0))
    return best, best_cpu


for m, k, n in SHAPES:
    a = np.random.rand(m, k).astype(np.float32)
    wt = np.random.rand(k, n).astype(np.float32)
    ta, tw = torch.from_numpy(a), torch.from_numpy(wt)
    f = 2.0 * m * n * k
    g_np = best_rate(lambda: a @ wt, f)
    g_t = best_rate(lambda: torch.matmul(ta, tw), f)
    print(f"ref  M={m:4} K={k:4} N={n:4}: numpy {g_np[0]:7.1f} ({g_np[1]:6.1f} per CPU-s)  "
          f"torch {g_t[0]:7.1f} ({g_t[1]:6.1f} per CPU-s) GFLOPS")
