"""The run report: scripted runs drawn as HTML, read back through the DOM, and opened in a real
headless Chromium (Debian's package, driven by Playwright)."""

from __future__ import annotations

import base64
import io
import shutil
import subprocess
import sys
import time
import urllib.parse

import pytest
from lxml import html as lhtml
from PIL import Image

import mcr
from mcr import Agent
from mcr.errors import MCRError
from mcr.media.video import Video
from mcr.outputs.report import run_report, timeline_png
from mcr.outputs.report_page import write_report
from mcr.run.events import ModelCalled, RunFinished, RunStarted, ToolCalled, ToolReturned
from mcr.run.policy import Policy
from mcr.run.result import RunResult
from mcr.run.testing import ScriptedModel, answer, say, tool_call, verdict
from mcr.run.trace import TraceWriter, read_trace
from mcr.types import TimeSpan

OPTIONS = ["a car race", "boats on water", "a cooking show"]
PLAN = say("Plan: look at the overview, then at 00:00:04-00:00:08, then answer.")
REFLECT = say("Learned: boats on water at 00:00:04-00:00:08. Missing: nothing.")


def agent(model, tmp_path, **kw):
    return Agent(model=model, memory=tmp_path / "m.db", trace_dir=tmp_path / "traces", **kw)


def page(result):
    path = write_report(result)
    return path, lhtml.fromstring(path.read_bytes())


def check_page(doc, trace, duration: float) -> None:
    """What every report must hold: evidence marks at their place, every tool call, thumbnails
    that decode, and nothing that could reach the network."""
    events = read_trace(trace)
    end = [e for e in events if e.kind == "run_finished"][-1]
    svg = doc.get_element_by_id("timeline-svg")
    assert (svg.get("viewBox") or svg.get("viewbox")).startswith("0 0 1000 ")  # the HTML parser lowercases it
    for a, b in end.result.to_trace()["evidence"]:
        (mark,) = doc.xpath(f'//rect[contains(@class, "evidence") and @data-start="{a:.3f}"]')
        assert abs(float(mark.get("x")) - a / duration * 1000) < 0.01
        assert abs(float(mark.get("width")) - max(1.5, (b - a) / duration * 1000)) < 0.01
    calls = [e for e in events if e.kind == "tool_returned"]
    listed = doc.xpath('//ol[@id="steps"]/li[contains(@class, "call")]')
    assert [li.xpath('string(span[@class="kind"])') for li in listed] == [e.name for e in calls]
    thumbs = doc.xpath('//img[@class="thumb"]')
    for img in thumbs:
        head, data = img.get("src").split(",", 1)
        assert head == "data:image/jpeg;base64"
        image = Image.open(io.BytesIO(base64.b64decode(data)))
        image.load()
        assert image.width <= 160 and image.height <= 160
    for el in doc.iter():
        for attr in ("src", "href"):
            value = el.get(attr)
            if value:
                assert value.startswith(("data:", "#")) or not urllib.parse.urlsplit(value).scheme, value
    assert not doc.xpath("//link") and not doc.xpath("//script[@src]")
    csp = doc.xpath('//meta[@http-equiv="Content-Security-Policy"]/@content')[0]
    assert "default-src 'none'" in csp


def test_a_plain_run(tmp_path, short_video):
    model = ScriptedModel([tool_call("inspect_frames", span="00:00:02-00:00:04"), answer("boats", evidence=["2-4"])])
    result = agent(model, tmp_path, policy="plain").run(short_video, "What is on the water?")
    path, doc = page(result)
    duration = Video(short_video).duration
    check_page(doc, result.trace_path, duration)
    assert doc.get_element_by_id("answer").text_content().startswith("boats")
    assert doc.get_element_by_id("status").text == "answered"
    assert len(doc.xpath('//img[@class="thumb"]')) >= 2  # the frames inspect_frames showed
    (touch,) = doc.xpath('//rect[contains(@class, "touch")]')
    assert abs(float(touch.get("x")) - 2 / duration * 1000) < 0.01
    player = doc.get_element_by_id("player")
    assert (path.parent / urllib.parse.unquote(player.get("src"))).resolve() == short_video.resolve()
    png = timeline_png(run_report(result.trace_path, thumbnails=False), tmp_path / "timeline.png")
    assert Image.open(png).size[0] >= 1000


