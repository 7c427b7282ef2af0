"""Benchmark adapters: a few records in each benchmark's published format, with test-made videos,
scored for a scripted agent whose answers are known."""

import json

import pytest
from oracles import oracle, oracle_factory, place

from mcr.eval import load_benchmark, resolve_videos, run_eval
from mcr.eval.samples import EvalError, MissingVideos


def evaluate(samples, answers, out):
    return run_eval(samples, oracle_factory(oracle(answers)), out)


def test_videomme_parquet(tmp_path, tiny_video):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        {
            "video_id": "001",
            "duration": "short",
            "domain": "Knowledge",
            "sub_category": "Humanity & History",
            "url": "https://www.youtube.com/watch?v=fFjv93ACGo8",
            "videoID": "fFjv93ACGo8",
            "question_id": "001-1",
            "task_type": "Counting Problem",
            "question": "How many people appear?",
            "options": ["A. One.", "B. Two.", "C. Three.", "D. Four."],
            "answer": "C",
        },
        {
            "video_id": "001",
            "duration": "short",
            "domain": "Knowledge",
            "sub_category": "Humanity & History",
            "url": "",
            "videoID": "fFjv93ACGo8",
            "question_id": "001-2",
            "task_type": "OCR Problems",
            "question": "What is written on the sign?",
            "options": ["A. Stop.", "B. Go.", "C. Exit.", "D. Open."],
            "answer": "A",
        },
        {
            "video_id": "601",
            "duration": "long",
            "domain": "Sports",
            "sub_category": "Football",
            "url": "",
            "videoID": "xYz-123_ab",
            "question_id": "601-1",
            "task_type": "Counting Problem",
            "question": "How many goals are scored?",
            "options": ["A. 0.", "B. 1.", "C. 2.", "D. 3."],
            "answer": "D",
        },
    ]
    ann = tmp_path / "videomme" / "test-00000-of-00001.parquet"
    ann.parent.mkdir()
    pq.write_table(pa.Table.from_pylist(rows), ann)
    videos = place(tiny_video, tmp_path / "data", "fFjv93ACGo8.mp4", "xYz-123_ab.mp4")
    samples = resolve_videos(load_benchmark("videomme", tmp_path), videos)
    assert [s.options for s in samples][0] == ["One.", "Two.", "Three.", "Four."]
    assert [s.gold for s in samples] == [2, 0, 3]
    answers = {
        "How many people appear?": "C",
        "What is written on the sign?": "B",
        "How many goals are scored?": "3.",
    }  # the option's text counts too
    summary = evaluate(samples, answers, tmp_path / "out")
    assert summary["accuracy"]["value"] == pytest.approx(2 / 3)
    by = summary["by_category"]
    assert by["duration"]["short"]["value"] == 0.5 and by["duration"]["long"]["value"] == 1.0
    assert by["task"]["Counting Problem"]["value"] == 1.0 and by["task"]["OCR Problems"]["value"] == 0.0
    assert by["domain"]["Sports"]["n"] == 1


def test_lvbench_jsonl_options_in_question_and_several_types(tmp_path, tiny_video):
    lines = [
        {
            "key": "B_-J6wF0bVM",
            "type": "documentary",
            "video_info": {"duration_minutes": 68.2},
            "qa": [
                {
                    "uid": 0,
                    "question": "What year appears in the opening caption?\n(A) 2013\n(B) 2014\n(C) 2015\n(D) 2016",
                    "answer": "B",
                    "question_type": ["key information retrieval", "temporal grounding"],
                    "time_reference": "00:15-00:19",
                },
                {
                    "uid": 1,
                    "question": "Why does the man leave?\n(A) rain\n(B) a call\n(C) hunger\n(D) a fight",
                    "answer": "B",
                    "question_type": ["reasoning"],
                    "time_reference": "01:02:03-01:02:30",
                },
            ],
        },
    ]
    ann = tmp_path / "video_info.meta.jsonl"
    ann.write_text("".join(json.dumps(line) + "\n" for line in lines))
    videos = place(tiny_video, tmp_path / "videos", "B_-J6wF0bVM.mp4")
    samples = resolve_videos(load_benchmark("lvbench", ann), videos)
    assert samples[0].question == "What year appears in the opening caption?"
    assert samples[0].options == ["2013", "2014", "2015", "2016"] and samples[0].gold == 1
    assert samples[0].meta["time_reference"] == "00:15-00:19"
    summary = evaluate(
        samples, {"What year appears in the opening caption?": "B", "Why does the man leave?": "D"}, tmp_path / "out"
    )
    assert summary["accuracy"]["value"] == 0.5
    task = summary["by_category"]["task"]  # a question counts in each of its types
    assert task["key information retrieval"]["value"] == 1.0 and task["temporal grounding"]["value"] == 1.0
    assert task["reasoning"]["value"] == 0.0


