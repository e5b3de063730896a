"""DPT-Hybrid depth estimation (transformers 4.57 `DPTForDepthEstimation` with `is_hybrid=True`: BiT + ViT).

`net(pixel_values[b, 3, image_size, image_size])` (preprocessed as `msdiff.recipes.dpt_image.preprocess`)
returns predicted_depth[b, image_size, image_size] (relative inverse depth, >= 0). Intel/dpt-hybrid-midas,
the depth estimator of stabilityai/stable-diffusion-2-depth, is this net. The BiT stem and stages
(blocks.bit: weight-standardised convs, group norms) keep fp32 weights and activations whatever the
net's dtype (fp16 BiT stages raise the fixture's depth error from rel L2 3.2e-3 to 4.0e-3), and the
fusion batch norms compute in fp32; the ViT layers are blocks.clip_encoder's (same math; `map_weights`
renames the ViT keys).
Only the hybrid net is implemented; ViT-only DPT (Intel/dpt-large) is refused by `config_from_diffusers`.
"""
import dataclasses
import re
from dataclasses import dataclass

import mindspore as ms
from jaxtyping import Float
from mindspore import Parameter, Tensor, nn
from mindspore.common.initializer import initializer

from .. import ops
from ..blocks.bit import BitBackbone, make_div
from ..blocks.clip_encoder import encoder_from_config
from ..blocks.dpt_neck import DPTNeck
from ..blocks.layers import Conv2d
from ._config import TRANSFORMERS_QUIET_KEYS, tuplify


@dataclass(frozen=True)
class BitConfig:
    """BiT backbone of DPT-Hybrid (ResNet-50 stem and first three stages, v1.5 bottlenecks, TF SAME padding)."""

    num_channels: int = 3
    embedding_size: int = 64
    hidden_sizes: tuple = (256, 512, 1024)
    depths: tuple = (3, 4, 9)
    num_groups: int = 32
    width_factor: int = 1


@dataclass(frozen=True)
class DPTConfig:
    """Intel/dpt-hybrid-midas (ViT-B/16 on a BiT stem at 384 x 384)."""

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-12
    image_size: int = 384
    patch_size: int = 16
    num_channels: int = 3
    backbone_out_indices: tuple = (2, 5, 8, 11)
    reassemble_factors: tuple = (1, 1, 1, 0.5)
    neck_hidden_sizes: tuple = (256, 512, 768, 768)
    fusion_hidden_size: int = 256
    head_in_index: int = -1
    use_batch_norm_in_fusion_residual: bool = False
    use_bias_in_fusion_residual: bool = None
    backbone_featmap_shape: tuple = (1, 1024, 24, 24)
    backbone_config: BitConfig = BitConfig()


# Keys that change nothing in depth estimation (training, the segmentation heads, the unused pooler).
_QUIET = frozenset("""hidden_dropout_prob attention_probs_dropout_prob use_auxiliary_head auxiliary_loss_weight
    semantic_loss_ignore_index semantic_classifier_dropout pooler_output_size pooler_act use_pretrained_backbone
    use_timm_backbone use_autobackbone""".split())
# Keys msdiff implements only at one value.
_FIXED = dict(is_hybrid=(True,), qkv_bias=(True,), readout_type=("project",), add_projection=(False,),
              neck_ignore_stages=((0, 1),), backbone=(None,), backbone_kwargs=(None, {}))
_BIT_QUIET = frozenset("drop_path_rate out_indices stage_names output_stride".split())  # stride: checked
_BIT_FIXED = dict(layer_type=("bottleneck",), hidden_act=("relu",), global_padding=("SAME", "same"),
                  embedding_dynamic_padding=(True,), out_features=(("stage1", "stage2", "stage3"),))
_BIT_DEFAULTS = dict(num_channels=3, embedding_size=64, hidden_sizes=(256, 512, 1024, 2048), depths=(3, 4, 6, 3),
                     num_groups=32, width_factor=1)


def _read(d: dict, names: set, quiet: frozenset, fixed: dict, what: str) -> dict:
    """The dataclass fields found in d; ValueError for an unknown key or a fixed key at another value."""
    values = {}
    for key, value in d.items():
        value = tuplify(value)
        if key in fixed:
            if value not in fixed[key]:
                raise ValueError(f"{what}: config {key}={value!r} is not supported by msdiff "
                                 f"(supported: {fixed[key]})")
        elif key in names:
            values[key] = value
        elif not (key.startswith("_") or key in quiet or key in TRANSFORMERS_QUIET_KEYS):
            raise ValueError(f"{what}: config key {key!r} is not implemented by msdiff")
    return values


