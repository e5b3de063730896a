"""Textual inversion: embeddings from safetensors files -> new tokenizer tokens and text-encoder rows.

Formats (pickle .pt / .bin files are refused):
  diffusers `learned_embeds.safetensors`: one key, the token, holding [d] or [n, d]
  A1111 / kohya safetensors: `emb_params` [n, d] (or a flattened `string_to_param.*`); the token is the file
      name, as A1111 uses it, unless `token=` is given
  SD-XL: `clip_l` [n, 768] for text_encoder and `clip_g` [n, 1280] for text_encoder_2, one token in both
An embedding of n > 1 vectors adds `token`, `token_1`, ..., `token_{n-1}`, and prompts naming `token` get
all of them (diffusers' multi-vector tokens; the tokenizer expands them).
"""
from pathlib import Path

import numpy as np

from ..nets.clip_text import append_token_embeddings
from .lora_keys import read_safetensors
from .paths import LoadError

_A1111_KEYS = ("emb_params", "string_to_param.*")


def _tokens(token: str, n: int) -> list:
    return [token] + [f"{token}_{i}" for i in range(1, n)]


def _add(tokenizer, text_encoder, token: str, rows: np.ndarray, where: str) -> None:
    """Append rows to text_encoder and their tokens to tokenizer (ids must line up)."""
    if tokenizer is None or text_encoder is None:
        raise LoadError(f"{where}: the components have no tokenizer / text encoder for this embedding")
    rows = rows.reshape(1, -1) if rows.ndim == 1 else rows
    dim = text_encoder.text_model.embeddings.token_embedding.weight.shape
    if rows.ndim != 2 or rows.shape[1] != dim[1]:
        raise LoadError(f"{where}: embedding of shape {rows.shape} does not fit the text encoder's {dim[1]}-wide "
                        f"token embeddings (an embedding for another model?)")
    tokens = _tokens(token, rows.shape[0])
    taken = [t for t in tokens if t in tokenizer.vocab]
    if taken:
        raise LoadError(f"{where}: token(s) {taken} already in the tokenizer's vocabulary; pass another token=")
    if dim[0] != len(tokenizer.vocab):
        raise LoadError(f"{where}: the tokenizer has {len(tokenizer.vocab)} tokens but the text encoder "
                        f"{dim[0]} embedding rows; new ids would not line up")
    first = append_token_embeddings(text_encoder, rows.astype(np.float32))
    ids = tokenizer.add_tokens(tokens)
    if ids[0] != first:
        raise LoadError(f"{where}: token id {ids[0]} but embedding row {first}")


def load_textual_inversion(components, path, token: str = None) -> str:
    """Add the embedding(s) of a safetensors file to the components' tokenizer(s) and text encoder(s); returns
    the token to write in prompts."""
    path = Path(path)
    tensors, _ = read_safetensors(path)
    where = str(path)
    if "clip_l" in tensors or "clip_g" in tensors:
        missing = [k for k in ("clip_l", "clip_g") if k not in tensors]
        if missing or getattr(components, "text_encoder_2", None) is None:
            raise LoadError(f"{where}: an SD-XL embedding needs clip_l and clip_g and SD-XL components "
                            f"(text_encoder_2); missing: {missing or ['text_encoder_2']}")
        token = token or path.stem
        _add(components.tokenizer, components.text_encoder, token, tensors["clip_l"], where + " (clip_l)")
        _add(components.tokenizer_2, components.text_encoder_2, token, tensors["clip_g"], where + " (clip_g)")
        return token
    a1111 = [k for k in _A1111_KEYS if k in tensors]
    if a1111:
        rows, token = tensors[a1111[0]], token or path.stem
    elif len(tensors) == 1:
        (name, rows), = tensors.items()
        token = token or name
    else:
        raise LoadError(f"{where}: not a textual-inversion embedding (expected one token key, 'emb_params' or "
                        f"'clip_l' / 'clip_g'; found {sorted(tensors)[:5]})")
    _add(components.tokenizer, components.text_encoder, token, rows, where)
    return token
