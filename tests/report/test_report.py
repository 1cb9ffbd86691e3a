"""`polytask report`: the sections each run's log calls for, one embedded image per plot, nothing
loaded from elsewhere, the numbers it computes (conflict shares, expert utilisation and dead
experts, gate entropy, calibration bins, Delta-m) on known answers, bad input, the command line."""

from __future__ import annotations

import base64
import io
import json
import math
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from polytask.cli import app
from polytask.errors import DataError
from polytask.metrics import delta_m
from polytask.report import ReportWarning, render_report, write_report
from polytask.report.comparison import delta_m_table
from polytask.report.loading import load_runs
from polytask.report.sections import RUN_SECTIONS, Context, Section
from polytask.report.stats import cosine_table, entropy, gate_entropy_series, gate_levels, gradient_norms, reliability
from polytask.run import LOG, RunFileWarning, write_manifest

RUN_ORDER = ["mmoe_pcgrad", "ple", "cross_stitch", "drn", "fafs", "single_task", "esmm"]


def section(html: str, anchor: str) -> str:
    """The HTML of the section with id ``anchor`` (up to the next section of the same kind)."""
    start = html.index(f'id="{anchor}"')
    end = html.find('<section class="part"', start + 1)
    run_end = html.find('<section class="run"', start + 1)
    ends = [e for e in (end, run_end) if e != -1]
    return html[start:min(ends) if ends else len(html)]


def run_anchor(name: str) -> str:
    return f"run-{RUN_ORDER.index(name) + 1}"


# -- the whole report --------------------------------------------------------------------------------
def test_every_run_gets_the_sections_its_log_calls_for(report_html):
    html = report_html
    assert "<title>all the runs</title>" in html
    for name in RUN_ORDER:
        a = run_anchor(name)
        for key in ("overview", "metrics", "curves", "weights"):
            assert f'id="{a}-{key}"' in html, (name, key)
    # task gradients: every run with shared parameters logged cosines (and, now, norms)
    grads = section(html, f"{run_anchor('mmoe_pcgrad')}-gradients")
    assert "Share of logged steps" not in grads  # a plot title, drawn in the image, not in the HTML
    assert "share conflicting (cos &lt; 0)" in grads and "a × b" in grads and "<img" in grads
    assert "not logged" not in grads
    single = section(html, f"{run_anchor('single_task')}-gradients")
    assert "No task-gradient cosines were logged" in single and "<img" not in single
    # gates: MMoE (one level) and PLE (two levels, own and shared experts), nothing for the others
    assert f'id="{run_anchor("mmoe_pcgrad")}-gates"' in html and f'id="{run_anchor("ple")}-gates"' in html
    for name in ("cross_stitch", "drn", "fafs", "single_task"):
        assert f'id="{run_anchor(name)}-gates"' not in html, name
    assert "No dead expert" in section(html, f"{run_anchor('ple')}-gates") or "Dead experts" in section(html, f"{run_anchor('ple')}-gates")
    # learned structure, from the logged keys
    assert "Cross-stitch mixing" in section(html, f"{run_anchor('cross_stitch')}-structure")
    assert "Task correlation" in section(html, f"{run_anchor('drn')}-structure")
    fafs = section(html, f"{run_anchor('fafs')}-structure")
    assert "Branch tree" in fafs and "{a, b, r}" in fafs and "{a} {b} {r}" in fafs
    assert f'id="{run_anchor("mmoe_pcgrad")}-structure"' not in html
    # calibration: binary tasks of runs whose data can be read again
    mmoe_cal = section(html, f"{run_anchor('mmoe_pcgrad')}-calibration")
    assert "ECE" in mmoe_cal and "<img" in mmoe_cal
    esmm_cal = section(html, f"{run_anchor('esmm')}-calibration")
    for task in ("ctr", "cvr", "ctcvr"):
        assert f"<td>{task}</td>" in esmm_cal
    drn_cal = section(html, f"{run_anchor('drn')}-calibration")  # trained on in-memory tables
    assert "validation data could not be read" in drn_cal and "<img" not in drn_cal
    # regularisation: DRN's prior is a loss term
    assert "drn_prior" in section(html, f"{run_anchor('drn')}-regularization")
    # the comparison comes first
    assert html.index('id="comparison"') < html.index('id="run-1"')
    assert "Δm vs single-task" in section(html, "comparison-test")
    assert "could not be drawn" not in html


