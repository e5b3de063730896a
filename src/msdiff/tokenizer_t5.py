"""T5 tokenizer on the `tokenizers` library, read from the tokenizer.json that transformers' T5TokenizerFast writes.

The tokenizer.json holds the whole pipeline (normalizer, Metaspace pre-tokenizer, Unigram model and the
post-processor that appends `</s>`), so running it through `tokenizers` gives T5TokenizerFast's ids. A
folder with only a sentencepiece `spiece.model` (the slow T5Tokenizer's file) is refused with the one-line
conversion to run once with transformers; msdiff does not parse sentencepiece models.
"""
import json
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from .tokenizer import Tokens, _token_content


class T5Tokenizer:
    """`tok(texts, padding="max_length", max_length=None, truncation=True) -> Tokens` (right padding with <pad>)."""

    def __init__(self, tokenizer: Tokenizer, pad_token: str = "<pad>", model_max_length: int = 512):
        self._tok = tokenizer
        self._tok.no_padding()
        self._tok.no_truncation()
        self.pad_token_id = tokenizer.token_to_id(pad_token)
        if self.pad_token_id is None:
            raise ValueError(f"T5Tokenizer: pad token {pad_token!r} is not in the vocabulary")
        self.model_max_length = model_max_length

    @classmethod
    def from_pretrained(cls, folder) -> "T5Tokenizer":
        """Read tokenizer.json (+ tokenizer_config.json / special_tokens_map.json for pad token and max length)."""
        folder = Path(folder)
        path = folder / "tokenizer.json"
        if not path.is_file():
            hint = " (it has a sentencepiece spiece.model)" if (folder / "spiece.model").is_file() else ""
            raise ValueError(f"{folder}: no tokenizer.json{hint}; msdiff reads T5 tokenizers from tokenizer.json. "
                             f"Write one once with transformers: T5TokenizerFast.from_pretrained(folder)"
                             f".save_pretrained(folder)")
        kwargs = {}
        for name in ("tokenizer_config.json", "special_tokens_map.json"):
            cfg_path = folder / name
            if not cfg_path.is_file():
                continue
            cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
            if cfg.get("pad_token") is not None:
                kwargs["pad_token"] = _token_content(cfg["pad_token"])
            length = cfg.get("model_max_length")
            if name == "tokenizer_config.json" and isinstance(length, int) and length < 10 ** 9:
                kwargs["model_max_length"] = length
        return cls(Tokenizer.from_file(str(path)), **kwargs)

    def encode(self, text: str) -> list:
        """Token ids of text with the post-processor's special tokens (`</s>`), no padding or truncation."""
        return self._tok.encode(text).ids

    def decode(self, ids) -> str:
        """Text of ids, special tokens skipped."""
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=True)

    def __call__(self, texts, padding="max_length", max_length: int = None, truncation: bool = True) -> Tokens:
        """Tokenize str | list[str]; truncation keeps the final `</s>` (as T5TokenizerFast)."""
        if isinstance(texts, str):
            texts = [texts]
        max_length = self.model_max_length if max_length is None else max_length
        full = [enc.ids for enc in self._tok.encode_batch(texts)]
        rows = full
        if truncation:
            self._tok.enable_truncation(max_length)
            try:
                rows = [enc.ids for enc in self._tok.encode_batch(texts)]
            finally:
                self._tok.no_truncation()
        cut = tuple(self.decode(f[len(r) - 1:-1]) if len(f) > len(r) else "" for f, r in zip(full, rows))
        if padding == "max_length":
            width = max(max_length, *(len(r) for r in rows))
        elif padding == "longest" or padding is True:
            width = max(len(r) for r in rows)
        elif padding is False or padding == "do_not_pad":
            if len({len(r) for r in rows}) > 1:
                raise ValueError("T5Tokenizer: rows of different lengths need padding")
            width = len(rows[0])
        else:
            raise ValueError(f"T5Tokenizer: padding={padding!r} is not one of 'max_length', 'longest', False")
        ids = np.full((len(rows), width), self.pad_token_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, r in enumerate(rows):
            ids[i, :len(r)] = r
            mask[i, :len(r)] = 1
        return Tokens(ids, mask, cut)
