"""Video rows: ops.conv3d, the temporal / spatio-temporal / motion blocks and the video nets (fixture area video).

The nets are rebuilt from the seeded weights of tools/fixtures/video.py (its key lists; the weights are drawn
again here and written as safetensors); blocks run on diffusers' recorded block inputs. tests/_video.py uses
these loaders and block calls too.
"""
import json
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from . import ROOT, Row, call, tensor

AREA = "video"
FRAMES = 3
_TMP = Path(tempfile.gettempdir()) / "msdiff_video_checkpoints"


@lru_cache(maxsize=None)
def checkpoint(fix: Path, name: str) -> Path:
    """A checkpoint folder for fixture net `name` under `fix`: its config.json and its seeded weights as safetensors
    (keys.json's "file", default diffusers' file name), in a temporary folder."""
    import shutil

    from safetensors.numpy import save_file
    if str(ROOT / "tools") not in sys.path:
        sys.path.insert(0, str(ROOT / "tools"))
    from fixtures.video import seeded_weights

    keys = json.loads((fix / name / "keys.json").read_text())
    _TMP.mkdir(exist_ok=True)
    out = Path(tempfile.mkdtemp(prefix=f"{name}_", dir=_TMP))
    shutil.copy(fix / name / "config.json", out / "config.json")
    save_file(seeded_weights(keys["shapes"], keys["seed"]),
              str(out / keys.get("file", "diffusion_pytorch_model.safetensors")))
    return out


@lru_cache(maxsize=None)
def load(fix: Path, name: str, dtype: str = "float32"):
    """The msdiff net of fixture `name`; "motion" is assembled from sd_unet + motion_adapter (from_unet2d)."""
    import msdiff
    if name != "motion":
        return msdiff.load(checkpoint(fix, name), dtype=dtype)
    from mindspore.nn.utils import no_init_parameters

    from msdiff.io.loader import parse_dtype
    from msdiff.io.weights import load_weights
    from msdiff.nets import unet_motion as um
    configs = [json.loads((fix / n / "config.json").read_text()) for n in ("sd_unet", "motion_adapter")]
    with no_init_parameters():
        net = um.UNetMotionModel(um.config_from_unet2d(*configs), dtype=parse_dtype(dtype))
    files = [checkpoint(fix, n) / "diffusion_pytorch_model.safetensors" for n in ("sd_unet", "motion_adapter")]
    load_weights(net, files, um.map_weights)
    net.set_train(False)
    return net


@lru_cache(maxsize=None)
def records(fix: Path, name: str) -> dict:
    """The net's recorded inputs, output and block records, aliases resolved."""
    with np.load(fix / f"{name}.npz") as f:
        d = dict(f)
    for key, same in json.loads((fix / name / "aliases.json").read_text()).items():
        d[key] = d[same]
    return d


def sub_cell(cell, path: str):
    """The sub-Cell at a dotted diffusers module path (`down_blocks.0.temp_convs.0`)."""
    for part in path.split("."):
        cell = cell[int(part)] if part.isdigit() else getattr(cell, part)
    return cell


# Block rows: net -> {module path: (class name, call signature)}; signatures name the recorded inputs the block's
# construct takes, in order ("f" is the frame count, "skips" the recorded res_hidden_states_tuple).
BLOCKS = {
    "unet3d": {
        "down_blocks.0.temp_convs.0": ("TemporalConvLayer", "x f"),
        "transformer_in": ("TransformerTemporalModel", "x f"),
        "down_blocks.0": ("CrossAttnDownBlock3D", "x temb ctx f"),
        "down_blocks.1": ("DownBlock3D", "x temb ctx f"),
        "mid_block": ("UNetMidBlock3DCrossAttn", "x temb ctx f"),
        "up_blocks.0": ("UpBlock3D", "x skips temb ctx f"),
        "up_blocks.1": ("CrossAttnUpBlock3D", "x skips temb ctx f")},
    "svd_unet": {
        "down_blocks.0.resnets.0.temporal_res_block": ("TemporalResnetBlock", "x temb"),
        "down_blocks.0.resnets.0": ("SpatioTemporalResBlock", "x temb ind"),
        "down_blocks.0.attentions.0.temporal_transformer_blocks.0": ("TemporalBasicTransformerBlock", "x f ctx"),
        "down_blocks.0.attentions.0": ("TransformerSpatioTemporalModel", "x ctx ind"),
        "down_blocks.0": ("CrossAttnDownBlockSpatioTemporal", "x temb ctx ind"),
        "down_blocks.1": ("DownBlockSpatioTemporal", "x temb ctx ind"),
        "mid_block": ("UNetMidBlockSpatioTemporal", "x temb ctx ind"),
        "up_blocks.0": ("UpBlockSpatioTemporal", "x skips temb ctx ind"),
        "up_blocks.1": ("CrossAttnUpBlockSpatioTemporal", "x skips temb ctx ind")},
    "svd_vae": {
        "decoder.mid_block": ("MidBlockTemporalDecoder", "x ind"),
        "decoder.up_blocks.0": ("UpBlockTemporalDecoder", "x ind"),
        "decoder": ("TemporalDecoder", "x ind")},
    "motion": {
        "down_blocks.0.motion_modules.0": ("AnimateDiffTransformer3D (motion module)", "x f"),
        "down_blocks.0": ("CrossAttnDownBlockMotion", "x temb ctx f"),
        "down_blocks.1": ("DownBlockMotion", "x temb ctx f"),
        "mid_block": ("UNetMidBlockCrossAttnMotion", "x temb ctx f"),
        "up_blocks.0": ("UpBlockMotion", "x skips temb ctx f"),
        "up_blocks.1": ("CrossAttnUpBlockMotion", "x skips temb ctx f")},
}
_RECORDED = {"x": ("hidden_states", "sample"), "temb": ("temb",), "ctx": ("encoder_hidden_states",),
             "ind": ("image_only_indicator",)}


