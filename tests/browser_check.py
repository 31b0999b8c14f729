"""Open built book pages in headless Chromium: rendered DOM, what plotly and the widget manager drew, every request.

Chromium's NetLog records each URL request with its initiator. Requests the
browser makes for itself (update checks, sign-in) have no page origin; any
http(s) request with a page origin means a page tried to leave the machine.

What a reader sees is read from the page itself, not from the HTML text: the
page is loaded from a copy that differs only by a ``<base>`` element (so every
relative URL still resolves to the built book) and a probe script appended to
its body. The probe records, as JSON in an element that ``--dump-dom`` writes
out, every plotly graph div (``.js-plotly-plot``) with each trace's number of
points read from ``gd.data`` / ``gd._fullData``, and the widget views the
widget manager rendered (its ``.widget-subarea`` nodes and the ``.widget-tab``
panels inside the output areas; the CSS it injects as ``<style>`` text does
not count).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
         "--virtual-time-budget=10000", "--window-size=1280,2400"]

PROBE_ID = "rr-browser-probe"
# Runs in the page. Written as ES5 so that any Chromium runs it; re-measures every 250 ms of (virtual) time, so the
# DOM that --dump-dom writes at the end of the time budget holds the last measurement.
PROBE = """<script>(function(){
var KEYS=["x","y","z","values","labels","lat","lon","r","theta","a","b","open","close","locations","dimensions"];
var SIZES={i1:1,u1:1,u1c:1,i2:2,u2:2,i4:4,u4:4,f4:4,f8:8};
function len(v){
  if(v===null||v===undefined){return 0;}
  if(Array.isArray(v)||ArrayBuffer.isView(v)){return v.length;}
  if(typeof v==="object"&&typeof v.bdata==="string"){
    if(v.shape){return parseInt(String(v.shape).split(",")[0],10)||0;}
    try{return Math.floor(atob(v.bdata).length/(SIZES[v.dtype]||8));}catch(e){return -1;}
  }
  return 0;
}
function points(t){var n=0;if(!t){return 0;}for(var i=0;i<KEYS.length;i++){n=Math.max(n,len(t[KEYS[i]]));}return n;}
function inside(el,selector){
  for(var p=el.parentElement;p;p=p.parentElement){if(p.matches(selector)){return true;}}
  return false;
}
function measure(){
  var figures=[];var plots=document.querySelectorAll(".js-plotly-plot");
  for(var i=0;i<plots.length;i++){
    var gd=plots[i];var data=gd.data||[];var full=gd._fullData||[];var traces=[];
    for(var j=0;j<data.length;j++){
      var f=full[j]||{};
      traces.push({type:String(data[j].type||f.type||"scatter"),name:String(data[j].name||""),
                   points:Math.max(points(data[j]),points(f)),visible:f.visible===undefined?true:f.visible});
    }
    figures.push({id:gd.id||"",container:gd.classList.contains("rr-plotly"),svg:!!gd.querySelector(".main-svg"),
                  traces:traces});
  }
  var containers=document.querySelectorAll(".rr-plotly").length;
  var views=document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]');
  var rendered=0;
  for(var k=0;k<views.length;k++){
    var area=views[k].parentElement;var sub=area?area.querySelector(".widget-subarea"):null;
    if(sub&&sub.querySelector(".jupyter-widgets")){rendered++;}
  }
  var tabs=0;var tabNodes=document.querySelectorAll(".widget-tab");
  for(var m=0;m<tabNodes.length;m++){
    if(inside(tabNodes[m],".widget-subarea")&&tabNodes[m].querySelector(".lm-TabBar-tab")){tabs++;}
  }
  var out=document.getElementById("%(id)s");
  if(!out){
    out=document.createElement("script");out.type="application/json";out.id="%(id)s";
    document.body.appendChild(out);
  }
  out.textContent=JSON.stringify({figures:figures,containers:containers,widget_views:views.length,
                                  rendered_views:rendered,rendered_tabs:tabs}).replace(/</g,"\\\\u003c");
}
window.addEventListener("load",measure);setInterval(measure,250);
})();</script>""" % {"id": PROBE_ID}


def chromium() -> str | None:
    """Path of a Chromium binary, if one is installed."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class Figure:
    """One plotly graph div as the page holds it after plotly drew it."""

    id: str
    drawn: bool  # plotly put its SVG inside the div
    traces: list[dict[str, Any]]

    def empty_traces(self) -> list[str]:
        """Names (or indices) of traces with no data point."""
        return [t["name"] or f"trace {i}" for i, t in enumerate(self.traces) if t["points"] < 1]