def test_every_plot_is_one_embedded_png(report_html):
    figures = re.findall(r'<figure class="plot[^"]*">(.*?)</figure>', report_html, flags=re.S)
    assert len(figures) > 40
    for fig in figures:
        images = re.findall(r'<img alt="[^"]+" src="data:image/png;base64,([A-Za-z0-9+/=]+)">', fig)
        assert len(images) == 1, fig[:200]
        with Image.open(io.BytesIO(base64.b64decode(images[0]))) as im:
            assert im.format == "PNG" and im.width > 200 and im.height > 100
            assert len(im.getcolors(maxcolors=1 << 20) or [0, 0]) > 1  # not a blank picture
    assert report_html.count("<img") == len(figures)


def test_the_page_loads_nothing_from_elsewhere(report_html):
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", report_html, flags=re.I)
    assert "http://" not in report_html and "https://" not in report_html
    assert "<script" not in report_html.lower() and "<link" not in report_html.lower()
    assert "@import" not in report_html and "url(" not in report_html
    # every link is an anchor on the page, and every anchor it names exists
    for target in re.findall(r'href="([^"]*)"', report_html):
        assert target.startswith("#") and f'id="{target[1:]}"' in report_html, target


def test_the_report_is_a_reasonable_size(report_path):
    assert report_path.stat().st_size < 6_000_000  # eight runs, some 80 plots


# -- known answers ------------------------------------------------------------------------------------------
def test_conflict_share_on_a_hand_made_log():
    steps = [
        {"step": 0, "cosine": {"tasks": ["a", "b", "c"], "matrix": [[1, -0.5, 0.2], [-0.5, 1, 0.1], [0.2, 0.1, 1]],
                               "norms": [1.0, 2.0, 3.0]}},
        {"step": 5, "cosine": {"tasks": ["a", "b", "c"], "matrix": [[1, 0.3, -0.2], [0.3, 1, -0.1], [-0.2, -0.1, 1]],
                               "norms": [1.5, 2.5, 3.5]}},
        # a batch without a label of c: only the pair a, b is logged
        {"step": 10, "cosine": {"tasks": ["b", "a"], "matrix": [[1, -0.9], [-0.9, 1]], "norms": [0.5, 0.25]}},
        {"step": 15, "cosine": {"tasks": ["a", "b", "c"], "matrix": [[1, -0.1, 0.0], [-0.1, 1, 0.4], [0.0, 0.4, 1]],
                               "norms": [1.0, 1.0, 1.0]}},
        {"step": 20, "weights": {"a": 1.0}},  # no cosine logged at this step
    ]
    table = cosine_table(steps)
    assert table.pairs == [("a", "b"), ("a", "c"), ("b", "c")]
    assert table.steps == [0, 5, 10, 15]
    np.testing.assert_allclose(table.values[0], [-0.5, 0.3, -0.9, -0.1])
    assert np.isnan(table.values[1, 2]) and np.isnan(table.values[2, 2])
    shares = table.conflict_shares()
    assert shares[("a", "b")] == (0.75, 4)  # 3 of 4 logged steps below 0
    assert shares[("a", "c")] == (pytest.approx(1 / 3), 3)  # 0.0 is not a conflict
    assert shares[("b", "c")] == (pytest.approx(1 / 3), 3)
    tasks, xs, norms = gradient_norms(steps)
    assert tasks == ["a", "b", "c"] and xs == [0, 5, 10, 15]
    np.testing.assert_allclose(norms[:, 2], [0.25, 0.5, np.nan])  # matched by name, not by position
    # an older log without norms: no norms, the cosines as before
    old = [{**s, "cosine": {k: v for k, v in s["cosine"].items() if k != "norms"}} for s in steps if "cosine" in s]
    assert gradient_norms(old) is None and cosine_table(old).conflict_shares() == shares


