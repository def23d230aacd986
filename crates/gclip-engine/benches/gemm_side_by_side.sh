#!/bin/sh
# Run: sh crates/gclip-engine/benches/gemm_side_by_side.sh [THREADS] [ISAS]   (from the repo root)
# gclip GEMM, then numpy/OpenBLAS and torch, on the same ViT shapes in one go, once per ISA
# (default "native avx2"). The avx2 pass caps every side to AVX2 + FMA as on a CPU without
# AVX-512: gclip by GCLIP_ISA, OpenBLAS by OPENBLAS_CORETYPE, torch's MKL by
# MKL_ENABLE_INSTRUCTIONS. PYTHON defaults to the reference venv's interpreter.
set -e
T=${1:-2}
ISAS=${2:-"native avx2"}
PY=${PYTHON:-/work/refvenv/bin/python}
for isa in $ISAS; do
    echo "== isa $isa"
    if [ "$isa" = avx2 ]; then
        GCLIP_ISA=avx2 cargo bench -p gclip-engine --bench gemm -- "$T" 2>/dev/null
        env -u OPENBLAS_L2_SIZE OPENBLAS_CORETYPE=Haswell MKL_ENABLE_INSTRUCTIONS=AVX2 \
            ATEN_CPU_CAPABILITY=avx2 "$PY" crates/gclip-engine/benches/gemm_ref.py "$T"
    else
        cargo bench -p gclip-engine --bench gemm -- "$T" 2>/dev/null
        env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$PY" crates/gclip-engine/benches/gemm_ref.py "$T"
    fi
done
