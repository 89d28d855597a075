#!/usr/bin/env bash
# The vLLM engine on a GPU with `pip install -e '.[vllm]'` done: contract, log-prob agreement (fp32 and bf16 head),
# the weight push, memory freed by sleep, tokens/s against the built-in engine, and 20 training steps on a tiny
# model and on the Qwen2.5-0.5B shape. Under 5 minutes on one H100/H200-class GPU; results in OUT_DIR/vllm_check.json.
# Usage: bash benchmarks/gpu_vllm_check.sh OUT_DIR      (FAKE=1: on the CPU against tests/fake_vllm.py, small shapes)
set -uo pipefail
out=${1:?usage: gpu_vllm_check.sh OUT_DIR}
mkdir -p "$out"
py=${PYTHON:-python3}
json="$out/vllm_check.json"
rm -f "$json" "$out/vllm_check.log"
if [ "${FAKE:-0}" = 1 ]; then
  small=(--fake --size 2m --prompts 4 --check-tokens 8 --bench-sequences 4 --bench-tokens 16)
  train=(--fake --size 2m --steps 3)
  train_big=()
else
  small=(--size 0.5b)
  train=(--size 20m)
  train_big=(--size 0.5b)
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/env.txt" 2>&1
fi
run() { local limit=$1; shift; timeout "$limit" $py benchmarks/gpu_vllm_check.py --out "$json" "$@" \
          >> "$out/vllm_check.log" 2>&1; echo "[$* exit $?]" >> "$out/vllm_check.log"; }
run 120 --phase engine "${small[@]}"
run 50 --phase logprobs --no-fp32-head "${small[@]}"
run 50 --phase train "${train[@]}"
if [ ${#train_big[@]} -gt 0 ]; then run 70 --phase train "${train_big[@]}"; fi
cat "$json"