def test_gate_utilisation_and_dead_experts_on_a_hand_made_log():
    # MMoE: four experts, expert 3 nearly unused by both gates (threshold 1 / (10 * 4) = 0.025)
    mmoe = gate_levels({"a": [0.5, 0.3, 0.18, 0.02], "b": [0.1, 0.6, 0.28, 0.02]}, {"name": "mmoe", "num_experts": 4})
    assert len(mmoe) == 1 and mmoe[0].name == "" and mmoe[0].width == 4
    np.testing.assert_allclose(mmoe[0].utilisation(), [0.3, 0.45, 0.23, 0.02])
    assert mmoe[0].threshold() == pytest.approx(0.025)
    assert mmoe[0].dead_experts() == [("expert 3", pytest.approx(0.02))]
    # PLE: per level, each task's gate over its one own expert then two shared ones
    ple = gate_levels(
        {"level0": {"a": [0.5, 0.5, 0.0], "b": [0.2, 0.4, 0.4]}, "level1": {"a": [1.0, 0.0, 0.0], "b": [0.01, 0.0, 0.99]}},
        {"specific_experts": 1, "shared_experts": 2},
    )
    level0, level1 = ple
    assert level0.experts == ["a own", "b own", "shared 0", "shared 1"] and level0.width == 3
    assert np.isnan(level0.matrix[0, 1]) and np.isnan(level0.matrix[1, 0])  # another task's own expert
    np.testing.assert_allclose(level0.utilisation(), [0.5, 0.2, 0.45, 0.2])
    assert level0.dead_experts() == []
    np.testing.assert_allclose(level1.utilisation(), [1.0, 0.01, 0.0, 0.495])
    assert [name for name, _ in level1.dead_experts()] == ["b own", "shared 0"]  # below 1/30
    # without the config's expert counts the weights are read column by column
    plain = gate_levels({"level0": {"a": [0.5, 0.5, 0.0]}}, {})
    assert plain[0].experts == ["expert 0", "expert 1", "expert 2"]


def test_gate_entropy_is_the_logged_one_or_the_mean_gates_with_a_flag():
    logged = [(1, {"gates": {"a": [0.5, 0.5]}, "gate_entropy": {"a": 0.2}}),
              (2, {"gates": {"a": [0.9, 0.1]}, "gate_entropy": {"a": 0.1}})]
    series, was_logged = gate_entropy_series(logged)
    assert was_logged and series == {"": {"a": [(1, 0.2), (2, 0.1)]}}
    nested = [(1, {"gates": {"level0": {"a": [0.25, 0.25, 0.5]}}})]
    series, was_logged = gate_entropy_series(nested)
    assert not was_logged
    expected = -(2 * 0.25 * math.log(0.25) + 0.5 * math.log(0.5))
    assert series["level0"]["a"] == [(1, pytest.approx(expected))]
    assert entropy([1.0, 0.0]) == 0.0 and entropy([1, 1]) == pytest.approx(math.log(2))


def test_reliability_bins_on_known_predictions():
    p = np.array([0.05, 0.05, 0.15, 0.55, 0.95, 1.0, 0.999])
    y = np.array([0, 1, 0, 1, 1, 1, 0])
    r = reliability(p, y, bins=10)
    assert r.counts.tolist() == [2, 1, 0, 0, 0, 1, 0, 0, 0, 3]  # 1.0 falls in the last bin
    assert r.observed[0] == 0.5 and r.predicted[0] == pytest.approx(0.05)
    assert np.isnan(r.observed[2])
    assert r.observed[9] == pytest.approx(2 / 3) and r.predicted[9] == pytest.approx((0.95 + 1.0 + 0.999) / 3)
    gaps = [0.45, 0.15, 0.45, abs(2 / 3 - (0.95 + 1.0 + 0.999) / 3)]
    assert r.ece == pytest.approx((2 * gaps[0] + gaps[1] + gaps[2] + 3 * gaps[3]) / 7)
    assert r.rows == 7 and r.base_rate == pytest.approx(4 / 7)


def test_calibration_leaves_out_rows_outside_a_tasks_sample_space(run_dirs):
    """ESMM's cvr is labelled only where click == 1: its reliability counts those rows only."""
    from polytask.data.sources import load_splits
    from polytask.report.calibration import calibration

    (run,) = load_runs([run_dirs["esmm"]])
    assert calibration(run, Context()) is not None
    results = run.cache["calibration"]
    validation = load_splits(run.run.config.data).validation
    clicks = int(np.asarray(validation.column("click")).sum())
    assert results["ctr"].rows == results["ctcvr"].rows == validation.num_rows
    assert results["cvr"].rows == clicks < validation.num_rows


