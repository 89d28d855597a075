#!/usr/bin/env bash
# GPU smoke check and figures: the trainer's tests on CUDA, the rollout engine against model.generate,
# the demo trained on the GPU, `prorl eval` on the GPU, and the memory of a log-prob pass at 8k and 16k tokens. Usage: bash benchmarks/gpu_smoke.sh OUT_DIR
# Runs with whatever python3 is on PATH (set PYTHONPATH=src when prorl is not installed).
set -uo pipefail
out=${1:?usage: gpu_smoke.sh OUT_DIR}
mkdir -p "$out"
py=${PYTHON:-python3}
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  $py -c "import sys, torch, transformers; print(sys.version.split()[0], 'torch', torch.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name())"
} > "$out/env.txt" 2>&1

# 1. The trainer's tests; model.device=auto puts every run on the GPU here.
timeout 150 $py -m pytest -q -p no:cacheprovider -x tests/test_train.py tests/test_demo.py tests/test_rollout.py tests/test_engines.py tests/test_logprobs.py \
  > "$out/pytest.log" 2>&1; echo "pytest exit $?" >> "$out/pytest.log"

# 2. Rollout engine against model.generate, bf16, Qwen2.5-0.5B layer shapes and the 20m tiny model.
timeout 150 $py benchmarks/bench_rollout.py --device cuda --sizes 20m 360m --dtypes bfloat16 --batch 256 \
  --new-tokens 256 --rounds 3 > "$out/bench_rollout.log" 2>&1; echo "bench exit $?" >> "$out/bench_rollout.log"

# 3. The demo, trained on the GPU (warm-start and before/after measurement stay on the CPU).
demo=$(mktemp -d)/demo
start=$SECONDS
timeout 240 $py -m prorl.cli demo --out "$demo" > "$out/demo.log" 2>&1
echo "demo exit $?, $((SECONDS - start)) s wall" >> "$out/demo.log"
cp "$demo/run/metrics.jsonl" "$out/demo_metrics.jsonl" 2>/dev/null

# 4. pass@k of the trained demo policy, generated on the GPU.
start=$SECONDS
timeout 90 $py -m prorl.cli eval --model "$demo/run/checkpoints/step_000150/policy" \
  --data "$demo/heldout.jsonl" --n 128 --max-tokens 16 --out "$out/final_gpu.json" --no-progress > "$out/eval.log" 2>&1
echo "eval exit $?, $((SECONDS - start)) s wall" >> "$out/eval.log"

# 5. Peak GPU memory of one forward + backward of a Qwen2.5-0.5B-shaped model at 8k and 16k response tokens
#    (chunked head against full logits), plus the CPU table at 1k tokens.
timeout 200 $py benchmarks/bench_memory.py --gpu --lengths 1024 --out "$out/bench_memory.json" \
  > "$out/bench_memory.log" 2>&1; echo "bench_memory exit $?" >> "$out/bench_memory.log"
