#!/usr/bin/env bash
# GPU smoke check and figures: the trainer's tests on CUDA, the rollout engine against model.generate,
# the demo trained on the GPU, `prorl eval` on the GPU, the memory of a log-prob pass at 8k and 16k tokens, and a
# training step on every GPU of the machine under torchrun (FSDP2). Usage: bash benchmarks/gpu_smoke.sh OUT_DIR
# Runs with whatever python3 is on PATH (set PYTHONPATH=src when prorl is not installed).
# STEPS="1 6" bash benchmarks/gpu_smoke.sh OUT_DIR runs only those steps (default: all; their timeouts add up
# to about 16 minutes).
set -uo pipefail
out=${1:?usage: gpu_smoke.sh OUT_DIR}
mkdir -p "$out"
py=${PYTHON:-python3}
steps=" ${STEPS:-1 2 3 4 5 6} "
want() { [[ "$steps" == *" $1 "* ]]; }
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  $py -c "import sys, torch, transformers; print(sys.version.split()[0], 'torch', torch.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name())"
} > "$out/env.txt" 2>&1

# 1. The trainer's tests; model.device=auto puts every run on the GPU here.
if want 1; then
timeout 150 $py -m pytest -q -p no:cacheprovider -x tests/test_train.py tests/test_demo.py tests/test_rollout.py tests/test_engines.py tests/test_logprobs.py \
  > "$out/pytest.log" 2>&1; echo "pytest exit $?" >> "$out/pytest.log"
fi

# 2. Rollout engine against model.generate, bf16, Qwen2.5-0.5B layer shapes and the 20m tiny model.
if want 2; then
timeout 150 $py benchmarks/bench_rollout.py --device cuda --sizes 20m 360m --dtypes bfloat16 --batch 256 \
  --new-tokens 256 --rounds 3 > "$out/bench_rollout.log" 2>&1; echo "bench exit $?" >> "$out/bench_rollout.log"
fi

# 3. The demo, trained on the GPU (warm-start and before/after measurement stay on the CPU).
if want 3; then
demo=$(mktemp -d)/demo
start=$SECONDS
timeout 240 $py -m prorl.cli demo --out "$demo" > "$out/demo.log" 2>&1
echo "demo exit $?, $((SECONDS - start)) s wall" >> "$out/demo.log"
cp "$demo/run/metrics.jsonl" "$out/demo_metrics.jsonl" 2>/dev/null
fi

# 4. pass@k of the trained demo policy, generated on the GPU.
if want 4; then
start=$SECONDS
timeout 90 $py -m prorl.cli eval --model "$demo/run/checkpoints/step_000150/policy" \
  --data "$demo/heldout.jsonl" --n 128 --max-tokens 16 --out "$out/final_gpu.json" --no-progress > "$out/eval.log" 2>&1
echo "eval exit $?, $((SECONDS - start)) s wall" >> "$out/eval.log"
fi

# 5. Peak GPU memory of one forward + backward of a Qwen2.5-0.5B-shaped model at 8k and 16k response tokens
#    (chunked head against full logits), plus the CPU table at 1k tokens.
if want 5; then
timeout 200 $py benchmarks/bench_memory.py --gpu --lengths 1024 --out "$out/bench_memory.json" \
  > "$out/bench_memory.log" 2>&1; echo "bench_memory exit $?" >> "$out/bench_memory.log"
fi

# 6. One training step (log-prob passes + update) on every GPU of the machine under torchrun (FSDP2, NCCL) against
#    one GPU, Qwen2.5-0.5B layer shapes, the same global batch: step time, collectives, peak memory per GPU.
if want 6; then
gpus=$(nvidia-smi -L | wc -l)
timeout 150 $py benchmarks/bench_distributed.py --device cuda --sizes 360m --nproc "$gpus" --prompts 32 --n 8 \
  --prompt 256 --response 1024 --micro 8 --repeats 2 --out "$out/bench_distributed.json" \
  > "$out/bench_distributed.log" 2>&1; echo "bench_distributed exit $?" >> "$out/bench_distributed.log"
fi
