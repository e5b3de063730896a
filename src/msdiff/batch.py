"""Batch generation over a prompts file: one PNG per prompt, deterministic names, resumable, sharded across ranks.

A prompts file holds one entry per non-blank line: a plain prompt, or a JSON object (a line starting with "{")
with "prompt" and any of the per-prompt keys below. Entry i (0-based) without its own "seed" gets seed + i.
Entry i is written to `{i:05d}-{prompt slug}-{digest}.png` ("name" in the JSON overrides it), where the digest
hashes everything the image depends on (the entry and the shared settings), so a rerun skips exactly the
entries whose image exists with the same settings. Images are written to a temporary name and renamed, so a
killed run loses only the image it was drawing. Under msrun rank r of N takes entries r, r + N, r + 2N, ...
(`msdiff.distributed.shard`): no entry is drawn twice or missed, and a rerun completes what a dead rank left.
"""
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Sequence

from . import distributed
from .distributed import World, shard, write_atomically

KEYS = ("prompt", "negative_prompt", "seed", "size", "steps", "guidance", "class_label", "name")
_INTS = ("seed", "steps", "class_label")


@dataclass(frozen=True)
class Prompt:
    """One entry of a prompts file: its 0-based index, output file name and generation settings."""

    index: int
    name: str
    fields: dict


@dataclass
class BatchResult:
    """What one rank did: the size of its share, the images it wrote, how many it found already done."""

    share: int
    written: List[Path] = field(default_factory=list)
    skipped: int = 0


def _size(value, where: str) -> list:
    """[w, h] from "WxH" or a two-integer list."""
    if isinstance(value, str):
        parts = value.lower().split("x")
    elif isinstance(value, (list, tuple)):
        parts = list(value)
    else:
        parts = []
    try:
        w, h = (int(v) for v in parts)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: size must be \"WxH\" or [w, h], got {value!r}") from None
    return [w, h]


def _check_fields(fields: dict, keys: Sequence[str], where: str) -> dict:
    unknown = sorted(set(fields) - set(keys))
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(keys)})")
    for key in _INTS:
        if key in fields and (not isinstance(fields[key], int) or isinstance(fields[key], bool)):
            raise ValueError(f"{where}: {key} must be an integer, got {fields[key]!r}")
    for key in ("prompt", "negative_prompt", "name"):
        if fields.get(key) is not None and not isinstance(fields[key], str):
            raise ValueError(f"{where}: {key} must be a string, got {fields[key]!r}")
    if "guidance" in fields and not isinstance(fields["guidance"], (int, float)):
        raise ValueError(f"{where}: guidance must be a number, got {fields['guidance']!r}")
    if fields.get("name") is not None and (not fields["name"] or Path(fields["name"]).name != fields["name"]):
        raise ValueError(f"{where}: name must be a plain file name, got {fields['name']!r}")
    if fields.get("size") is not None:
        fields = dict(fields, size=_size(fields["size"], where))
    return fields


def _slug(text: Optional[str]) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", (text or "").lower()).strip("-")[:40].strip("-")
    return slug or "untitled"


def _file_name(index: int, fields: dict) -> str:
    settings = {k: v for k, v in fields.items() if k != "name"}
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:8]
    stem = fields.get("name") or f"{index:05d}-{_slug(fields.get('prompt'))}-{digest}"
    return stem if stem.lower().endswith(".png") else stem + ".png"


def read_prompts(path: "str | Path", *, defaults: Optional[dict] = None, keys: Sequence[str] = KEYS) -> List[Prompt]:
    """The entries of a prompts file, each with the shared `defaults` under its own fields (ValueError naming the line).

    defaults: settings shared by all entries (model, steps, ...; "seed" is the base seed, default 0).
    keys: the per-entry JSON keys accepted.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prompts file {path} does not exist")
    defaults = dict(defaults or {})
    base_seed = defaults.pop("seed", None) or 0
    items, names = [], {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        text = line.strip()
        if not text:
            continue
        where = f"{path}:{lineno}"
        if text.startswith("{"):
            try:
                entry = json.loads(text)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: not a JSON object ({e.msg})") from None
            if not isinstance(entry, dict):
                raise ValueError(f"{where}: a JSON line must be an object")
        else:
            entry = {"prompt": text}
        entry = _check_fields(entry, keys, where)
        index = len(items)
        fields = {**defaults, "seed": base_seed + index, **entry}
        name = _file_name(index, fields)
        if name in names:
            raise ValueError(f"{where}: output name {name!r} is also line {names[name]}'s")
        names[name] = lineno
        items.append(Prompt(index, name, fields))
    if not items:
        raise ValueError(f"prompts file {path} has no prompts")
    return items


def _png_info(meta: dict):
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in meta.items():
        if value is not None:
            info.add_text(f"msdiff:{key}", value if isinstance(value, str) else json.dumps(value, default=str))
    return info


def save_png(image, path: "str | Path", meta: dict) -> Path:
    """Write a PIL image as PNG with meta as "msdiff:KEY" text chunks, atomically (temporary file + rename)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return write_atomically(path, lambda tmp: image.save(tmp, format="PNG", pnginfo=_png_info(meta)))


def run_prompts(prompts: "str | Path | Sequence[Prompt]", out_dir: "str | Path",
                generate_one: Callable[[dict], dict], *, defaults: Optional[dict] = None,
                keys: Sequence[str] = KEYS, world: Optional[World] = None, progress: bool = True,
                save: Optional[Callable[[object, Path, dict], object]] = None) -> BatchResult:
    """Draw this rank's share of the prompts into out_dir, one PNG each, skipping those already there.

    generate_one(fields) returns {"image": PIL image, ...}; the other keys join the fields as PNG metadata.
    save(image, path, metadata) writes one image atomically (default `save_png`).
    world: default `msdiff.distributed.world()` (msrun's ranks, else the whole file in this process).
    """
    items = list(prompts) if not isinstance(prompts, (str, Path)) else read_prompts(prompts, defaults=defaults,
                                                                                       keys=keys)
    w = distributed.world() if world is None else world
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    mine = shard(items, w)
    todo = [p for p in mine if not (out_dir / p.name).is_file()]
    result = BatchResult(share=len(mine), skipped=len(mine) - len(todo))
    from tqdm.auto import tqdm

    desc = "prompts" if w.size == 1 else f"prompts (rank {w.rank} of {w.size})"
    with tqdm(total=len(mine), initial=result.skipped, desc=desc, unit="prompt", disable=not progress) as bar:
        for p in todo:
            out = generate_one(dict(p.fields))
            if "image" not in out:
                raise ValueError(f"generate_one returned no 'image' for entry {p.index} ({p.name})")
            meta = {**p.fields, **{k: v for k, v in out.items() if k != "image"}, "index": p.index}
            (save or save_png)(out["image"], out_dir / p.name, meta)
            result.written.append(out_dir / p.name)
            bar.update(1)
    return result
