"""MMoE training / prediction speed of polytask against a hand-fused loop and the peers.

    python benchmarks/speed/run.py [--implementations hand_fused deepctr rechub polytask]
                                   [--rows 200000] [--repeats 1]

The census-shaped table is generated once (``data.py``, seeded, in a subprocess) into
``benchmarks/results/tmp/`` and every implementation then runs in its own fresh Python
process (``worker.py``) that loads the same arrays, so each reports its own peak RSS.
Results go to ``benchmarks/results/speed.json`` and ``benchmarks/results/speed.md``.

The machine has 2 cores and the implementations use 2 threads: anything else running at the
same time slows them down badly (an OpenMP team of 2 on 2 busy cores). Before each worker the
runner waits (up to ``--quiet-wait`` seconds) for the CPUs to be idle, and it records how much
CPU other processes used while each worker ran; a noisy measurement is flagged in speed.md.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
RESULTS = REPO / "benchmarks" / "results"
# The parent stays small on purpose: it imports neither numpy nor torch and generates the
# data in a subprocess. On Linux a child's ru_maxrss starts from the RSS high-water mark of
# the process it was forked from, so a big parent would inflate every worker's peak RSS.

ALL = ["hand_fused", "deepctr", "rechub", "polytask", "onnxruntime"]
LABELS = {
    "hand_fused": "hand-fused PyTorch",
    "deepctr": "DeepCTR-Torch 0.3.0",
    "rechub": "torch-rechub 0.9.0",
    "polytask": "polytask",
    # prediction only (polytask trains it): the same MMoE exported by `polytask export`, run by
    # onnxruntime (impl_onnxruntime.py); skipped when onnxruntime is not installed
    "onnxruntime": "polytask exported, onnxruntime",
}
METRICS = ("train_samples_per_s", "predict_samples_per_s", "peak_rss_mb")
# (numerator, denominator, metric, target ratio)
TARGETS = [
    ("polytask", "hand_fused", "train_samples_per_s", 0.8),
    ("polytask", "deepctr", "train_samples_per_s", 2.5),
    ("polytask", "rechub", "train_samples_per_s", 5.0),
    ("polytask", "deepctr", "predict_samples_per_s", 5.0),
]
NOISY_FOREIGN_CPU = 0.05  # share of the machine used by other processes that flags a run


# -- machine load ------------------------------------------------------------------------
def _cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies over all CPUs from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [float(v) for v in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    total = sum(fields[:8])  # user..steal (guest is already inside user)
    return total - idle, total


def _busy_fraction(interval: float = 1.0) -> float:
    b0, t0 = _cpu_times()
    time.sleep(interval)
    b1, t1 = _cpu_times()
    return (b1 - b0) / max(t1 - t0, 1e-9)


class ForeignCpuMonitor:
    """CPU seconds used by processes other than ``exclude`` while the monitor runs.

    Polls /proc every ``interval`` seconds and adds up each process's utime+stime growth;
    a process first seen mid-run counts fully if it started after the monitor did. (The
    machine-wide busy time cannot be used for this: a worker's spinning OpenMP threads soak up
    whatever the others leave, so contention hardly shows there.)
    """

    def __init__(self, exclude: set[int], interval: float = 0.5) -> None:
        import threading

        self.exclude = set(exclude)
        self.interval = interval
        self.hz = os.sysconf("SC_CLK_TCK")
        self.seen: dict[int, float] = {}
        self.total_ticks = 0.0
        self.samples = 0
        self.max_running_others = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.start_ticks = self._uptime_ticks()

    def _uptime_ticks(self) -> float:
        with open("/proc/uptime") as f:
            return float(f.read().split()[0]) * self.hz

    @staticmethod
    def _read(pid: int):
        try:
            with open(f"/proc/{pid}/stat") as f:
                raw = f.read()
        except OSError:
            return None
        fields = raw[raw.rindex(")") + 2 :].split()
        # fields[0] is field 3 (state); utime=14, stime=15, starttime=22 (1-based)
        return fields[0], float(fields[11]) + float(fields[12]), float(fields[19])

    def _poll(self, first: bool = False) -> None:
        running = 0
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            pid = int(name)
            if pid in self.exclude:
                continue
            info = self._read(pid)
            if info is None:
                continue
            state, ticks, start = info
            if state == "R":
                running += 1
            if first:
                self.seen[pid] = ticks
                continue
            before = self.seen.get(pid)
            if before is None:
                before = 0.0 if start >= self.start_ticks else ticks
            self.total_ticks += max(0.0, ticks - before)
            self.seen[pid] = ticks
        self.samples += 1
        self.max_running_others = max(self.max_running_others, running)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._poll()

    def start(self) -> ForeignCpuMonitor:
        self._poll(first=True)
        self._thread.start()
        return self

    def stop(self) -> float:
        """Stops; returns the other processes' CPU seconds."""
        self._stop.set()
        self._thread.join()
        self._poll()
        return self.total_ticks / self.hz


