#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Peer benchmark: Hugging Face transformers on the page-QA workload of ../../shared/docs/performance.md.

LlavaForConditionalGeneration with Pixtral-12B's config (Pixtral vision tower with SiLU, Mistral-Nemo decoder),
random bf16 weights created on the GPU (never zeros), sdpa attention, plain `model.generate` (dynamic cache).
Workload: one 1024x1024 RGB uint8 image + 30 text tokens = 4193 prompt tokens, 128 greedy tokens, then a 30-token
follow-up with the KV cache kept. Measures (medians, CUDA-synchronized wall clock): vision tower + projector,
TTFT (uint8 image -> preprocessing on the GPU -> generate's first token), decode ms/token (median step of 128
greedy tokens, timed by a streamer), follow-up TTFT, peak GPU memory. Prints a table and writes JSON (--out).

ref: transformers models/llava (LlavaForConditionalGeneration), models/pixtral (PixtralVisionModel,
PixtralImageProcessor: rescale 1/255, CLIP mean/std, no resize for a 1024x1024 image).
"""
import argparse
import copy
import json
import statistics
import sys
import time

import torch

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
BOS, INST, INST_END, IMG, IMG_BREAK, IMG_END = 1, 3, 4, 10, 12, 13


def build_config():
    from transformers import LlavaConfig, MistralConfig, PixtralVisionConfig

    vision = PixtralVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                 num_attention_heads=16, num_channels=3, image_size=1024, patch_size=16,
                                 hidden_act="silu", head_dim=64, rope_theta=10000.0)
    text = MistralConfig(hidden_size=5120, intermediate_size=14336, num_hidden_layers=40, num_attention_heads=32,
                         num_key_value_heads=8, head_dim=128, vocab_size=131072, rope_theta=1e9, rms_norm_eps=1e-5,
                         max_position_embeddings=131072, sliding_window=None, tie_word_embeddings=False)
    # transformers 5 keeps RoPE settings in rope_parameters; keep theta right on either version.
    if getattr(text, "rope_parameters", None) is not None:
        text.rope_parameters = {"rope_type": "default", "rope_theta": 1e9}
    if getattr(vision, "rope_parameters", None) is not None:
        vision.rope_parameters = {"rope_type": "axial", "rope_theta": 10000.0}  # Pixtral 2-D RoPE
    cfg = LlavaConfig(vision_config=vision, text_config=text, image_token_index=IMG, projector_hidden_act="gelu",
                      vision_feature_layer=-1, vision_feature_select_strategy="full",
                      multimodal_projector_bias=True)
    return cfg


def make_model(cfg):
    from transformers import LlavaForConditionalGeneration

    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device("cuda"):
            try:
                model = LlavaForConditionalGeneration._from_config(cfg, attn_implementation="sdpa",
                                                                   dtype=torch.bfloat16)
            except TypeError:
                model = LlavaForConditionalGeneration._from_config(cfg, attn_implementation="sdpa",
                                                                   torch_dtype=torch.bfloat16)
    finally:
        torch.set_default_dtype(old)
    model.eval()
    # Never time zeros: any parameter left all-zero by the init (biases) gets small random values.
    g = torch.Generator(device="cuda").manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.device.type != "cuda":
                raise SystemExit("peer: a parameter was not created on the GPU")
            if not torch.any(p != 0):
                p.copy_(torch.randn(p.shape, generator=g, device="cuda", dtype=torch.float32).mul_(0.02).to(p.dtype))
    model.generation_config.eos_token_id = None  # always generate the full 128 tokens
    model.generation_config.pad_token_id = 0
    return model


def preprocess(img_u8):
    """uint8 HWC (CPU) -> normalised bf16 [1, 3, H, W] on the GPU (PixtralImageProcessor's math; no resize at 1024)."""
    x = img_u8.to("cuda", non_blocking=True).permute(2, 0, 1).float().div_(255.0)
    mean = torch.tensor(CLIP_MEAN, device="cuda").view(3, 1, 1)
    std = torch.tensor(CLIP_STD, device="cuda").view(3, 1, 1)
    return ((x - mean) / std).to(torch.bfloat16).unsqueeze(0)


def prompt_ids(text_ids, grid=64):
    ids = [BOS, INST]
    for r in range(grid):
        ids += [IMG] * grid + [IMG_END if r == grid - 1 else IMG_BREAK]
    return ids + list(text_ids) + [INST_END]


class StepTimer:
    """A generate() streamer recording the time each new token arrives."""

    def __init__(self):
        self.marks = []
        self.first = True

    def put(self, value):
        if self.first:  # the prompt
            self.first = False
            return
        torch.cuda.synchronize()
        self.marks.append(time.perf_counter())

    def end(self):
        pass


def sync_time(fn):
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) * 1e3, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="", help="write the JSON result here")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("peer: no CUDA device", file=sys.stderr)
        return 3
    import transformers

    torch.manual_seed(0)
    cfg = build_config()
    t_load, model = sync_time(lambda: make_model(cfg))
    gen = torch.Generator().manual_seed(1)
    img = torch.randint(0, 256, (1024, 1024, 3), dtype=torch.uint8, generator=gen)
    q1 = torch.randint(1000, 131072, (30,), generator=gen).tolist()
    q2 = torch.randint(1000, 131072, (30,), generator=gen).tolist()
    ids = torch.tensor([prompt_ids(q1)], device="cuda")
    assert ids.shape[1] == 4193, ids.shape
    image_sizes = torch.tensor([[1024, 1024]], device="cuda")
    reps = 2 if args.quick else 5
    n_decode = 128

    def image_features(pv):
        try:
            return model.get_image_features(pixel_values=pv, image_sizes=image_sizes, vision_feature_layer=-1,
                                            vision_feature_select_strategy="full")
        except TypeError:
            return model.get_image_features(pixel_values=pv, image_sizes=image_sizes)

    def ttft_once(max_new=1, streamer=None):
        def run():
            pv = preprocess(img)
            return model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=pv,
                                  image_sizes=image_sizes, max_new_tokens=max_new, do_sample=False,
                                  streamer=streamer, return_dict_in_generate=True)
        return sync_time(run)

    with torch.inference_mode():
        # Warm-up: kernels, cuBLAS heuristics, allocator.
        ttft_once(4)
        pv0 = preprocess(img)
        vision = []
        for i in range(reps + 1):
            ms, _ = sync_time(lambda: image_features(pv0))
            if i:
                vision.append(ms)
        ttft = []
        for _ in range(reps):
            ms, _ = ttft_once(1)
            ttft.append(ms)
        steps, decode_mean = [], []
        out = None
        for _ in range(1 if args.quick else 2):
            timer = StepTimer()
            t_start = time.perf_counter()
            ms, out = ttft_once(n_decode + 1, timer)
            m = [t_start] + timer.marks
            steps += [(m[i] - m[i - 1]) * 1e3 for i in range(2, len(m))]
            if len(timer.marks) > 1:
                decode_mean.append((timer.marks[-1] - timer.marks[0]) * 1e3 / (len(timer.marks) - 1))
        # Follow-up turn with the cache kept: answer ids + </s> + [INST] q2 [/INST]; only the new rows run.
        followup = []
        followup_error = None
        try:
            answer = out.sequences[0, ids.shape[1]:].tolist()
            full = out.sequences[0].tolist()
            kept = len(full) - 1  # generate() caches every row but the last sampled token
            ids2 = torch.tensor([full + [2, INST] + q2 + [INST_END]], device="cuda")
            base_cache = out.past_key_values
            for i in range(reps + 1):
                cache = copy.deepcopy(base_cache)
                ms, _ = sync_time(lambda: model.generate(input_ids=ids2, attention_mask=torch.ones_like(ids2),
                                                         past_key_values=cache, max_new_tokens=1, do_sample=False))
                if i:
                    followup.append(ms)
                del cache
            followup_new = ids2.shape[1] - kept
        except Exception as e:  # report, never hide: the figure is then missing
            followup_error = f"{type(e).__name__}: {e}"
            followup_new = None
            answer = []
    peak = torch.cuda.max_memory_allocated() / 2**30

    med = lambda v: statistics.median(v) if v else None
    figures = [
        {"figure": "vision_encoder", "unit": "ms", "value": med(vision), "note": "vision tower + projector"},
        {"figure": "ttft", "unit": "ms", "value": med(ttft), "note": "uint8 image -> first token, generate()"},
        {"figure": "decode", "unit": "ms/token", "value": med(steps),
         "note": f"median of {len(steps)} steps (mean {med(decode_mean)})"},
        {"figure": "followup_ttft", "unit": "ms", "value": med(followup),
         "note": followup_error or f"{followup_new} new rows, cache kept"},
        {"figure": "peak_gpu_memory", "unit": "GiB", "value": peak, "note": "torch.cuda.max_memory_allocated"},
    ]
    result = {"peer": "transformers", "transformers": transformers.__version__, "torch": torch.__version__,
              "card": torch.cuda.get_device_name(0), "attn": "sdpa", "dtype": "bf16", "quick": args.quick,
              "prompt_tokens": int(ids.shape[1]), "generated": len(answer), "model_create_ms": t_load,
              "figures": figures}
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, {result['card']}")
    for f in figures:
        v = "—" if f["value"] is None else f"{f['value']:.3f}"
        print(f"{f['figure']:<18} {v:>12} {f['unit']:<9} {f['note']}")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(result, fh, indent=1)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
