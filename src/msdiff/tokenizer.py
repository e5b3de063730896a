"""CLIP and BERT tokenizers on the `tokenizers` library, reproducing transformers 4.57's (slow) CLIPTokenizer
and BertTokenizer.

transformers' CLIPTokenizer without `ftfy` (its default install) normalises text like BERT's
BasicTokenizer (drop control characters, map whitespace to spaces, put spaces around CJK
ideographs, NFC, lowercase), splits it with CLIP's regex, byte-encodes every piece (GPT-2's
byte-to-unicode table) and applies BPE with a `</w>` end-of-word suffix. Special tokens
(bos, eos, unk, pad) found verbatim in the text are split off first and become their ids, so
with SD 2's pad token "!" every "!" in a prompt is id 0, as in transformers.

transformers' BertTokenizer (LDM's tokenizer) cleans text the same way, applies NFC, lowercases and strips
accents (NFD, drop marks) when `do_lower_case`, splits on whitespace and punctuation and applies greedy
WordPiece ("##" continuations, words over 100 characters -> [UNK]); rows are [CLS] text [SEP] [PAD]...
"""
import unicodedata
import gzip
import json
import re
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
from jaxtyping import Int
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
_PATTERN = r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"
_NUM_MERGES = 49152 - 256 - 2  # OpenAI's CLIP keeps this many merges of bpe_simple_vocab_16e6


def bytes_to_unicode() -> dict:
    """GPT-2's reversible byte -> printable unicode character table (256 entries)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    return {b: chr(b) for b in printable} | {b: chr(256 + i) for i, b in enumerate(others)}


def vocab_from_bpe_gz(path) -> tuple:
    """(vocab {token: id}, merges [(a, b)]) from OpenAI's bpe_simple_vocab_16e6.txt.gz (49,408 / 48,894)."""
    lines = gzip.decompress(Path(path).read_bytes()).decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1:_NUM_MERGES + 1]]
    chars = list(bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges] + [BOS, EOS]
    return {t: i for i, t in enumerate(tokens)}, merges


def write_vocab_files(bpe_gz, out_dir) -> None:
    """Write vocab.json and merges.txt (transformers' CLIPTokenizer files) built from bpe_gz."""
    vocab, merges = vocab_from_bpe_gz(bpe_gz)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    body = "".join(f"{a} {b}\n" for a, b in merges)
    (out / "merges.txt").write_text("#version: 0.2\n" + body, encoding="utf-8")


def _read_merges(path: Path) -> list:
    merges = []
    for line in path.read_text(encoding="utf-8").split("\n"):
        if line.startswith("#version") or not line.strip():
            continue
        a, b = line.split()
        merges.append((a, b))
    return merges


def _token_content(value):
    """A special token from a tokenizer json: a string or an AddedToken dict."""
    return value["content"] if isinstance(value, dict) else value


class Tokens(NamedTuple):
    """Tokenizer output: ids[b, n] and mask[b, n] (int64), and per prompt the text cut by truncation."""

    input_ids: Int[np.ndarray, "b n"]
    attention_mask: Int[np.ndarray, "b n"]
    truncated: tuple


