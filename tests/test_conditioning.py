"""msdiff.conditioning pieces composed into the loop's Model, on a small analytic net, PyNative and graph: each
piece's arithmetic against numpy, several pieces in one step, and the compile cache's key."""
import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn

from msdiff import conditioning as C
from msdiff import samplers


class Net(nn.Cell):
    """out = 2 * sample[:, :2] + context mean + added residual sums (a stand-in with the UNet's keywords)."""

    def construct(self, sample, timestep, encoder_hidden_states=None, down_intrablock_additional_residuals=None):
        out = 2 * sample[:, :2] + timestep * 0.001
        if encoder_hidden_states is not None:
            out = out + encoder_hidden_states.mean(axis=(1, 2), keep_dims=True).reshape(-1, 1, 1, 1)
        if down_intrablock_additional_residuals is not None:
            for r in down_intrablock_additional_residuals:
                out = out + r
        return out


def _run(model, x, mode):
    fn = model.fn if mode == "pynative" else ms.jit(model.fn)
    inputs = tuple(model.inputs) if mode == "pynative" else ms.mutable(tuple(model.inputs))
    return fn(Tensor(x), Tensor(np.float32(10.0)), inputs, C.scales_at(model, 0, 4)).asnumpy()


RNG = np.random.default_rng(0)
X = RNG.standard_normal((2, 2, 3, 3)).astype(np.float32)
CTX = RNG.standard_normal((4, 5, 6)).astype(np.float32)


@pytest.mark.parametrize("mode", ["pynative", "graph"])
def test_cfg_with_rescale_order_and_tensor_scale(mode):
    net = Net()
    base = 2 * np.concatenate([X, X]) + 0.01 + CTX.mean(axis=(1, 2)).reshape(-1, 1, 1, 1)
    uncond, cond = base[:2], base[2:]
    got = _run(C.compose(net, C.NetInputs(encoder_hidden_states=Tensor(CTX)), guidance=C.CFG(3.0)), X, mode)
    np.testing.assert_allclose(got, uncond + 3.0 * (cond - uncond), rtol=1e-5, atol=1e-5)
    got = _run(C.compose(net, C.NetInputs(encoder_hidden_states=Tensor(CTX)),
                         guidance=C.CFG(3.0, uncond_first=False)), X, mode)
    np.testing.assert_allclose(got, cond + 3.0 * (uncond - cond), rtol=1e-5, atol=1e-5)
    per_sample = np.asarray([1.0, 5.0], np.float32).reshape(2, 1, 1, 1)
    got = _run(C.compose(net, C.NetInputs(encoder_hidden_states=Tensor(CTX)), guidance=C.CFG(per_sample)), X, mode)
    np.testing.assert_allclose(got, uncond + per_sample * (cond - uncond), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["pynative", "graph"])
def test_pix2pix_extra_channels_adapters_and_take(mode):
    net = Net()
    extra = RNG.standard_normal((2, 1, 3, 3)).astype(np.float32)
    f1, f2 = (RNG.standard_normal((6, 2, 3, 3)).astype(np.float32) for _ in range(2))
    ctx = RNG.standard_normal((6, 5, 6)).astype(np.float32)
    model = C.compose(net, C.NetInputs(encoder_hidden_states=Tensor(ctx)), C.ExtraChannels(Tensor(extra)),
                      C.Adapter((Tensor(f1),), calls=1), C.Adapter((Tensor(f2),), calls=1), C.TakeChannels(1),
                      guidance=C.Pix2Pix(4.0, 1.5))
    got = _run(model, X, mode)
    base = (2 * np.concatenate([X, X, X]) + 0.01 + ctx.mean(axis=(1, 2)).reshape(-1, 1, 1, 1) + f1 + f2)[:, :1]
    text, image, uncond = base[:2], base[2:4], base[4:]
    np.testing.assert_allclose(got, uncond + 4.0 * (text - image) + 1.5 * (image - uncond), rtol=1e-5, atol=1e-5)
    assert model.scales(0, 4) == (4.0, 1.5, 1.0, 1.0) and model.scales(1, 4) == (4.0, 1.5, 0.0, 0.0)


def test_blend_pastes_the_image_at_the_next_level():
    sampler = samplers.from_config({"_class_name": "DDIMScheduler"})
    schedule = sampler.schedule(4)
    image, noise = (RNG.standard_normal((1, 2, 3, 3)).astype(np.float32) for _ in range(2))
    mask = (RNG.random((1, 1, 3, 3)) > 0.5).astype(np.float32)
    piece = C.Blend(Tensor(image), Tensor(noise), Tensor(mask), schedule)
    x = RNG.standard_normal((1, 2, 3, 3)).astype(np.float32)
    a, b = schedule.noise_level[1]
    got = piece.apply(Tensor(x), piece.inputs, Tensor(np.asarray(piece.scales(0, 4), np.float32))).asnumpy()
    np.testing.assert_allclose(got, (1 - mask) * (a * image + b * noise) + mask * x, rtol=1e-6, atol=1e-6)
    last = piece.apply(Tensor(x), piece.inputs, Tensor(np.asarray(piece.scales(3, 4), np.float32))).asnumpy()
    np.testing.assert_array_equal(last, (1 - mask) * image + mask * x)


def test_the_loop_compiles_once_per_model_key_and_sampler():
    from msdiff.samplers import loop
    net = Net()
    sampler = samplers.from_config({"_class_name": "EulerDiscreteScheduler"})
    x = Tensor(RNG.standard_normal((2, 2, 3, 3)).astype(np.float32))
    for scale in (2.0, 7.0):
        model = C.compose(net, C.NetInputs(encoder_hidden_states=Tensor(CTX)), guidance=C.CFG(scale))
        samplers.sample(model, x, sampler.schedule(3), sampler, mode="graph")
    assert len(loop._COMPILED[net]) == 1
    model = C.compose(net, C.NetInputs(encoder_hidden_states=Tensor(CTX)), guidance=C.CFG(2.0, rescale=0.5))
    samplers.sample(model, x, sampler.schedule(3), sampler, mode="graph")
    assert len(loop._COMPILED[net]) == 2


def test_bad_values_are_named():
    with pytest.raises(ValueError, match="guidance_scale must be a finite number"):
        C.CFG(float("nan"))
    with pytest.raises(ValueError, match="guidance_rescale must be in"):
        C.CFG(2.0, rescale=1.5)
    with pytest.raises(ValueError, match="control_guidance_start < control_guidance_end"):
        C.ControlNet(Net(), Tensor(X), guidance_start=0.8, guidance_end=0.2)
    with pytest.raises(ValueError, match="net keywords given twice"):
        C.compose(Net(), C.NetInputs(encoder_hidden_states=Tensor(CTX)), C.NetInputs(encoder_hidden_states=Tensor(CTX)))
