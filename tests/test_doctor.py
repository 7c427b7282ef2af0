"""``mcr-agent doctor`` on this machine: what it has (python, ffmpeg, the perception tools,
the sentence encoder) and lacks (a GPU, a SAM checkpoint, the hub), each with how to fix it."""

from __future__ import annotations

import json

import pytest
from media import shared_clip
from procs import run_cli


def checks(done) -> dict:
    assert done.returncode == 0, done.stderr
    return {(c["area"], c["item"]): c for c in json.loads(done.stdout)}


@pytest.mark.slow
def test_doctor_says_what_is_here_and_what_is_missing(tmp_path):
    db = tmp_path / "memory.db"
    assert run_cli("index", shared_clip("boats.mp4"), "--stages", "shots", "--memory", db).returncode == 0
    found = checks(run_cli("doctor", "--json", "--memory", db, env_extra={"HF_HUB_OFFLINE": "0"}))
    assert found[("system", "python")]["status"] == "ok"
    assert found[("system", "ffmpeg")]["status"] == "ok" and "ffmpeg version" in found[("system", "ffmpeg")]["detail"]
    assert found[("system", "gpu")]["status"] == "note" and "no CUDA device" in found[("system", "gpu")]["detail"]
    assert found[("tool", "asr")]["status"] == "ok" and found[("tool", "ocr")]["status"] == "ok"
    segment = found[("tool", "segment")]
    assert segment["status"] == "missing" and "MCR_SAM_CHECKPOINT" in segment["detail"]
    assert found[("model", "sentence encoder")]["status"] == "ok"
    assert found[("package", "faster-whisper")]["status"] == "ok"
    memory = found[("memory", str(db))]
    assert memory["status"] == "ok" and "1 videos" in memory["detail"]
    assert found[("network", "hub")]["status"] == "missing"  # no internet on this machine
    offline = checks(run_cli("doctor", "--json", env_extra={"HF_HUB_OFFLINE": "1"}, cwd=tmp_path))
    assert "HF_HUB_OFFLINE is set" in offline[("network", "hub")]["detail"]
    broken = checks(run_cli("doctor", "--json", env_extra={"MCR_WHISPER_MODEL": str(tmp_path / "none")}))
    assert broken[("tool", "asr")]["status"] == "missing" and "not found" in broken[("tool", "asr")]["detail"]
    table = run_cli("doctor", "--memory", db)
    assert table.returncode == 0 and "what this machine has for MCR" in table.stdout
