"""Padding and interpolation (torch semantics)."""
from mindspore import Tensor, ops

from ._checks import check


def pad(x: Tensor, padding, mode: str = "constant", value: float = 0.0) -> Tensor:
    """Pad x; padding is torch-ordered (last axis first): (left, right, top, bottom, ...)."""
    check(mode in ("constant", "reflect", "replicate"), "pad", f"unsupported mode {mode!r}")
    if mode == "constant":
        return ops.pad(x, tuple(padding), mode=mode, value=value)
    return ops.pad(x, tuple(padding), mode=mode)


def interpolate(x: Tensor, size=None, scale_factor=None, mode: str = "nearest",
                align_corners: bool = False) -> Tensor:
    """Resize x[b, c, h, w] by 'nearest' (torch's floor rule) or 'bilinear'."""
    check(x.ndim == 4, "interpolate", f"x must be [b, c, h, w], got shape {x.shape}")
    check(mode in ("nearest", "bilinear"), "interpolate", f"unsupported mode {mode!r}")
    check((size is None) != (scale_factor is None), "interpolate", "give exactly one of size, scale_factor")
    if size is None:
        sh, sw = (scale_factor, scale_factor) if not isinstance(scale_factor, (tuple, list)) else scale_factor
        size = (int(x.shape[2] * sh), int(x.shape[3] * sw))
    size = tuple(int(s) for s in size)
    if mode == "nearest":
        return ops.interpolate(x, size=size, mode="nearest")
    return ops.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)


def embedding(ids: Tensor, table: Tensor) -> Tensor:
    """Rows of table[num, dim] picked by integer ids[...] -> [..., dim]."""
    return ops.gather(table, ids, 0)