@dataclass
class PageReport:
    """What a page did in the browser."""

    url: str
    dom: str
    external_requests: list[str] = field(default_factory=list)
    screenshot: Path | None = None
    probe: dict[str, Any] | None = None

    def measured(self) -> dict[str, Any]:
        """The probe's last measurement; fails loudly when the probe never ran."""
        if self.probe is None:
            raise AssertionError(f"{self.url}: the in-page probe wrote no measurement (element #{PROBE_ID} "
                                 "missing from the dumped DOM); the page's scripts did not run")
        return self.probe

    @property
    def figures(self) -> list[Figure]:
        """Every plotly graph div on the page (``.js-plotly-plot``), with its traces from ``gd.data``."""
        return [Figure(f["id"], bool(f["svg"]), list(f["traces"])) for f in self.measured()["figures"]]

    @property
    def figure_containers(self) -> int:
        """Figure divs the page's HTML holds (``.rr-plotly``), drawn or not."""
        return int(self.measured()["containers"])

    @property
    def widget_views(self) -> int:
        """Widget-view script tags on the page (what the notebook asked to render)."""
        return int(self.measured()["widget_views"])

    @property
    def rendered_widget_views(self) -> int:
        """Widget views the widget manager rendered into a ``.widget-subarea`` beside their script tag."""
        return int(self.measured()["rendered_views"])

    @property
    def rendered_tabs(self) -> int:
        """``.widget-tab`` panels with at least one tab, inside rendered widget views."""
        return int(self.measured()["rendered_tabs"])


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


def probed_copy(path: Path, folder: Path) -> Path:
    """A copy of ``path`` in ``folder`` with a ``<base>`` pointing at the original's folder and the probe appended.

    The ``<base>`` goes right after ``<head>`` (or first, for a page without one), before anything that loads a
    URL; the probe goes before ``</body>`` (or last).
    """
    text = path.read_text(encoding="utf-8")
    head = re.search(r"<head\b[^>]*>", text, flags=re.IGNORECASE)
    at = head.end() if head else 0
    body = text.lower().rfind("</body>")
    body = body if body >= at else len(text)
    base = f'<base href="{path.resolve().parent.as_uri()}/">'
    probed = text[:at] + base + text[at:body] + PROBE + text[body:]
    target = folder / f"probed-{path.name}"
    target.write_text(probed, encoding="utf-8")
    return target


def _probe_result(dom: str) -> dict[str, Any] | None:
    match = re.search(rf'<script[^>]*id="{PROBE_ID}"[^>]*>(.*?)</script>', dom, flags=re.DOTALL)
    return json.loads(match.group(1)) if match else None


def open_page(path: Path, screenshot: Path | None = None) -> PageReport:
    """Load a local HTML file in headless Chromium and report what happened.

    Parameters
    ----------
    path : Path
        The page.
    screenshot : Path, optional
        Where to write a PNG of the page (a second, probe-free load of the page itself).
    """
    binary = chromium()
    if binary is None:
        raise RuntimeError("chromium is not installed")
    url = path.resolve().as_uri()
    with tempfile.TemporaryDirectory() as tmp:
        netlog = Path(tmp) / "netlog.json"
        profile = Path(tmp) / "profile"
        probed = probed_copy(path, Path(tmp))
        base = [binary, *FLAGS, f"--user-data-dir={profile}", f"--log-net-log={netlog}"]
        dom = subprocess.run([*base, "--dump-dom", probed.as_uri()], capture_output=True, text=True, timeout=120,
                             env={**os.environ, "HOME": tmp}).stdout
        requests = page_requests(netlog) if netlog.exists() else []
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([*base[:-1], f"--user-data-dir={profile}-shot", f"--screenshot={screenshot}", url],
                           capture_output=True, timeout=120, env={**os.environ, "HOME": tmp})
    return PageReport(url, dom, requests, screenshot if screenshot and screenshot.exists() else None,
                      _probe_result(dom))
