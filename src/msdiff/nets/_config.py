"""Reading a diffusers/transformers config.json dict into a net's frozen config dataclass, strictly."""
import math
import re
import types
import typing
from dataclasses import fields, is_dataclass

# Range rules by key name, applied to every number of a value (lists included); types come from the
# config class's annotations. A key matching none of the patterns needs only finite numbers.
_POSITIVE = re.compile(r"channels|_dim$|_sizes?$|groups|heads|layers|_per_block|embeds|embeddings$|blocks$|depths|"
                       r"^d_(ff|kv|model)$|kernel$|scale_factor$|scaling_factor$|reassemble_factors|width_factor$|"
                       r"eps$|epsilon$|scale$|buckets$|distance$|featmap_shape|latents_std|timesteps$")
_NON_NEGATIVE = re.compile(r"padding$|token_id$|out_indices$|offset$")


def tuplify(value):
    """Lists (nested) -> tuples, so configs stay hashable and compare like the dataclass defaults."""
    return tuple(tuplify(v) for v in value) if isinstance(value, (list, tuple)) else value


def read_config(cls, d: dict, net: str, fixed: dict = None, ignored=()):
    """cls(**fields found in d). ValueError names an unknown key, or a value of a `fixed` key outside
    its supported values; `_*` keys and `ignored` keys (no effect on inference) are skipped."""
    fixed = fixed or {}
    check_values(cls, {k: v for k, v in d.items() if k not in fixed}, net)
    names = {f.name for f in fields(cls)}
    kwargs = {}
    for key, value in d.items():
        if key.startswith("_") or key in ignored:
            continue
        value = tuplify(value)
        if key in fixed and value not in fixed[key]:
            raise ValueError(f"{net}: config {key}={value!r} is not supported by msdiff (supported: {fixed[key]})")
        if key in names:
            kwargs[key] = value
        elif key not in fixed:
            raise ValueError(f"{net}: unknown config key {key!r}={value!r}")
    return cls(**kwargs)


_UNIONS = (typing.Union, types.UnionType)


