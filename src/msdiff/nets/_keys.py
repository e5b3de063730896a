"""Checkpoint key renames shared by the nets built from diffusers' "deprecated attention block"."""
import re

# Before diffusers 0.14 the group-normed spatial attention (VAE / UNet2DModel mid-blocks, AttnDown/Up blocks)
# saved query / key / value / proj_attn; diffusers still renames them when it loads a checkpoint.
_OLD_ATTENTION = re.compile(r"(\battentions\.\d+)\.(query|key|value|proj_attn)\.(weight|bias)$")
_NEW_NAME = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}


def modern_attention_key(key: str) -> str:
    """`...attentions.N.query.weight` -> `...attentions.N.to_q.weight` (and key, value, proj_attn); others as is."""
    m = _OLD_ATTENTION.search(key)
    if m is None:
        return key
    return key[: m.start()] + f"{m.group(1)}.{_NEW_NAME[m.group(2)]}.{m.group(3)}"
