"""The documentation site as a reader sees it: built pages opened in headless Chromium, offline.

The site is built with warnings as errors (or taken from ``POLYLOSS_DOCS_HTML``, which ``.ci/run``
sets after its own build), and Chromium opens it with every host name unresolvable, so that the
MathJax that typesets the formulas must be the copy shipped with the build. On each page: the
formulas are typeset (MathJax's ``mjx-container`` elements, no raw ``$$`` left in the text) and no
script or style sheet comes from the network; on the pages with framework tabs, clicking another
framework's tab shows its panel, and the sync group switches every other tab set of the page.

Needs Debian's ``chromium`` and ``chromium-driver`` and the docs extra (Sphinx, selenium). CI installs
them, and there the test fails rather than skips when they are missing.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PAGES_WITH_MATH = ["multilabel.html", "classification.html", "metrics.html", "api/metrics.html"]


def _missing() -> str | None:
    """What this machine lacks for the test, or None."""
    lacking = [name for name in ("chromium", "chromedriver") if shutil.which(name) is None]
    for module in ("selenium", "sphinx", "myst_parser", "sphinx_design"):
        try:
            __import__(module)
        except ImportError:
            lacking.append(module)
    return ", ".join(lacking) or None


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> pathlib.Path:
    lacking = _missing()
    if lacking:
        message = (f"the browser test needs {lacking} (Debian's chromium and chromium-driver, and "
                   f"pip install '.[docs]')")
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message + "; absent on this machine")
    given = os.environ.get("POLYLOSS_DOCS_HTML")
    if given:
        return pathlib.Path(given)
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run([sys.executable, "-m", "sphinx", "-W", "-E", "-q", str(ROOT / "docs"), str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


@pytest.fixture(scope="module")
def browser(site):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1800", "--host-resolver-rules=MAP * ~NOTFOUND"):  # offline
        options.add_argument(argument)
    # the Debian driver, never Selenium Manager (which would download one)
    driver = webdriver.Chrome(service=Service(executable_path=shutil.which("chromedriver")), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _open(browser, site, page, *, math=True):
    """Load ``page`` and, with ``math``, wait until MathJax has typeset it."""
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get((site / page).as_uri())
    WebDriverWait(browser, 60).until(lambda d: d.execute_script("return document.readyState === 'complete'"))
    if math:
        WebDriverWait(browser, 60).until(lambda d: d.execute_script(
            "return window.MathJax !== undefined && MathJax.startup !== undefined && "
            "MathJax.startup.promise !== undefined"))
        browser.execute_async_script("const done = arguments[arguments.length - 1]; "
                                     "MathJax.startup.promise.then(() => done(true));")


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES_WITH_MATH)
def test_formulas_are_typeset_offline(browser, site, page):
    _open(browser, site, page)
    typeset = browser.execute_script("return document.querySelectorAll('mjx-container').length")
    assert typeset > 0, f"{page}: no formula was typeset"
    text = browser.execute_script("return document.querySelector('article').innerText")
    assert "$$" not in text and "\\frac" not in text, f"{page}: raw TeX left in the page"
    remote = browser.execute_script(
        "return [...document.querySelectorAll('script[src], link[rel=stylesheet]')]"
        ".map(e => e.src || e.href).filter(u => !u.startsWith('file:'))")
    assert remote == [], f"{page} loads {remote}"
    assert browser.execute_script("return MathJax.version").startswith("3.")


def _tab_state(browser):
    """For each tab set of the page: the sync id of the checked tab and of the panels that are displayed."""
    return browser.execute_script("""
        return [...document.querySelectorAll('.sd-tab-set')].map(set => {
            const inputs = [...set.querySelectorAll(':scope > input')];
            const labels = [...set.querySelectorAll(':scope > label')];
            const panels = [...set.querySelectorAll(':scope > .sd-tab-content')];
            return {
                checked: labels[inputs.findIndex(i => i.checked)].dataset.syncId,
                shown: panels.map((p, k) => [labels[k].dataset.syncId, p.offsetParent !== null])
                             .filter(([, visible]) => visible).map(([id]) => id),
            };
        });""")


@pytest.mark.slow
@pytest.mark.parametrize("page", ["frameworks.html", "multilabel.html", "metrics.html"])
def test_framework_tabs_switch_and_stay_in_sync(browser, site, page):
    _open(browser, site, page, math=False)
    before = _tab_state(browser)
    assert before and all(s["checked"] == "torch" and s["shown"] == ["torch"] for s in before), before
    for framework in ("jax", "tensorflow", "torch"):
        label = browser.find_elements("css selector", f".sd-tab-set label[data-sync-id='{framework}']")[0]
        browser.execute_script("arguments[0].scrollIntoView({block: 'center', behavior: 'instant'})", label)
        label.click()
        after = _tab_state(browser)
        # the clicked set shows the framework's panel, and the sync group moved every other set with it
        assert all(s["checked"] == framework and s["shown"] == [framework] for s in after), (framework, after)
    if page == "frameworks.html":
        assert len(before) >= 2  # a page with two tab sets: the sync is between sets, not only within one
