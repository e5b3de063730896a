"""msdiff: kernel-first diffusion models on MindSpore."""
__version__ = "0.1.0"

_LAZY = {"load": "msdiff.io", "load_pipeline": "msdiff.io", "Components": "msdiff.io",
         **{name: "msdiff.io.lora" for name in ("load_lora", "set_adapters", "fuse_lora", "unfuse_lora",
                                                "delete_adapters", "unload_lora", "apply_addons")},
         "load_textual_inversion": "msdiff.io.textual_inversion"}


def __getattr__(name):
    """Import `load`, `load_pipeline` and `Components` from msdiff.io on first use, keeping `import msdiff` light."""
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'msdiff' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
