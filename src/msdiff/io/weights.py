"""Strict safetensors weight loading: find the files, check every key and shape, then assign.

The safetensors library validates each file and its header. Tensor bytes are then read one
tensor at a time, with plain file reads, straight into a new buffer of the parameter's dtype
(through a 4 MB chunk when a cast is needed), which `Parameter.set_data` adopts without a copy.
No memory map of the file is used (its touched pages would count as a second resident copy), so
peak memory is the net plus 8 MB (plus one float32 tensor for bfloat16 parameters). Every float tensor is
checked to be finite and within its parameter dtype's range as it arrives. Parameters may be uninitialised
(`mindspore.nn.utils.no_init_parameters`): each gets its data here, and a parameter left
without data is an error.
"""
import json
import mmap
import os
import struct
from pathlib import Path
from typing import Callable, Iterable, Optional

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn

from .paths import CheckpointNotFoundError, LoadError, confined, is_plain_name, trust_root

WEIGHT_NAMES = ("diffusion_pytorch_model", "model")
PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl", ".pickle")
_SHOW = 5
# safetensors dtype -> numpy dtype of its bytes (BF16 read as raw uint16 bits, widened to float32)
_ST_NUMPY = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16, "I64": np.int64,
             "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
_CAST_CHUNK = 1 << 22  # bytes read per step when a tensor is cast on its way into a parameter
_OWN_MAPPING_BYTES = 1 << 22  # parameter buffers from this size up get their own anonymous mmap (see _empty)
_NUMPY = {ms.float32: np.float32, ms.float16: np.float16, ms.float64: np.float64, ms.int64: np.int64,
          ms.int32: np.int32, ms.int16: np.int16, ms.int8: np.int8, ms.uint8: np.uint8, ms.bool_: np.bool_}


def add_variant(filename: str, variant: Optional[str]) -> str:
    """'model.safetensors', 'fp16' -> 'model.fp16.safetensors' (variant before the last suffix)."""
    if not variant:
        return filename
    stem, suffix = filename.rsplit(".", 1)
    return f"{stem}.{variant}.{suffix}"


def _refuse_pickles(folder: Path, pickles: list) -> LoadError:
    names = ", ".join(p.name for p in pickles)
    return LoadError(
        f"refusing the pickle checkpoint(s) {names} in {folder}: msdiff loads safetensors only, because "
        f"unpickling a file can run arbitrary code. Convert once, in an environment you trust: "
        f"`Model.from_pretrained(folder).save_pretrained(folder, safe_serialization=True)` with "
        f"diffusers or transformers, or `safetensors.torch.save_file(torch.load(path, "
        f"weights_only=True), 'diffusion_pytorch_model.safetensors')`.")


