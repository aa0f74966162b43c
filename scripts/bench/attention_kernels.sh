#!/usr/bin/env bash
# Attention kernels on the CPU (scripts/bench/attention_kernels.py): eager against the fused
# scaled_dot_product_attention, masked or causal, grouped or repeated keys. Arguments are passed
# on (--threads, --reps, --dtype). Python environment: scripts/bench/bench_env.sh (VENV overrides).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
python=$("$here/bench_env.sh")
echo "load before: $(uptime)" >&2
"$python" "$here/attention_kernels.py" "$@"
echo "load after: $(uptime)" >&2
