"""LoRA files -> per-net {module path: (down, up, alpha)}: the diffusers / PEFT and the kohya / A1111 key layouts.

Layouts read (safetensors only):
  diffusers / PEFT (`save_lora_weights`): `unet.<module>.lora_A.weight` / `.lora_B.weight`, and the same under
      `text_encoder.` / `text_encoder_2.`; the older diffusers forms `<module>.lora.down|up.weight`,
      `<module>.lora_linear_layer.down|up.weight`, `<attn>.processor.to_q_lora.down.weight` (prefix-less
      keys are the UNet's); `<module>.alpha` network alphas; the `lora_adapter_metadata` LoraConfig.
  kohya / A1111: `lora_unet_<module with _>.lora_down.weight` / `.lora_up.weight` / `.alpha`, the UNet named as
      in diffusers (SD 1.x / 2.x trainers) or as in the original LDM / SGM code (`input_blocks_4_1_...`, SD-XL),
      text encoders `lora_te_` (SD) or `lora_te1_` / `lora_te2_` (SD-XL).
alpha semantics follow diffusers 0.35 (its `get_peft_kwargs`): a module without its own alpha gets the most
common alpha of its net, or without any alpha the most common rank; the scale is alpha / rank.
"""
import collections
import json
import re
from pathlib import Path

import numpy as np
from mindspore import nn

from ..blocks.layers import Conv2d, Linear
from ..blocks.lora import LoRAConv2d, LoRALinear
from ..nets.unet_2d_condition import per_block
from .paths import CheckpointNotFoundError, LoadError
from .weights import PICKLE_SUFFIXES, _header, _open, _read_into

NETS = ("unet", "text_encoder", "text_encoder_2")
_KOHYA = {"lora_unet_": "unet", "lora_te_": "text_encoder", "lora_te1_": "text_encoder",
          "lora_te2_": "text_encoder_2"}
_UNSUPPORTED = {"lora_magnitude_vector": "DoRA", "dora_scale": "DoRA", "hada_w1": "LyCORIS LoHa",
                "lokr_w1": "LyCORIS LoKr", "lokr_w2": "LyCORIS LoKr", "lora_mid": "LyCORIS LoCon (Tucker)",
                "lora_B.bias": "LoRA with bias", "diff_b": "full-weight diffs", ".diff": "full-weight diffs"}
# old diffusers processor names -> module names (UNet attention, CLIP attention)
_PROCESSOR = {"to_q_lora": "to_q", "to_k_lora": "to_k", "to_v_lora": "to_v", "to_out_lora": "to_out.0"}
_CLIP_PROCESSOR = {"to_q_lora": "q_proj", "to_k_lora": "k_proj", "to_v_lora": "v_proj", "to_out_lora": "out_proj"}
_RESNET_SGM = {"conv1": "in_layers.2", "conv2": "out_layers.3", "time_emb_proj": "emb_layers.1",
               "conv_shortcut": "skip_connection"}


