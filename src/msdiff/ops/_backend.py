"""Which backend msdiff.ops compiles for: read once, when msdiff.ops is imported.

`mindspore.get_context` cannot be called inside `mindspore.jit`, so the choice is a module
constant. Set the device target before importing msdiff (or call `refresh()` after changing it).
"""
import mindspore as ms

DEVICE = ms.get_context("device_target")
IS_CPU = DEVICE == "CPU"
IS_ASCEND = DEVICE == "Ascend"


def refresh() -> str:
    """Re-read the device target after `mindspore.set_context(device_target=...)`."""
    global DEVICE, IS_CPU, IS_ASCEND
    DEVICE = ms.get_context("device_target")
    IS_CPU = DEVICE == "CPU"
    IS_ASCEND = DEVICE == "Ascend"
    return DEVICE
