"""The twin models' chat format: special tokens and the jinja chat template.

The format is ChatML, like Qwen3's. vLLM's qwen3 reasoning parser treats `<|im_start|>` and
`<|im_end|>` as turn boundaries when it looks for `<think>`/`</think>` in a prompt, so using the
same markers keeps its behaviour on the twin identical to the real stack.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
THINK_START = "<think>"
THINK_END = "</think>"

# Order fixes the ids 0..4: they are added before BPE training, so they are stable whatever the
# training text is.
SPECIAL_TOKENS: tuple[str, ...] = (ENDOFTEXT, IM_START, IM_END, THINK_START, THINK_END)

BOS_TOKEN = ENDOFTEXT
PAD_TOKEN = ENDOFTEXT
# The end of an assistant turn is the end of generation, as in ChatML models.
EOS_TOKEN = IM_END

# Whitespace lives in explicit '\n' strings and every tag trims, so the output is the same with or
# without the trim_blocks/lstrip_blocks options that transformers turns on.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- if enable_thinking is defined and enable_thinking is false -%}"
    "{{- '<think>\\n\\n</think>\\n\\n' -}}"
    "{%- endif -%}"
    "{%- endif -%}"
)


@cache
def _compiled_template() -> jinja2.Template:
    # The same environment options transformers' apply_chat_template uses, which is how vLLM
    # renders a chat request: training prompts are then byte-identical to served ones.
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(CHAT_TEMPLATE)


def render_chat(
    messages: Sequence[Mapping[str, Any]],
    *,
    add_generation_prompt: bool = True,
    enable_thinking: bool | None = None,
) -> str:
    """Render messages through CHAT_TEMPLATE exactly as the served model would."""
    kwargs: dict[str, Any] = {"messages": list(messages)}
    kwargs["add_generation_prompt"] = add_generation_prompt
    if enable_thinking is not None:
        kwargs["enable_thinking"] = enable_thinking
    return _compiled_template().render(**kwargs)
