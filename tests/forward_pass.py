"""The trainer's own training forward pass over a batch from ``_generate_and_score_completions``: what the tests
compare the sampling log-probabilities with."""

import torch


def recompute_logps(trainer, batch, **overrides):
    """Per-token log-probabilities of the batch's completions under the trainer's model, as TRL's loss computes them;
    ``overrides`` replace vision inputs (a wrong image-token map, for the tests that must fail)."""
    input_ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    attention_mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    kwargs = {key: batch[key] for key in ("pixel_values", "image_grid_thw", "num_images", "mm_token_type_ids")}
    kwargs |= overrides
    with torch.no_grad():
        logps, _, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model, input_ids, attention_mask, batch["completion_ids"].size(1), **kwargs
        )
    return logps
