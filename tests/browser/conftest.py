"""Fixtures for real-browser widget tests (Debian chromium + Playwright driving
a real ``jupyter lab`` on loopback with token auth).

Fixtures
--------
``jupyter_server`` (session)
    :class:`lab.JupyterServer`: ``.url``, ``.token``, ``.root_dir`` (a temp
    dir; copy notebooks in with ``.add_notebook(src)`` / ``.write_notebook(nb,
    name)``), ``.notebook_url(relpath)``, ``.api(path)``, ``.log_tail()``.
    The server (and so every kernel) runs with ``ARTLAB_QUICK=1``.
``browser`` (session)
    Playwright ``Browser`` (system chromium, headless, offline flags).
``console_errors`` (function)
    List of console ``error`` messages and uncaught page errors seen by
    ``page`` (known-harmless noise filtered, see
    ``lab.HARMLESS_CONSOLE_ERRORS``). Tests end with
    ``assert console_errors == []``.
``page`` (function)
    A fresh context + page. On failure a screenshot goes to the test's
    ``tmp_path`` and the server log tail is printed. Kernels started during
    the test are shut down afterwards.

Every test in this folder gets the ``browser`` marker (deselect with
``-m "not browser"``). Without /usr/bin/chromium they skip -- unless ``CI``
is set to a true value, where they fail instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import lab

HERE = Path(__file__).resolve().parent

#: environment the server (and its kernels) get on top of os.environ
SERVER_EXTRA_ENV = {"ARTLAB_QUICK": "1"}


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on", "y"}


def _in_this_folder(item: pytest.Item) -> bool:
    try:
        return Path(str(item.path)).resolve().is_relative_to(HERE)
    except (OSError, ValueError):
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _in_this_folder(item):
            item.add_marker(pytest.mark.browser)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if not _in_this_folder(item) or lab.CHROMIUM_PATH.exists():
        return
    msg = (
        f"{lab.CHROMIUM_PATH} not found: run {lab.ENSURE_CHROMIUM_SCRIPT} "
        "(as root, installs Debian's chromium) to enable the browser tests"
    )
    if _env_true("CI"):
        pytest.fail(f"CI is set, so browser tests must not be skipped: {msg}", pytrace=False)
    pytest.skip(msg)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(scope="session")
def jupyter_server(tmp_path_factory: pytest.TempPathFactory):
    """A ``jupyter lab`` on 127.0.0.1 serving a temp root dir."""
    root = tmp_path_factory.mktemp("lab-root")
    home = tmp_path_factory.mktemp("lab-home")
    server = lab.start_jupyter_server(root, home, extra_env=SERVER_EXTRA_ENV)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def browser():
    """Headless Debian chromium driven by Playwright (no browser download)."""
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    try:
        browser = pw.chromium.launch(
            executable_path=str(lab.CHROMIUM_PATH),
            headless=True,
            args=lab.CHROMIUM_ARGS,
            timeout=60_000,
        )
        try:
            yield browser
        finally:
            browser.close()
    finally:
        pw.stop()


@pytest.fixture
def console_errors() -> list[str]:
    return []


@pytest.fixture
def page(browser, jupyter_server, console_errors, request, tmp_path):
    log = lambda: f"({jupyter_server.log_path})\n{jupyter_server.log_tail(40)}"  # noqa: E731
    try:
        with lab.browser_page(browser, console_errors, request, tmp_path, log) as page:
            yield page
    finally:
        try:
            jupyter_server.shutdown_kernels()
        except Exception as exc:
            print(f"[browser] could not shut kernels down: {exc}")
