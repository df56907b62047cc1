"""The vLLM engine of training: TRL's ``VLLMGeneration`` with what multi-turn vision rollouts need.

- **dtype and image settings.** TRL starts the colocated ``LLM`` in the checkpoint's dtype (vLLM downcasts fp32
  checkpoints to bf16) and with the checkpoint's image processor settings. Here the dtype is the config's
  ``vllm_dtype`` (``float32`` for exactness checks, ``bfloat16`` on GPUs) and the processor's image settings
  (``min_pixels``, ``max_pixels``, ...) reach vLLM as ``mm_processor_kwargs``, so both sides give an image the same
  number of tokens.
- **Weight sync on CPU.** vLLM's CPU backend repacks linear weights, so TRL's per-parameter ``load_weights`` fails
  (``'Parameter' object has no attribute 'weight_loader'``); there the weights go through vLLM's
  ``reload_weights``. GPUs keep TRL's sync.
- **Caches.** After new weights, both the prefix cache and the encoder cache are cleared: the encoder cache holds
  image features computed by the old vision tower (on CPU, a reload without it fails with ``Encoder cache miss``).
- **One push per rollout.** TRL's ``generate`` puts a sleeping engine back to sleep after every call and pushes the
  weights again on the next one: once per turn. ``rollout()`` wakes the engine once for all the turns of a rollout.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager

from trl.generation.vllm_generation import VLLMGeneration

from .rollout.vllm import image_processor_settings


class AgenticVLLMGeneration(VLLMGeneration):
    """TRL's vLLM backend with a dtype, the processor's image settings, CPU weight sync and per-rollout waking.

    Args:
        dtype: vLLM's model dtype (``"float32"``, ``"bfloat16"``, ...).
        Other arguments are TRL's; the image settings are read from ``processing_class``.
    """

    def __init__(self, *args, dtype: str, **kwargs):
        self.dtype = dtype
        self.weight_syncs = 0  # pushes of the training weights so far (read by tests and logs)
        super().__init__(*args, **kwargs)

    def _init_vllm(self):
        # TRL builds the LLM itself (tensor-parallel groups, environment, seeds); our options go through its own call.
        import trl.generation.vllm_generation as trl_vllm

        llm_class = trl_vllm.LLM
        trl_vllm.LLM = functools.partial(llm_class, dtype=self.dtype,
                                         mm_processor_kwargs=image_processor_settings(self.processing_class) or None)
        try:
            super()._init_vllm()
        finally:
            trl_vllm.LLM = llm_class

    def sync_weights(self):
        self.weight_syncs += 1
        if self.mode == "colocate" and self.accelerator.device.type == "cpu":
            model_runner = self.llm.llm_engine.model_executor.driver_worker.model_runner
            model_runner.reload_weights(weights_iterator=self._iter_named_params())
            self.llm.reset_prefix_cache()
        else:
            super().sync_weights()
        if self.mode == "colocate":
            self.llm.llm_engine.reset_encoder_cache()

    @contextmanager
    def rollout(self, weights_changed: bool):
        """The engine for all the turns of one rollout: the training weights pushed at most once (if they changed
        since the last push, or sleep mode dropped them), the KV cache awake throughout, asleep again after."""
        sleeps = self.mode == "colocate" and self.enable_sleep_mode
        if weights_changed or (sleeps and self._llm_weights_sleeping):
            self.sync_weights()  # wakes the weights first in sleep mode (TRL)
        if self.mode == "server":
            self.accelerator.wait_for_everyone()  # the main process has pushed: every rank may generate
        if sleeps:
            self.llm.wake_up(tags=["kv_cache"])
        try:
            yield
        finally:
            if sleeps:
                self.llm.sleep(level=2)
                self._llm_weights_sleeping = True
