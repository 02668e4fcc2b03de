#!/usr/bin/env bash
# The GPU path, verified in one short run on a machine with an NVIDIA GPU (about 5–8 minutes):
#   1. the environment (driver, GPU, torch and its CUDA build)
#   2. torch.cuda: is it available, a matmul on the GPU
#   3. the test suite's GPU-marked tests (they skip, saying why, where CUDA is absent)
#   4. speed.py --device cuda: 1 MP default layer dream warm (goal ≤ 1 s), 4096² (≤ 10 s), 512² class (≤ 5 s),
#      peak VRAM
#   5. the same picture on the CPU and the GPU (same seed), compared with the stated tolerance
# Usage: benchmarks/gpu_check.sh [PYTHON]   (default: .venv/bin/python; it needs torch's CUDA build, which
# install.py picks where an NVIDIA driver is found). Exits non-zero when a check fails. Not yet run on a GPU: the
# tolerance in step 5 is the expectation to verify, not a measured figure.
set -u
cd "$(dirname "$0")/.."
PY="${1:-.venv/bin/python}"
status=0
step() { printf '\n== %s\n' "$*"; }

step "environment"
uname -srm
nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv 2>&1 || echo "nvidia-smi: not found"
"$PY" -c 'import sys, torch; print("python", sys.version.split()[0], "| torch", torch.__version__, "| built for CUDA", torch.version.cuda, "| cuDNN", torch.backends.cudnn.version())' || status=1

step "torch.cuda"
"$PY" - <<'EOF' || status=1
import time, torch
assert torch.cuda.is_available(), "torch.cuda.is_available() is False: this torch build or driver sees no GPU"
print("device:", torch.cuda.get_device_name(0), "| capability", torch.cuda.get_device_capability(0))
free, total = torch.cuda.mem_get_info()
print(f"memory: {free / 2**30:.1f} GB free of {total / 2**30:.1f} GB")
a = torch.rand(4096, 4096, device="cuda"); a @ a; torch.cuda.synchronize()
t = time.perf_counter(); [a @ a for _ in range(10)]; torch.cuda.synchronize()
print(f"fp32 matmul 4096²: {10 * 2 * 4096 ** 3 / (time.perf_counter() - t) / 1e12:.1f} TFLOP/s")
EOF

step "GPU-marked tests"
timeout 300 "$PY" -m pytest -q -m gpu -rs tests/ || status=1

step "speed.py --device cuda"
timeout 300 "$PY" benchmarks/speed.py --device cuda || status=1

step "same picture on the CPU and the GPU"
# Tolerance: float sums run in another order on the GPU, so bits differ; the same dream stays within 3 of 255
# levels at the 99.9th percentile and 0.5 on average, where a different seed differs by tens (printed beside it).
timeout 300 "$PY" - <<'EOF' || status=1
import sys, numpy as np
sys.path.insert(0, "tests")
from conftest import fixture_image
import luciddream
image = fixture_image("astronaut", (512, 512))
cpu = luciddream.dream(image, None, None, seed=3, device="cpu").astype(np.int16)
gpu = luciddream.dream(image, None, None, seed=3, device="cuda").astype(np.int16)
other = luciddream.dream(image, None, None, seed=4, device="cuda").astype(np.int16)
d, o = np.abs(cpu - gpu), np.abs(cpu - other)
print(f"512² default dream, seed 3, CPU vs GPU: mean {d.mean():.3f}, 99.9th percentile {np.percentile(d, 99.9):.0f}, "
      f"max {d.max()} levels; another seed: mean {o.mean():.1f}")
ok = np.percentile(d, 99.9) <= 3 and d.mean() < 0.5
print("same picture within tolerance" if ok else "NOT the same picture")
sys.exit(0 if ok else 1)
EOF

step "result"
if [ "$status" -eq 0 ]; then echo "GPU check passed"; else echo "GPU check FAILED (see above)"; fi
exit "$status"