def test_longvideobench_json(tmp_path, tiny_video):
    records = [
        {
            "video_id": "86CxyhFV9MI",
            "question": "Which subtitle appears with the red car?",
            "question_wo_referring_query": "Which subtitle?",
            "candidates": ["hello", "goodbye", "thanks", "sorry"],
            "correct_choice": 1,
            "position": [12],
            "topic_category": "NP-News-Programs",
            "question_category": "TOS",
            "level": "L2-Relation",
            "id": "86CxyhFV9MI_0",
            "video_path": "86CxyhFV9MI.mp4",
            "subtitle_path": "86CxyhFV9MI_en.json",
            "duration_group": 600,
            "starting_timestamp_for_subtitles": 0,
            "duration": 527.6,
            "view_count": 10,
        },
        {
            "video_id": "aa1",
            "question": "What colour is the boat?",
            "question_wo_referring_query": "",
            "candidates": ["red", "blue", "green"],
            "correct_choice": 2,
            "position": [3],
            "topic_category": "KS-Knowledge",
            "question_category": "S2O",
            "level": "L1-Perception",
            "id": "aa1_0",
            "video_path": "aa1.mp4",
            "subtitle_path": "aa1_en.json",
            "duration_group": 15,
            "starting_timestamp_for_subtitles": 0,
            "duration": 12.0,
            "view_count": 1,
        },
    ]
    ann = tmp_path / "lvb_val.json"
    ann.write_text(json.dumps(records))
    videos = place(tiny_video, tmp_path / "LongVideoBench", "videos/86CxyhFV9MI.mp4", "videos/aa1.mp4")
    samples = resolve_videos(load_benchmark("longvideobench", ann), videos)
    assert samples[0].video_path.endswith("videos/86CxyhFV9MI.mp4")
    summary = evaluate(
        samples, {"Which subtitle appears with the red car?": "B", "What colour is the boat?": "A"}, tmp_path / "out"
    )
    assert summary["accuracy"]["value"] == 0.5
    assert summary["by_category"]["duration"] == {
        "15s": {"value": 0.0, "ci": [0.0, 0.0], "n": 1},
        "600s": {"value": 1.0, "ci": [1.0, 1.0], "n": 1},
    }
    assert summary["by_category"]["task"]["TOS"]["value"] == 1.0


