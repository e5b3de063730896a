"""msdiff.tokenizer.BertTokenizer equals transformers 4.57.1's BertTokenizer (ids and attention mask) on varied
prompts: case and accents, whitespace and control characters, CJK, punctuation, special tokens in the text,
WordPiece continuations, over-long words, truncation at 77, the empty prompt.
"""
import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from msdiff.io import tokenizer_class
from msdiff.tokenizer import BertTokenizer

FIX = Path(__file__).parent / "fixtures" / "ldm"


@lru_cache(maxsize=None)
def _record():
    return json.loads((FIX / "bert_tokenizer.json").read_text(encoding="utf-8"))


@lru_cache(maxsize=None)
def _tok():
    return BertTokenizer.from_pretrained(FIX / "bert_tokenizer")


@pytest.mark.parametrize("i", range(len(_record()["prompts"])))
def test_ids_and_mask_equal_transformers(i):
    rec = _record()
    out = _tok()(rec["prompts"][i], padding="max_length", max_length=77, truncation=True)
    np.testing.assert_array_equal(out.input_ids[0], rec["input_ids"][i])
    np.testing.assert_array_equal(out.attention_mask[0], rec["attention_mask"][i])


def test_batch_and_config():
    rec = _record()
    tok = _tok()
    assert tok.model_max_length == 77 and tok.do_lower_case
    out = tok(rec["prompts"])
    assert out.input_ids.shape == (len(rec["prompts"]), 77) and out.input_ids.dtype == np.int64
    np.testing.assert_array_equal(out.input_ids, rec["input_ids"])
    np.testing.assert_array_equal(out.attention_mask, rec["attention_mask"])
    # 25 x "a very long prompt" is 100 tokens; 75 fit between [CLS] and [SEP]
    assert out.truncated[-1] == "prompt" + " a very long prompt" * 6 and not any(out.truncated[:-1])


def test_padding_longest_and_registry():
    out = _tok()(["a red cat", ""], padding="longest")
    assert out.input_ids.shape == (2, 5)
    np.testing.assert_array_equal(out.attention_mask, [[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]])
    assert tokenizer_class("BertTokenizer") is BertTokenizer and tokenizer_class("BertTokenizerFast") is BertTokenizer