def read_safetensors(path) -> tuple:
    """({key: float32 array}, metadata dict) of a safetensors file; pickle files are refused."""
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise LoadError(f"refusing the pickle file {path}: msdiff loads safetensors only, because unpickling can "
                        f"run arbitrary code. Convert it once where you trust it: safetensors.torch.save_file("
                        f"torch.load(path, weights_only=True), '{path.stem}.safetensors')")
    if not path.is_file():
        raise CheckpointNotFoundError(f"no such file: {path}")
    with open(path, "rb") as f:
        magic = f.read(2)
    try:
        with _open(path) as handle:
            metadata = handle.metadata() or {}
    except LoadError:
        if magic == b"PK" or (magic[:1] == b"\x80" and magic[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")):
            raise LoadError(f"refusing {path}: it is a pickle (torch.save) file, not safetensors; msdiff loads "
                            f"safetensors only (unpickling can run arbitrary code)") from None
        raise
    tensors = {}
    with open(path, "rb") as f:
        for key, (shape, st_dtype, span) in _header(path).items():
            out = np.empty(shape, np.float32)
            _read_into(f, path, key, st_dtype, span, out)
            tensors[key] = out
    return tensors, metadata


_TARGET_TYPES = (Linear, Conv2d, LoRALinear, LoRAConv2d)


def lora_targets(net: nn.Cell) -> dict:
    """module path -> Linear / Conv2d cell (or its LoRA wrapper) of every layer a LoRA may target."""
    return {name: cell for name, cell in net.cells_and_names() if type(cell) in _TARGET_TYPES}


def sgm_names(unet) -> dict:
    """diffusers module path -> the original LDM / SGM path (`input_blocks.4.1.proj_in`) of UNet layers."""
    c = unet.config
    n = len(c.down_block_types)
    layers = per_block(c.layers_per_block, n)
    out = {"conv_in": "input_blocks.0.0", "time_embedding.linear_1": "time_embed.0",
           "time_embedding.linear_2": "time_embed.2", "add_embedding.linear_1": "label_emb.0.0",
           "add_embedding.linear_2": "label_emb.0.2", "conv_out": "out.2"}
    prefixes = {"mid_block.resnets.0": ("middle_block.0", True), "mid_block.attentions.0": ("middle_block.1", False),
                "mid_block.resnets.1": ("middle_block.2", True)}
    index = 1
    for b in range(n):
        for j in range(layers[b]):
            prefixes[f"down_blocks.{b}.resnets.{j}"] = (f"input_blocks.{index + j}.0", True)
            prefixes[f"down_blocks.{b}.attentions.{j}"] = (f"input_blocks.{index + j}.1", False)
        index += layers[b]
        if b < n - 1:
            out[f"down_blocks.{b}.downsamplers.0.conv"] = f"input_blocks.{index}.0.op"
            index += 1
    index = 0
    for b, kind in enumerate(c.up_block_types):
        count = layers[n - 1 - b] + 1
        for j in range(count):
            prefixes[f"up_blocks.{b}.resnets.{j}"] = (f"output_blocks.{index + j}.0", True)
            prefixes[f"up_blocks.{b}.attentions.{j}"] = (f"output_blocks.{index + j}.1", False)
        index += count
        if b < n - 1:
            inner = 2 if "CrossAttn" in kind else 1
            out[f"up_blocks.{b}.upsamplers.0.conv"] = f"output_blocks.{index - 1}.{inner}.conv"
    for path in lora_targets(unet):
        for prefix, (sgm, resnet) in prefixes.items():
            if path.startswith(prefix + "."):
                rest = path[len(prefix) + 1:]
                out[path] = f"{sgm}.{_RESNET_SGM.get(rest, rest) if resnet else rest}"
    return out


def _flat_table(net, component: str) -> dict:
    """kohya flat name (`down_blocks_0_attentions_0_proj_in`) -> module path; SGM names too for a UNet."""
    table = {}
    names = {p: [p] for p in lora_targets(net)}
    if component == "unet":
        for path, sgm in sgm_names(net).items():
            if path in names:
                names[path].append(sgm)
    for path, aliases in names.items():
        for alias in aliases:
            flat = alias.replace(".", "_")
            if table.get(flat, path) != path:
                raise LoadError(f"LoRA key mapping: {flat!r} names both {table[flat]!r} and {path!r}")
            table[flat] = path
    return table


def _unsupported(keys) -> None:
    for key in keys:
        for marker, what in _UNSUPPORTED.items():
            if marker in key:
                raise LoadError(f"LoRA key {key!r}: {what} weights are not supported by msdiff")


def _split_kohya(tensors: dict, nets: dict) -> tuple:
    """kohya keys -> ({component: {module: {down, up, alpha}}}, unmatched keys)."""
    tables, found, unmatched = {}, {}, []
    for key, value in tensors.items():
        prefix = next(p for p in sorted(_KOHYA, key=len, reverse=True) if key.startswith(p))
        component = _KOHYA[prefix]
        name, _, part = key[len(prefix):].partition(".")
        if nets.get(component) is None:
            unmatched.append(key)
            continue
        if component not in tables:
            tables[component] = _flat_table(nets[component], component)
        module = tables[component].get(name)
        role = {"lora_down.weight": "down", "lora_up.weight": "up", "alpha": "alpha"}.get(part)
        if module is None or role is None:
            unmatched.append(key)
            continue
        found.setdefault(component, {}).setdefault(module, {})[role] = value
    return found, unmatched


_DIFFUSERS_PART = re.compile(r"(?P<module>.+?)\.(?:(?P<peft>lora_[AB])\.weight|lora\.(?P<old>down|up)\.weight|"
                             r"lora_linear_layer\.(?P<te>down|up)\.weight|(?P<alpha>alpha))$")


def _diffusers_module(component: str, module: str) -> str:
    """Old diffusers processor names (`attn1.processor.to_q_lora`) -> module paths."""
    parent, sep, last = module.rpartition(".")
    if last in _PROCESSOR:
        mapping = _PROCESSOR if component == "unet" else _CLIP_PROCESSOR
        parent = parent[:-len(".processor")] if parent.endswith(".processor") else parent
        return f"{parent}{sep}{mapping[last]}"
    return module


def _split_diffusers(tensors: dict, nets: dict) -> tuple:
    """diffusers / PEFT keys -> ({component: {module: {down, up, alpha}}}, unmatched keys)."""
    found, unmatched = {}, []
    targets = {c: lora_targets(n) for c, n in nets.items() if n is not None}
    for key, value in tensors.items():
        component, _, rest = key.partition(".")
        if component not in NETS:
            component, rest = "unet", key
        m = _DIFFUSERS_PART.fullmatch(rest)
        if m is None or component not in targets:
            unmatched.append(key)
            continue
        old = m.group("old") or m.group("te")
        if m.group("alpha"):
            role = "alpha"
            module = m.group("module")
        else:
            role = {"lora_A": "down", "lora_B": "up"}.get(m.group("peft"), old)
            module = m.group("module")
        module = _diffusers_module(component, module)
        if module not in targets[component]:
            unmatched.append(key)
            continue
        found.setdefault(component, {}).setdefault(module, {})[role] = value
    return found, unmatched


def _component_metadata(metadata: dict, component: str):
    """The LoraConfig dict diffusers saved for one net (`lora_adapter_metadata`, keys `unet.r`, ...), or None."""
    raw = metadata.get("lora_adapter_metadata")
    if not raw:
        return None
    config = json.loads(raw)
    own = {k[len(component) + 1:]: v for k, v in config.items() if k.startswith(component + ".")}
    return own or None


def _pattern_value(patterns: dict, module: str, default):
    """PEFT's rank_pattern / alpha_pattern lookup: the first key matching the end of the module path."""
    for key, value in (patterns or {}).items():
        if re.fullmatch(rf"(.*\.)?{key}", module):
            return value
    return default


def _scales(modules: dict, config) -> dict:
    """module -> alpha / rank (alpha / sqrt(rank) with rslora), as diffusers 0.35 configures PEFT."""
    ranks = {m: e["down"].shape[0] for m, e in modules.items()}
    if config is not None:
        if config.get("use_dora"):
            raise LoadError("LoRA metadata: use_dora (DoRA) is not supported by msdiff")
        alpha = {m: _pattern_value(config.get("alpha_pattern"), m, config.get("lora_alpha", config.get("r")))
                 for m in modules}
        rs = bool(config.get("use_rslora"))
        return {m: alpha[m] / (np.sqrt(ranks[m]) if rs else ranks[m]) for m in modules}
    alphas = {m: float(np.asarray(e["alpha"]).reshape(-1)[0]) for m, e in sorted(modules.items()) if "alpha" in e}
    pool = list(alphas.values()) or [ranks[m] for m in sorted(modules)]
    default = collections.Counter(pool).most_common()[0][0]
    return {m: alphas.get(m, default) / ranks[m] for m in modules}


def _check_shapes(component: str, module: str, entry: dict, layer, where: str) -> tuple:
    """(down, up) shaped for the layer (1x1 convs accept 2-d matrices and back); clear errors otherwise."""
    if "down" not in entry or "up" not in entry:
        missing = "up" if "down" in entry else "down"
        raise LoadError(f"{where}: LoRA for {component}.{module} has no {missing} matrix")
    down, up = entry["down"], entry["up"]
    if down.shape[0] != up.shape[1]:
        raise LoadError(f"{where}: LoRA for {component}.{module} has down rank {down.shape[0]} but up rank "
                        f"{up.shape[1]} (down {down.shape}, up {up.shape})")
    w = layer.weight.shape
    if len(w) == 2:
        if down.ndim == 4 and down.shape[2:] == (1, 1) and up.ndim == 4 and up.shape[2:] == (1, 1):
            down, up = down[:, :, 0, 0], up[:, :, 0, 0]
        want_down, want_up = (down.shape[0], w[1]), (w[0], up.shape[1])
    else:
        if down.ndim == 2 and w[2:] == (1, 1):
            down = down[:, :, None, None]
        if up.ndim == 2:
            up = up[:, :, None, None]
        want_down, want_up = (down.shape[0], *w[1:]), (w[0], up.shape[1], 1, 1)
    if tuple(down.shape) != want_down or tuple(up.shape) != want_up:
        raise LoadError(f"{where}: LoRA for {component}.{module} has down {down.shape} / up {up.shape}, but the "
                        f"layer's weight is {tuple(w)} (a LoRA for another model?)")
    return down, up


def parse_lora(path, nets: dict, ignore_unmatched: bool = False) -> dict:
    """{component: {module: (down, up, scale)}} of a LoRA file for the given nets ({"unet": net, ...})."""
    tensors, metadata = read_safetensors(path)
    if not tensors:
        raise LoadError(f"{path}: the LoRA file holds no tensors")
    _unsupported(tensors)
    if all(k.startswith(tuple(_KOHYA)) for k in tensors):
        found, unmatched = _split_kohya(tensors, nets)
        metadata = {}
    else:
        found, unmatched = _split_diffusers(tensors, nets)
    if unmatched and not ignore_unmatched:
        more = f" ... ({len(unmatched) - 5} more)" if len(unmatched) > 5 else ""
        raise LoadError(f"{path}: {len(unmatched)} LoRA key(s) match no layer of the loaded nets: "
                        f"{', '.join(sorted(unmatched)[:5])}{more} (a LoRA for another model? pass "
                        f"ignore_unmatched=True to skip them)")
    out = {}
    for component, modules in found.items():
        layers = lora_targets(nets[component])
        shaped = {m: _check_shapes(component, m, e, layers[m], str(path)) for m, e in modules.items()}
        scales = _scales({m: dict(e, down=shaped[m][0]) for m, e in modules.items()},
                         _component_metadata(metadata, component))
        out[component] = {m: (d, u, float(scales[m])) for m, (d, u) in shaped.items()}
    if not out:
        raise LoadError(f"{path}: no LoRA weights for the loaded nets")
    return out
