"""Runs ONE implementation in the current (fresh) process and writes its result as JSON.

    python benchmarks/speed/worker.py IMPLEMENTATION DATA_DIR OUT_JSON [--threads 2]

Started by run.py, one new process per implementation, so that the peak RSS it reports
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) is that implementation's own.  Every process
does the same preparation: set the thread count, load the shared ``.npy`` table, run.
An implementation whose package is not installed is written as ``status: skipped``; one
that raises is written as ``status: error`` with the traceback's tail.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import platform
import resource
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def _peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    return round(kb / 1024.0, 1)


def _vm_hwm_mb() -> float | None:
    """High-water RSS of this process's own address space (reset at exec, unlike ru_maxrss)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024.0, 1)
    except OSError:
        pass
    return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _aucs(y_true, y_pred) -> list:
    from sklearn.metrics import roc_auc_score

    return [round(float(roc_auc_score(y_true[:, t], y_pred[:, t])), 4) for t in range(y_true.shape[1])]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("implementation")
    ap.add_argument("data_dir")
    ap.add_argument("out_json")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()

    sys.path.insert(0, str(HERE))
    # polytask is benchmarked from this checkout's src/ (an installed copy could be stale).
    if (REPO / "src" / "polytask").is_dir():
        sys.path.insert(1, str(REPO / "src"))

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    np.random.seed(0)
    torch.manual_seed(0)

    result: dict = {
        "implementation": args.implementation,
        "env": {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "platform": platform.platform(),
            "cpu": _cpu_model(),
            "cpu_count": __import__("os").cpu_count(),
        },
    }
    t_start = time.perf_counter()
    try:
        module = importlib.import_module(f"impl_{args.implementation}")
        missing = [m for m in getattr(module, "REQUIRES", ()) if importlib.util.find_spec(m) is None]
        skip_reason = None
        if missing:
            skip_reason = f"package not installed: {', '.join(missing)} (see benchmarks/speed/install_peers.sh)"
        elif hasattr(module, "available"):
            skip_reason = module.available()  # None when usable, else the reason
        if skip_reason:
            result.update(status="skipped", reason=skip_reason)
        else:
            import data as data_mod

            data = data_mod.load(args.data_dir)
            out = module.run(data, epochs=args.epochs)
            # peak RSS of the implementation's own work, before the AUC check below imports sklearn
            result["peak_rss_mb"] = _peak_rss_mb()
            result["vm_hwm_mb"] = _vm_hwm_mb()
            pred = out.pop("predictions", None)
            if pred is not None:
                pred = np.asarray(pred, dtype=np.float64).reshape(data.n_test, -1)
                out["test_auc"] = _aucs(data.test_y, pred)
            result.update(status="ok", **out)
            result["env"]["package_version"] = getattr(module, "package_version", lambda: None)()
            result["notes"] = getattr(module, "NOTES", "")
    except Exception as exc:  # reported, never a crash of the whole benchmark
        result.update(
            status="error",
            reason=f"{type(exc).__name__}: {exc}",
            traceback="".join(traceback.format_exc()).splitlines()[-25:],
        )
    result["wall_seconds"] = round(time.perf_counter() - t_start, 2)
    result.setdefault("peak_rss_mb", _peak_rss_mb())
    Path(args.out_json).write_text(json.dumps(result, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