def test_delta_m_equals_delta_m_computed_directly(run_dirs, report_html):
    runs = load_runs([run_dirs[n] for n in RUN_ORDER])
    base = json.loads((run_dirs["single_task"] / "metrics.json").read_text())["test"]
    table = delta_m_table(runs)
    for name in RUN_ORDER:
        test = json.loads((run_dirs[name] / "metrics.json").read_text())["test"]
        assert table[name] == pytest.approx(delta_m(test, base), nan_ok=True), name
    assert table["single_task"] == 0.0
    assert math.isnan(table["esmm"])  # no task in common with the baseline
    row = section(report_html, "comparison-test")
    assert f"{table['mmoe_pcgrad']:+.2f} %" in row and f"{table['cross_stitch']:+.2f} %" in row
    assert ">baseline<" in row


def test_without_a_single_task_run_delta_m_is_left_out_with_a_note(run_dirs):
    html = render_report([run_dirs["drn"], run_dirs["fafs"]])
    assert "No single-task run among these" in html and "Δm vs single-task" not in html


# -- older and damaged runs -------------------------------------------------------------------------------------------
def _copy(run_dir: Path, dest: Path) -> Path:
    shutil.copytree(run_dir, dest)
    return dest


def test_an_older_run_without_norms_or_gate_entropy_gets_notes(run_dirs, tmp_path):
    run = _copy(run_dirs["mmoe_pcgrad"], tmp_path / "older")
    records = [json.loads(line) for line in (run / LOG).read_text().splitlines()]
    for r in records:
        r.get("diagnostics", {}).pop("gate_entropy", None)
        for s in r.get("steps", []):
            s.get("cosine", {}).pop("norms", None)
    (run / LOG).write_text("".join(json.dumps(r) + "\n" for r in records))
    write_manifest(run)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RunFileWarning)  # nothing to warn about: the run is merely older
        warnings.simplefilter("error", ReportWarning)
        html = render_report([run])
    assert "Per-task gradient norms were not logged in this run" in html
    assert "gate_entropy was not logged in this run: the entropy of each epoch&#x27;s mean gate is shown" in html