def _numbers_ok(value, key: str) -> bool:
    """Every number in `value` (nested tuples included) is finite and in the range `key`'s name implies."""
    if isinstance(value, tuple):
        return all(_numbers_ok(v, key) for v in value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return True
    if not math.isfinite(value):
        return False
    return value > 0 if _POSITIVE.search(key) else value >= 0 if _NON_NEGATIVE.search(key) else True


def _matches(value, hint) -> bool:
    """`value` (lists already tuples) has the annotated type `hint` (bool is not an int, an int is a float)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is typing.Any or isinstance(hint, typing.TypeVar):
        return True
    if hint is type(None):
        return value is None
    if origin in _UNIONS:
        return any(_matches(value, a) for a in args)
    if hint is bool:
        return value is None or isinstance(value, bool)  # diffusers reads a null flag as false (SD-XL configs)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is tuple or origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(v, args[0]) for v in value)
        return not args or (len(args) == len(value) and all(map(_matches, value, args)))
    if is_dataclass(hint):
        return isinstance(value, dict)
    return isinstance(value, hint) if isinstance(hint, type) else True


def _range_words(key: str) -> str:
    return "positive " if _POSITIVE.search(key) else "non-negative " if _NON_NEGATIVE.search(key) else ""


def _describe(hint, key: str) -> str:
    """What `_matches` plus the range rule of `key` accept, in words."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in _UNIONS:
        return " or ".join(_describe(a, key) for a in args)
    if hint is type(None):
        return "null"
    if hint is bool:
        return "true / false (or null)"
    if hint in (int, float):
        return f"a {_range_words(key)}{'integer' if hint is int else 'finite number'}"
    if hint is tuple or origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list whose entries are each {_describe(args[0], key)}"
        if args:
            return f"a list of {len(args)} values"
        return f"a list of {_range_words(key)}numbers" if _range_words(key) else "a list"
    return getattr(hint, "__name__", str(hint))


def check_values(cls, d: dict, net: str) -> None:
    """ValueError naming the first key of `d` that is a field of dataclass `cls` but whose value has the wrong
    type (per the field's annotation; null only where the default is null) or range (per the key's name)."""
    hints = typing.get_type_hints(cls)
    defaults = {f.name: f.default for f in fields(cls)}
    for key, raw in d.items():
        if key not in hints:
            continue
        value, hint = tuplify(raw), hints[key]
        if value is None and defaults[key] is None:
            continue
        if is_dataclass(hint) and isinstance(value, dict):
            check_values(hint, value, f"{net} {key}")
        elif not (_matches(value, hint) and _numbers_ok(value, key)):
            shown = repr(raw) if len(repr(raw)) <= 80 else repr(raw)[:77] + "..."
            raise ValueError(f"{net}: config {key}={shown} is not allowed; {key} must be {_describe(hint, key)}")


_PER_BLOCK = ("layers_per_block", "attention_head_dim", "num_attention_heads", "cross_attention_dim",
              "transformer_layers_per_block", "only_cross_attention")


def check_blocks(cfg, net: str):
    """`cfg` if its per-block values agree with down_block_types and norm_num_groups divides every
    block_out_channels entry (for configs with those fields); ValueError naming the keys otherwise."""
    values = {f.name: getattr(cfg, f.name) for f in fields(cfg)}
    blocks, channels = values.get("down_block_types"), values.get("block_out_channels")
    if isinstance(blocks, tuple) and isinstance(channels, tuple):
        lists = {k: values[k] for k in ("block_out_channels", "up_block_types") + _PER_BLOCK
                 if isinstance(values.get(k), tuple)}
        for key, value in lists.items():
            if len(value) != len(blocks):
                raise ValueError(f"{net}: config {key} has {len(value)} entries, down_block_types has "
                                 f"{len(blocks)}; they must match")
    groups = values.get("norm_num_groups")
    if isinstance(groups, int) and isinstance(channels, tuple) and any(c % groups for c in channels):
        raise ValueError(f"{net}: config norm_num_groups={groups} must divide every block_out_channels entry "
                         f"{channels}")
    return cfg



class PatchTransformerDims:
    """The derived widths of a patch transformer's config (DiT, PixArt, SD3): mix into its frozen dataclass, which
    has num_attention_heads, attention_head_dim, in_channels and out_channels."""

    @property
    def inner_dim(self) -> int:
        """Token width: heads x head dim."""
        return self.num_attention_heads * self.attention_head_dim

    @property
    def output_channels(self) -> int:
        """Output channels (in_channels when out_channels is None, as diffusers; 2x for learned-sigma checkpoints)."""
        return self.in_channels if self.out_channels is None else self.out_channels


def read_patch_transformer_config(cls, d: dict, net: str, norm_type: str, fixed: dict, ignored):
    """read_config for the patch transformers (DiT, PixArt) that diffusers also loads from a legacy
    `Transformer2DModel` config with the given norm_type; ValueError for another norm type, a missing
    patch/size value, or a width the 2D sin-cos position table cannot split."""
    if d.get("_class_name") == "Transformer2DModel" and d.get("norm_type", "layer_norm") != norm_type:
        raise ValueError(f"Transformer2DModel: msdiff reads this class as {net} only with norm_type "
                         f"{norm_type!r}; got norm_type {d.get('norm_type')!r}")
    for key in ("patch_size", "num_embeds_ada_norm", "in_channels", "sample_size"):
        if key in d and d[key] is None:
            raise ValueError(f"{net}: config {key}=None is not supported (it needs a value)")
    cfg = read_config(cls, d, net, fixed, ignored)
    if cfg.inner_dim % 4:
        raise ValueError(f"{net}: heads x head dim = {cfg.inner_dim} must be a multiple of 4 "
                         f"(2D sin-cos position embedding)")
    return cfg

# Generic keys of a transformers config.json (PretrainedConfig) that do not change inference.
TRANSFORMERS_QUIET_KEYS = frozenset("""
    architectures attention_dropout dropout initializer_factor initializer_range bos_token_id
    pad_token_id sep_token_id decoder_start_token_id torch_dtype dtype transformers_version
    model_type output_attentions output_hidden_states return_dict torchscript use_bfloat16
    tie_word_embeddings is_encoder_decoder is_decoder add_cross_attention cross_attention_hidden_size
    tie_encoder_decoder chunk_size_feed_forward id2label label2id finetuning_task problem_type
    tokenizer_class prefix task_specific_params tf_legacy_loss use_cache gradient_checkpointing
    bad_words_ids begin_suppress_tokens suppress_tokens diversity_penalty do_sample early_stopping
    encoder_no_repeat_ngram_size exponential_decay_length_penalty forced_bos_token_id
    forced_eos_token_id length_penalty max_length min_length no_repeat_ngram_size num_beam_groups
    num_beams num_return_sequences output_scores remove_invalid_values repetition_penalty
    return_dict_in_generate temperature top_k top_p typical_p
""".split())
