#!/bin/sh
# Run: sh crates/gclip-engine/benches/gemm_side_by_side.sh [THREADS]   (from /work/main)
# gclip GEMM, then numpy/OpenBLAS and torch, on the same ViT shapes in one go.
set -e
T=${1:-2}
cargo bench -p gclip-engine --bench gemm -- "$T" 2>/dev/null
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /work/refvenv/bin/python crates/gclip-engine/benches/gemm_ref.py "$T"