def block_inputs(d: dict, path: str, signature: str, dtype) -> tuple:
    """The recorded inputs of block `path`, in its construct's order, as Tensors of dtype."""
    import mindspore as ms
    args = []
    for name in signature.split():
        if name == "f":
            args.append(FRAMES)
        elif name == "skips":
            n = len([k for k in d if k.startswith(f"{path}:in:res_hidden_states_tuple:")])
            args.append(tuple(ms.Tensor(d[f"{path}:in:res_hidden_states_tuple:{i}"]).astype(dtype) for i in range(n)))
        else:
            key = next((f"{path}:in:{k}" for k in _RECORDED[name] if f"{path}:in:{k}" in d), None)
            args.append(None if key is None else ms.Tensor(d[key]).astype(dtype))
    return tuple(args)


def block_fn(cell):
    """cell's output (a down block's hidden states, not its skips) as a function of its inputs."""
    def f(*args):
        out = cell(*args)
        return out[0] if isinstance(out, tuple) else out
    return f


def _block_row(fix: Path, name: str, path: str, cls: str, signature: str) -> Row:
    def run(mode, dtype):
        import mindspore as ms
        d = records(fix, name)
        args = block_inputs(d, path, signature, ms.float16 if dtype == "float16" else ms.float32)
        return [(call(block_fn(sub_cell(load(fix, name, dtype), path)), mode, *args)[0], d[f"{path}:out"])]

    return Row(f"{cls} (tiny, in {name})", "block", run)


_NET_ARGS = {"unet3d": ("sample", "timestep", "encoder_hidden_states"),
             "svd_unet": ("sample", "timestep", "encoder_hidden_states", "added_time_ids"),
             "motion": ("sample", "timestep", "encoder_hidden_states"),
             "i2vgen": ("sample", "timestep", "fps", "image_latents", "image_embeddings", "encoder_hidden_states")}
_NET_ROWS = {"unet3d": "UNet3DConditionModel (tiny)", "svd_unet": "UNetSpatioTemporalConditionModel (tiny)",
             "motion": "UNetMotionModel + MotionAdapter (tiny, from_unet2d)", "i2vgen": "I2VGenXLUNet (tiny)"}


def _net_row(fix: Path, name: str) -> Row:
    def run(mode, dtype):
        d = records(fix, name)
        net = load(fix, name, dtype)

        def f(*args):
            return net(*args)

        return [(call(f, mode, *(tensor(d[f"in:{k}"]) for k in _NET_ARGS[name]))[0], d["out"])]

    return Row(_NET_ROWS[name], "net", run)


def _vae_row(fix: Path) -> Row:
    def run(mode, dtype):
        d = records(fix, "svd_vae")
        vae = load(fix, "svd_vae", dtype)

        def decode(z):
            return vae.decode(z, FRAMES)

        def encode(x):
            return vae.encode(x)[0]

        return [(call(decode, mode, tensor(d["in:latents"]))[0], d["out:decoded"]),
                (call(encode, mode, tensor(d["in:image"]))[0], d["out:mean"])]

    return Row("AutoencoderKLTemporalDecoder (tiny: encode, decode)", "net", run)


def _conv3d_row(fix: Path) -> Row:
    padding = {"temporal": (1, 0, 0), "pointwise": 0, "general": (1, 1, 1)}

    def run(mode, dtype):
        from msdiff import ops
        d = dict(np.load(fix / "conv3d.npz"))
        out = []
        for case, pad in padding.items():
            def f(x, w, b, pad=pad):
                return ops.conv3d(x, w, b, padding=pad)

            x, w, b = (tensor(d[f"{case}:{k}"]).astype(dtype) for k in "xwb")
            out.append((call(f, mode, x, w, b)[0], d[f"{case}:out"]))
        return out

    return Row("nn.Conv3d (ops.conv3d: 3x1x1, 1x1x1, 3x3x3)", "block", run)


def rows(fix: Path) -> list:
    if not (fix / "conv3d.npz").is_file():
        return []
    out = [_conv3d_row(fix)]
    for name, blocks in BLOCKS.items():
        out += [_block_row(fix, name, path, cls, sig) for path, (cls, sig) in blocks.items()]
    out += [_net_row(fix, name) for name in _NET_ROWS] + [_vae_row(fix)]
    return out
