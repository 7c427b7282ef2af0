"""M2LA saving, loading and the ``m2la`` command, on tiny random models with a tokenizer made here."""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("safetensors")

from tiny_models import greedy, logits
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

from mcr.cli.m2la import main, register
from mcr.m2la import (
    LatentCache,
    M2LAError,
    convert_to_m2la,
    is_m2la_checkpoint,
    load_m2la,
    save_m2la,
)

ROOT = Path(__file__).resolve().parents[1]
WORDS = [
    "the",
    "a",
    "cat",
    "dog",
    "sat",
    "ran",
    "on",
    "under",
    "mat",
    "table",
    "red",
    "blue",
    "big",
    "small",
    "and",
    "then",
]


def qwen3():
    torch.manual_seed(0)
    cfg = Qwen3Config(
        vocab_size=160,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=256,
    )
    return Qwen3ForCausalLM(cfg).eval()


def ids(batch=1, n=12, seed=1):
    return torch.randint(0, 160, (batch, n), generator=torch.Generator().manual_seed(seed))


def tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {w: i for i, w in enumerate(["[UNK]", "[PAD]", "[EOS]", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", eos_token="[EOS]")


@pytest.fixture
def source(tmp_path):
    """A tiny Qwen2 model and tokenizer saved as a normal transformers folder."""
    torch.manual_seed(0)
    cfg = Qwen2Config(
        vocab_size=64,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
    )
    folder = tmp_path / "src"
    Qwen2ForCausalLM(cfg).save_pretrained(folder)
    tokenizer().save_pretrained(folder)
    return folder


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_convert_save_load_generate_round_trip(tmp_path):
    model = qwen3()
    convert_to_m2la(model, rank=24, rope_dim=8, shared_rope=True, calibration=ids(1, 24, 3))
    x = ids()
    expected_logits, expected_tokens = logits(model, x), greedy(model, x, n=16, past_key_values=LatentCache(model))
    folder = save_m2la(model, tmp_path / "m2la", tokenizer=tokenizer())
    assert is_m2la_checkpoint(folder) and (folder / "model.safetensors").is_file()
    loaded = load_m2la(folder)
    assert torch.equal(logits(loaded, x), expected_logits)
    assert torch.equal(greedy(loaded, x, n=16, past_key_values=LatentCache(loaded)), expected_tokens)
    assert torch.equal(greedy(loaded, x, n=16), expected_tokens)  # plain generate picks the latent cache itself
    half = load_m2la(folder, dtype="bfloat16")
    assert half.model.layers[0].self_attn.kv_b_proj.weight.dtype == torch.bfloat16


def test_load_refuses_a_folder_that_is_not_converted(source):
    assert not is_m2la_checkpoint(source)
    with pytest.raises(M2LAError, match="no 'm2la' entry|not a saved M2LA"):
        load_m2la(source)


def test_cli_module_imports_no_torch():
    code = "import sys, mcr.cli.m2la; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_register_adds_the_m2la_command():
    parser = argparse.ArgumentParser(prog="mcr-agent")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["m2la", "convert", "in", "out", "--rank", "64", "--rope-dim", "32", "--shared-rope"])
    assert args.rank == 64 and args.rope_dim == 32 and args.shared_rope is True and callable(args.func)
    args = parser.parse_args(["m2la", "info", "somewhere"])
    assert callable(args.func)


def test_cli_convert_info_generate(source, tmp_path, capsys):
    text = tmp_path / "calib.txt"
    text.write_text(" ".join(WORDS * 4))
    out = tmp_path / "out"
    code, stdout, err = run(
        ["convert", str(source), str(out), "--rank", "24", "--rope-dim", "8", "--calibration-text", str(text)], capsys
    )
    assert code == 0, err
    assert "cache per token" in stdout and "saved to" in stdout
    report = json.loads((out / "m2la_report.json").read_text())
    assert report["calibrated"] and len(report["layers"]) == 2
    assert report["cache_ratio"] == pytest.approx((24 + 8 * 2) / (2 * 2 * 16))
    code, stdout, _ = run(["info", str(out)], capsys)
    assert code == 0 and "40 values = 160 bytes" in stdout
    code, stdout, err = run(["generate", str(out), "--prompt", "the cat sat", "--max-new-tokens", "4"], capsys)
    assert code == 0 and "latent cache: " in err


def one_error_line(err):
    """The single ``error:`` line (loading progress bars may precede it)."""
    lines = [line for line in err.splitlines() if line.startswith("error")]
    assert len(lines) == 1 and err.rstrip().endswith(lines[0])
    return lines[0]


@pytest.mark.parametrize(
    "extra,match",
    [
        (["--rank", "24", "--rope-dim", "7"], "even"),
        (["--rank", "0", "--rope-dim", "8"], "at least 1"),
        (["--rank", "24", "--rope-dim", "32"], "larger than the head dim"),
        (["--rank", "500", "--rope-dim", "8"], "larger than the projection allows"),
        (["--rank", "24", "--rope-dim", "8", "--key-norm", "fold"], "no key norm"),
    ],
)
def test_cli_bad_arguments(source, tmp_path, capsys, extra, match):
    code, _, err = run(["convert", str(source), str(tmp_path / "out"), *extra], capsys)
    assert code == 2 and match in one_error_line(err)
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_cli_bad_models_and_folders(source, tmp_path, capsys):
    gpt2 = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50)).save_pretrained(gpt2)
    code, _, err = run(["convert", str(gpt2), str(tmp_path / "o1"), "--rank", "8", "--rope-dim", "4"], capsys)
    assert code == 2 and "unknown model family 'gpt2'" in one_error_line(err)
    code, _, err = run(
        ["convert", str(tmp_path / "missing"), str(tmp_path / "o2"), "--rank", "8", "--rope-dim", "4"], capsys
    )
    assert code == 2 and "not found" in one_error_line(err)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "file").write_text("x")
    code, _, err = run(["convert", str(source), str(busy), "--rank", "8", "--rope-dim", "4"], capsys)
    assert code == 2 and "not an empty folder" in one_error_line(err)
    code, _, err = run(["info", str(source)], capsys)
    assert code == 2 and "not a converted model" in one_error_line(err)
    code, _, err = run(["generate", str(source), "--prompt", "the"], capsys)
    assert code == 2 and one_error_line(err)