def test_mlvu_json_folder_answer_as_text_and_open_tasks_left_out(tmp_path, tiny_video):
    root = tmp_path / "MLVU"
    (root / "json").mkdir(parents=True)
    (root / "json" / "1_plotQA.json").write_text(
        json.dumps(
            [
                {
                    "video": "movie101_66.mp4",
                    "duration": 246,
                    "question": "What does the boy hold?",
                    "candidates": ["a kite", "a ball", "a book", "a cup"],
                    "answer": "a ball",
                    "question_type": "plotQA",
                }
            ]
        )
    )
    (root / "json" / "4_count.json").write_text(
        json.dumps(
            [
                {
                    "video": "count_7.mp4",
                    "duration": 1200,
                    "question": "How many times does he jump?",
                    "candidates": ["2", "3", "4", "5"],
                    "answer": "4",
                    "question_type": "count",
                }
            ]
        )
    )
    (root / "json" / "9_summary.json").write_text(
        json.dumps(
            [
                {
                    "video": "sum_1.mp4",
                    "duration": 600,
                    "question": "Summarize the video.",
                    "answer": "A long story.",
                    "question_type": "summary",
                }
            ]
        )
    )
    place(tiny_video, root / "video", "1_plotQA/movie101_66.mp4", "4_count/count_7.mp4")
    samples = resolve_videos(load_benchmark("mlvu", root), root / "video")
    assert [s.id for s in samples] == ["1_plotQA/0", "4_count/0"]
    assert [s.gold for s in samples] == [1, 2]
    summary = evaluate(samples, {"What does the boy hold?": "B", "How many times does he jump?": "B"}, tmp_path / "o")
    assert summary["accuracy"]["value"] == 0.5
    assert summary["by_category"]["task"]["plotQA"]["value"] == 1.0
    assert summary["by_category"]["duration"]["long (>15 min)"]["value"] == 0.0  # from the annotated duration


def test_egoschema_subset_answers(tmp_path, tiny_video):
    uids = [
        "001934bb-81bd-4cd8-a574-0472ef3f6678",
        "0074f737-11cb-497d-8d07-77c3a8127391",
        "00b9a0de-c59e-49cb-a127-6081e2fb8c8e",
    ]
    questions = [
        {
            "q_uid": u,
            "google_drive_id": f"drive{i}",
            "question": f"What is C's main goal {i}?",
            **{f"option {k}": f"goal {k}" for k in range(5)},
        }
        for i, u in enumerate(uids)
    ]
    (tmp_path / "questions.json").write_text(json.dumps(questions))
    (tmp_path / "subset_answers.json").write_text(json.dumps({uids[1]: 3, uids[2]: 4}))
    videos = place(tiny_video, tmp_path / "videos", *(f"{u}.mp4" for u in uids[1:]))
    samples = resolve_videos(load_benchmark("egoschema", tmp_path / "questions.json"), videos)
    assert [s.id for s in samples] == uids[1:] and [s.gold for s in samples] == [3, 4]  # only the subset
    summary = evaluate(samples, {"What is C's main goal 1?": "D", "What is C's main goal 2?": "E"}, tmp_path / "o")
    assert summary["accuracy"]["value"] == 1.0 and summary["questions"] == 2
    with pytest.raises(EvalError, match="subset_answers.json"):
        load_benchmark("egoschema", tmp_path / "questions.json", answers=tmp_path / "nope.json")


def test_nextqa_csv_with_video_map(tmp_path, tiny_video):
    header = "video,frame_count,width,height,question,answer,qid,type,a0,a1,a2,a3,a4\n"
    rows = (
        "4882821564,1032,640,480,why did the boy pick up the ball,2,3,CW,"
        "to eat,to sleep,to throw it,to hide,to sit\n"
        "4882821564,1032,640,480,what did the girl do after she fell,0,5,TN,cry,laugh,run,jump,sing\n"
        "13884193982,800,640,360,where are the children,4,1,DL,beach,park,zoo,room,field\n"
    )
    (tmp_path / "val.csv").write_text(header + rows)
    (tmp_path / "map_vid_vidorID.json").write_text(
        json.dumps({"4882821564": "1017/4882821564", "13884193982": "0010/13884193982"})
    )
    videos = place(tiny_video, tmp_path / "NExTVideo", "1017/4882821564.mp4", "0010/13884193982.mp4")
    samples = resolve_videos(load_benchmark("nextqa", tmp_path / "val.csv"), videos)
    assert samples[0].id == "4882821564_3" and samples[0].question == "why did the boy pick up the ball?"
    answers = {
        "why did the boy pick up the ball?": "C",
        "what did the girl do after she fell?": "B",
        "where are the children?": "E",
    }
    summary = evaluate(samples, answers, tmp_path / "out")
    assert summary["accuracy"]["value"] == pytest.approx(2 / 3)
    assert summary["by_category"]["group"]["temporal"]["value"] == 0.0
    assert summary["by_category"]["group"]["causal"]["value"] == 1.0
    assert summary["by_category"]["task"]["DL"]["value"] == 1.0


