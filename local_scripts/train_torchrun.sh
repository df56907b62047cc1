#!/usr/bin/env bash
# Train with torchrun and DeepSpeed, on one node or several.
#
#   local_scripts/train_torchrun.sh RECIPE.yaml [--key value ...]
#
# Environment (defaults in brackets):
#   DEEPSPEED       DeepSpeed config [local_scripts/zero3.json]; zero2.json, zero3_offload.json, or empty for plain DDP
#   NPROC_PER_NODE  processes on this node, one per GPU [the number of GPUs nvidia-smi lists, or 1]
#   NNODES          nodes [1]; several: run this script on every node with the same MASTER_ADDR and MASTER_PORT
#   NODE_RANK       this node's rank, 0 to NNODES-1 [0]
#   MASTER_ADDR     address of node 0, reachable from every node [127.0.0.1]
#   MASTER_PORT     a free port on node 0 [29500]
#
# Run it from the repository root. Recipe keys and --key value pairs are AgenticGRPOConfig fields; per-device batch
# sizes, gradient accumulation, clipping and bf16 there fill the DeepSpeed config's "auto" values.
set -euo pipefail

if [[ $# -lt 1 ]]; then
    echo "usage: $0 RECIPE.yaml [--key value ...]   (environment: see the top of $0)" >&2
    exit 2
fi
recipe=$1
shift

gpus=$(nvidia-smi --list-gpus 2>/dev/null | wc -l || true)
deepspeed=${DEEPSPEED-local_scripts/zero3.json}

exec torchrun \
    --nnodes "${NNODES:-1}" \
    --node_rank "${NODE_RANK:-0}" \
    --nproc_per_node "${NPROC_PER_NODE:-$(( gpus > 0 ? gpus : 1 ))}" \
    --master_addr "${MASTER_ADDR:-127.0.0.1}" \
    --master_port "${MASTER_PORT:-29500}" \
    -m agentic_vlm.cli train "$recipe" \
    ${deepspeed:+--deepspeed "$deepspeed"} \
    "$@"
