"""The evaluation runner: resume after a kill, parallel workers, errors, the CLI, export, Ray."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from oracles import asked, oracle, oracle_factory, place
from procs import run_cli, worker, worker_env

from mcr.cli.main import main
from mcr.eval import AgentSpec, load_benchmark, resolve_videos, run_eval
from mcr.eval.results import ResultsWriter, iter_records, read_results, repair

N = 12


@pytest.fixture
def bench(tmp_path, tiny_video):
    """12 multiple-choice questions over 3 videos; gold answers A, B, C, A, B, C, ..."""
    videos = place(tiny_video, tmp_path / "videos", "v0.mp4", "v1.mp4", "v2.mp4")
    ann = tmp_path / "q.jsonl"
    ann.write_text(
        "".join(
            json.dumps(
                {
                    "id": f"q{i:02d}",
                    "video": f"v{i % 3}.mp4",
                    "question": f"Question {i}?",
                    "options": ["red", "green", "blue"],
                    "answer": "ABC"[i % 3],
                    "category": "even" if i % 2 == 0 else "odd",
                }
            )
            + "\n"
            for i in range(N)
        )
    )
    answers = {f"Question {i}?": "ABC"[i % 3] if i % 4 else "ABC"[(i + 1) % 3] for i in range(N)}  # wrong: 0, 4, 8
    return ann, videos, answers


def _samples(ann, videos):
    return resolve_videos(load_benchmark("jsonl", ann), videos)


def _stable(record):
    return {k: v for k, v in record.items() if k not in ("wall_s", "run_id", "finished_at")}


def test_resume_after_kill_reruns_nothing_finished_and_loses_nothing(tmp_path, bench):
    ann, videos, answers = bench
    out = tmp_path / "out"
    proc = subprocess.Popen(
        worker("eval_killed", ann, videos, json.dumps(answers), out),
        cwd=tmp_path,
        env=worker_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    results = out / "results.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if results.is_file() and results.read_text().count("\n") >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stdout.read().decode()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = read_results(results)
    assert 3 <= len(before) < N
    with open(results, "ab") as f:  # as if the kill had cut a record in half
        f.write(b'{"id": "q99", "answer": "tor')
    assert len(list(iter_records(results))) == len(before)  # the torn line is skipped when reading

    model = oracle(answers)
    summary = run_eval(_samples(ann, videos), oracle_factory(model), out)
    done_first = {r["question"] for r in before.values()}
    assert sorted(asked(model)) == sorted(q for q in answers if q not in done_first)  # nothing finished re-ran
    lines = results.read_text().splitlines()
    assert len(lines) == N and all(json.loads(line)["id"] != "q99" for line in lines)  # nothing lost, no torn line
    after = read_results(results)
    assert {k: after[k] for k in before} == before
    assert summary["questions"] == N and summary["accuracy"]["value"] == pytest.approx(9 / 12)
    for r in after.values():  # every record has its trace and turns
        assert (out / r["trace"]).is_file() and (out / r["turns"]).read_text().strip()


def test_repair_cuts_only_a_torn_last_line(tmp_path):
    path = tmp_path / "results.jsonl"
    with ResultsWriter(path) as w:
        w.append({"id": "a", "x": 1})
        w.append({"id": "b", "x": 2})
    whole = path.read_bytes()
    assert repair(path) == 0 and path.read_bytes() == whole
    path.write_bytes(whole + b'{"id": "c", "x"')
    assert repair(path) == len(b'{"id": "c", "x"') and path.read_bytes() == whole
    with ResultsWriter(path) as w:  # opening repairs too
        w.append({"id": "a", "x": 3})
    assert read_results(path) == {"a": {"id": "a", "x": 3}, "b": {"id": "b", "x": 2}}
    path.write_bytes(whole + b'{"id": "c", "x": 4}')  # whole, only its newline lost: kept
    assert repair(path) == 0 and path.read_bytes() == whole + b'{"id": "c", "x": 4}\n'
    assert list(read_results(path)) == ["a", "b", "c"]


def test_four_workers_give_the_same_results_as_one(tmp_path, bench):
    ann, videos, answers = bench
    one = run_eval(_samples(ann, videos), oracle_factory(oracle(answers)), tmp_path / "one", workers=1)
    four = run_eval(_samples(ann, videos), oracle_factory(oracle(answers, delay=0.02)), tmp_path / "four", workers=4)
    r1, r4 = read_results(tmp_path / "one" / "results.jsonl"), read_results(tmp_path / "four" / "results.jsonl")
    assert sorted(r1) == sorted(r4) == [f"q{i:02d}" for i in range(N)]
    assert {k: _stable(v) for k, v in r1.items()} == {k: _stable(v) for k, v in r4.items()}
    for s in (one, four):
        s["cost"].pop("wall_s")
        s.pop("ran")
    assert one == four
    assert one["accuracy"]["value"] == 0.75 and one["by_category"]["task"]["even"]["value"] == 0.5


def test_a_failing_question_is_recorded_not_fatal_and_can_be_retried(tmp_path, bench):
    ann, videos, answers = bench
    out = tmp_path / "out"
    summary = run_eval(_samples(ann, videos), oracle_factory(oracle(answers, fail_on="Question 5?")), out, workers=2)
    rec = read_results(out / "results.jsonl")
    assert summary["questions"] == N and summary["errors"] == 1
    assert rec["q05"]["status"] == "error" and "server went away" in rec["q05"]["error"]
    assert rec["q05"]["correct"] is False and rec["q06"]["status"] == "answered"
    again = oracle(answers)
    run_eval(_samples(ann, videos), oracle_factory(again), out)
    assert asked(again) == []  # an errored question is finished unless asked to retry
    run_eval(_samples(ann, videos), oracle_factory(again), out, retry_errors=True)
    assert asked(again) == ["Question 5?"]
    assert read_results(out / "results.jsonl")["q05"]["status"] == "answered"


@pytest.mark.slow
def test_cli_eval_report_compare_and_export_load_with_datasets(tmp_path, bench, capsys):
    from datasets import load_dataset

    ann, videos, _ = bench
    script = tmp_path / "b.json"
    script.write_text(json.dumps([{"answer": "B", "evidence": ["00:00:00-00:00:01"]}]))
    base = [
        "eval",
        "jsonl",
        "--annotations",
        str(ann),
        "--videos",
        str(videos),
        "--model",
        f"replay:{script}",
        "--agent",
        "baseline",
        "--frames",
        "4",
        "--memory",
        "none",
        "--no-progress",
    ]
    assert main(base + ["--out", str(tmp_path / "b1"), "--limit", "6"]) == 0
    printed = capsys.readouterr().out
    assert "accuracy" in printed and "33.3%" in printed and (tmp_path / "b1" / "report.png").stat().st_size > 5000
    assert main(base + ["--out", str(tmp_path / "b2"), "--workers", "3"]) == 0
    capsys.readouterr()
    assert main(["eval", "report", str(tmp_path / "b1"), str(tmp_path / "b2"), "--png", str(tmp_path / "cmp.png")]) == 0
    printed = capsys.readouterr().out
    assert "b1" in printed and "b2" in printed and "+0.0 pts" in printed and (tmp_path / "cmp.png").is_file()
    check_eval_page(tmp_path / "b1" / "report.html", columns=2, questions=N)
    report = run_cli("eval", "report", tmp_path / "b1", "--json", "--no-png")  # one JSON document, nothing else
    piped = subprocess.run([sys.executable, "-m", "json.tool"], input=report.stdout, capture_output=True, text=True)
    assert report.returncode == 0 and piped.returncode == 0, (report.stderr, piped.stderr)

    assert main(["eval", "export", str(tmp_path / "b2"), "--format", "sft", "--select", "all"]) == 0
    assert main(["eval", "export", str(tmp_path / "b2"), "--format", "rl"]) == 0
    sft = load_dataset("json", data_files=str(tmp_path / "b2" / "export-sft.jsonl"), split="train")
    assert len(sft) == N and sft[0]["completion"][0]["role"] == "assistant"
    call = sft[0]["completion"][0]["tool_calls"][0]["function"]
    assert call["name"] == "answer" and json.loads(call["arguments"])["answer"] == "B"
    assert any("frames of v" in m["content"] for m in sft[0]["prompt"])  # frames as a reference line
    assert sft[0]["frames"][0]["timestamps"]
    rl = load_dataset("json", data_files=str(tmp_path / "b2" / "export-rl.jsonl"), split="train")
    assert sorted(rl["gold"]) == sorted("ABC"[i % 3] for i in range(N)) and rl[0]["options"] == ["red", "green", "blue"]

    from mcr.eval.rewards import choice_reward

    assert sum(choice_reward(sft["completion"], gold=[r["gold"] for r in rl], options=rl["options"])) == 4


def check_eval_page(page, columns: int, questions: int) -> None:
    """The HTML report: a column per folder with its accuracy, every question linked to its run
    report; in a real browser (Debian's chromium) when it is installed: rendered, no errors, and
    a question's link opens its run on the timeline."""
    import shutil

    from lxml import html as lhtml

    doc = lhtml.fromstring(page.read_bytes())
    (overall,) = doc.xpath('//table[@id="accuracy"]//tr[td[1]="overall"]')
    values = [float(v) for v in overall.xpath('td[@class="acc"]/@data-value')]
    assert len(values) == columns and all(0.0 <= v <= 1.0 for v in values)
    rows = doc.xpath('//table[@id="questions"]//tr[td]')
    assert len(rows) == questions
    answered = doc.xpath('//table[@id="questions"]//td[@class="ok" or @class="no"]')  # a folder may hold fewer
    links = doc.xpath('//a[@class="run"]/@href')
    assert len(links) == len(answered) >= questions and all((page.parent / h).is_file() for h in links)
    chromium = shutil.which("chromium")
    if chromium is None:
        return
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        tab = browser.new_page()
        errors = []
        tab.on("pageerror", lambda e: errors.append(str(e)))
        tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        tab.goto(page.as_uri())
        assert tab.locator("#accuracy").bounding_box()["height"] > 20
        tab.screenshot(path=str(page.with_suffix(".png")))
        tab.locator("a.run").first.click()
        tab.wait_for_selector("#timeline-svg")
        assert tab.locator("#timeline-svg").bounding_box()["width"] > 300
        assert not errors, errors
        browser.close()


def test_cli_errors_are_one_line(tmp_path, bench, capsys):
    ann, videos, _ = bench
    (videos / "v1.mp4").unlink()
    code = main(["eval", "jsonl", "--annotations", str(ann), "--videos", str(videos), "--model", "replay:x.json"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "1 of 3 videos are not in" in err and "v1.mp4" in err
    code = main(["eval", "lvbench", "--annotations", str(tmp_path / "missing.jsonl"), "--videos", str(videos)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "annotation file not found" in err and "\n" not in err


def test_mcr_policy_with_memory_per_question_and_sft_phases(tmp_path, bench):
    """The full policy (overview, plan, answer, model check) through AgentSpec and a replay script."""
    from mcr.eval.export import iter_rows

    ann, videos, _ = bench
    script = tmp_path / "mcr.json"
    script.write_text(
        json.dumps(
            [
                {"text": "Plan: look at the overview, then answer."},
                {"answer": "A", "evidence": ["00:00:00-00:00:02"]},
                {"text": json.dumps({"verdict": "supported", "confidence": 0.9, "reason": "seen"})},
            ]
        )
    )
    spec = AgentSpec(agent="mcr", model=f"replay:{script}", memory="question", index=("shots",), max_steps=3)
    summary = run_eval(_samples(ann, videos)[:2], spec, tmp_path / "out")
    rec = read_results(tmp_path / "out" / "results.jsonl")
    assert [r["status"] for r in rec.values()] == ["verified", "verified"] and summary["accuracy"]["value"] == 0.5
    assert rec["q00"]["usage"]["model_calls"] == 3 and rec["q00"]["frames_seen"] > 0
    rows = list(iter_rows(tmp_path / "out", "sft"))  # correct only: q00
    assert [r["phase"] for r in rows] == ["plan", "act", "verify"] and {r["question_id"] for r in rows} == {"q00"}


@pytest.mark.slow
def test_ray_local_instance(tmp_path, bench):
    ray = pytest.importorskip("ray")
    ann, videos, _ = bench
    script = tmp_path / "c.json"
    script.write_text(json.dumps([{"answer": "C", "evidence": ["00:00:00-00:00:01"]}]))
    spec = AgentSpec(agent="baseline", model=f"replay:{script}", frames=2, memory="none", index=())
    samples = _samples(ann, videos)[:6]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        summary = run_eval(samples, spec, tmp_path / "ray", workers=2, ray_address="local")
    finally:
        ray.shutdown()
    rec = read_results(tmp_path / "ray" / "results.jsonl")
    assert sorted(rec) == [s.id for s in samples] and summary["ran"] == 6
    assert [rec[s.id]["correct"] for s in samples] == [False, False, True, False, False, True]
    assert all((tmp_path / "ray" / r["trace"]).read_text().strip() for r in rec.values())
    again = run_eval(samples, spec, tmp_path / "ray", workers=2, ray_address="local")  # resumed: nothing to run
    assert again["ran"] == 0 and again["accuracy"]["value"] == pytest.approx(1 / 3)


@pytest.mark.slow
def test_workers_against_a_served_model(tmp_path, bench):
    """Four workers share one OpenAI-compatible backend (a small local server standing in for vLLM)."""
    pytest.importorskip("openai")
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    ann, videos, answers = bench
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            text = " ".join(
                p.get("text", "") if isinstance(p, dict) else ""
                for m in body["messages"]
                for p in (m["content"] if isinstance(m["content"], list) else [{"text": m["content"]}])
            )
            question = text.split("Question: ", 1)[1].split("\n", 1)[0]
            seen.append(question)
            call = {"name": "answer", "arguments": {"answer": answers[question], "evidence": ["00:00:00-00:00:01"]}}
            reply = {
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": f"<tool_call>{json.dumps(call)}</tool_call>"},
                    }
                ],
                "usage": {"prompt_tokens": 50, "completion_tokens": 7, "total_tokens": 57},
            }
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        spec = AgentSpec(agent="plain", model=f"openai:served-vlm@{url}", memory="none", index=(), max_steps=2)
        summary = run_eval(_samples(ann, videos), spec, tmp_path / "out", workers=4)
    finally:
        server.shutdown()
    rec = read_results(tmp_path / "out" / "results.jsonl")
    assert sorted(seen) == sorted(answers) and summary["accuracy"]["value"] == 0.75
    assert all(r["usage"]["input_tokens"] == 50 and r["model"].startswith("openai:served-vlm") for r in rec.values())