class _Tokenizer:
    """Shared batching: subclasses give encode/decode and bos_token_id, eos_token_id, pad_token_id."""

    model_max_length: int

    def __call__(self, texts, padding="max_length", max_length: int = None,
                 truncation: bool = True) -> Tokens:
        """Tokenize str | list[str] to `Tokens(input_ids[b, n], attention_mask[b, n], truncated)`.

        padding: "max_length" (to max_length, default model_max_length), "longest" or False.
        With truncation, rows keep max_length - 2 text tokens between the two special tokens, and
        `truncated[i]` is the decoded text that was cut ("" if none), for the caller to warn.
        """
        if isinstance(texts, str):
            texts = [texts]
        max_length = self.model_max_length if max_length is None else max_length
        rows, cut = [], []
        for body in (self.encode(t) for t in texts):
            keep = max_length - 2 if truncation else len(body)
            cut.append(self.decode(body[keep:]) if len(body) > keep else "")
            rows.append([self.bos_token_id, *body[:keep], self.eos_token_id])
        if padding == "max_length":
            width = max(max_length, *(len(r) for r in rows))
        elif padding == "longest" or padding is True:
            width = max(len(r) for r in rows)
        elif padding is False or padding == "do_not_pad":
            width = None
        else:
            raise ValueError(f"{type(self).__name__}: padding={padding!r} is not one of 'max_length', 'longest', False")
        if width is None:
            if len({len(r) for r in rows}) > 1:
                raise ValueError(f"{type(self).__name__}: rows of different lengths need padding")
            width = len(rows[0])
        ids = np.full((len(rows), width), self.pad_token_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, r in enumerate(rows):
            ids[i, :len(r)] = r
            mask[i, :len(r)] = 1
        return Tokens(ids, mask, tuple(cut))


class CLIPTokenizer(_Tokenizer):
    """CLIP BPE tokenizer: `tok(texts) -> Tokens(input_ids, attention_mask, truncated)`."""

    def __init__(self, vocab: dict, merges: list, model_max_length: int = 77, pad_token: str = EOS,
                 bos_token: str = BOS, eos_token: str = EOS, unk_token: str = EOS):
        self.vocab = dict(vocab)
        self.model_max_length = model_max_length
        self.bos_token_id, self.eos_token_id = vocab[bos_token], vocab[eos_token]
        self.pad_token_id = vocab[pad_token]
        self._decoder = {i: t for t, i in vocab.items()}
        self._byte_decoder = {c: b for b, c in bytes_to_unicode().items()}
        bpe = models.BPE(vocab=self.vocab, merges=list(merges), unk_token=unk_token,
                         end_of_word_suffix="</w>", continuing_subword_prefix="", fuse_unk=False)
        self._normalizer = normalizers.Sequence([
            normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=False,
                                       lowercase=False),
            normalizers.NFC(),
        ])
        self._tok = Tokenizer(bpe)
        self._tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(_PATTERN), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
        self._special_tokens = {bos_token, eos_token, unk_token, pad_token}
        self.added_tokens = {}  # textual-inversion tokens (add_tokens) -> id
        self._compile_splitter()

    def _compile_splitter(self) -> None:
        """Split on special and added tokens, longest first (transformers' added-token trie)."""
        tokens = sorted(self._special_tokens | set(self.added_tokens), key=len, reverse=True)
        self._specials = re.compile("(" + "|".join(re.escape(t) for t in tokens) + ")")

    def add_tokens(self, tokens) -> list:
        """Add whole-word tokens (textual inversion) with the next free ids; returns their ids."""
        for token in tokens:
            if token in self.vocab:
                raise ValueError(f"CLIPTokenizer: token {token!r} is already in the vocabulary")
            self.vocab[token] = self.added_tokens[token] = len(self.vocab)
            self._decoder[self.vocab[token]] = token
        self._compile_splitter()
        return [self.vocab[t] for t in tokens]

    def expand_multi_vector(self, text: str) -> str:
        """diffusers' maybe_convert_prompt: an added token with `token_1`, `token_2`, ... becomes all of them."""
        pieces = self._specials.split(text)
        for token in sorted({p for p in pieces[1::2] if p in self.added_tokens}):
            i, replacement = 1, token
            while f"{token}_{i}" in self.added_tokens:
                replacement += f" {token}_{i}"
                i += 1
            text = text.replace(token, replacement)
        return text

    @classmethod
    def from_pretrained(cls, folder) -> "CLIPTokenizer":
        """Read vocab.json, merges.txt and (when present) tokenizer_config.json / special_tokens_map.json."""
        folder = Path(folder)
        vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
        merges = _read_merges(folder / "merges.txt")
        kwargs = {}
        for name in ("tokenizer_config.json", "special_tokens_map.json"):  # the map wins, as in transformers
            path = folder / name
            if not path.exists():
                continue
            cfg = json.loads(path.read_text(encoding="utf-8"))
            for key in ("pad_token", "bos_token", "eos_token", "unk_token"):
                if cfg.get(key) is not None:
                    kwargs[key] = _token_content(cfg[key])
            if name == "tokenizer_config.json" and cfg.get("model_max_length") is not None:
                kwargs["model_max_length"] = int(cfg["model_max_length"])
        return cls(vocab, merges, **kwargs)

    def encode(self, text: str) -> list:
        """Token ids of text without bos/eos, padding or truncation (multi-vector added tokens expanded)."""
        ids = []
        if self.added_tokens:
            text = self.expand_multi_vector(text)
        for i, piece in enumerate(self._specials.split(text)):
            if i % 2:
                ids.append(self.vocab[piece])
            elif piece:
                # Python's lower() (final sigma included) after BERT-style cleaning and NFC, as transformers
                normal = self._normalizer.normalize_str(piece).lower()
                for word, _ in self._tok.pre_tokenizer.pre_tokenize_str(normal):
                    # like transformers' bpe cache, a regex piece spelling bos/eos is that token
                    if word in (BOS, EOS):
                        ids.append(self.vocab[word])
                    else:
                        ids.extend(t.id for t in self._tok.model.tokenize(word))
        return ids

    def decode(self, ids) -> str:
        """Text of ids as transformers' decode gives it (`</w>` -> space, stripped)."""
        chars = "".join(self._decoder[int(i)] for i in ids)
        raw = bytearray(self._byte_decoder[c] for c in chars)
        return raw.decode("utf-8", errors="replace").replace("</w>", " ").strip()



