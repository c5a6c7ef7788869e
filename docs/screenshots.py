"""Screenshots of every page of the built docs at 1280 px, and the blocks they cut off.

    sphinx-build -W -n -b html docs docs/_build/html
    python docs/screenshots.py docs/_build/html screenshots/

Each page is opened in headless Chromium (Debian's ``chromium`` package, driven
by the ``playwright`` package from PyPI) with a 1280 px wide window, saved as a
full-page PNG, and searched for tables and code blocks wider than the box
that shows them (content hidden or behind a scroll bar). The command lists
those and exits with status 1 if there are any.
"""

import argparse
import sys
from pathlib import Path

#: Chromium's options for a closed network (no background connections)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

#: pages Sphinx makes by itself
SKIPPED = {"genindex", "search", "py-modindex"}

#: tables and code blocks whose content is wider than what shows them
FIND_CUT_OFF = """() => {
  const cut = [];
  for (const el of document.querySelectorAll(
      '.bd-article pre, .bd-article table, .bd-article .pst-scrollable-table-container')) {
    const article = document.querySelector('.bd-article').getBoundingClientRect();
    const box = el.getBoundingClientRect();
    if (el.scrollWidth > el.clientWidth + 1 || box.right > article.right + 1) {
      cut.push(`${el.tagName.toLowerCase()} ${el.scrollWidth}px in ${el.clientWidth}px: `
               + el.innerText.trim().split('\\n')[0].slice(0, 60));
    }
  }
  return cut;
}"""


def check_pages(html, out, *, width=1280, chromium="/usr/bin/chromium"):
    """Screenshot every page under ``html`` into ``out``; return {page: [cut-off blocks]}."""
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    pages = sorted(
        path
        for path in html.rglob("*.html")
        if path.stem not in SKIPPED and not path.relative_to(html).parts[0].startswith("_")
    )
    found = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": width, "height": 900})
        for path in pages:
            name = path.relative_to(html).with_suffix("").as_posix()
            page.goto(path.resolve().as_uri())
            page.screenshot(path=out / f"{name.replace('/', '.')}.png", full_page=True)
            cut = page.evaluate(FIND_CUT_OFF)
            if cut:
                found[name] = cut
        browser.close()
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", type=Path, help="the built site (docs/_build/html)")
    parser.add_argument("out", type=Path, help="folder for the screenshots")
    parser.add_argument("--width", type=int, default=1280, help="window width (px)")
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="the browser")
    args = parser.parse_args(argv)
    found = check_pages(args.html, args.out, width=args.width, chromium=args.chromium)
    for name, cut in found.items():
        for block in cut:
            print(f"{name}: cut off: {block}")
    shots = len(list(args.out.glob("*.png")))
    print(f"{shots} screenshots in {args.out}; {len(found)} page(s) cut a block off")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
