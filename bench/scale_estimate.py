"""Estimated GPU memory and throughput of agentic GRPO with Qwen2.5-VL-3B/7B on 8 GPUs under DeepSpeed ZeRO-2, ZeRO-3
and ZeRO-3 with CPU offload (local_scripts/), for sequence lengths of multi-turn rollouts with images.

No GPU is needed. Parameter counts are exact: the real architectures are built on the meta device (no weights). The
rest is the arithmetic below; each assumption is a named constant or a command-line option.

    python bench/scale_estimate.py [--gpus 8] [--micro-batch 2] [--rollouts-per-gpu 8] [--mfu 0.35] ...

Memory per GPU, bf16 training with fp32 Adam (the ZeRO paper's accounting: 2 bytes of weights, 2 of gradients and 12
of optimizer state, fp32 weights and both moments, per parameter; d GPUs):

- ZeRO-2: weights 2N, gradients 2N/d, optimizer 12N/d.
- ZeRO-3: 16N/d, plus the parameters gathered at a time while computing (two decoder layers and the output layer).
- ZeRO-3 + offload: only the gathered parameters; the 16N/d live in CPU memory (16N per node of d GPUs).
- Activations of one micro-batch with gradient checkpointing at every decoder (and vision) layer and flash attention:
  each layer's input (s*h*2 bytes) is kept, and one layer is recomputed in full during the backward pass,
  s*(9h + 4*kv + 4*i)*2 bytes (norms, q/k/v, rotary, attention output, o_proj, SwiGLU: gate, up, their product,
  down). Vision tower likewise over its patches (4 per image token: 2x2 merge).
- Logits over the completion tokens c (TRL asks the model for those only): bf16 logits, their fp32 log-softmax (TRL
  takes it one sequence at a time, counted once) and the bf16 gradient: c*V*(2 + 2) bytes per sequence + 4*c*V once.
- Generation (transformers' generate, the engine's default path): the KV cache of all rollouts of the GPU,
  2 * layers * kv * 2 bytes per token. Under ZeRO-3, TRL gathers the whole bf16 model for each generation call
  (ds3_gather_for_generation=True, the default): 2N on every GPU, offload or not.
  Peak = the larger of the training phase and the generation phase.

Throughput (per optimizer step, every GPU at once):

- Training: 6 * N * tokens FLOPs (language model over sequence tokens, vision tower over patches) at the assumed MFU;
  the recomputation of checkpointed layers is inside that MFU, as is ZeRO-3's communication (overlapped).
- Generation: decoding is bound by memory bandwidth: each decode step reads the bf16 weights and the KV cache, at an
  assumed fraction of peak bandwidth, plus a fixed overhead per step; turns * max_new_tokens steps (the batch of a
  turn waits for its longest row, and lockstep makes every GPU wait for the longest turn). Each turn prefills its
  whole context again, at the training MFU.
- Offload: the optimizer step runs on the CPU (DeepSpeed's CPU Adam) at an assumed rate per process; gathering
  parameters from CPU memory costs each GPU its 2N/d shard over PCIe per pass.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

GB = 1e9
BF16 = 2
H100 = {"memory_gb": 80, "peak_flops": 989e12, "hbm_bytes_per_s": 3.35e12}  # SXM, dense bf16
NVLINK_BYTES_PER_S = 450e9  # all-gather bus bandwidth per GPU, H100 SXM NVLink 4 (of 900 GB/s bidirectional)
PCIE_BYTES_PER_S = 25e9  # host to device, PCIe 5 x16 in practice
CPU_ADAM_PARAMS_PER_S = 1e9  # DeepSpeed CPU Adam, per process with ~12 cores (AVX-512)
DECODE_BANDWIDTH_EFFICIENCY = 0.6  # fraction of peak HBM bandwidth the decode step's matrix products reach
DECODE_STEP_OVERHEAD_S = 0.015  # per step of transformers' generate: Python and kernel launches, no CUDA graphs
PROMPT_TEXT_TOKENS = 200  # system prompt with the tool list, and the question
TURN_TOKENS = 150  # an assistant turn: <think>...</think> and one action
OBSERVATION_TEXT_TOKENS = 50  # the text around a tool's image: tags, the chat template's turn markers, a caption

# Qwen2.5-VL configs (config.json of the -Instruct checkpoints); one vision tower, whose output width is the model's.
VISION = {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16, "patch_size": 14,
          "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31],
          "in_chans": 3, "hidden_act": "silu"}
TEXT = {
    "Qwen2.5-VL-3B": ({"hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36,
                       "num_attention_heads": 16, "num_key_value_heads": 2, "vocab_size": 151936}, True),
    "Qwen2.5-VL-7B": ({"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
                       "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064}, False),
    "Qwen2.5-VL-32B": ({"hidden_size": 5120, "intermediate_size": 27648, "num_hidden_layers": 64,
                        "num_attention_heads": 40, "num_key_value_heads": 8, "vocab_size": 152064}, False),
}
STAGES = ("ZeRO-2", "ZeRO-3", "ZeRO-3 offload")


@dataclass
class Model:
    name: str
    params: int  # all of them, vision tower included
    vision_params: int
    hidden: int
    layers: int
    intermediate: int
    kv: int  # key (or value) width: key-value heads * head dim
    vocab: int
    vision_hidden: int
    vision_layers: int
    vision_intermediate: int

    @property
    def layer_params(self) -> int:
        h = self.hidden
        return 2 * h * h + 2 * h * self.kv + 3 * h * self.intermediate


def build_model(name: str) -> Model:
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    text, tied = TEXT[name]
    config = Qwen2_5_VLConfig(text_config=text, vision_config={**VISION, "out_hidden_size": text["hidden_size"]},
                              tie_word_embeddings=tied)
    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration(config)
    heads, kv_heads = text["num_attention_heads"], text["num_key_value_heads"]
    return Model(
        name=name,
        params=sum(p.numel() for p in model.parameters()),
        vision_params=sum(p.numel() for p in model.model.visual.parameters()),
        hidden=text["hidden_size"],
        layers=text["num_hidden_layers"],
        intermediate=text["intermediate_size"],
        kv=kv_heads * text["hidden_size"] // heads,
        vocab=text["vocab_size"],
        vision_hidden=VISION["hidden_size"],
        vision_layers=VISION["depth"],
        vision_intermediate=VISION["intermediate_size"],
    )


@dataclass
class Rollout:
    """A multi-turn trajectory: a prompt with one image, then turns whose observations may carry images."""

    images: int  # the prompt's and the tools'
    image_tokens: int  # per image, after the 2x2 merge (Visual-ARFT's max_pixels=401408: 512)
    turns: int
    extra_text_tokens: int = 0  # observation text: search results, code output

    @property
    def prompt_tokens(self) -> int:
        return self.image_tokens + PROMPT_TEXT_TOKENS

    @property
    def tokens(self) -> int:
        observations = (self.images - 1) * (self.image_tokens + OBSERVATION_TEXT_TOKENS) + self.extra_text_tokens
        return self.prompt_tokens + self.turns * TURN_TOKENS + observations

    @property
    def patches(self) -> int:
        return 4 * self.images * self.image_tokens


def state_bytes(model: Model, stage: str, gpus: int) -> tuple[float, float]:
    """Weights, gradients and optimizer state on one GPU, and what ZeRO-3 gathers at a time while computing."""
    n = model.params
    gathered = (2 * model.layer_params + model.vocab * model.hidden) * BF16
    if stage == "ZeRO-2":
        return 2 * n + 14 * n / gpus, 0.0
    if stage == "ZeRO-3":
        return 16 * n / gpus, gathered
    return 0.0, gathered


def activation_bytes(model: Model, rollout: Rollout, micro_batch: int) -> float:
    s, h, p = rollout.tokens, model.hidden, rollout.patches
    language = model.layers * s * h + s * (9 * h + 4 * model.kv + 4 * model.intermediate)
    hv, iv = model.vision_hidden, model.vision_intermediate
    vision = model.vision_layers * p * hv + p * (9 * hv + 4 * iv)
    completion = s - rollout.prompt_tokens
    logits = completion * model.vocab * (BF16 + BF16)
    return micro_batch * ((language + vision) * BF16 + logits) + completion * model.vocab * 4


def kv_cache_bytes(model: Model, rollout: Rollout, rollouts: int) -> float:
    return rollouts * rollout.tokens * 2 * model.layers * model.kv * BF16


def forward_flops(model: Model, tokens: float, patches: float) -> float:
    """2 FLOPs per parameter and token: the language model over the tokens, the vision tower over the patches."""
    return 2 * ((model.params - model.vision_params) * tokens + model.vision_params * patches)


def estimate(model: Model, stage: str, rollout: Rollout, args) -> dict:
    n, d, g = model.params, args.gpus, args.rollouts_per_gpu
    states, gathered = state_bytes(model, stage, d)
    train_peak = states + gathered + activation_bytes(model, rollout, args.micro_batch)
    kv = kv_cache_bytes(model, rollout, g)
    generation_peak = (states if stage == "ZeRO-2" else states + 2 * n) + kv

    compute = H100["peak_flops"] * args.mfu
    train_s = 3 * forward_flops(model, rollout.tokens, rollout.patches) * g / compute
    # Each turn's generate call prefills the whole context again (no prefix reuse across calls), which grows from
    # the prompt to the full trajectory; each decode step reads the weights and the KV cache of that context.
    context = (rollout.prompt_tokens + rollout.tokens) / 2
    prefill_s = rollout.turns * forward_flops(model, context, rollout.patches / 2) * g / compute
    kv_read = kv * context / rollout.tokens
    decode_step_s = (2 * n + kv_read) / (H100["hbm_bytes_per_s"] * DECODE_BANDWIDTH_EFFICIENCY) + DECODE_STEP_OVERHEAD_S
    decode_s = rollout.turns * args.max_new_tokens * decode_step_s
    if stage != "ZeRO-2":  # one gather of the whole model per generation call, that is per turn
        decode_s += rollout.turns * 2 * n / NVLINK_BYTES_PER_S
    if stage == "ZeRO-3 offload":  # CPU Adam; each GPU's shard over PCIe per forward, recompute, backward and turn
        passes = 3 * g / args.micro_batch + rollout.turns
        train_s += n / d / CPU_ADAM_PARAMS_PER_S + passes * 2 * n / d / PCIE_BYTES_PER_S
    generation_s = prefill_s + decode_s
    step_s = generation_s + train_s
    return {
        "states": states / GB,
        "activations": (train_peak - states - gathered) / GB,
        "kv": kv / GB,
        "train_peak": train_peak / GB,
        "generation_peak": generation_peak / GB,
        "peak": max(train_peak, generation_peak) / GB,
        "generation_s": generation_s,
        "train_s": train_s,
        "tokens_per_s": g * d * rollout.tokens / step_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=list(TEXT), default=["Qwen2.5-VL-3B", "Qwen2.5-VL-7B"])
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--micro-batch", type=int, default=2, help="sequences per forward pass (per_device_train_batch_size)")
    parser.add_argument("--rollouts-per-gpu", type=int, default=8, help="trajectories each GPU generates and trains on per step")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="the longest assistant turn in a batch")
    parser.add_argument("--mfu", type=float, default=0.35, help="model FLOPs utilisation of training and prefill")
    args = parser.parse_args()

    rollouts = {
        "2 turns, 1 zoom": Rollout(images=2, image_tokens=512, turns=2),
        "4 turns, 3 zooms": Rollout(images=4, image_tokens=512, turns=4),
        "4 turns, 3 searches": Rollout(images=1, image_tokens=512, turns=4, extra_text_tokens=3 * 1500),
    }
    print(f"{args.gpus} x H100 {H100['memory_gb']} GB; micro-batch {args.micro_batch} sequences; {args.rollouts_per_gpu} rollouts per "
          f"GPU per step; longest turn {args.max_new_tokens} tokens; MFU {args.mfu}; bf16, gradient checkpointing, "
          f"flash attention; generation with transformers' generate\n")
    print(f"| model | ZeRO | rollout | tokens | states GB | activations GB | KV cache GB | train peak GB "
          f"| generation peak GB | fits {H100['memory_gb']} GB | generation s | training s | tokens/s ({args.gpus} GPUs) |")
    print("|" + " --- |" * 13)
    for name in args.models:
        model = build_model(name)
        for stage in STAGES:
            for label, rollout in rollouts.items():
                e = estimate(model, stage, rollout, args)
                fits = "yes" if e["peak"] < H100["memory_gb"] * 0.9 else "no"  # ~10 % for fragmentation, CUDA context
                print(f"| {name.removeprefix('Qwen2.5-VL-')} ({model.params / 1e9:.2f}B) | {stage} | {label} "
                      f"| {rollout.tokens:,} | {e['states']:.1f} | {e['activations']:.1f} | {e['kv']:.1f} "
                      f"| {e['train_peak']:.1f} | {e['generation_peak']:.1f} | {fits} | {e['generation_s']:.0f} "
                      f"| {e['train_s']:.1f} | {e['tokens_per_s']:,.0f} |")


if __name__ == "__main__":
    main()