def wait_for_quiet(max_wait: float, threshold: float) -> dict:
    """Wait until the CPUs are (nearly) idle twice in a row; report what was seen."""
    if not Path("/proc/stat").exists() or max_wait <= 0:
        return {"waited_s": 0.0, "busy_before": None, "quiet": None}
    start = time.monotonic()
    calm = 0
    busy = 1.0
    while True:
        busy = _busy_fraction(1.0)
        calm = calm + 1 if busy < threshold else 0
        if calm >= 2 or time.monotonic() - start > max_wait:
            break
    return {"waited_s": round(time.monotonic() - start, 1), "busy_before": round(busy, 3), "quiet": calm >= 2}


# -- one worker ----------------------------------------------------------------------------
def run_worker(impl: str, data_dir: Path, tmp: Path, args, tag: str) -> dict:
    out_json = tmp / f"{impl}_{tag}.json"
    log = tmp / f"{impl}_{tag}.log"
    out_json.unlink(missing_ok=True)
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(args.threads)
    cmd = [
        sys.executable, str(HERE / "worker.py"), impl, str(data_dir), str(out_json),
        "--threads", str(args.threads), "--epochs", str(args.epochs),
    ]
    quiet = wait_for_quiet(args.quiet_wait, args.quiet_threshold)
    wall0 = time.monotonic()
    with open(log, "w") as logf:
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env, cwd=str(REPO))
        monitor = ForeignCpuMonitor({os.getpid(), proc.pid}).start() if Path("/proc/uptime").exists() else None
        try:
            rc = proc.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            rc = "timeout"
        foreign_s = monitor.stop() if monitor is not None else None
    wall = time.monotonic() - wall0

    if out_json.exists():
        result = json.loads(out_json.read_text())
    else:
        tail = log.read_text(errors="replace").splitlines()[-15:] if log.exists() else []
        result = {"status": "error", "reason": f"worker exited with {rc} and wrote no result", "log_tail": tail}

    # CPU used by *other* processes while this worker ran, as a share of the whole machine.
    if foreign_s is not None:
        quiet["foreign_cpu_during_run"] = round(foreign_s / max(wall * (os.cpu_count() or 1), 1e-9), 3)
        quiet["max_other_running"] = monitor.max_running_others
    result["machine_load"] = quiet
    result["log"] = str(log.relative_to(REPO)) if log.is_relative_to(REPO) else str(log)
    return result


def _foreign(result: dict) -> float:
    value = result.get("machine_load", {}).get("foreign_cpu_during_run")
    return 0.0 if value is None else float(value)


# -- aggregation and reports ---------------------------------------------------------------
def aggregate(runs: list[dict]) -> dict:
    ok = [r for r in runs if r.get("status") == "ok"]
    if not ok:
        last = runs[-1]
        entry = {m: None for m in METRICS}
        entry.update(status=last.get("status", "error"), reason=last.get("reason", "unknown"))
        if "traceback" in last:
            entry["traceback"] = last["traceback"]
        return {"mmoe": entry, "env": last.get("env", {})}
    def median(key: str) -> float | None:  # None for a metric the implementation does not measure
        values = [r[key] for r in ok if r.get(key) is not None]
        return round(statistics.median(values), 1) if values else None

    entry = {m: median(m) for m in METRICS}
    entry["status"] = "ok"
    entry["train_samples_per_s_epoch1"] = median("train_samples_per_s_epoch1")
    if any("reference_predict_samples_per_s" in r for r in ok):
        entry["reference_predict_samples_per_s"] = median("reference_predict_samples_per_s")
    hwm = [r["vm_hwm_mb"] for r in ok if r.get("vm_hwm_mb") is not None]
    entry["vm_hwm_mb"] = round(statistics.median(hwm), 1) if hwm else None
    entry["test_auc"] = ok[-1].get("test_auc")
    entry["n_parameters"] = ok[-1].get("n_parameters")
    entry["n_parameter_tensors"] = ok[-1].get("n_parameter_tensors")
    entry["notes"] = ok[-1].get("notes", "")
    entry["repeats"] = len(ok)
    foreign = [r.get("machine_load", {}).get("foreign_cpu_during_run") for r in ok]
    foreign = [f for f in foreign if f is not None]
    entry["max_foreign_cpu_during_run"] = max(foreign) if foreign else None
    entry["runs"] = [
        {k: r.get(k) for k in ("train_samples_per_s", "train_samples_per_s_epoch1", "predict_samples_per_s",
                               "peak_rss_mb", "vm_hwm_mb", "epoch_seconds", "predict_seconds", "wall_seconds",
                               "machine_load", "noisy_retries", "log")}
        for r in ok
    ]
    return {"mmoe": entry, "env": ok[-1].get("env", {})}


