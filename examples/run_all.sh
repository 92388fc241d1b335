#!/usr/bin/env bash
# Run every example in full and refresh the figures and result tables that the docs show
# (docs/_static/examples/<name>.png and <name>.txt). CI runs each with --quick instead (tests/test_examples.py).
set -euo pipefail
cd "$(dirname "$0")/.."
export TF_CPP_MIN_LOG_LEVEL=3
for script in examples/[a-z]*.py; do
    name="$(basename "$script" .py)"
    echo "== $name"
    python "$script" --plot "docs/_static/examples/$name.png" 2> >(grep -v "absl::InitializeLog\|cudart_stub" >&2) \
        | grep -v "^figure: " | tee "docs/_static/examples/$name.txt"
done
