"""Reading a diffusers/transformers config.json dict into a net's frozen config dataclass, strictly."""
from dataclasses import fields


def tuplify(value):
    """Lists (nested) -> tuples, so configs stay hashable and compare like the dataclass defaults."""
    return tuple(tuplify(v) for v in value) if isinstance(value, (list, tuple)) else value


def read_config(cls, d: dict, net: str, fixed: dict = None, ignored=()):
    """cls(**fields found in d). ValueError names an unknown key, or a value of a `fixed` key outside
    its supported values; `_*` keys and `ignored` keys (no effect on inference) are skipped."""
    fixed = fixed or {}
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
