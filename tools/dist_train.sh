#!/usr/bin/env bash
# Train with torchrun, one process per GPU: tools/dist_train.sh CONFIG GPUS [KEY VALUE ...]
#
# One node: torchrun --standalone picks a free port. Several nodes: run the same command on each
# with NNODES, NODE_RANK (0..NNODES-1), MASTER_ADDR and MASTER_PORT (of node 0) set.
# PYTHON selects the interpreter (default: python; e.g. PYTHON=.venv/bin/python).
set -euo pipefail

if [ "$#" -lt 2 ]; then
    echo "usage: $0 CONFIG GPUS [KEY VALUE ...]  (e.g. $0 experiments/coco/hrnet/w32_256x192_adam_lr1e-3.yaml 4)" >&2
    exit 2
fi
CONFIG=$1
GPUS=$2
shift 2
PYTHON=${PYTHON:-python}
NNODES=${NNODES:-1}
TRAIN="$(dirname "$0")/train.py"

if [ "$NNODES" -eq 1 ]; then
    LAUNCH=(--standalone --nproc_per_node="$GPUS")
else
    LAUNCH=(--nnodes="$NNODES" --node_rank="${NODE_RANK:?set NODE_RANK for a multi-node run}"
            --master_addr="${MASTER_ADDR:?set MASTER_ADDR to node 0}"
            --master_port="${MASTER_PORT:-29500}" --nproc_per_node="$GPUS")
fi
exec "$PYTHON" -m torch.distributed.run "${LAUNCH[@]}" "$TRAIN" --cfg "$CONFIG" "$@"
