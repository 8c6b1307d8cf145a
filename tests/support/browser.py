"""Headless Chromium for the browser tests, and the journal of the server they load pages from.

Chromium and chromedriver are Debian's packages (`chromium`, `chromium-driver`),
installed with apt-get when missing. Selenium drives the browser through chromedriver;
every process of it is stopped by PID, whatever happens.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.expected_conditions import staleness_of
from selenium.webdriver.support.wait import WebDriverWait

from support.apt import apt_install
from support.processes import descendants, kill

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PACKAGES = ("chromium", "chromium-driver")
PAGE_TIMEOUT = 30.0


def install_chromium() -> str | None:
    """Install Chromium and chromedriver with apt-get if missing; say why not if that fails.

    Returns `None` once both are there, else the reason they cannot be had here. When
    `apt-get install` fails, the package lists are refreshed (`apt-get update`) and the
    install is tried once more.
    """
    return apt_install(PACKAGES, (CHROMIUM, CHROMEDRIVER))


class Browser:
    """A Chromium window driven by selenium; each method waits until the page has loaded."""

    def __init__(self, driver: webdriver.Chrome) -> None:
        """Drive `driver`."""
        self.driver = driver

    def open(self, url: str) -> str:
        """Navigate to `url` as if typed into the address bar; return the text shown."""
        self.driver.get(url)
        return self.text()

    def reload(self) -> str:
        """Reload as the reload button does (the page is revalidated); return the text."""
        self.driver.refresh()
        return self.text()

    def hard_reload(self) -> str:
        """Reload bypassing the browser's cache, as Ctrl+Shift+R does; return the text.

        Uses the DevTools protocol (`Page.reload` with `ignoreCache`), which does not
        wait for the load: this waits until the old document is gone and the new one
        is complete.
        """
        old_document = self.driver.find_element(By.TAG_NAME, "html")
        self.driver.execute_cdp_cmd("Page.reload", {"ignoreCache": True})
        wait = WebDriverWait(self.driver, PAGE_TIMEOUT)
        wait.until(staleness_of(old_document))
        wait.until(lambda driver: driver.execute_script("return document.readyState") == "complete")
        return self.text()

    def forget(self) -> None:
        """Empty the browser's HTTP cache and show a blank page."""
        self.driver.execute_cdp_cmd("Network.clearBrowserCache", {})
        self.driver.get("about:blank")

    def text(self) -> str:
        """The text the current page shows."""
        return str(self.driver.find_element(By.TAG_NAME, "body").text)


@contextlib.contextmanager
def chromium(profile: Path) -> Iterator[Browser]:
    """Start headless Chromium (through chromedriver) with its profile in `profile`.

    On exit the browser is quit, then chromedriver and every process under it that is
    still there is killed by PID.
    """
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless",
        "--no-sandbox",  # Chromium's sandbox refuses to run as root
        "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
        f"--user-data-dir={profile}",
        "--disable-component-update",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # loopback only
    ):
        options.add_argument(argument)
    service = Service(executable_path=CHROMEDRIVER)
    try:
        driver = webdriver.Chrome(options=options, service=service)
    except BaseException:
        _stop(service, [])  # selenium quits what it started; this catches what it missed
        raise
    try:
        driver.set_page_load_timeout(PAGE_TIMEOUT)
        yield Browser(driver)
    finally:
        processes = descendants(service.process.pid)  # Chromium and its helpers
        with contextlib.suppress(WebDriverException, OSError):
            driver.quit()
        _stop(service, processes)


def _stop(service: Service, processes: list[tuple[int, str]]) -> None:
    """Kill chromedriver and all under it if it still runs, and what is left of `processes`."""
    chromedriver = getattr(service, "process", None)
    if chromedriver is not None and chromedriver.poll() is None:
        processes = [*processes, *descendants(chromedriver.pid)]
        chromedriver.kill()
        chromedriver.wait(timeout=10)
    kill(processes)


@dataclass(frozen=True)
class Exchange:
    """One response the server started, with the request it answered."""

    method: str
    path: str
    query: str
    request_headers: dict[str, str]
    status: int
    response_headers: dict[str, str]
    time: float


class Journal:
    """Reads what `support.recorder` wrote about a server's requests and logs."""

    def __init__(self, path: Path) -> None:
        """Read the journal file at `path` (it may not exist yet)."""
        self.path = path

    def exchanges(self, path: str, query: str) -> list[Exchange]:
        """The responses to requests of `path` with exactly this query string, in order."""
        return [
            Exchange(**{key: value for key, value in event.items() if key != "event"})
            for event in self._events("response")
            if event["path"] == path and event["query"] == query
        ]

    def logged(self, message: str) -> int:
        """How many times the app logged exactly `message`."""
        return sum(event["message"] == message for event in self._events("log"))

    def _events(self, kind: str) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with self.path.open(encoding="utf-8") as journal:
            events = [json.loads(line) for line in journal]
        return [event for event in events if event["event"] == kind]
