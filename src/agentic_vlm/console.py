"""What training prints: one compact line per logging step instead of transformers' dict of ~35 entries.

Every logged figure is still in ``trainer_state.json`` (and in any ``report_to`` integration); the line shows the ones
a researcher watches: the reward and each reward function, the loss, how the rollouts went (turns, tool calls, tool
failures among those calls, invalid actions), lengths and speed.
"""

from __future__ import annotations

from transformers.trainer_callback import PrinterCallback, ProgressCallback

# (label, log key, format) in the order shown after the reward; absent keys are left out.
FIELDS = (
    ("loss", "loss", ".4f"),
    ("turns", "rollout/turns", ".2f"),
    ("tool calls", "tools/calls_per_trajectory", ".2f"),
    ("tool failures", "tools/failure_frequency", ".2f"),
    ("invalid actions", "tools/invalid_action_frequency", ".2f"),
    ("answered", "rollout/stop_answer", ".2f"),
    ("tokens", "completions/mean_length", ".0f"),
    ("grad", "grad_norm", ".3g"),
    ("lr", "learning_rate", ".2g"),
    ("s/step", "step_time", ".1f"),
)


def log_line(logs: dict, step: int, max_steps: int) -> str:
    """One line for one logging step, e.g. ``step 5/40  reward 0.412 ± 0.210 (accuracy 0.38, format 0.95)  loss
    0.0123  turns 2.10 ...``; an evaluation's keys (``eval_*``) are shown the same way after ``eval``."""
    if "train_runtime" in logs:  # the summary transformers logs at the end
        return (f"done: {logs['train_runtime']:.0f} s, {logs.get('train_steps_per_second', 0):.3f} steps/s, "
                f"mean loss {logs.get('train_loss', float('nan')):.4f}")
    evaluation = any(key.startswith("eval_") for key in logs)
    if evaluation:
        logs = {key.removeprefix("eval_"): value for key, value in logs.items()}
    parts = [f"{'eval ' if evaluation else ''}step {step}/{max_steps}"]
    if isinstance(logs.get("reward"), int | float):
        reward = f"reward {logs['reward']:.3f}"
        if isinstance(logs.get("reward_std"), int | float):
            reward += f" ± {logs['reward_std']:.3f}"
        per_function = [f"{name.split('/')[1]} {value:.2f}" for name, value in logs.items()
                        if name.startswith("rewards/") and name.endswith("/mean") and isinstance(value, int | float)]
        parts.append(reward + (f" ({', '.join(per_function)})" if per_function else ""))
    parts += [f"{label} {logs[key]:{spec}}" for label, key, spec in FIELDS if isinstance(logs.get(key), int | float)]
    return "  ".join(parts)


class CompactProgressCallback(ProgressCallback):
    """transformers' progress bar, with :func:`log_line` in place of the dict it prints at each log."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and self.training_bar is not None and logs:
            self.training_bar.write(log_line(logs, state.global_step, state.max_steps))


class CompactPrinterCallback(PrinterCallback):
    """transformers' printer (used with ``disable_tqdm``), with :func:`log_line` in place of the dict."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            print(log_line(logs, state.global_step, state.max_steps), flush=True)
