"""A real headless Chromium (Debian's chromium and chromium-driver) driven by
selenium, for the console's browser tests: one per test module. The browser runs
in a time zone other than UTC, so that pages showing times in the browser's zone
can be told from pages showing UTC."""

from __future__ import annotations

import os
import shutil
import tempfile

from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
BROWSER_TZ = "Asia/Kolkata"  # UTC+05:30: a time in this zone never reads like its UTC text
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1600,1000",
]


class Chromium:
    def __init__(self, downloads: str):
        self.profile = tempfile.mkdtemp(prefix="esa-chromium-")
        self.downloads = downloads
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={self.profile}")
        options.add_experimental_option(
            "prefs", {"download.default_directory": downloads, "download.prompt_for_download": False}
        )
        service = Service(executable_path=CHROMEDRIVER, env={**os.environ, "TZ": BROWSER_TZ})
        self.driver = webdriver.Chrome(service=service, options=options)
        self.driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": downloads})

    def quit(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)

    def wait(self, timeout: float = 10.0) -> WebDriverWait:
        return WebDriverWait(self.driver, timeout, poll_frequency=0.05)

    def open(self, url: str) -> None:
        self.driver.get(url)

    def find(self, css: str):
        return self.wait().until(EC.presence_of_element_located((By.CSS_SELECTOR, css)))

    def wait_text(self, css: str, wanted: str, timeout: float = 15.0) -> str:
        """The text of CSS once it holds WANTED (across a navigation: the old page's element may go stale)."""

        def holds(driver):
            text = driver.find_element(By.CSS_SELECTOR, css).text
            return text if wanted in text else None

        return WebDriverWait(
            self.driver,
            timeout,
            poll_frequency=0.05,
            ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
        ).until(holds)

    def all(self, css: str) -> list:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text(self, css: str) -> str:
        return self.find(css).text

    def button(self, label: str, within=None):
        """The button whose visible label is LABEL (inside WITHIN when given)."""
        root = within or self.driver
        return next(b for b in root.find_elements(By.TAG_NAME, "button") if b.text == label)

    def link(self, label: str):
        return self.wait().until(EC.element_to_be_clickable((By.LINK_TEXT, label)))

    def shot(self, folder: str, name: str) -> str:
        path = os.path.join(folder, f"{name}.png")
        self.driver.save_screenshot(path)
        return path

    def mark(self) -> None:
        """Tag the current document, to tell later whether the page was reloaded."""
        self.driver.execute_script("window.__notReloaded = true;")

    def still_marked(self) -> bool:
        return bool(self.driver.execute_script("return window.__notReloaded === true;"))
