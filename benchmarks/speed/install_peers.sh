#!/usr/bin/env bash
# Install the peer libraries compared in the speed benchmark into the *active* Python
# environment, without letting pip touch torch.
#
#   source .venv/bin/activate && bash benchmarks/speed/install_peers.sh
#
# Both peers declare torch as a dependency; installing them normally could make pip
# replace the CPU build of torch 2.13.0. So the peers are installed with --no-deps and
# their few pure-Python runtime imports are installed explicitly beside them.
set -euo pipefail

PY="${PYTHON:-python}"
PEERS=("deepctr-torch==0.3.0" "torch-rechub==0.9.0")
# What the peers import at runtime (checked by importing their MMOE models and trainers).
RUNTIME_DEPS=("numpy" "pandas" "scikit-learn" "tqdm" "pyarrow" "requests")

torch_version() { "$PY" -c 'import torch; print(torch.__version__)'; }

before="$(torch_version)"
echo "torch before: ${before}"

# 1. Are the peers obtainable at all?
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$PY" -m pip download --quiet --no-deps -d "$tmp" "${PEERS[@]}"

# 2. Install the pure-Python deps (already-satisfied ones are left alone; none of them
#    depends on torch) and then the peers themselves without their dependencies.
"$PY" -m pip install --quiet "${RUNTIME_DEPS[@]}"
"$PY" -m pip install --quiet --no-deps "${PEERS[@]}"

# 3. torch must be untouched.
after="$(torch_version)"
echo "torch after:  ${after}"
if [[ "$after" != "$before" || "$after" != 2.13.0* ]]; then
    echo "ERROR: torch changed or is not 2.13.0 (before=${before}, after=${after})" >&2
    exit 1
fi
case "$after" in
    *+cpu) ;;
    *) echo "WARNING: torch ${after} is not the +cpu build" >&2 ;;
esac

# 4. The models the benchmark uses must import.
"$PY" - <<'PY'
from deepctr_torch.models import MMOE as _D  # noqa: F401
from torch_rechub.models.multi_task import MMOE as _R  # noqa: F401
from torch_rechub.trainers import MTLTrainer as _T  # noqa: F401
import deepctr_torch, torch_rechub, torch
print("peers ok: deepctr-torch", getattr(deepctr_torch, "__version__", "?"),
      "| torch-rechub", getattr(torch_rechub, "__version__", "?"), "| torch", torch.__version__)
PY
