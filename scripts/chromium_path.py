"""Print the Chromium the browser test should use: Debian's if installed, else the one Playwright installed."""

from __future__ import annotations

import shutil
import sys


def main() -> int:
    found = shutil.which("chromium")
    if found is None:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            found = playwright.chromium.executable_path
    sys.stdout.write(f"{found}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
