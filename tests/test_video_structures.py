"""The released video checkpoints' parameter structures (built by diffusers 0.35.2 on torch's meta device from
configs written from public knowledge of the Hub repos; tools/fixtures/video.py RELEASED) map one to one onto
msdiff's nets: every checkpoint key maps to a parameter of the same shape, and every parameter is named."""
import gzip
import json
from functools import lru_cache

import pytest
from _video import FIX
from mindspore.nn.utils import no_init_parameters

from msdiff.io.registry import net_entry
from msdiff.nets import unet_motion as um


@lru_cache(maxsize=None)
def _structures() -> dict:
    with gzip.open(FIX / "structures.json.gz") as f:
        return json.loads(f.read())


def _assert_maps(cell, map_weights, shapes: dict, what: str) -> None:
    ours = {name: tuple(p.shape) for name, p in cell.parameters_and_names()}
    theirs = {map_weights(k): tuple(v) for k, v in shapes.items() if map_weights(k) is not None}
    assert len(theirs) == len([k for k in shapes if map_weights(k) is not None]), f"{what}: two keys map to one name"
    missing, extra = sorted(set(theirs) - set(ours)), sorted(set(ours) - set(theirs))
    assert not missing and not extra, f"{what}: checkpoint keys without parameter {missing[:5]}, " \
                                      f"parameters without key {extra[:5]}"
    wrong = [(k, ours[k], theirs[k]) for k in ours if ours[k] != theirs[k]]
    assert not wrong, f"{what}: shapes differ {wrong[:5]}"


NETS = ["damo-vilab/text-to-video-ms-1.7b/unet", "stabilityai/stable-video-diffusion-img2vid-xt/unet",
        "stabilityai/stable-video-diffusion-img2vid-xt/vae", "ali-vilab/i2vgen-xl/unet",
        "guoyww/animatediff-motion-adapter-v1-5-2"]


@pytest.mark.parametrize("name", NETS)
def test_released_structure(name):
    s = _structures()[name]
    entry = net_entry(s["config"]["_class_name"])
    with no_init_parameters():
        cell = entry.cls(entry.config_from_diffusers(s["config"]))
    _assert_maps(cell, entry.map_weights, s["shapes"], name)


def test_animatediff_assembly_structure():
    """UNetMotionModel.from_unet2d(SD 1.5, motion adapter v1-5-2): msdiff's assembled config builds diffusers' tree,
    and the UNet's keys plus the adapter's keys are exactly its keys (what the two-file load relies on)."""
    s = _structures()
    unet, adapter = s["runwayml/stable-diffusion-v1-5/unet"], s["guoyww/animatediff-motion-adapter-v1-5-2"]
    motion = s["animatediff-v1-5-2 UNetMotionModel.from_unet2d"]
    config = um.config_from_unet2d(unet["config"], adapter["config"])
    assert config == um.config_from_diffusers(motion["config"])
    assert set(unet["shapes"]) | set(adapter["shapes"]) == set(motion["shapes"])
    assert not set(unet["shapes"]) & set(adapter["shapes"])
    with no_init_parameters():
        cell = um.UNetMotionModel(config)
    _assert_maps(cell, um.map_weights, motion["shapes"], "UNetMotionModel (AnimateDiff v1-5-2 on SD 1.5)")
