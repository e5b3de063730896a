"""msdiff.io: diffusers/transformers folders (local or hub cache) -> msdiff nets, strictly, safetensors only."""
from .loader import class_name_of, load, parse_dtype, read_config
from .paths import CheckpointNotFoundError, LoadError, hub_cache_dir, resolve_folder
from .pipeline import Components, load_pipeline
from .registry import NETS, TOKENIZERS, net_entry, register_net, register_tokenizer, tokenizer_class
from .weights import add_variant, find_weight_files, load_weights

__all__ = ["load", "load_pipeline", "Components", "load_weights", "find_weight_files", "add_variant",
           "resolve_folder", "hub_cache_dir", "read_config", "class_name_of", "parse_dtype",
           "register_net", "register_tokenizer", "net_entry", "tokenizer_class", "NETS", "TOKENIZERS",
           "LoadError", "CheckpointNotFoundError"]
