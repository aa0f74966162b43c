#!/usr/bin/env bash
# Creates (once) the throw-away Python environment of the benchmarks that run TRL:
# .venv-bench/ in the repository root (git-ignored by `/.venv-*`; about 5 GB, most of it the
# CUDA libraries that PyPI's torch wheel depends on, unused here). Prints the path of its
# python. Re-running reuses the environment when its pinned versions are there.
#
# Pins: torch 2.11.0 (the libtorch version the workspace builds against), transformers
# 5.23.0 and tokenizers 0.23.3 (as scripts/fixtures/make_lm_fixtures.sh), TRL 1.16.0 (the
# reference Python trainer of docs/objectives.md) with the accelerate and datasets versions it
# resolved to when this was written; their own dependencies are left to pip.
#
# Optional override (environment): VENV (default: <repo>/.venv-bench).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
venv=${VENV:-"$root/.venv-bench"}
want="torch==2.11.0 transformers==5.23.0 tokenizers==0.23.3 trl==1.16.0 accelerate==1.15.0 datasets==5.2.0"

# Is the environment there with the pinned versions? (An interrupted install fails this.)
ready() {
    [[ -x "$venv/bin/python" ]] && "$venv/bin/python" - <<'PY' 2>/dev/null
import torch, transformers, tokenizers, trl, accelerate, datasets
assert torch.__version__.split("+")[0] == "2.11.0", torch.__version__
assert transformers.__version__ == "5.23.0", transformers.__version__
assert tokenizers.__version__ == "0.23.3", tokenizers.__version__
assert trl.__version__ == "1.16.0", trl.__version__
assert accelerate.__version__ == "1.15.0", accelerate.__version__
assert datasets.__version__ == "5.2.0", datasets.__version__
PY
}

if ! ready; then
    echo "bench_env: installing $want into $venv (once; several GB)" >&2
    [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
    # shellcheck disable=SC2086
    "$venv/bin/pip" install --quiet --disable-pip-version-check $want >&2
    ready || { echo "bench_env: $venv does not have $want after installing" >&2; exit 1; }
fi
echo "$venv/bin/python"