class BertTokenizer(_Tokenizer):
    """BERT WordPiece tokenizer: `tok(texts) -> Tokens(input_ids, attention_mask, truncated)` ([CLS] ... [SEP])."""

    def __init__(self, vocab: dict, do_lower_case: bool = True, strip_accents=None,
                 tokenize_chinese_chars: bool = True, model_max_length: int = 512, unk_token: str = "[UNK]",
                 cls_token: str = "[CLS]", sep_token: str = "[SEP]", pad_token: str = "[PAD]",
                 mask_token: str = "[MASK]"):
        self.vocab = dict(vocab)
        self.model_max_length = model_max_length
        self.do_lower_case = do_lower_case
        self._strip = strip_accents if strip_accents is not None else do_lower_case
        self.bos_token_id, self.eos_token_id = vocab[cls_token], vocab[sep_token]
        self.pad_token_id = vocab[pad_token]
        self._decoder = {i: t for t, i in vocab.items()}
        self._normalizer = normalizers.Sequence([
            normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=tokenize_chinese_chars,
                                       strip_accents=False, lowercase=False),
            normalizers.NFC(),
        ])
        self._pre = pre_tokenizers.BertPreTokenizer()
        self._model = models.WordPiece(vocab=self.vocab, unk_token=unk_token, max_input_chars_per_word=100)
        specials = sorted({t for t in (unk_token, cls_token, sep_token, pad_token, mask_token) if t in vocab},
                          key=len, reverse=True)
        self._specials = re.compile("(" + "|".join(re.escape(t) for t in specials) + ")")

    @classmethod
    def from_pretrained(cls, folder) -> "BertTokenizer":
        """Read vocab.txt (one token a line, id = line number) and tokenizer_config.json when present."""
        folder = Path(folder)
        lines = (folder / "vocab.txt").read_text(encoding="utf-8").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        vocab = {token: i for i, token in enumerate(lines)}
        kwargs = {}
        for name in ("tokenizer_config.json", "special_tokens_map.json"):  # the map wins, as in transformers
            path = folder / name
            if not path.exists():
                continue
            cfg = json.loads(path.read_text(encoding="utf-8"))
            for key in ("unk_token", "cls_token", "sep_token", "pad_token", "mask_token"):
                if cfg.get(key) is not None:
                    kwargs[key] = _token_content(cfg[key])
            if name == "tokenizer_config.json":
                for key in ("do_lower_case", "strip_accents", "tokenize_chinese_chars", "model_max_length"):
                    if cfg.get(key) is not None:
                        kwargs[key] = cfg[key]
        return cls(vocab, **kwargs)

    def _words(self, text: str) -> list:
        text = self._normalizer.normalize_str(text)
        if self.do_lower_case:
            text = "".join(c.lower() for c in text)  # transformers lowers char by char: never a final sigma
        if self._strip:
            text = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
        return [w for w, _ in self._pre.pre_tokenize_str(text)]

    def encode(self, text: str) -> list:
        """Token ids of text without [CLS]/[SEP], padding or truncation."""
        ids = []
        for i, piece in enumerate(self._specials.split(text)):
            if i % 2:
                ids.append(self.vocab[piece])
            elif piece:
                for word in self._words(piece):
                    ids.extend(t.id for t in self._model.tokenize(word))
        return ids

    def decode(self, ids) -> str:
        """Text of ids as transformers' decode gives it (tokens joined by spaces, "##" pieces glued)."""
        return " ".join(self._decoder[int(i)] for i in ids).replace(" ##", "").strip()


def warn_truncated(tokens: Tokens, max_length: int) -> None:
    """Warn, as diffusers' encode_prompt does, about prompt text cut by truncation."""
    for text in tokens.truncated:
        if text:
            warnings.warn(f"The following part of your input was truncated because CLIP can only handle "
                          f"sequences up to {max_length} tokens: {text}", stacklevel=2)


__all__ = ["BertTokenizer", "CLIPTokenizer", "Tokens", "bytes_to_unicode", "vocab_from_bpe_gz", "write_vocab_files",
           "warn_truncated"]