def _fmt_rate(v) -> str:
    if v is None:
        return "-"
    return f"{v / 1e6:.2f}M" if v >= 1e6 else f"{v / 1e3:.1f}k"


def _ratio(results: dict, num: str, den: str, metric: str):
    a = results.get(num, {}).get("mmoe", {}).get(metric)
    b = results.get(den, {}).get("mmoe", {}).get(metric)
    if a is None or b is None or b == 0:
        return None
    return a / b


def write_markdown(results: dict, meta: dict, path: Path) -> None:
    lines = ["# MMoE speed: polytask vs hand-fused PyTorch vs DeepCTR-Torch vs torch-rechub", ""]
    lines.append(f"Generated {meta['timestamp']} by `python benchmarks/speed/run.py` "
                 f"({meta['repeats']} fresh-process run(s) per implementation, median shown).")
    lines.append("")
    d = meta["data"]
    lines.append(
        f"Data: census-shaped synthetic table, {d['n_train']:,} training rows, {d['n_test']:,} prediction rows, "
        f"{d['n_numeric']} numeric + {d['n_categorical']} categorical features ({d['total_categories']:,} categories, "
        f"cardinalities {d['cardinality_range'][0]}-{d['cardinality_range'][1]}, Dirichlet(0.7) frequencies), "
        f"2 binary labels (positive rates {d['positive_rates'][0]:.0%} / {d['positive_rates'][1]:.0%}, "
        f"correlation {d['label_correlation']:.2f}), seed {d['seed']}."
    )
    lines.append(
        "Model: MMoE, 8 experts x [16], linear+softmax gates, towers [8] -> 1, embedding dim 4; Adam lr 1e-3, "
        f"batch 1024, no dropout / weight decay; {meta['threads']} torch threads. Training speed = epoch 2 "
        "(epoch 1 is warm-up); prediction = best of 2 passes over the prediction rows at batch 1024; "
        "peak RSS = `ru_maxrss` of the implementation's own fresh process (data loading included, same for all)."
    )
    lines.append("")
    lines.append("| implementation | train samples/s (epoch 2) | epoch 1 | predict samples/s | peak RSS (MB) "
                 "| test AUC t1 / t2 | param tensors | status / notes |")
    lines.append("|---|---:|---:|---:|---:|---|---:|---|")
    for impl in ALL:
        if impl not in results:
            continue
        e = results[impl]["mmoe"]
        label = LABELS.get(impl, impl)
        if e.get("status") != "ok":
            lines.append(f"| {label} | - | - | - | - | - | - | **{e.get('status')}**: {e.get('reason', '')} |")
            continue
        auc = " / ".join(f"{a:.3f}" for a in (e.get("test_auc") or [])) or "-"
        note = e.get("notes", "")
        foreign = e.get("max_foreign_cpu_during_run")
        if foreign is not None and foreign > NOISY_FOREIGN_CPU:
            note = f"**NOISY: other processes used {foreign:.0%} of the CPUs during the run**; " + note
        lines.append(
            f"| {label} | {_fmt_rate(e['train_samples_per_s'])} | {_fmt_rate(e['train_samples_per_s_epoch1'])} "
            f"| {_fmt_rate(e['predict_samples_per_s'])} | {e['peak_rss_mb']:.0f} | {auc} "
            f"| {e.get('n_parameter_tensors', '-')} | {note} |"
        )
    lines.append("")
    lines.append("## polytask against the targets")
    lines.append("")
    lines.append("| ratio | measured | target | met |")
    lines.append("|---|---:|---:|---|")
    pt = results.get("polytask", {}).get("mmoe", {})
    pt_reason = None if pt.get("status") == "ok" else (pt.get("reason") or "polytask not run")
    for num, den, metric, target in TARGETS:
        kind = "train" if metric.startswith("train") else "predict"
        r = _ratio(results, num, den, metric)
        name = f"{kind}: polytask / {LABELS[den]}"
        if r is None:
            lines.append(f"| {name} | n/a | >= {target}x | n/a |")
        else:
            lines.append(f"| {name} | {r:.2f}x | >= {target}x | {'yes' if r >= target else 'NO'} |")
    # the other ratios the issue asks for (no target of their own)
    for den in ("hand_fused", "deepctr", "rechub"):
        for metric in ("train_samples_per_s", "predict_samples_per_s"):
            if any(t[1] == den and t[2] == metric for t in TARGETS):
                continue
            r = _ratio(results, "polytask", den, metric)
            kind = "train" if metric.startswith("train") else "predict"
            lines.append(f"| {kind}: polytask / {LABELS[den]} | {'n/a' if r is None else f'{r:.2f}x'} | - | - |")
    if results.get("onnxruntime", {}).get("mmoe", {}).get("status") == "ok":
        for den in ("hand_fused", "polytask"):
            r = _ratio(results, "onnxruntime", den, "predict_samples_per_s")
            lines.append(f"| predict: {LABELS['onnxruntime']} / {LABELS[den]} | {'n/a' if r is None else f'{r:.2f}x'} | - | - |")
    peers_rss = [results[p]["mmoe"]["peak_rss_mb"] for p in ("deepctr", "rechub")
                 if results.get(p, {}).get("mmoe", {}).get("peak_rss_mb") is not None]
    if pt.get("peak_rss_mb") is not None and peers_rss:
        ok = pt["peak_rss_mb"] <= min(peers_rss)
        lines.append(f"| peak RSS: polytask vs peers | {pt['peak_rss_mb']:.0f} MB vs {min(peers_rss):.0f} MB "
                     f"| <= peers | {'yes' if ok else 'NO'} |")
    else:
        lines.append("| peak RSS: polytask vs peers | n/a | <= peers | n/a |")
    if pt_reason:
        lines.append("")
        lines.append(f"polytask: {pt.get('status', 'not run')} - {pt_reason}")
    lines.append("")
    lines.append("## Where the implementations differ")
    lines.append("")
    lines.append("- hand-fused: one embedding table with per-feature offsets (one gather), experts and gates in one "
                 "matmul, gate mixture one bmm, both towers batched (baddbmm); loss = sum of the tasks' mean BCE.")
    lines.append("- DeepCTR-Torch: `model.fit(..., verbose=0)`; one embedding table and one module per feature / "
                 "expert; batch loss is summed, not averaged; weights initialised N(0, 1e-4); gates are linear "
                 "without bias + softmax; L2 set to 0 (it still walks its regularisation list every step).")
    lines.append("- torch-rechub: `MTLTrainer.fit`; BatchNorm1d in every MLP (experts, softmax gates and towers), "
                 "which the others do not have; batches built row by row from a dict of 40 scalars; mean of task "
                 "losses; validation after each epoch (not timed; 10k rows); weight decay set to 0.")
    lines.append("- polytask: `polytask.fit(...)` / `result.predict(table)` through its public API; epoch-2 time "
                 "from the trainer's own per-epoch record.")
    ort = results.get("onnxruntime", {}).get("mmoe", {})
    if ort.get("status") == "ok":
        ref = ort.get("reference_predict_samples_per_s")
        lines.append("- polytask exported, onnxruntime: prediction only (the model is polytask's, trained in the same "
                     "process; its peak RSS includes that training and onnxruntime); the prediction table encoded by the "
                     "run's own preprocessor from Arrow, then onnxruntime at batch 1024. With the numpy-only reference "
                     f"preprocessor encoding a dict of columns instead: {_fmt_rate(ref)} samples/s.")
    lines.append("")
    lines.append("## Environment")
    lines.append("")
    for k, v in meta["env"].items():
        lines.append(f"- {k}: {v}")
    for impl in ALL:
        ver = results.get(impl, {}).get("env", {}).get("package_version")
        if ver:
            lines.append(f"- {LABELS[impl]} version: {ver}")
    lines.append("")
    path.write_text("\n".join(lines))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--implementations", nargs="+", default=ALL, choices=ALL)
    ap.add_argument("--rows", type=int, default=200_000, help="training rows (default 200,000)")
    ap.add_argument("--predict-rows", type=int, default=None, help="prediction rows (default rows / 2)")
    ap.add_argument("--repeats", type=int, default=1, help="fresh-process runs per implementation (median)")
    ap.add_argument("--epochs", type=int, default=2, help="training epochs; the last one is timed")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=None, help="data seed (default: data.py's)")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per worker process")
    ap.add_argument("--quiet-wait", type=float, default=120.0,
                    help="seconds to wait for idle CPUs before each worker (0: do not wait)")
    ap.add_argument("--retry-noisy", type=int, default=2,
                    help="re-run a worker (keeping the quietest run) when other processes used more than "
                         f"{NOISY_FOREIGN_CPU:.0%} of the CPUs during it, at most this many times")
    ap.add_argument("--quiet-threshold", type=float, default=0.15, help="machine busy fraction counted as idle")
    ap.add_argument("--results-dir", type=Path, default=RESULTS)
    ap.add_argument("--merge", action="store_true",
                    help="keep entries of speed.json for implementations not run this time")
    args = ap.parse_args()
    n_test = args.predict_rows or max(args.rows // 2, 1)

    tmp = args.results_dir / "tmp" / "speed"
    tmp.mkdir(parents=True, exist_ok=True)
    data_dir = tmp / f"data_{args.rows}_{n_test}_{args.seed if args.seed is not None else 'default'}_colmajor"
    if not (data_dir / "meta.json").exists():
        print(f"generating data ({args.rows:,} + {n_test:,} rows) -> {data_dir}", flush=True)
        cmd = [sys.executable, str(HERE / "data.py"), "--out", str(data_dir), "--rows", str(args.rows),
               "--predict-rows", str(n_test)]
        if args.seed is not None:
            cmd += ["--seed", str(args.seed)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=str(REPO))
    summary = json.loads((data_dir / "meta.json").read_text())

    runs: dict[str, list] = {impl: [] for impl in args.implementations}
    skipped: set = set()
    for rep in range(args.repeats):
        for impl in args.implementations:
            if impl in skipped:
                continue  # no point in repeating a skip
            print(f"[{rep + 1}/{args.repeats}] {impl} ...", end=" ", flush=True)
            r = run_worker(impl, data_dir, tmp, args, tag=str(rep))
            retries = 0
            while r.get("status") == "ok" and _foreign(r) > NOISY_FOREIGN_CPU and retries < args.retry_noisy:
                retries += 1
                print(f"noisy (other processes used {_foreign(r):.0%} of the CPUs), retry {retries} ...",
                      end=" ", flush=True)
                again = run_worker(impl, data_dir, tmp, args, tag=f"{rep}r{retries}")
                if again.get("status") == "ok" and _foreign(again) < _foreign(r):
                    r = again
            r["noisy_retries"] = retries
            runs[impl].append(r)
            if r.get("status") == "ok":
                print(f"train {_fmt_rate(r['train_samples_per_s'])}/s, "
                      f"predict {_fmt_rate(r['predict_samples_per_s'])}/s, peak RSS {r['peak_rss_mb']:.0f} MB, "
                      f"other processes' CPU share {r['machine_load'].get('foreign_cpu_during_run')}", flush=True)
            else:
                print(f"{r.get('status')}: {r.get('reason')}", flush=True)
                if r.get("status") == "skipped":
                    skipped.add(impl)

    results: dict = {}
    out_json = args.results_dir / "speed.json"
    if args.merge and out_json.exists():
        results.update(json.loads(out_json.read_text()))
    for impl, impl_runs in runs.items():
        if impl_runs:
            results[impl] = aggregate(impl_runs)
    results = {k: results[k] for k in ALL if k in results} | {k: v for k, v in results.items() if k not in ALL}

    config = {
        "rows": args.rows, "predict_rows": n_test, "epochs": args.epochs, "timed_epoch": args.epochs,
        "threads": args.threads, "batch_size": 1024, "seed": summary["seed"], "repeats": args.repeats,
    }
    for impl in runs:
        if impl in results:
            results[impl]["config"] = config
    args.results_dir.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(results, indent=2, default=float) + "\n")

    worker_env = next((results[k].get("env") for k in results if results[k].get("env", {}).get("torch")), {})
    env = {
        "torch": worker_env.get("torch", "?"),
        "torch threads": worker_env.get("threads", args.threads),
        "python": worker_env.get("python", platform.python_version()),
        "numpy": worker_env.get("numpy", "?"),
        "cpu": worker_env.get("cpu", platform.processor()),
        "cpu count": os.cpu_count(),
        "platform": platform.platform(),
        "git commit": _git_commit(),
    }
    meta = {
        "timestamp": _dt.datetime.now().isoformat(timespec="seconds"),
        "repeats": args.repeats,
        "threads": args.threads,
        "data": summary,
        "env": env,
    }
    write_markdown(results, meta, args.results_dir / "speed.md")
    print(f"wrote {out_json.relative_to(REPO) if out_json.is_relative_to(REPO) else out_json} and speed.md")
    return 0


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, timeout=10).stdout.strip() or "none"
    except Exception:
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
