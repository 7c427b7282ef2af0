"""Models fetched on first use, from a small hub on 127.0.0.1 that serves files under the hub's
URL layout: downloaded once into the Hugging Face cache and loaded, never fetched again; a clear
line with HF_HUB_OFFLINE or an unreachable hub, quickly; the SAM checkpoint fetched by URL and
kept only when its hash matches."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from hub_server import Hub
from procs import worker

from mcr.models import ModelNotAvailable, load_model


def hub_env(tmp_path: Path, url: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_TOKEN", "MCR_MODEL")}
    return {**env, "HF_ENDPOINT": url, "HF_HOME": str(tmp_path / "hf")}


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory):
    pytest.importorskip("transformers")
    from tiny_models import make_qwen3_vl

    return make_qwen3_vl(tmp_path_factory.mktemp("hub_repo") / "tiny")


@pytest.mark.slow
def test_a_hub_model_is_fetched_on_first_use_and_read_from_the_cache_after(tiny_vlm, tmp_path):
    with Hub({"org/tiny": tiny_vlm}) as hub:
        env = hub_env(tmp_path, hub.url)

        def load() -> subprocess.CompletedProcess:
            return subprocess.run(worker("hub_load"), capture_output=True, text=True, env=env, timeout=300)

        first = load()
        assert first.returncode == 0, first.stderr[-3000:]
        assert first.stdout.split() == ["TransformersModel", "org/tiny"]
        assert f"downloading org/tiny from {hub.url}" in first.stderr
        fetched = [r for r in hub.requests if "/resolve/" in r and r.startswith("GET")]
        assert {r.rsplit("/", 1)[-1] for r in fetched} >= {"config.json", "model.safetensors"}
        (snapshot,) = (tmp_path / "hf" / "hub" / "models--org--tiny" / "snapshots").iterdir()
        for f in tiny_vlm.iterdir():  # the cache holds the same files, byte for byte
            assert (snapshot / f.name).read_bytes() == f.read_bytes()
        asked = len(hub.requests)
        second = load()
        assert second.returncode == 0 and second.stdout == first.stdout
        assert len(hub.requests) == asked and "downloading" not in second.stderr  # not a single request


@pytest.mark.slow
def test_offline_and_unknown_and_unreachable_hubs_give_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    with Hub({}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        with pytest.raises(ModelNotAvailable) as offline:
            load_model("org/tiny")
        assert "org/tiny is not available offline" in str(offline.value)
        assert "HF_HUB_OFFLINE is set" in str(offline.value) and "\n" not in str(offline.value)
        assert hub.requests == []
        monkeypatch.delenv("HF_HUB_OFFLINE")
        with pytest.raises(ModelNotAvailable, match="has no model org/nothing"):
            load_model("org/nothing")
    silent = socket.socket()  # accepts connections and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{silent.getsockname()[1]}")
        with pytest.raises(ModelNotAvailable) as unreachable:
            load_model("org/tiny")
        # given up on after the one short request, not the library's longer timeouts
        assert "cannot be reached (timed out)" in str(unreachable.value)
        assert "models pull org/tiny" in str(unreachable.value)
    finally:
        silent.close()


@pytest.fixture
def sam_files(tmp_path):
    pytest.importorskip("segment_anything")
    import torch
    from tiny_vision import build_tiny_sam

    torch.manual_seed(0)
    good = tmp_path / "served" / "tiny.pth"
    good.parent.mkdir()
    torch.save(build_tiny_sam().state_dict(), good)
    return good, hashlib.sha256(good.read_bytes()).hexdigest()


def test_the_sam_checkpoint_is_fetched_checked_and_kept_only_when_its_hash_matches(sam_files, tmp_path, monkeypatch):
    import segment_anything
    from tiny_vision import build_tiny_sam

    from mcr.tools import ModelCache
    from mcr.tools import segment as seg
    from mcr.tools.base import ToolError

    good, digest = sam_files
    ours = f"sam_vit_b_{digest[:6]}.pth"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in ("MCR_SAM_CHECKPOINT", "MCR_SAM_MODEL", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setitem(segment_anything.sam_model_registry, "vit_b", build_tiny_sam)
    with Hub(files={ours: good, "sam_vit_b_01ec64.pth": good}) as hub:
        monkeypatch.setenv("MCR_SAM_URL", f"{hub.url}/files")
        # the official name: the served file is not the published one, so it is refused
        assert seg.unavailable_reason() is None and seg.fetchable()
        with pytest.raises(ToolError, match="does not match its published hash"):
            seg.load_sam(ModelCache())
        cache = tmp_path / "home" / ".cache" / "mcr"
        assert sorted(p.name for p in cache.iterdir()) == []  # nothing kept, no partial file
        # a name whose hash is this file's: fetched, checked, renamed into place, and loaded
        monkeypatch.setitem(seg.OFFICIAL, "vit_b", ours)
        predictor = seg.load_sam(ModelCache())
        assert type(predictor).__name__ == "SamPredictor"
        assert (cache / ours).read_bytes() == good.read_bytes() and not seg.fetchable()
        asked = len(hub.requests)
        seg.load_sam(ModelCache())
        assert len(hub.requests) == asked  # on the machine now: no request
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setitem(seg.OFFICIAL, "vit_b", "sam_vit_b_01ec64.pth")
    assert "HF_HUB_OFFLINE is set" in seg.unavailable_reason()


@pytest.mark.slow
def test_models_lists_what_is_on_the_machine_and_pull_fetches_ahead(tiny_vlm, tmp_path):
    with Hub({"org/tiny": tiny_vlm}) as hub:
        env = hub_env(tmp_path, hub.url)
        run = [sys.executable, "-m", "mcr.cli.main", "models"]
        pulled = subprocess.run(
            run + ["pull", "org/tiny", "--json"], capture_output=True, text=True, env=env, timeout=120
        )
        assert pulled.returncode == 0, pulled.stderr[-2000:]
        doc = json.loads(pulled.stdout)
        assert Path(doc["path"], "config.json").is_file() and doc["size_mib"] > 0
        listed = subprocess.run(run + ["--json"], capture_output=True, text=True, env=env, timeout=120)
        here = {r["what"]: r for r in json.loads(listed.stdout)["on_machine"]}
        assert here["model org/tiny"]["size_mib"] == pytest.approx(doc["size_mib"], abs=0.2)
        bad = subprocess.run(run + ["pull", "nonsense"], capture_output=True, text=True, env=env, timeout=120)
        assert bad.returncode != 0 and "cannot tell what to fetch" in bad.stderr