def test_charades_sta_grounding(tmp_path, tiny_video):
    (tmp_path / "charades_sta_test.txt").write_text(
        "AO8RW 0.0 1.0##a person is putting a book on a shelf.\nY6R7T 1.0 2.0##person turns on the light.\n"
    )
    videos = place(tiny_video, tmp_path / "Charades_v1", "AO8RW.mp4", "Y6R7T.mp4")
    samples = resolve_videos(load_benchmark("charades-sta", tmp_path / "charades_sta_test.txt"), videos)
    assert samples[0].form == "span" and samples[0].gold == [0.0, 1.0]
    answers = {
        "When does this happen in the video: a person is putting a book on a shelf?": "00:00:00.5-00:00:01.0",
        "When does this happen in the video: person turns on the light?": "0-0.4",
    }
    summary = evaluate(samples, answers, tmp_path / "out")
    g = summary["grounding"]
    assert g["n"] == 2 and g["miou"]["value"] == pytest.approx(0.25)
    assert (g["r@0.3"]["value"], g["r@0.5"]["value"], g["r@0.7"]["value"]) == (0.5, 0.5, 0.0)


def test_missing_videos_are_listed_up_front(tmp_path, tiny_video):
    ann = tmp_path / "q.jsonl"
    ann.write_text(
        "".join(
            json.dumps({"video": v, "question": f"q{i}?", "options": ["x", "y"], "answer": "A"}) + "\n"
            for i, v in enumerate(["here.mp4", "gone1.mp4", "gone2.mp4", "gone1.mp4"])
        )
    )
    videos = place(tiny_video, tmp_path / "v", "here.mp4")
    with pytest.raises(MissingVideos) as caught:
        resolve_videos(load_benchmark("jsonl", ann), videos)
    assert caught.value.missing == ["gone1.mp4", "gone2.mp4"]
    assert "2 of 3 videos are not in" in str(caught.value) and "\n" not in str(caught.value)
    kept = resolve_videos(load_benchmark("jsonl", ann), videos, skip_missing=True)
    assert [s.video for s in kept] == ["here.mp4"]
    with pytest.raises(EvalError, match="annotation file not found: .*nothing.parquet"):
        load_benchmark("videomme", tmp_path / "nothing.parquet")
    with pytest.raises(EvalError, match="video folder not found"):
        resolve_videos(load_benchmark("jsonl", ann), tmp_path / "no_videos")


def test_videomme_official_per_video_layout_names_the_video_by_its_youtube_id(tmp_path, tiny_video):
    """The official repository's ``output_test_template.json``: ``video_id`` "001" is a row number;
    the video is named by the YouTube id in ``url``, as a download names its file."""
    record = {
        "video_id": "001",
        "duration": "short",
        "domain": "Knowledge",
        "sub_category": "Humanity & History",
        "url": "https://www.youtube.com/watch?v=fFjv93ACGo8",
        "videoID": None,
        "questions": [
            {
                "question_id": "001-1",
                "task_type": "Counting Problem",
                "question": "How many people appear?",
                "options": ["A. 1.", "B. 2.", "C. 3.", "D. 4."],
                "answer": "C",
            }
        ],
    }
    (tmp_path / "output_test_template.json").write_text(json.dumps([record]), encoding="utf-8")
    videos = place(tiny_video, tmp_path / "videos", "fFjv93ACGo8.mp4")
    (sample,) = resolve_videos(load_benchmark("videomme", tmp_path / "output_test_template.json"), videos)
    assert sample.video == "fFjv93ACGo8" and sample.video_path.endswith("videos/fFjv93ACGo8.mp4")
    assert sample.gold == 2 and sample.categories["task"] == "Counting Problem"
