"""msdiff.tokenizer.CLIPTokenizer against transformers 4.57.1's CLIPTokenizer (fixtures from tools/fixtures/clip.py)."""
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from msdiff.tokenizer import CLIPTokenizer, vocab_from_bpe_gz, warn_truncated, write_vocab_files

FIXTURES = Path(__file__).parent / "fixtures"
BPE_GZ = FIXTURES / "clip_bpe" / "bpe_simple_vocab_16e6.txt.gz"
CASES = json.loads((FIXTURES / "clip" / "tokenizer_cases.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def full_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clip_full_vocab")
    write_vocab_files(BPE_GZ, folder)
    return folder


def test_bpe_gz_is_the_shared_vocabulary():
    assert hashlib.md5(BPE_GZ.read_bytes()).hexdigest() == "933b7abbbbde62c36f02f0e6ccde464f"


def test_vocab_from_bpe_gz_matches_reference_build():
    vocab, merges = vocab_from_bpe_gz(BPE_GZ)
    assert (len(vocab), len(merges)) == (CASES["num_tokens"], CASES["num_merges"]) == (49408, 48894)
    tokens = sorted(vocab, key=vocab.get)
    assert list(vocab.values()) == list(range(len(vocab)))
    assert hashlib.sha256("\n".join(tokens).encode("utf-8")).hexdigest() == CASES["tokens_sha256"]
    joined = "\n".join(" ".join(m) for m in merges)
    assert hashlib.sha256(joined.encode("utf-8")).hexdigest() == CASES["merges_sha256"]
    assert (vocab["<|startoftext|>"], vocab["<|endoftext|>"]) == (49406, 49407)


def test_golden_ids(full_folder):
    tok = CLIPTokenizer.from_pretrained(full_folder)
    golden = {"a photo of a cat": [49406, 320, 1125, 539, 320, 2368, 49407],
              "An astronaut riding a horse!": [49406, 550, 18376, 6765, 320, 4558, 256, 49407]}
    for text, ids in golden.items():
        out = tok(text, padding=False)
        assert out.input_ids.tolist() == [ids]
        assert out.attention_mask.tolist() == [[1] * len(ids)]


@pytest.mark.parametrize("name,pad", [("sd1_pad_eos", "<|endoftext|>"), ("sd2_pad_bang", "!")])
def test_matches_transformers(full_folder, name, pad):
    vocab = json.loads((full_folder / "vocab.json").read_text(encoding="utf-8"))
    _, merges = vocab_from_bpe_gz(BPE_GZ)
    tok = CLIPTokenizer(vocab, merges, model_max_length=77, pad_token=pad)
    ref = CASES["tokenizers"][name]
    assert tok.pad_token_id == ref["pad_token_id"]
    prompts = CASES["prompts"]
    for i, p in enumerate(prompts):
        assert tok.encode(p) == ref["untruncated"][i], p
    out = tok(prompts)
    assert out.input_ids.shape == (len(prompts), 77) and out.input_ids.dtype == np.int64
    np.testing.assert_array_equal(out.input_ids, np.array(ref["input_ids"]))
    np.testing.assert_array_equal(out.attention_mask, np.array(ref["attention_mask"]))
    assert list(out.truncated) == ref["removed_text"]
    assert sum(bool(t) for t in out.truncated) >= 2


def test_truncation_warning_and_padding_modes(full_folder):
    tok = CLIPTokenizer.from_pretrained(full_folder)
    long_prompt = "a photo of a cat " * 30
    out = tok([long_prompt, "a dog"])
    assert out.truncated[0].startswith("a photo") and out.truncated[1] == ""
    with pytest.warns(UserWarning, match="truncated"):
        warn_truncated(out, 77)
    longest = tok(["a cat", "a dog on a sofa"], padding="longest")
    assert longest.input_ids.shape == (2, 7) and longest.attention_mask[0].tolist() == [1] * 4 + [0] * 3
    full = tok(long_prompt, padding="longest", truncation=False)
    assert full.input_ids.shape[1] == 30 * 5 + 2 and full.truncated == ("",)
    assert tok("a cat", max_length=10).input_ids.shape == (1, 10)
    with pytest.raises(ValueError, match="padding"):
        tok("a cat", padding="sideways")


def test_from_pretrained_defaults(tmp_path, full_folder):
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(full_folder / name, tmp_path / name)
    tok = CLIPTokenizer.from_pretrained(tmp_path)  # no tokenizer_config.json: 77 tokens, pad <|endoftext|>
    assert (tok.model_max_length, tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (77, 49407, 49406, 49407)


@pytest.mark.parametrize("name,model", [("tokenizer", "text_encoder"), ("tokenizer_2", "text_encoder_2")])
def test_tiny_tokenizer_folders(name, model):
    tok = CLIPTokenizer.from_pretrained(FIXTURES / "clip" / name)
    ids = load_file(str(FIXTURES / "clip" / f"io_{model}_prompts.safetensors"))["input_ids"]
    out = tok(["a photo of a cat", "An astronaut riding a horse!"])
    np.testing.assert_array_equal(out.input_ids, ids)
    assert tok.pad_token_id == (999 if name == "tokenizer" else 0)
