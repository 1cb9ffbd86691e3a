"""Regenerate the README's example report: a census MMoE run with PCGrad, its HTML report and a
screenshot of the report's top part.

    .venv/bin/python docs/report/make_example.py [--data-dir DIR] [--run runs/census_mmoe_pcgrad]

Trains ``configs/census_mmoe.yaml`` with ``weighting.name=pcgrad`` for 8 epochs (task weights and
gradient cosines logged every 20 steps; on the CPU, a minute or two), writes
``docs/report/census_mmoe_pcgrad.html`` with ``polytask.report.write_report`` and
``docs/report/census_mmoe_pcgrad.png`` (the top 1280 x 1600 pixels, in headless Chromium with
playwright, as tests/report/test_browser.py opens it). Needs the census data
(``<data dir>/census_income_kdd/``) and /usr/bin/chromium. Run from anywhere; paths are relative
to the repository.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
NAME = "census_mmoe_pcgrad"
OVERRIDES = ["weighting.name=pcgrad", "train.epochs=8", "train.log_every=20", "train.device=cpu", "train.progress=false"]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=None, help="datasets folder (default: $POLYTASK_DATA_DIR, else ../shared/data)")
    parser.add_argument("--run", type=Path, default=Path("runs") / NAME, help="run directory to train (relative to the repository)")
    parser.add_argument("--skip-training", action="store_true", help="report an existing run directory")
    args = parser.parse_args()
    os.chdir(REPO)  # the report shows the run directory as given: a path relative to the repository
    if not args.skip_training:
        command = [str(Path(sys.executable).with_name("polytask")), "train", "configs/census_mmoe.yaml", "--out", str(args.run),
                   "--overwrite", *[a for o in OVERRIDES for a in ("--set", o)]]
        if args.data_dir is not None:
            command += ["--data-dir", str(args.data_dir)]
        print("+", " ".join(command), flush=True)
        subprocess.run(command, check=True)

    from polytask.report import write_report

    html = write_report([args.run], HERE / f"{NAME}.html", data_dir=args.data_dir,
                        title="polytask report: census-income, MMoE + PCGrad")
    print(f"wrote {html.relative_to(REPO)} ({html.stat().st_size / 1024:,.0f} KiB)")
    png = HERE / f"{NAME}.png"
    screenshot(html, png)
    print(f"wrote {png.relative_to(REPO)}")


def screenshot(html: Path, png: Path, width: int = 1280, height: int = 1600) -> None:
    """The top ``width`` x ``height`` pixels of the page, as headless Chromium renders it."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": width, "height": height})
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(html.resolve().as_uri())
        page.wait_for_load_state("load")
        page.screenshot(path=str(png))
        browser.close()
    if errors:
        raise SystemExit(f"{html}: the browser reported errors: {errors}")


if __name__ == "__main__":
    main()