def _shards(index: Path, root: Path) -> list:
    """The shard files a `*.safetensors.index.json` names: plain .safetensors names in its folder, on disk."""
    try:
        weight_map = json.loads(confined(index, root).read_text())["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise LoadError(f"cannot read the shard index {index}: {e!r}") from e
    if not isinstance(weight_map, dict) or not weight_map:
        raise LoadError(f"{index}: weight_map must be a non-empty object (tensor name -> shard file name); "
                        f"got {type(weight_map).__name__} {str(weight_map)[:80]!r}")
    for key, name in weight_map.items():
        if not (is_plain_name(name) and name.endswith(".safetensors")):
            raise LoadError(f"{index}: weight_map entry {key!r}: {name!r} is not a .safetensors file name in "
                            f"{index.parent} (plain names only: no '/', '\\', '..' or absolute path)")
    files = [index.parent / name for name in sorted(set(weight_map.values()))]
    absent = [f.name for f in files if not f.is_file()]
    if absent:
        raise CheckpointNotFoundError(f"{index} lists {len(absent)} shard(s) missing on disk: "
                                      f"{', '.join(absent[:_SHOW])}")
    return [confined(f, root) for f in files]


def find_weight_files(folder: "str | os.PathLike", variant: Optional[str] = None, *,
                      root: "str | os.PathLike" = None) -> tuple:
    """Folder -> (source, files): the single .safetensors file, or the shard index and its shards; each must
    resolve inside `root` (default: the folder, or its hub cache repo; see `paths.trust_root`)."""
    folder = Path(folder)
    root = trust_root(folder) if root is None else Path(root)
    for base in WEIGHT_NAMES:
        single = folder / add_variant(f"{base}.safetensors", variant)
        if single.is_file():
            return single, [confined(single, root)]
        indexes = [folder / add_variant(f"{base}.safetensors.index.json", variant)]
        if variant:
            indexes.append(folder / f"{base}.{variant}.safetensors.index.json")
        for index in indexes:
            if index.is_file():
                return index, _shards(index, root)
    present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    safetensors = [n for n in present if n.endswith(".safetensors") or n.endswith(".index.json")]
    if safetensors:
        wanted = f"variant {variant!r}" if variant else "no variant"
        raise CheckpointNotFoundError(
            f"no weights for {wanted} in {folder} (expected {add_variant(WEIGHT_NAMES[0] + '.safetensors', variant)}"
            f" or {add_variant(WEIGHT_NAMES[1] + '.safetensors', variant)}, or a shard index); "
            f"present: {', '.join(safetensors)}")
    pickles = [folder / n for n in present if n.endswith(PICKLE_SUFFIXES)]
    if pickles:
        raise _refuse_pickles(folder, pickles)
    raise CheckpointNotFoundError(f"no *.safetensors weights in {folder}")


def _open(path: Path):
    from safetensors import safe_open

    try:
        return safe_open(str(path), framework="np")
    except Exception as e:
        raise LoadError(f"cannot read safetensors file {path} (truncated or corrupt?): {e}. "
                        f"Download or save it again.") from e


def _header(path: Path) -> dict:
    """key -> (shape, safetensors dtype, (first, end) byte offsets in the file), without reading tensor data."""
    with _open(path):
        pass
    with open(path, "rb") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        entries = json.loads(f.read(size))
    start = 8 + size
    return {key: (tuple(e["shape"]), e["dtype"], (start + e["data_offsets"][0], start + e["data_offsets"][1]))
            for key, e in entries.items() if key != "__metadata__"}


def _read_into(f, path: Path, key: str, st_dtype: str, span: tuple, out: np.ndarray) -> None:
    """Read one tensor's bytes into `out`, casting from the file's dtype in small chunks (BF16 widened exactly)."""
    source = np.dtype(_ST_NUMPY[st_dtype])
    flat = out.reshape(-1)
    if flat.size * source.itemsize != span[1] - span[0]:
        raise LoadError(f"{path}: the header gives tensor {key!r} {span[1] - span[0]} bytes for {out.shape} "
                        f"{st_dtype} (corrupt file?)")
    f.seek(span[0])
    if source == out.dtype:
        _fill(f, path, key, flat)
        _check_values(flat, path, key, out.dtype)
        return
    step = max(1, _CAST_CHUNK // source.itemsize)
    buffer = np.empty(min(step, flat.size), source)
    for first in range(0, flat.size, step):
        part = buffer[:min(step, flat.size - first)]
        _fill(f, path, key, part)
        if st_dtype == "BF16":
            part = (part.astype(np.uint32) << 16).view(np.float32)
        _check_values(part, path, key, out.dtype)
        np.copyto(flat[first:first + part.size], part, casting="unsafe")


def _peak(values: np.ndarray) -> float:
    """max |values| of a float array, NaN if any is NaN, by the sign-cleared bit patterns (float order for
    non-negative IEEE floats; numpy's float16 min/max runs at ~30 MB/s), in 4 MB steps."""
    bits = values.reshape(-1).view(f"u{values.itemsize}")
    sign_cleared = bits.dtype.type(np.iinfo(bits.dtype).max >> 1)
    step = _CAST_CHUNK // values.itemsize
    buffer = np.empty(min(step, bits.size), bits.dtype)
    peak = 0
    for first in range(0, bits.size, step):
        part = buffer[:min(step, bits.size - first)]
        np.bitwise_and(bits[first:first + part.size], sign_cleared, out=part)
        peak = max(peak, int(part.max()))
    return float(np.array(peak, bits.dtype).view(values.dtype))


def _check_values(values: np.ndarray, path: Path, key: str, target: np.dtype) -> None:
    """LoadError if float `values` hold NaN / inf, or magnitudes beyond the finite range of dtype `target`."""
    if values.dtype.kind != "f" or values.size == 0:
        return
    peak = _peak(values)
    if not np.isfinite(peak):
        raise LoadError(f"{path}: tensor {key!r} holds NaN or infinite values; the checkpoint is damaged "
                        f"(msdiff loads finite weights only)")
    limit = float(np.finfo(target).max) if np.dtype(target).kind == "f" else np.inf
    if peak > limit:
        raise LoadError(f"{path}: tensor {key!r} has values up to {peak:.6g} in magnitude, beyond the "
                        f"{np.dtype(target).name} range (+-{limit:.6g}); load it in float32")


def _fill(f, path: Path, key: str, flat: np.ndarray) -> None:
    if f.readinto(flat.view(np.uint8)) != flat.nbytes:
        raise LoadError(f"cannot read tensor {key!r} from {path}: the file is shorter than its header says "
                        f"(truncated or corrupt?). Download or save it again.")


def _is_float(st_dtype: str) -> bool:
    return st_dtype.startswith(("F", "BF"))


def _listing(title: str, items: list) -> str:
    more = f", ... ({len(items) - _SHOW} more)" if len(items) > _SHOW else ""
    return f"\n  {len(items)} {title}: " + "; ".join(items[:_SHOW]) + more


def _plan(cell: nn.Cell, files: list, map_weights: Callable, source: Path) -> dict:
    """Check keys, shapes and dtype kinds of all files against the cell; -> file -> [(key, param)]."""
    params = dict(cell.parameters_and_names())
    plan, seen = {}, {}
    unexpected, shapes, kinds, duplicate = [], [], [], []
    for path in files:
        plan[path] = []
        for key, (shape, st_dtype, span) in _header(path).items():
            name = map_weights(key)
            if name is None:
                continue
            where = f" [{path.name}]" if len(files) > 1 else ""
            if name not in params:
                unexpected.append(f"{key}{'' if name == key else f' (-> {name})'}{where}")
            elif name in seen:
                duplicate.append(f"{key} and {seen[name]} -> {name}")
            else:
                seen[name] = key
                param = params[name]
                if shape != tuple(param.shape):
                    shapes.append(f"{key}{where}: checkpoint {shape} vs net {tuple(param.shape)}")
                elif st_dtype not in _ST_NUMPY:
                    kinds.append(f"{key}{where}: checkpoint dtype {st_dtype} is not supported by msdiff")
                elif _is_float(st_dtype) != (param.dtype in (ms.float16, ms.float32, ms.float64, ms.bfloat16)):
                    kinds.append(f"{key}{where}: checkpoint {st_dtype} vs net {param.dtype}")
                else:
                    plan[path].append((key, param, st_dtype, span))
    missing = [name for name in params if name not in seen]
    if missing or unexpected or shapes or kinds or duplicate:
        message = f"{source} does not match {type(cell).__name__} (strict load)"
        for title, items in (("missing tensors (net parameters with no checkpoint key)", missing),
                             ("unexpected tensors (checkpoint keys the net does not have)", unexpected),
                             ("tensors with the wrong shape", shapes),
                             ("tensors with the wrong dtype kind", kinds),
                             ("checkpoint keys mapped to the same parameter", duplicate)):
            if items:
                message += _listing(title, items)
        raise LoadError(message)
    return plan


def _empty(shape: tuple, dtype) -> np.ndarray:
    """np.empty, except that large buffers come from their own anonymous mmap, without huge-page advice.

    numpy advises huge pages for large arrays; on the machines measured (benchmarks/load_bench.py)
    first-touch faults of huge pages cost about 4x the kernel time of 4 KB pages, which made
    them most of the load time of an SD-1.5 UNet. The array keeps its mapping alive.
    """
    nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    if nbytes < _OWN_MAPPING_BYTES:
        return np.empty(shape, dtype)
    return np.frombuffer(mmap.mmap(-1, nbytes), dtype).reshape(shape)


def _load_tensor(f, path: Path, key: str, st_dtype: str, span: tuple, param) -> Tensor:
    """One checkpoint tensor, read straight into a new buffer of the parameter's dtype, as a Tensor sharing it."""
    if param.dtype == ms.bfloat16:
        array = _empty(param.shape, np.float32)
        _read_into(f, path, key, st_dtype, span, array)
        return Tensor.from_numpy(array).astype(ms.bfloat16)
    array = _empty(param.shape, _NUMPY[param.dtype])
    _read_into(f, path, key, st_dtype, span, array)
    return Tensor.from_numpy(array)


def load_weights(cell: nn.Cell, folder_or_files: "str | os.PathLike | Iterable", map_weights: Callable = None,
                 *, variant: Optional[str] = None, root: "str | os.PathLike" = None) -> nn.Cell:
    """Fill every parameter of `cell` from safetensors, strictly; each tensor cast to its parameter's dtype.

    `folder_or_files` is a folder (weights found as diffusers/transformers name them, honouring
    `variant`), one .safetensors file, or a list of them. `map_weights(key)` maps a checkpoint key to
    a parameter name of `cell` (default: identity); returning None drops a key that is not a weight.
    A folder's files must resolve inside `root` (default: the folder, or its hub cache repo). A tensor
    holding NaN or inf, or with values beyond the range of its parameter's dtype (float16: 65504), is an
    error naming it and its file.
    """
    map_weights = map_weights or (lambda key: key)
    if isinstance(folder_or_files, (str, os.PathLike)) and Path(folder_or_files).is_dir():
        source, files = find_weight_files(folder_or_files, variant, root=root)
    else:
        files = [Path(folder_or_files)] if isinstance(folder_or_files, (str, os.PathLike)) \
            else [Path(f) for f in folder_or_files]
        absent = [str(f) for f in files if not f.is_file()]
        if absent:
            raise CheckpointNotFoundError(f"weight file(s) not found: {', '.join(absent)}")
        bad = [str(f) for f in files if f.suffix != ".safetensors"]
        if bad:
            pickles = [f for f in files if f.name.endswith(PICKLE_SUFFIXES)]
            if pickles:
                raise _refuse_pickles(pickles[0].parent, pickles)
            raise LoadError(f"not .safetensors files: {', '.join(bad)}")
        source = files[0] if len(files) == 1 else files[0].parent
    plan = _plan(cell, files, map_weights, source)
    for path, entries in plan.items():
        with open(path, "rb") as f:
            for key, param, st_dtype, span in entries:
                param.set_data(_load_tensor(f, path, key, st_dtype, span, param))
                param.init_mode = None
    unfilled = [name for name, param in cell.parameters_and_names() if param.has_init]
    if unfilled:
        raise LoadError(f"{source}: parameters left without data after loading" + _listing("unfilled", unfilled))
    return cell
