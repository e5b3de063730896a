"""VQModel, LDMBert and LDM pipeline rows."""
import json
from pathlib import Path

import numpy as np

from . import Row, call, tensor


def rows(fix: Path) -> list:
    import msdiff
    rows = []
    if (fix / "vq.npz").is_file():
        def run_vq(mode, dtype):
            d = dict(np.load(fix / "vq.npz"))
            vq = msdiff.load(fix / "vq", dtype=dtype)

            def f(image, h):
                return vq.encode(image), vq.decode(h), vq.decode(h, force_not_quantize=True)

            enc, dec, dec_nq = call(f, mode, tensor(d["image"]), tensor(d["h"]))
            return [(enc, d["h"]), (dec, d["decoded"]), (dec_nq, d["decoded_nq"])]

        rows.append(Row("VQModel (encode + decode)", "net", run_vq))
    if (fix / "bert.npz").is_file():
        def run_bert(mode, dtype):
            d = dict(np.load(fix / "bert.npz"))
            bert = msdiff.load(fix / "bert", dtype=dtype)

            def f(ids, mask):
                return bert(ids), bert(ids, mask)

            hidden, masked = call(f, mode, tensor(d["input_ids"]), tensor(d["attention_mask"]))
            return [(hidden, d["hidden"]), (masked, d["hidden_masked"])]

        rows.append(Row("LDMBertModel", "net", run_bert))
    if (fix / "cases.json").is_file():
        cases = json.loads((fix / "cases.json").read_text())

        def run_t2i(mode, dtype):
            from msdiff.recipes.ldm import ldm_text_to_image
            d = dict(np.load(fix / "pipelines.npz"))
            images = ldm_text_to_image(msdiff.load_pipeline(fix / "ldm_text2im", dtype=dtype), d["input_ids"],
                                       latents=d["t2i_latents"], negative_prompt_ids=d["empty_ids"],
                                       output_type="np", mode=mode, **cases["t2i"])
            return [(images, d["t2i_images"])]

        def run_sr(mode, dtype):
            from msdiff.recipes.ldm import ldm_super_resolution
            d = dict(np.load(fix / "pipelines.npz"))
            images = ldm_super_resolution(msdiff.load_pipeline(fix / "ldm_super_resolution", dtype=dtype),
                                          tensor(d["sr_image"]), latents=d["sr_latents"],
                                          noise=list(d["sr_eta_noise"]), output_type="np", mode=mode,
                                          **cases["sr_eta"])
            return [(images, d["sr_eta_images"])]

        rows += [Row("LDMTextToImagePipeline (t2i)", "recipe", run_t2i),
                 Row("LDMSuperResolutionPipeline (sr_eta)", "recipe", run_sr)]
    return rows
