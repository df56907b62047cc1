#!/usr/bin/env bash
# Train with accelerate launch and DeepSpeed, on one node or several.
#
#   local_scripts/train_accelerate.sh RECIPE.yaml [--key value ...]
#
# Environment (defaults in brackets):
#   ZERO             zero2, zero3 or zero3_offload: the config pair under local_scripts/ [zero3]
#   NUM_PROCESSES    processes on all nodes together, one per GPU [the number of GPUs nvidia-smi lists, or 1]
#   NUM_MACHINES     nodes [1]; several: run this script on every node with the same MAIN_PROCESS_IP and port
#   MACHINE_RANK     this node's rank, 0 to NUM_MACHINES-1 [0]
#   MAIN_PROCESS_IP  address of node 0, reachable from every node [127.0.0.1]
#   MAIN_PROCESS_PORT  a free port on node 0 [29500]
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
num_machines=${NUM_MACHINES:-1}

exec accelerate launch \
    --config_file "local_scripts/accelerate/${ZERO:-zero3}.yaml" \
    --num_processes "${NUM_PROCESSES:-$(( (gpus > 0 ? gpus : 1) * num_machines ))}" \
    --num_machines "$num_machines" \
    --machine_rank "${MACHINE_RANK:-0}" \
    --main_process_ip "${MAIN_PROCESS_IP:-127.0.0.1}" \
    --main_process_port "${MAIN_PROCESS_PORT:-29500}" \
    -m agentic_vlm.cli train "$recipe" \
    "$@"
