"""`msdiff.load`: a diffusers/transformers component folder -> an msdiff net with its weights."""
import dataclasses
import json
import os
import threading
import typing
from pathlib import Path
from typing import Optional, Sequence

import mindspore as ms
from mindspore import nn
from mindspore.nn.utils import no_init_parameters

from ..nets._precision import apply_fp32_blocks
from ..nets._config import check_blocks, check_values
from ..ops._backend import check_compute_dtype
from .paths import CheckpointNotFoundError, LoadError, confined, resolve_folder, trust_root
from .registry import net_entry
from .weights import find_weight_files, load_weights

_DTYPES = {"float32": ms.float32, "fp32": ms.float32, "float16": ms.float16, "fp16": ms.float16,
           "half": ms.float16, "bfloat16": ms.bfloat16, "bf16": ms.bfloat16}


def parse_dtype(dtype) -> "ms.dtype":
    """'float32' | 'float16' | 'bfloat16' (or a mindspore dtype) -> mindspore dtype, checked for the backend."""
    if isinstance(dtype, str):
        if dtype.lower() not in _DTYPES:
            raise ValueError(f"dtype must be one of float32, float16, bfloat16; got {dtype!r}")
        dtype = _DTYPES[dtype.lower()]
    if dtype not in (ms.float32, ms.float16, ms.bfloat16):
        raise ValueError(f"dtype must be float32, float16 or bfloat16; got {dtype}")
    check_compute_dtype(dtype)
    return dtype


def read_config(folder: "str | os.PathLike", name: str = "config.json", root: "str | os.PathLike" = None) -> dict:
    """Read a JSON config from a folder (CheckpointNotFoundError naming the folder if absent); given a `root`
    (see `paths.trust_root`), the file must resolve inside it."""
    path = Path(folder) / name
    if not path.is_file():
        hint = ""
        if name == "config.json" and (Path(folder) / "model_index.json").is_file():
            subfolders = sorted(p.parent.name for p in Path(folder).glob("*/config.json"))
            hint = (f" ({folder} is a pipeline folder: use msdiff.load_pipeline, or pass subfolder= one of "
                    f"{', '.join(subfolders)})")
        raise CheckpointNotFoundError(f"no {name} in {folder}; a diffusers/transformers component folder "
                                      f"holds {name} next to its *.safetensors weights{hint}")
    if root is not None:
        confined(path, root)
    try:
        config = json.loads(path.read_text())
    except ValueError as e:
        raise LoadError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(config, dict):
        raise LoadError(f"{path} does not hold a JSON object")
    return config


def class_name_of(config: dict, path: "str | os.PathLike" = "config.json") -> str:
    """The reference class a config describes: diffusers `_class_name`, else transformers `architectures[0]`."""
    name = config.get("_class_name")
    if name is None and config.get("architectures"):
        name = config["architectures"][0]
    if not isinstance(name, str):
        raise LoadError(f"{path} names no model class (neither `_class_name` nor `architectures`)")
    return name


# MindSpore 2.10's PyNative executor is not safe for concurrent calls: two threads calling one net gave other
# numbers than serial calls, with msdiff's nets and with a plain MindSpore Cell (tools/pynative_threads.py);
# graph mode and serial PyNative are exact. Loaded nets therefore take their PyNative calls one at a time.
_PYNATIVE_LOCK = threading.RLock()
_SERIALIZED = {}


class _PyNativeSerialized:
    """Mixin of loaded nets: in PyNative, one call at a time in this process (a lock around __call__)."""

    def __call__(self, *args, **kwargs):
        if ms.get_context("mode") != ms.PYNATIVE_MODE:
            return super().__call__(*args, **kwargs)
        with _PYNATIVE_LOCK:
            return super().__call__(*args, **kwargs)


def _pynative_serialized(cls: type) -> type:
    """`cls` with `_PyNativeSerialized` in front (same name and module), made once per class."""
    if issubclass(cls, _PyNativeSerialized):
        return cls
    if cls not in _SERIALIZED:
        names = {"__module__": cls.__module__, "__qualname__": cls.__qualname__, "__doc__": cls.__doc__}
        _SERIALIZED[cls] = type(cls.__name__, (_PyNativeSerialized, cls), names)
    return _SERIALIZED[cls]


def _read_net_config(entry, config_dict: dict, class_name: str, config_path: Path):
    """entry.config_from_diffusers(config_dict), each value first checked against the field types and ranges of
    the config class it returns (`nets._config.check_values`), the result's per-block values then checked against
    each other (`check_blocks`); LoadError naming the file otherwise."""
    try:
        config_cls = typing.get_type_hints(entry.config_from_diffusers).get("return")
    except (NameError, TypeError):  # an annotation that does not resolve: no class to check against
        config_cls = None
    try:
        if dataclasses.is_dataclass(config_cls):
            check_values(config_cls, config_dict, class_name)
        config = entry.config_from_diffusers(config_dict)
        return check_blocks(config, class_name) if dataclasses.is_dataclass(config) else config
    except ValueError as e:
        raise LoadError(f"{config_path}: {e}") from e


def load(path_or_repo_id: "str | os.PathLike", subfolder: Optional[str] = None, *, dtype="float32",
         variant: Optional[str] = None, fp32_blocks: Sequence[str] = ()) -> nn.Cell:
    """Build the msdiff net named by config.json and fill it, strictly, from the folder's safetensors.

    `path_or_repo_id`: a local folder, or a hub repo id already in the huggingface_hub cache (never
    downloaded). `dtype`: "float32" | "float16" | "bfloat16" (not on CPU); tensors are cast as they
    load. `variant`: e.g. "fp16" reads diffusion_pytorch_model.fp16.safetensors / model.fp16.safetensors.
    The net is built under `mindspore.nn.utils.no_init_parameters` (no random initialisation, no
    memory until a tensor arrives); every parameter then gets its data from the file, or the load fails.
    `fp32_blocks`: a precision plan, sub-cell names (e.g. "decoder.up_blocks.3") computed in float32 in a
    half-precision net (msdiff.nets._precision; msdiff.diagnose.precision_report suggests one).
    """
    compute_dtype = parse_dtype(dtype)
    base = resolve_folder(path_or_repo_id)
    folder, root = resolve_folder(base, subfolder), trust_root(base)
    config_path = confined(folder / "config.json", root)
    config_dict = read_config(folder)
    class_name = class_name_of(config_dict, config_path)
    try:
        entry = net_entry(class_name)
    except ValueError as e:
        raise LoadError(f"{config_path}: {e}") from e
    find_weight_files(folder, variant, root=root)
    config = _read_net_config(entry, config_dict, class_name, config_path)
    try:
        with no_init_parameters():
            net = entry.cls(config, dtype=compute_dtype)
    except (TypeError, ValueError, IndexError, KeyError, ZeroDivisionError, AttributeError) as e:
        raise LoadError(f"{config_path}: this config does not build a {class_name} "
                        f"({type(e).__name__}: {e})") from e
    load_weights(net, folder, entry.map_weights, variant=variant, root=root)
    if fp32_blocks:
        apply_fp32_blocks(net, fp32_blocks)
    net.set_train(False)
    net.__class__ = _pynative_serialized(type(net))
    return net
