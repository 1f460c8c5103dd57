"""Opens a customer-value report in headless Chromium (through Playwright, with the system's
browser) and reports, as JSON on stdout, what a reader sees: console messages, every network
request, the charts and heat-map cells of each segment block, the key figures, and a full-page
screenshot at SCREENSHOT.

usage: report_page.py CHROMIUM REPORT.html SCREENSHOT.png
"""

import json
import pathlib
import sys

from playwright.sync_api import sync_playwright

chromium, report, screenshot = sys.argv[1:]
url = pathlib.Path(report).resolve().as_uri()
out = {"console": [], "requests": [], "page_errors": []}
with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("console", lambda m: out["console"].append([m.type, m.text]))
    page.on("pageerror", lambda e: out["page_errors"].append(str(e)))
    page.on("request", lambda r: out["requests"].append(r.url))
    page.goto(url, wait_until="load")
    out["title"] = page.title()
    out["kpi"] = page.eval_on_selector_all(
        ".tile .value", "els => Object.fromEntries(els.map(e => [e.id, e.textContent]))"
    )
    out["options"] = page.eval_on_selector_all("#segment option", "els => els.map(e => e.value)")
    cells = """els => els.map(e => [e.dataset.segment, e.dataset.cohort, e.dataset.offset,
        e.dataset.value, e.textContent])"""

    def visible_block():
        return page.evaluate(
            """() => {
              const b = [...document.querySelectorAll('[data-segment-block]')].filter(b => !b.hidden);
              return b.map(b => ({
                key: b.dataset.segmentBlock,
                charts: [...b.querySelectorAll('svg.chart')].map(s => ({
                  label: s.getAttribute('aria-label'),
                  marks: s.querySelectorAll('circle.point, rect.bar, polyline').length,
                  width: s.getBoundingClientRect().width,
                })),
              }));
            }"""
        )

    out["blocks"] = {"initial": visible_block()}
    out["cells"] = page.eval_on_selector_all("table.heatmap td.cell", cells)
    # Switch to the last segment as a reader would.
    last = out["options"][-1]
    page.select_option("#segment", last)
    out["blocks"]["after_select"] = visible_block()
    out["ltv_all"] = page.eval_on_selector(
        '#ltv-table tr[data-segment="all=__all__"] td[data-value]', "e => e.dataset.value"
    )
    out["rejects"] = page.eval_on_selector_all(
        "#rejects tbody tr", "els => els.map(e => [...e.cells].map(c => c.textContent))"
    )
    page.select_option("#segment", out["options"][0])
    page.screenshot(path=screenshot, full_page=True)
    browser.close()
print(json.dumps(out))
