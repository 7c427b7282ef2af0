#!/usr/bin/env bash
# The whole GPU measurement of M2LA decode at InternVideo3's dimensions (random weights), in one go:
# GQA (SDPA, FlashAttention if installed) against M2LA materialised and absorbed (Triton and PyTorch)
# at 8K, 32K, 128K and 384K tokens, as many of the 36 layers as fit in memory, scaled to 36.
# Needs only PyTorch, Triton and transformers (no `pip install -e .`). About 2-4 minutes on an H200;
# stops at 8 minutes. The table and its JSON go to $OUT (default .mcr/m2la_gpu).
#
#   OUT=results/ bash benchmarks/m2la_gpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-.mcr/m2la_gpu}"
mkdir -p "$OUT"
{ nvidia-smi --query-gpu=name,memory.total,clocks.max.memory --format=csv || true; } > "$OUT/gpu.txt" 2>&1
python -c "import torch, triton, transformers; print('torch', torch.__version__, 'triton', triton.__version__, 'transformers', transformers.__version__, 'cuda', torch.version.cuda)" | tee "$OUT/versions.txt"
PYTHONPATH=. timeout 480 python benchmarks/m2la.py --config internvideo3 --device cuda --steps 10 --out "$OUT" 2>&1 | tee "$OUT/log.txt"
