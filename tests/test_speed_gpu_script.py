"""The GPU speed script runs end to end on the CPU (its smoke mode), so it works when a GPU is lent."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "speed" / "gpu.py"


@pytest.mark.slow
def test_gpu_speed_script_smoke_on_cpu():
    spec = importlib.util.spec_from_file_location("speed_gpu_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.main(["--device", "cpu", "--rows", "6000", "--batches", "1024,4096", "--name", ""])
    assert [r["batch"] for r in out["rows"]] == [1024, 4096]
    for r in out["rows"]:
        assert r["rows"] == 6000 and r["train"] > 0 and r["inference"] > 0
        assert 0.0 <= r["outside_kernels"] <= 1.0
        assert 0.0 < r["final_train_loss"] < 2 * 0.7  # two binary tasks, learning from ~log 2 each