def test_a_run_with_a_failed_check_and_nested_investigations(tmp_path, short_video):
    model = ScriptedModel(
        [
            PLAN,
            tool_call("investigate", span="00:00:02-00:00:10", question="What moves on the water?"),
            tool_call("investigate", span="00:00:04-00:00:06", question="Is it a boat?"),
            tool_call("investigate", span="00:00:04-00:00:05", question="What colour?"),
            answer("yes, a boat", evidence=["00:00:04-00:00:06"]),
            answer("boats", evidence=["00:00:04-00:00:06"]),
            REFLECT,
            answer("B", evidence=["00:00:00-00:00:02"]),
            verdict("insufficient", 0.3, "the first two seconds only show water"),
            tool_call("inspect_frames", span="00:00:04-00:00:08", max_frames=4),
            REFLECT,
            answer("B", evidence=["00:00:04-00:00:08"]),
            verdict("supported", 0.9, "boats visible"),
        ]
    )
    result = agent(model, tmp_path).run(short_video, "What is shown?", options=OPTIONS)
    assert result.status == "verified"
    _, doc = page(result)
    check_page(doc, result.trace_path, Video(short_video).duration)
    lanes = doc.xpath('string(//div[@class="lanes"])')
    assert lanes.count("investigate ") == 2 and "shots" in lanes and "evidence" in lanes
    verdicts = [li.text_content() for li in doc.xpath('//li[contains(@class, "verdict")]')]
    assert any("insufficient" in v for v in verdicts) and any("supported" in v for v in verdicts)
    assert doc.xpath('//rect[contains(@class, "evidence") and contains(@class, "supported")]')
    nested = doc.xpath('//ol[@id="steps"]/li[contains(., "investigate, depth 2")]')
    assert nested  # the innermost run's steps are marked with their depth
    assert doc.xpath('//rect[contains(@class, "shot")]')  # the index's shots as bands
    assert doc.xpath('//ul[@id="excerpts"]') is not None


