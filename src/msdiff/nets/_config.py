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