def test_a_damaged_log_line_is_a_warning_and_the_other_epochs_are_reported(run_dirs, tmp_path):
    run = _copy(run_dirs["ple"], tmp_path / "damaged")
    lines = (run / LOG).read_text().splitlines()
    lines[1] = lines[1][: len(lines[1]) // 2]  # epoch 2 cut in half
    (run / LOG).write_text("\n".join(lines) + "\n")
    write_manifest(run)  # the line alone is damaged (not the checksum)
    out = tmp_path / "r.html"
    with pytest.warns(RunFileWarning, match="line 2 is not a complete JSON record"):
        write_report([run], out)
    html = out.read_text()
    assert "epochs trained</dt><dd>2 (of at most 3)" in html
    assert 'id="run-1-gates"' in html


def test_a_run_whose_model_cannot_be_loaded_still_shows_its_logs(run_dirs, tmp_path):
    run = _copy(run_dirs["mmoe_pcgrad"], tmp_path / "broken")
    (run / "model.pt").write_bytes(b"not a checkpoint")
    with pytest.warns(RunFileWarning, match="the model cannot be loaded"):
        html = render_report([run])
    assert "The model could not be loaded" in html
    assert "Calibration is left out: the model could not be loaded." in html
    assert 'id="run-1-gradients"' in html and 'id="run-1-gates"' in html


def test_a_path_that_is_not_a_run_is_one_error_naming_it_and_nothing_is_written(run_dirs, tmp_path):
    stray = tmp_path / "not_a_run"
    stray.mkdir()
    (stray / "notes.txt").write_text("hello")
    out = tmp_path / "r.html"
    with pytest.raises(DataError, match=re.escape(str(stray))):
        write_report([run_dirs["ple"], stray], out)
    with pytest.raises(DataError, match="run directory not found"):
        write_report([tmp_path / "missing"], out)
    with pytest.raises(DataError, match="is a directory"):
        write_report([run_dirs["ple"]], tmp_path)
    assert not out.exists()


def test_text_from_the_run_is_escaped(run_dirs, tmp_path):
    odd = _copy(run_dirs["single_task"], tmp_path / "<b>run & 'co'")
    html = render_report([odd, run_dirs["drn"]])
    assert "<b>run" not in html
    assert "&lt;b&gt;run &amp; &#x27;co&#x27;" in html


def test_a_section_is_a_function_added_to_the_list_and_a_failing_one_costs_one_line(run_dirs, monkeypatch):
    import polytask.report.sections as sections

    def hello(run, ctx):
        return f"<p>{len(run.epochs)} epochs</p>"

    def broken(run, ctx):
        raise RuntimeError("boom")

    monkeypatch.setattr(sections, "RUN_SECTIONS", [*RUN_SECTIONS, Section("hello", "Hello", hello),
                                                   Section("broken", "Broken", broken)])
    with pytest.warns(ReportWarning, match="boom"):
        html = render_report([run_dirs["drn"]])
    assert '<section class="part" id="run-1-hello"><h3>Hello</h3><p>3 epochs</p></section>' in html
    assert "Broken: this section could not be drawn (RuntimeError: boom)" in html
    assert 'id="run-1-regularization"' in html  # the sections around it are still drawn


# -- the command line ------------------------------------------------------------------------------------------------------
def test_cli_writes_the_report(run_dirs, tmp_path):
    out = tmp_path / "sub" / "report.html"
    result = CliRunner().invoke(app, ["report", str(run_dirs["drn"]), str(run_dirs["single_task"]),
                                      "-o", str(out), "--title", "two runs"])
    assert result.exit_code == 0, result.output
    assert f"wrote {out} (2 runs" in result.stdout
    html = out.read_text()
    assert "<title>two runs</title>" in html and 'id="comparison"' in html


def test_cli_names_a_path_that_is_not_a_run(tmp_path):
    stray = tmp_path / "stray"
    stray.mkdir()
    result = CliRunner().invoke(app, ["report", str(stray), "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {stray}: not a polytask run directory (no manifest.json, or config.yaml, " \
                                    "encoders.json and model.pt are missing)"
    assert not (tmp_path / "r.html").exists()


def test_cli_prints_a_damaged_log_line_as_one_warning_line(run_dirs, tmp_path):
    run = _copy(run_dirs["drn"], tmp_path / "damaged")
    with (run / LOG).open("a") as fh:
        fh.write('{"epoch": 4, "train_lo')
    result = CliRunner().invoke(app, ["report", str(run), "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    assert f"warning: {run / LOG}: line 4 is not a complete JSON record (skipped)" in result.stderr
    assert (tmp_path / "r.html").is_file()


def test_structure_is_drawn_from_the_logged_keys_whatever_the_model(tmp_path):
    """Hand-made logs of a model the report has never heard of: each diagnostics key gets its view
    (attention as a table, a correlation and a list of mixing matrices as heat maps, a key no view
    knows as its JSON); the gates section is drawn for any model that logs gates."""
    from polytask.report.loading import RunData
    from polytask.report.plots import style
    from polytask.report.sections import gates
    from polytask.report.structure import structure

    def record(epoch: int, scale: float) -> dict:
        return {"epoch": epoch, "diagnostics": {
            "attention": {"b": {"transfer": 0.25 * scale, "own": 1 - 0.25 * scale}},
            "task_correlation": [[1.0, 0.3 * scale], [0.3 * scale, 1.0]],
            "alpha": [[[0.9, 0.1, 0.0, 0.0], [0.1, 0.9, 0.0, 0.0], [0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.5, 0.5]]] * 2,
            "something_new": {"k": [1, 2, "<x>"]},
            "gates": {"shared": [0.7 * scale, 1 - 0.7 * scale]},
        }}

    run = RunData(path=tmp_path, name="hand", config={"model": {"name": "my_model"}}, tasks=[("a", "binary"), ("b", "binary")],
                  history=[record(1, 1.0), record(2, 1.2)], metrics={})
    with style():
        html = structure(run, Context())
        gate_html = gates(run, Context())
    assert "Attention (epoch 2)" in html and "<td>transfer</td>" not in html and "<th>transfer</th>" in html
    assert '<td class="num">0.3000</td>' in html  # 0.25 * 1.2
    assert "Task correlation" in html and "Subspace mixing (alpha)" in html
    assert "something_new (epoch 2, as logged)" in html and "&lt;x&gt;" in html and "<x>" not in html
    assert html.count("<img") >= 5
    assert "gate" not in html.lower()  # the gates are the gates section's
    assert "<img" in gate_html and "Dead experts" not in gate_html


def test_runs_with_the_same_directory_name_are_told_apart(run_dirs, tmp_path):
    first = _copy(run_dirs["single_task"], tmp_path / "one" / "run")
    second = _copy(run_dirs["single_task"], tmp_path / "two" / "run")
    runs = load_runs([first, second])
    assert [r.name for r in runs] == ["one/run", "two/run"]
