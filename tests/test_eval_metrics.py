"""Metrics and rewards against hand-computed values."""

import json

import numpy as np
import pytest

from mcr.eval.metrics import bootstrap_ci, format_comparison, format_summary, summarize
from mcr.eval.rewards import choice_reward, correctness_reward, extract_answer, format_reward, temporal_iou_reward
from mcr.eval.samples import predicted_value, score, temporal_iou, text_matches


def rec(
    i, correct, form="choice", iou=None, cats=None, calls=2, tin=100, tout=10, frames=8, wall=1.0, status="verified"
):
    return {
        "id": f"q{i}",
        "form": form,
        "correct": correct,
        "iou": iou,
        "categories": cats or {},
        "status": status,
        "usage": {"model_calls": calls, "input_tokens": tin, "output_tokens": tout},
        "frames_seen": frames,
        "wall_s": wall,
        "video_duration": 30.0,
    }


def test_accuracy_categories_and_cost():
    records = [
        rec(1, True, cats={"task": "ocr", "duration": "short"}, calls=1, frames=4, wall=2.0),
        rec(2, False, cats={"task": "ocr", "duration": "long"}, calls=3, frames=12, wall=4.0),
        rec(3, True, cats={"task": ["count", "ocr"]}, calls=2, frames=8, wall=6.0),
        rec(4, None, cats={"task": "count"}, status="answered"),  # no gold answer: not scored
        rec(5, False, cats={"task": "count"}, status="error", calls=0, tin=0, tout=0, frames=0, wall=0.0),
    ]
    s = summarize(records)
    assert (s["questions"], s["scored"], s["errors"]) == (5, 4, 1)
    assert s["statuses"] == {"answered": 1, "error": 1, "verified": 3}
    assert s["accuracy"]["value"] == 0.5 and s["accuracy"]["n"] == 4
    task = s["by_category"]["task"]
    assert task["ocr"]["value"] == pytest.approx(2 / 3) and task["ocr"]["n"] == 3  # q3 counts for both of its types
    assert task["count"]["value"] == 0.5 and task["count"]["n"] == 2
    dur = s["by_category"]["duration"]
    assert dur["short"]["value"] == 1.0 and dur["long"]["value"] == 0.0
    assert dur["short (<2 min)"]["n"] == 2  # no duration group given: from the video's length (30 s)
    assert s["cost"]["model_calls"]["value"] == pytest.approx((1 + 3 + 2 + 2 + 0) / 5)
    assert s["cost"]["total_tokens"]["value"] == pytest.approx((110 * 4) / 5)
    assert s["cost"]["frames_seen"]["value"] == pytest.approx((4 + 12 + 8 + 8) / 5)
    assert s["cost"]["wall_s"]["value"] == pytest.approx(13.0 / 5)
    text = format_summary(s, "run")
    assert "50.0%" in text and "ocr" in text and "model calls" in text
    other = summarize([rec(1, True), rec(2, True)])
    assert "+50.0 pts" in format_comparison(s, other, ("a", "b"))


def test_grounding_miou_and_recall_at_iou():
    ious = [0.5, 0.0, 0.8, 0.31]
    s = summarize([rec(i, iou >= 0.5, form="span", iou=iou) for i, iou in enumerate(ious)])
    g = s["grounding"]
    assert g["n"] == 4 and g["miou"]["value"] == pytest.approx(0.4025)
    assert g["r@0.3"]["value"] == 0.75 and g["r@0.5"]["value"] == 0.5 and g["r@0.7"]["value"] == 0.25
    assert s["accuracy"]["n"] == 0  # spans are reported as grounding, not accuracy


def test_bootstrap_intervals():
    assert bootstrap_ci([1, 1, 1]) == (1.0, 1.0)
    assert bootstrap_ci([0, 1]) == (0.0, 1.0)  # resampled means 0, .5, 1 with weights 1/4, 1/2, 1/4
    values = [1] * 70 + [0] * 30
    lo, hi = bootstrap_ci(values, seed=3)
    assert lo < 0.7 < hi and (lo, hi) == bootstrap_ci(values, seed=3)
    assert 0.58 < lo < 0.65 and 0.75 < hi < 0.82  # about 0.7 +- 1.96 * sqrt(.21 / 100)
    lo, hi = bootstrap_ci(values, stat=lambda x: np.median(x, axis=1))
    assert (lo, hi) == (1.0, 1.0)