def _bit_config(d: dict) -> BitConfig:
    if d.get("model_type", "bit") != "bit":
        raise ValueError(f"DPT: backbone_config model_type {d.get('model_type')!r} is not implemented (only 'bit')")
    names = {f.name for f in dataclasses.fields(BitConfig)}
    values = dict(_BIT_DEFAULTS, **_read(d, names, _BIT_QUIET, _BIT_FIXED, "DPT backbone_config (BiT)"))
    for key in _BIT_FIXED:
        if key not in d:
            raise ValueError(f"DPT backbone_config (BiT): {key} missing; msdiff implements only "
                             f"{key}={_BIT_FIXED[key][0]!r}")
    if d.get("output_stride", 32) <= 8:
        raise ValueError(f"DPT backbone_config (BiT): output_stride={d['output_stride']} (dilated stages) "
                         "is not implemented")
    values["depths"] = values["depths"][:3]
    values["hidden_sizes"] = values["hidden_sizes"][:3]
    return BitConfig(**values)


def config_from_diffusers(d: dict) -> DPTConfig:
    """DPTConfig from a transformers DPTConfig config.json (hybrid only; missing keys: transformers' defaults)."""
    if d.get("model_type", "dpt") != "dpt":
        raise ValueError(f"DPT config: model_type {d.get('model_type')!r} is not 'dpt'")
    if not d.get("is_hybrid", False):
        raise ValueError("DPT config: is_hybrid=False (ViT-only DPT such as Intel/dpt-large) is not implemented; "
                         "msdiff runs DPT-Hybrid (Intel/dpt-hybrid-midas)")
    names = {f.name for f in dataclasses.fields(DPTConfig)} - {"backbone_config"}
    values = _read({k: v for k, v in d.items() if k != "backbone_config"}, names, _QUIET, _FIXED, "DPT config")
    # transformers' defaults where DPTConfig's differ from the hybrid-midas defaults above
    values.setdefault("reassemble_factors", (4, 2, 1, 0.5))
    values.setdefault("neck_hidden_sizes", (96, 192, 384, 768))
    bit = d.get("backbone_config") or dict(global_padding="same", layer_type="bottleneck", depths=[3, 4, 9],
                                           out_features=["stage1", "stage2", "stage3"],
                                           embedding_dynamic_padding=True)
    c = DPTConfig(**values, backbone_config=_bit_config(bit))
    widths = tuple(make_div(h * c.backbone_config.width_factor) for h in c.backbone_config.hidden_sizes)
    checks = [
        (c.hidden_size % c.num_attention_heads == 0, f"hidden_size {c.hidden_size} is not divisible by "
                                                     f"num_attention_heads {c.num_attention_heads}"),
        (isinstance(c.image_size, int) and c.image_size % 16 == 0, f"image_size {c.image_size!r} must be one "
                                                                   "int, a multiple of 16"),
        (c.patch_size == 16, f"patch_size {c.patch_size} must equal the BiT stride 16"),
        (len(c.neck_hidden_sizes) == 4 and len(c.backbone_out_indices) == 4 and len(c.reassemble_factors) == 4,
         "neck_hidden_sizes, backbone_out_indices and reassemble_factors need 4 entries each"),
        (tuple(c.neck_hidden_sizes[:2]) == widths[:2], f"neck_hidden_sizes[:2] {c.neck_hidden_sizes[:2]} must "
                                                       f"equal the BiT stage widths {widths[:2]}"),
        (c.backbone_featmap_shape[1] == widths[2], f"backbone_featmap_shape {c.backbone_featmap_shape} must have "
                                                   f"the last BiT width {widths[2]} channels"),
        (all(0 <= i < c.num_hidden_layers for i in c.backbone_out_indices[2:]),
         f"backbone_out_indices {c.backbone_out_indices} outside the {c.num_hidden_layers} ViT layers"),
        (c.hidden_act == "gelu", f"hidden_act={c.hidden_act!r} is not implemented (only 'gelu')"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(f"DPT config: {message}")
    return c


# Checkpoint keys that carry no weight of the depth net: `map_weights` returns None for them.
IGNORED_KEYS = (r"dpt\.layernorm\.(weight|bias)",  # the ViT's final norm: DPT's neck reads pre-norm states
                r".*\.num_batches_tracked")
_VIT = [(r"\.layer\.(\d+)\.attention\.attention\.query\.", r".layers.\1.self_attn.q_proj."),
        (r"\.layer\.(\d+)\.attention\.attention\.key\.", r".layers.\1.self_attn.k_proj."),
        (r"\.layer\.(\d+)\.attention\.attention\.value\.", r".layers.\1.self_attn.v_proj."),
        (r"\.layer\.(\d+)\.attention\.output\.dense\.", r".layers.\1.self_attn.out_proj."),
        (r"\.layer\.(\d+)\.intermediate\.dense\.", r".layers.\1.mlp.fc1."),
        (r"\.layer\.(\d+)\.output\.dense\.", r".layers.\1.mlp.fc2."),
        (r"\.layer\.(\d+)\.layernorm_before\.", r".layers.\1.layer_norm1."),
        (r"\.layer\.(\d+)\.layernorm_after\.", r".layers.\1.layer_norm2."),
        (r"\.readout_projects\.(\d+)\.0\.", r".readout_projects.\1."),
        (r"^head\.head\.0\.", "head.conv1."), (r"^head\.head\.2\.", "head.conv2."), (r"^head\.head\.4\.", "head.conv3.")]


def map_weights(key: str):
    """transformers state-dict key -> msdiff parameter name (ViT layers as blocks.clip_encoder names), or None."""
    if any(re.fullmatch(p, key) for p in IGNORED_KEYS):
        return None
    for pattern, repl in _VIT:
        key = re.sub(pattern, repl, key)
    return key


class DPTViTHybridEmbeddings(nn.Cell):
    """BiT stages, then the last stage's map projected to tokens, a class token and position embeddings."""

    def __init__(self, c: DPTConfig, dtype=ms.float32):
        super().__init__()
        b = c.backbone_config
        widths = tuple(make_div(h * b.width_factor) for h in b.hidden_sizes)
        self.image_size, self.num_channels = c.image_size, c.num_channels
        # the BiT stages stay fp32 (weights and activations) whatever the net's dtype: see the module docstring
        self.backbone = BitBackbone(c.num_channels, b.embedding_size, widths, b.depths, b.num_groups)
        self.projection = Conv2d(c.backbone_featmap_shape[1], c.hidden_size, 1, dtype=dtype)
        n = (c.image_size // c.patch_size) ** 2 + 1
        self.cls_token = Parameter(initializer("zeros", (1, 1, c.hidden_size), dtype), name="cls_token")
        self.position_embeddings = Parameter(initializer("zeros", (1, n, c.hidden_size), dtype),
                                             name="position_embeddings")

    def construct(self, pixel_values: Tensor):
        b, ch, h, w = pixel_values.shape
        if ch != self.num_channels or h != self.image_size or w != self.image_size:
            raise ValueError(f"DPT: pixel_values must be [b, {self.num_channels}, {self.image_size}, "
                             f"{self.image_size}], got {pixel_values.shape}")
        dtype = self.cls_token.dtype
        stages = tuple(s.astype(dtype) for s in self.backbone(pixel_values.astype(ms.float32)))
        tokens = self.projection(stages[-1])
        tokens = tokens.reshape(b, tokens.shape[1], -1).swapaxes(1, 2)
        cls = self.cls_token.broadcast_to((b, 1, tokens.shape[-1]))
        return ms.ops.cat((cls, tokens), axis=1) + self.position_embeddings, stages


class DPTViTHybrid(nn.Cell):
    """transformers' `dpt` (DPTModel without the final norm and pooler): embeddings and ViT encoder."""

    def __init__(self, c: DPTConfig, dtype=ms.float32):
        super().__init__()
        self.embeddings = DPTViTHybridEmbeddings(c, dtype=dtype)
        self.encoder = encoder_from_config(c, dtype=dtype)

    def construct(self, pixel_values: Tensor):
        tokens, stages = self.embeddings(pixel_values)
        return self.encoder(tokens), stages


class DPTDepthEstimationHead(nn.Cell):
    """3x3 conv to half width, 2x bilinear (align_corners), 3x3 conv to 32, ReLU, 1x1 conv to 1, ReLU."""

    def __init__(self, features: int, dtype=ms.float32):
        super().__init__()
        self.conv1 = Conv2d(features, features // 2, 3, padding=1, dtype=dtype)
        self.conv2 = Conv2d(features // 2, 32, 3, padding=1, dtype=dtype)
        self.conv3 = Conv2d(32, 1, 1, dtype=dtype)

    def construct(self, x: Tensor) -> Tensor:
        x = ops.interpolate(self.conv1(x), scale_factor=2.0, mode="bilinear", align_corners=True)
        x = ms.ops.relu(self.conv2(x))
        return ms.ops.relu(self.conv3(x))[:, 0]


class DPTForDepthEstimation(nn.Cell):
    """DPT-Hybrid: BiT + ViT tokens, reassembled and fused at four scales, then the depth head."""

    def __init__(self, config: DPTConfig = DPTConfig(), dtype=ms.float32):
        super().__init__()
        self.config = config
        self.out_indices = tuple(config.backbone_out_indices[2:])
        self.head_in_index = config.head_in_index
        self.dpt = DPTViTHybrid(config, dtype=dtype)
        bias = config.use_bias_in_fusion_residual
        self.neck = DPTNeck(config.hidden_size, tuple(config.neck_hidden_sizes), tuple(config.reassemble_factors),
                            config.fusion_hidden_size, config.use_batch_norm_in_fusion_residual,
                            not config.use_batch_norm_in_fusion_residual if bias is None else bias, dtype=dtype)
        self.head = DPTDepthEstimationHead(config.fusion_hidden_size, dtype=dtype)

    def construct(self, pixel_values: Float[Tensor, "b 3 h w"]) -> Float[Tensor, "b h w"]:
        states, stages = self.dpt(pixel_values)
        features = (stages[0], stages[1]) + tuple(states[1 + i] for i in self.out_indices)
        fused = self.neck(features)
        return self.head(fused[self.head_in_index])
