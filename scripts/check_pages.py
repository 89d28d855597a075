"""Render ``prorl report`` and ``prorl compare`` pages in headless Chromium: a screenshot of each, with the
network off, and a failure if the browser logs any console message (a page without scripts has none; a
missing image or a blocked resource shows up there) or an image the page names is missing.

    python scripts/check_pages.py runs/demo/run/report/index.html cmp/index.html --out docs/images

Needs a Chromium (``chromium`` or ``google-chrome`` on PATH, or ``--browser``); it is not part of the test
suite. Exit status 1 when a page fails, with the reasons printed.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path


def find_browser(name: str | None) -> str:
    for candidate in ([name] if name else ["chromium", "chromium-browser", "google-chrome", "chrome"]):
        path = shutil.which(candidate)
        if path:
            return path
    sys.exit("no Chromium found: install one (e.g. apt-get install chromium) or pass --browser")


def check(browser: str, page: Path, shot: Path, size: str) -> list[str]:
    """Problems with ``page`` (none: it rendered cleanly); writes the screenshot ``shot``."""
    problems = []
    html = page.read_text()
    for src in re.findall(r"<img[^>]*src='([^']+)'", html):
        if not (page.parent / src).is_file():
            problems.append(f"missing image {src}")
    if "http://" in html or "https://" in html:
        problems.append("the page refers to a network resource")
    cmd = [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--host-resolver-rules=MAP * ~NOTFOUND",  # no network at all
           "--enable-logging=stderr", "--v=0", f"--window-size={size}", f"--screenshot={shot}", page.resolve().as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    problems += [f"console: {line.strip()}" for line in console]
    if done.returncode != 0:
        problems.append(f"browser exit status {done.returncode}")
    if not shot.is_file() or shot.stat().st_size < 10_000:
        problems.append("no screenshot (or an empty one) was written")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("pages", nargs="+", type=Path, help="index.html files to render")
    parser.add_argument("--out", type=Path, default=Path("."), help="folder for the screenshots")
    parser.add_argument("--size", default="1400,3000", help="window width,height in pixels")
    parser.add_argument("--browser", default=None)
    args = parser.parse_args(argv)
    browser = find_browser(args.browser)
    args.out.mkdir(parents=True, exist_ok=True)
    failed = False
    for page in args.pages:
        shot = args.out / f"{page.parent.name}.png"
        problems = check(browser, page, shot, args.size)
        print(f"{page}: {'ok' if not problems else 'FAILED'} -> {shot}")
        for problem in problems:
            print(f"  {problem}")
        failed = failed or bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
