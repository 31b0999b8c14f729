"""Open built book pages in headless Chromium: rendered DOM, screenshot, and every network request.

Chromium's NetLog records each URL request with its initiator. Requests the
browser makes for itself (update checks, sign-in) have no page origin; any
http(s) request with a page origin means a page tried to leave the machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
         "--virtual-time-budget=10000", "--window-size=1280,2400"]


def chromium() -> str | None:
    """Path of a Chromium binary, if one is installed."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class PageReport:
    """What a page did in the browser."""

    url: str
    dom: str
    external_requests: list[str] = field(default_factory=list)
    screenshot: Path | None = None

    def figure_ids(self) -> list[str]:
        """Ids of the figure divs on the page."""
        import re

        return sorted(set(re.findall(r'id="(rrfig-[0-9a-f]+)"', self.dom)))

    def figure_rendered(self, div_id: str) -> bool:
        """Whether plotly drew an SVG with data inside the figure div."""
        start = self.dom.find(f'id="{div_id}"')
        if start < 0:
            return False
        chunk = self.dom[start:start + 400_000]
        end = chunk.find('class="rr-plotly"', 10)
        chunk = chunk if end < 0 else chunk[:end]
        drawn = ('class="trace' in chunk, 'class="point"' in chunk, 'class="hm"' in chunk)
        return 'class="main-svg"' in chunk and any(drawn)


def page_requests(netlog: Path) -> list[str]:
    """http(s) URLs that a page (not the browser itself) requested."""
    data = json.loads(netlog.read_text())
    types = {v: k for k, v in data["constants"]["logEventTypes"].items()}
    urls = []
    for event in data["events"]:
        params = event.get("params") or {}
        url = params.get("url", "")
        if types.get(event["type"]) == "URL_REQUEST_START_JOB" and url.startswith(("http://", "https://")):
            if params.get("initiator", "not an origin") != "not an origin":
                urls.append(url)
    return urls


def open_page(path: Path, screenshot: Path | None = None) -> PageReport:
    """Load a local HTML file in headless Chromium and report what happened."""
    binary = chromium()
    if binary is None:
        raise RuntimeError("chromium is not installed")
    url = path.resolve().as_uri()
    with tempfile.TemporaryDirectory() as tmp:
        netlog = Path(tmp) / "netlog.json"
        profile = Path(tmp) / "profile"
        base = [binary, *FLAGS, f"--user-data-dir={profile}", f"--log-net-log={netlog}"]
        dom = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=120,
                             env={**os.environ, "HOME": tmp}).stdout
        requests = page_requests(netlog) if netlog.exists() else []
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([*base[:-1], f"--user-data-dir={profile}-shot", f"--screenshot={screenshot}", url],
                           capture_output=True, timeout=120, env={**os.environ, "HOME": tmp})
    return PageReport(url, dom, requests, screenshot if screenshot and screenshot.exists() else None)
