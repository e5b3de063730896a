"""`msdiff.load_pipeline`: a diffusers pipeline folder (model_index.json) -> `Components`."""
import os
from dataclasses import dataclass, field
from typing import Any, Optional

from .loader import load, parse_dtype, read_config
from .paths import LoadError, check_plain_name, confined_folder, resolve_folder, trust_root
from .registry import NETS, TOKENIZERS, tokenizer_class

_FIELDS = ("unet", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler")
# returned as their preprocessor_config.json dict (a CLIPProcessor's image half; its tokenizer half is not read)
_PREPROCESSORS = ("CLIPImageProcessor", "CLIPFeatureExtractor", "DPTImageProcessor", "DPTFeatureExtractor",
                  "CLIPProcessor")


@dataclass(frozen=True)
class Components:
    """The parts of a pipeline folder; absent (or `null`) components are None."""

    unet: Any = None
    vae: Any = None
    text_encoder: Any = None
    text_encoder_2: Any = None
    tokenizer: Any = None
    tokenizer_2: Any = None
    scheduler: Optional[dict] = None
    extra: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    pipeline_class: Optional[str] = None
    name_or_path: Optional[str] = None


# diffusers' containers of several nets, saved as <name>/, <name>_1/, <name>_2/, ...: loaded as a list
_MULTI = {"MultiControlNetModel": "ControlNetModel", "MultiAdapter": "T2IAdapter"}


def _load_component(folder, name: str, library, class_name: str, dtype, variant, fp32_blocks=()):
    sub, root = folder / name, trust_root(folder)
    if class_name in _MULTI:
        if fp32_blocks:
            raise LoadError(f"{folder / 'model_index.json'}: fp32_blocks for {name!r} ({class_name}) are not supported")
        parts = [name] + [f"{name}_{i}" for i in range(1, 64) if (folder / f"{name}_{i}").is_dir()]
        nets = [load(folder, part, dtype=dtype, variant=variant) for part in parts]
        wrong = [p for p, n in zip(parts, nets) if type(n).__name__ != _MULTI[class_name]]
        if wrong:
            raise LoadError(f"{folder / 'model_index.json'}: {class_name} {name!r} holds {wrong}, which are not "
                            f"{_MULTI[class_name]} folders")
        return nets
    if class_name in NETS:
        return load(folder, name, dtype=dtype, variant=variant, fp32_blocks=fp32_blocks)
    if fp32_blocks:
        raise LoadError(f"{folder / 'model_index.json'}: fp32_blocks given for {name!r}, which is not a net")
    if class_name in TOKENIZERS:
        return tokenizer_class(class_name).from_pretrained(confined_folder(resolve_folder(folder, name), root))
    if class_name.endswith("Scheduler") and (sub / "scheduler_config.json").is_file():
        return _scheduler_config(sub, root)
    if class_name in _PREPROCESSORS and (sub / "preprocessor_config.json").is_file():
        return read_config(sub, "preprocessor_config.json", root=root)
    raise LoadError(f"{folder / 'model_index.json'}: component {name!r} has class {library}.{class_name}, "
                    f"which msdiff does not load; supported nets: {', '.join(sorted(NETS))}; tokenizers: "
                    f"{', '.join(sorted(TOKENIZERS))}; schedulers are returned as their config dict. "
                    f"Pass skip=({name!r},) to leave it out.")


def _scheduler_config(sub, root) -> dict:
    """scheduler_config.json, its values checked for the sampler msdiff builds from it (when it knows the class)."""
    from ..samplers.config import check_config

    config = read_config(sub, "scheduler_config.json", root=root)
    try:
        check_config(config)
    except ValueError as e:
        raise LoadError(f"{sub / 'scheduler_config.json'}: {e}") from e
    return config


def _component(index_path, name: str, value) -> "tuple | None":
    """(library, class name) of a model_index.json entry that names a component, None for a pipeline option;
    LoadError for a malformed component entry or a component name that is not a plain folder name."""
    is_pair = isinstance(value, (list, tuple)) and len(value) == 2
    if is_pair and all(v is None or isinstance(v, str) for v in value):
        check_plain_name(name, index_path, "component")
        return tuple(value)
    if name in _FIELDS or (is_pair and isinstance(value[0], str)):
        raise LoadError(f"{index_path}: component {name!r} = {value!r} is malformed; a component entry is "
                        f"[library, class name] (strings, or null for an absent component)")
    return None


def load_pipeline(path_or_repo_id: "str | os.PathLike", *, dtype="float32", variant: Optional[str] = None,
                  skip: tuple = ("safety_checker",), fp32_blocks: Optional[dict] = None) -> Components:
    """Load every component listed in model_index.json (nets via `load`, tokenizers, scheduler config).

    fp32_blocks: {component: [sub-cell names]} computed in fp32 in an fp16 pipeline (a precision plan, see
    msdiff.diagnose.precision_report); a component name that is not a net of the pipeline is an error."""
    parse_dtype(dtype)
    fp32_blocks = dict(fp32_blocks or {})
    folder = resolve_folder(path_or_repo_id)
    index = read_config(folder, "model_index.json", root=trust_root(folder))
    index_path = folder / "model_index.json"
    if not isinstance(index.get("_class_name"), (str, type(None))):
        raise LoadError(f"{index_path}: _class_name {index['_class_name']!r} must be a string (the pipeline class)")
    parts, extra, options = {}, {}, {}
    for name, value in index.items():
        if name.startswith("_"):
            continue
        component = _component(index_path, name, value)
        if component is None:
            options[name] = value
            continue
        library, class_name = component
        if class_name is None or name in skip:
            loaded = None
        else:
            loaded = _load_component(folder, name, library, class_name, dtype, variant, fp32_blocks.pop(name, ()))
        (parts if name in _FIELDS else extra)[name] = loaded
    if fp32_blocks:
        raise LoadError(f"{index_path}: fp32_blocks names {sorted(fp32_blocks)}, which are not nets of this pipeline")
    return Components(**parts, extra=extra, options=options, pipeline_class=index.get("_class_name"),
                      name_or_path=str(path_or_repo_id))