def test_a_result_without_a_trace_has_no_report(tmp_path):
    with pytest.raises(MCRError, match="wrote no trace"):
        mcr.write_report(RunResult(status="answered"), tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


def test_the_report_reads_a_trace_cut_off_mid_line(tmp_path, short_video):
    model = ScriptedModel([tool_call("inspect_frames", span="00:00:02-00:00:04"), answer("boats", evidence=["2-4"])])
    result = agent(model, tmp_path, policy="plain").run(short_video, "What is on the water?")
    lines = open(result.trace_path, encoding="utf-8").read().splitlines(keepends=True)
    cut = tmp_path / "killed.jsonl"
    cut.write_text("".join(lines[:-1]) + lines[-1][:20], encoding="utf-8")  # the run_finished line torn
    report = run_report(cut, thumbnails=False)
    assert report["status"] == "unfinished" and report["runs"][0]["status"] == "unfinished"
    assert [s["name"] for s in report["steps"] if s["kind"] == "call"] == ["inspect_frames"]
    assert report["cost"]["frames_seen"] == len(report["frames"]) > 0
    whole = run_report(result.trace_path, thumbnails=False)
    assert whole["status"] == "answered" and whole["evidence"] == [[2.0, 4.0]]
    assert whole["cost"]["model_calls"] == 2 and whole["cost"]["frames_seen"] == result.frames_seen


def test_a_span_answer_and_the_cli(tmp_path, short_video):
    model = ScriptedModel([tool_call("inspect_frames", span="00:00:05-00:00:09"), answer("", evidence=["5-9"])])
    pol = Policy(perceive=False, plan=False, reflect_every=0, model_check=False)
    result = agent(model, tmp_path, policy=pol).run(short_video, "When is the boat closest?")
    assert result.answer_form == "span"
    out = subprocess.run(
        [sys.executable, "-m", "mcr.cli.main", "report", result.trace_path, "-o", str(tmp_path / "r.html")]
        + ["--png", str(tmp_path / "t.png")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    doc = lhtml.fromstring((tmp_path / "r.html").read_bytes())
    check_page(doc, result.trace_path, Video(short_video).duration)
    assert Image.open(tmp_path / "t.png").format == "PNG"
    bad = subprocess.run(
        [sys.executable, "-m", "mcr.cli.main", "report", str(tmp_path / "nope.jsonl")], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "trace not found" in bad.stderr and "Traceback" not in bad.stderr


def long_trace(tmp_path, steps: int = 300):
    """A trace of a run over a one-hour video with ``steps`` tool calls, each showing 8 frames."""
    video = tmp_path / "hour.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=duration=3600:size=320x180:rate=1"]
        + ["-c:v", "libx264", "-preset", "ultrafast", "-g", "60", str(video)],
        check=True,
    )
    info = Video(video).info()
    trace = tmp_path / "hour.jsonl"
    writer = TraceWriter(trace)
    writer.write(RunStarted(run_id="r1", question="When does the clock show noon?", video=info, model="scripted"))
    for i in range(steps):
        a = i * 3600 / steps
        writer.write(ModelCalled(run_id="r1", step=i + 1, output={"text": f"Look at {a:.0f} s."}, phase="act"))
        writer.write(ToolCalled(run_id="r1", step=i + 1, call_id=f"c{i}", name="inspect_frames", arguments={}))
        frames = {"timestamps": [a + k for k in range(8)]}
        writer.write(ToolReturned(run_id="r1", step=i + 1, call_id=f"c{i}", name="inspect_frames",
                                  text="8 frames " * 40, spans=[[a, a + 8]], frames=frames))  # fmt: skip
    done = RunResult(answer="", status="verified", evidence=[TimeSpan(1800, 1812)], steps=steps, run_id="r1")
    writer.write(RunFinished(run_id="r1", result=done))
    writer.close()
    return trace


@pytest.mark.slow
def test_the_report_in_a_real_browser(tmp_path, short_video):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    model = ScriptedModel([tool_call("inspect_frames", span="00:00:02-00:00:06"), answer("boats", evidence=["3-6"])])
    result = agent(model, tmp_path, policy="plain").run(short_video, "What is on the water?")
    path = mcr.write_report(result)
    big = write_report(long_trace(tmp_path), tmp_path / "hour.html")
    assert big.stat().st_size < 5 * 2**20
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        tab = browser.new_page(viewport={"width": 1200, "height": 900})
        errors, requests = [], []
        tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        tab.on("pageerror", lambda e: errors.append(str(e)))
        tab.on("request", lambda r: requests.append(r.url))
        tab.goto(path.as_uri())
        box = tab.locator("#timeline-svg").bounding_box()
        assert box["width"] > 800 and box["height"] >= 80
        mark = tab.locator("rect.evidence").first
        assert mark.is_visible()
        mbox = mark.bounding_box()
        expected = box["x"] + 3 / Video(short_video).duration * box["width"]
        assert abs(mbox["x"] - expected) < 2
        mark.click()
        tab.wait_for_function("document.getElementById('player').currentTime >= 2.9")
        tab.screenshot(path=str(tmp_path / "report.png"), full_page=False)
        assert not errors, errors
        assert all(u.startswith(("file:", "data:")) for u in requests), requests

        t0 = time.perf_counter()
        tab.goto(big.as_uri(), wait_until="load")
        opened = time.perf_counter() - t0
        assert tab.locator("ol#steps > li").count() == 600  # 300 thoughts and 300 calls
        browser.close()
    print(f"\nreport of a one-hour run with 300 steps: {big.stat().st_size / 2**20:.2f} MiB, opened in {opened:.2f} s")