def test_scoring_each_form():
    assert temporal_iou([2, 6], [4, 8]) == pytest.approx(2 / 6)
    assert temporal_iou([0, 1], [2, 3]) == 0.0 and temporal_iou([3, 3], [3, 3]) == 1.0
    assert score("span", [4, 8], [2, 6]) == {"correct": False, "iou": pytest.approx(1 / 3)}
    assert score("span", [4, 8], [4, 7]) == {"correct": True, "iou": 0.75}
    assert score("choice", 2, 2)["correct"] is True and score("choice", 2, None)["correct"] is False
    assert score("count", 3, 3)["correct"] is True and score("choice", None, 1)["correct"] is None
    assert predicted_value("choice", "C. a dog", None, ["a cat", "a bird", "a dog"]) == 2
    assert predicted_value("span", "from 00:00:04 to 00:00:08", None) == [4.0, 8.0]
    assert predicted_value("count", "three times", None) == 3
    assert text_matches("It says: Wifi password SEAGULL.", "seagull") and not text_matches("seagulls", "seagull")


SPAN_CALL = (
    '<tool_call>\n{"name": "answer", "arguments": {"answer": "00:00:02-00:00:06", '
    '"evidence": ["00:00:02-00:00:06"]}}\n</tool_call>'
)


def _msg(args):
    return [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"type": "function", "function": {"name": "answer", "arguments": json.dumps(args)}}],
        }
    ]


def test_temporal_iou_reward():
    completions = [
        SPAN_CALL,
        "It happens at 4-8.",
        _msg({"answer": "00:00:05-00:00:07"}),
        "no idea",
        '<tool_call>{"name": "inspect_frames", "arguments": {"span": "0-4"}}</tool_call>',
    ]
    assert temporal_iou_reward(completions, gold=["4-8", [4, 8], "4-8", "4-8", "4-8"]) == [
        pytest.approx(1 / 3),
        1.0,
        0.5,
        0.0,
        0.0,
    ]


def test_choice_and_correctness_rewards():
    options = [["red", "green", "blue"]] * 4
    completions = [_msg({"answer": "B", "evidence": []}), "C", "green", "<think>maybe red</think>A"]
    assert choice_reward(completions, gold=["B", "B", 1, "A"], options=options) == [1.0, 0.0, 1.0, 1.0]
    assert correctness_reward(
        ["3", "two", "The password is seagull", SPAN_CALL],
        gold=["3", "3", "seagull", "0-5"],
        form=["count", "count", "text", "span"],
        options=[[], [], [], []],
    ) == [1.0, 0.0, 1.0, 1.0]  # [2, 6] vs [0, 5]: IoU 3/6
    assert correctness_reward([SPAN_CALL], gold=["5-10"], form=["span"]) == [0.0]  # IoU 1/8
    assert extract_answer("<think>hmm</think>\n B ").text == "B"


def test_format_reward_parts():
    options = [["red", "green", "blue"]] * 6
    completions = [
        _msg({"answer": "B", "evidence": ["00:00:01-00:00:03"]}),  # 0.5 + 0.25 + 0.25
        _msg({"answer": "B"}),  # no evidence: 0.75
        "B",  # fits, but plain text: 0.5
        _msg({"answer": "Z", "evidence": ["1-3"]}),  # not an option: 0.25 + 0.25
        _msg({"answer": "B", "evidence": ["soon"]}),  # a span that is not one: 0.75
        "",
    ]
    assert format_reward(completions, form=["choice"] * 6, options=options) == [1.0, 0.75, 0.5, 0.5, 0.75, 0.0]
    assert format_reward([SPAN_CALL, "3 times"], form=["span", "count"]) == [1.0, 0.5]
