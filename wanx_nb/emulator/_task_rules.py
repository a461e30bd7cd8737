"""What the service decides about a task the moment it creates it.

The server-chosen seed, the prompts cut to the model's limits, the duration, the prompt rewrite,
and the failures and corruption the settings script (by word or by rate): all fixed at creation,
so the task's later life (`_tasks`) is a function of the clock alone.

Kept apart from `_tasks`, which runs tasks on the clock and counts limits, because these are the
service's rules read from a checked request (`_rules.Generation`) and the settings, not task state.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

from . import _errors as errors
from ._rewrite import extend_prompt
from ._rules import MAX_SEED, Generation
from ._settings import EmulatorSettings
from ._tasks import Task

__all__ = ["new_task"]


def new_task(
    gen: Generation,
    *,
    account: str,
    ref: bytes | str | None,
    now: float,
    task_id: str,
    request_id: str,
    settings: EmulatorSettings,
    rngs: Mapping[str, random.Random],
) -> Task:
    """The task `gen` creates for `account` at `now`, with every decision about it made.

    `rngs` holds the seeded generators "seed" (a server-chosen seed), "partial" and "corrupt" (the
    fault rates). Each is drawn in the same order on every call, whether or not its draw is used,
    so a fresh emulator with the same settings repeats its choices request for request.
    """
    spec = gen.spec
    seed = gen.seed
    if seed is None:  # the server picks one (§2.2); it is kept so the images can be rendered later
        # From the settings' seed, not the (random) task id: a fresh emulator repeats its choices.
        seed = rngs["seed"].randint(0, MAX_SEED)
    # Over-long prompts are cut silently (§2.2). The image follows the cut text, while orig_prompt
    # echoes what was sent (the spec is silent on which), so clients can match results to requests.
    effective = gen.prompt[: spec.prompt_limit]
    negative = None if gen.negative_prompt is None else gen.negative_prompt[: spec.negative_prompt_limit]
    duration = spec.expected_seconds(gen.prompt_extend) * settings.time_scale
    failure: tuple[str, str] | None = None
    failed: frozenset[int] = frozenset()
    partial_roll = rngs["partial"].random()
    corrupt_roll = rngs["corrupt"].random()
    if gen.size_error is not None:
        # V1 checks the size asynchronously (doc sample v1-query-failed-doc); such a check
        # fails fast, so the task fails within a (scaled) second instead of the full duration.
        failure = ("InvalidParameter", gen.size_error)
        duration = min(duration, 1.0 * settings.time_scale)
    elif settings.output_inspection_word and settings.output_inspection_word in gen.prompt:
        failure = ("DataInspectionFailed", errors.OUTPUT_INSPECTION_MESSAGE)
    elif (settings.partial_failure_word and settings.partial_failure_word in gen.prompt) or (
        partial_roll < settings.partial_failure_rate
    ):
        failed = frozenset({gen.n - 1})
        if gen.n == 1:
            failure = ("InternalError.Timeout", errors.TIMEOUT_ITEM_MESSAGE)
    corrupt = bool(settings.corrupt_image_word and settings.corrupt_image_word in gen.prompt) or (
        corrupt_roll < settings.corrupt_image_rate
    )
    return Task(
        task_id=task_id,
        request_id=request_id,
        account=account,
        model=spec.name,
        model_name=gen.model_name,
        family=spec.family,
        prompt=gen.prompt,
        effective_prompt=effective,
        negative_prompt=negative,
        width=gen.width,
        height=gen.height,
        n=gen.n,
        seed=seed,
        style=gen.style,
        ref=ref,
        ref_strength=gen.ref_strength,
        ref_mode=gen.ref_mode,
        watermark=gen.watermark,
        prompt_extend=gen.prompt_extend,
        actual_prompt=extend_prompt(effective) if gen.prompt_extend else None,
        size_label=gen.size_label or f"{gen.width}*{gen.height}",
        thinking_mode=gen.thinking_mode,
        submit_time=now,
        duration=duration,
        failure=failure,
        failed_items=failed,
        corrupt=corrupt,
        grain=settings.image_weight == "service",
    )
