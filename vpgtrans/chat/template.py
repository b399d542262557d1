"""The chat template a model carries: one Jinja template in its processor, used everywhere.

Stage 3, `vpgtrans chat`, `vpgtrans serve` and the chat evaluation all render conversations
with `processor.apply_chat_template`, so nothing guesses a format from a model's name. The
template is the destination tokenizer's own when it has one (Vicuna, Llama-3, Qwen...),
wrapped so that an image part becomes the model's `num_query_tokens` `<image>` tokens where
the message puts it; without one, it is MiniGPT-4's `###Human: <Img>...</Img> ###Assistant:`
layout (VL-Vicuna's). A chat model (after stage 3) saves its processor with
`num_query_tokens=None`, so `processor.apply_chat_template(..., tokenize=True)` leaves the image
tokens where the template put them instead of prepending another set (transformers' BLIP-2
habit); the other exports keep BLIP-2's `processor(images=..., text=...)` behaviour.
"""

from __future__ import annotations

from typing import Any

from transformers import Blip2Processor, GenerationConfig, PreTrainedTokenizerBase

from ..errors import VPGTransError

IMAGE_TOKEN = "<image>"
# MiniGPT-4's system prompt and separator (VL-Vicuna's chat format).
MINIGPT4_SYSTEM = (
    "Give the following image: <Img>ImageContent</Img>. You will be able to see the image once I provide it to you. "
    "Please answer my questions."
)
_SENTINEL = "\u2063vpgtrans-answer\u2063"  # an answer no template alters, to find what a template puts around it

# An image part renders as its soft tokens; content may be a string or a list of typed parts.
_CONTENT_MACRO = """{%- macro render_content(content, image_text) -%}
{%- if content is string -%}{{ content }}{%- else -%}
{%- for part in content -%}
{%- if part['type'] == 'image' -%}{{ image_text }}{%- elif part['type'] == 'text' -%}{{ part['text'] }}{%- endif -%}
{%- endfor -%}{%- endif -%}
{%- endmacro -%}
"""

_MINIGPT4 = (
    _CONTENT_MACRO
    + """{%- set image_text = '<Img>' + IMAGES + '</Img> ' -%}
{{- bos_token -}}
{%- if messages and messages[0]['role'] == 'system' -%}
{{- render_content(messages[0]['content'], image_text) -}}{%- set loop_messages = messages[1:] -%}
{%- else -%}{{- SYSTEM -}}{%- set loop_messages = messages -%}{%- endif -%}
{{- '###' -}}
{%- for message in loop_messages -%}
{%- if message['role'] == 'user' -%}{{- 'Human: ' + render_content(message['content'], image_text) + '###' -}}
{%- elif message['role'] == 'assistant' -%}
{{- 'Assistant: ' + render_content(message['content'], image_text) + '###' -}}
{%- else -%}{{- raise_exception('roles are system (first), user and assistant; got ' + message['role']) -}}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- 'Assistant:' -}}{%- endif -%}"""
)

# Before the tokenizer's own template: flatten every message to a string, images as soft tokens.
_WRAPPER = (
    _CONTENT_MACRO
    + """{%- set flat = namespace(messages=[]) -%}
{%- for message in messages -%}
{%- set flat.messages = flat.messages + [{'role': message['role'],
    'content': render_content(message['content'], IMAGES + '\\n')}] -%}
{%- endfor -%}
{%- set messages = flat.messages -%}
"""
)


def _literal(text: str) -> str:
    """A Jinja string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def build_chat_template(tokenizer: PreTrainedTokenizerBase, num_query_tokens: int) -> str:
    """The model's template: the tokenizer's own (wrapped), else MiniGPT-4's; images as
    `num_query_tokens` `<image>` tokens where the message puts them."""
    images = f"{{%- set IMAGES = {_literal(IMAGE_TOKEN * num_query_tokens)} -%}}\n"
    own = tokenizer.chat_template
    if isinstance(own, dict):  # several named templates: the default one chats
        own = own.get("default")
    if own:
        return images + _WRAPPER + own
    return images + f"{{%- set SYSTEM = {_literal(MINIGPT4_SYSTEM)} -%}}\n" + _MINIGPT4


def attach_chat_template(processor: Blip2Processor, num_query_tokens: int) -> Blip2Processor:
    """Give the processor (and its tokenizer, which shares the saved file) the model's template."""
    template = build_chat_template(processor.tokenizer, num_query_tokens)
    processor.chat_template = template
    processor.tokenizer.chat_template = template
    return processor


def render(processor: Any, messages: list[dict], add_generation_prompt: bool = False) -> str:
    """The conversation as the model reads it (text, with the image tokens in place)."""
    if not getattr(processor, "chat_template", None):
        raise VPGTransError(
            "the model has no chat template (no chat_template.jinja in its folder): chat with a model that "
            "`vpgtrans transfer` or `vpgtrans instruct` wrote, or graft this one again with `vpgtrans init`"
        )
    try:
        return processor.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=False)
    except Exception as exc:  # jinja2's TemplateError and the template's own raise_exception
        raise VPGTransError(f"chat template cannot render this conversation: {exc}") from exc


def end_marker(processor: Any) -> str:
    """What the template writes after an answer (`###`, `</s>`, `<|im_end|>`...): generation stops there."""
    text = render(processor, [{"role": "user", "content": "hi"}, {"role": "assistant", "content": _SENTINEL}])
    after = text.split(_SENTINEL, 1)[1].strip()
    return after.split()[0] if after else processor.tokenizer.eos_token


def check_chat_model(model: Any, processor: Any) -> None:
    """A model chats (and is instruction-tuned) when its LLM is decoder-only and its template gives an
    image exactly `num_query_tokens` `<image>` tokens."""
    if not model.config.use_decoder_only_language_model:
        raise VPGTransError(
            f"chat and instruction tuning need a decoder-only LLM; this model's is the encoder-decoder "
            f"{model.config.text_config.model_type!r}"
        )
    num_query_tokens = model.config.num_query_tokens
    text = render(processor, [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]}])
    found = text.count(IMAGE_TOKEN)
    if found != num_query_tokens:
        raise VPGTransError(
            f"chat_template.jinja gives an image {found} {IMAGE_TOKEN} tokens, but the model has "
            f"{num_query_tokens} query tokens"
        )


def answer_spans(processor: Any, messages: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of the assistant's answers (each with its
    end marker): what stage 3 trains on."""
    text = render(processor, messages)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = render(processor, messages[:i], add_generation_prompt=True)
        through = render(processor, messages[: i + 1])
        if not (through.startswith(prompt) and text.startswith(through)):
            raise VPGTransError(
                "the chat template renders earlier turns differently once an answer follows, so the answers "
                "cannot be located for the loss"
            )
        start = len(prompt) + len(through[len(prompt) :]) - len(through[len(prompt) :].lstrip())
        spans.append((start, len(through)))
    return text, spans


def marker_token_id(processor: Any) -> int | None:
    """The end marker's id when it is one special or added token (`</s>`, `<|im_end|>`): only then does
    the model always emit it as that token. Plain text such as `###` tokenizes differently after an
    answer than alone (LLaMA: `##` + `#`, or `▁###`), so it is matched as a stop string instead."""
    tokenizer = processor.tokenizer
    marker = end_marker(processor)
    special = set(tokenizer.all_special_tokens) | set(tokenizer.get_added_vocab())
    return tokenizer.convert_tokens_to_ids(marker) if marker in special else None


def stop_token_ids(processor: Any) -> list[int]:
    """End-of-answer token ids: EOS, and the end marker when it is a token of its own."""
    ids = {processor.tokenizer.eos_token_id, marker_token_id(processor)} - {None}
    return sorted(ids)


def chat_generation_config(processor: Any) -> GenerationConfig:
    """A chat model's decoding defaults (VL-Vicuna's: up to 300 new tokens, stop at the end of the
    answer, never emit `<image>`), so a plain `model.generate` answers as `vpgtrans chat` does (a marker
    that is plain text, MiniGPT-4's `###`, also needs `stop_strings` and the tokenizer: docs/formats.md)."""
    tokenizer = processor.tokenizer
    return GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=stop_token_ids(processor),
        pad_token_id=tokenizer.pad_token_id,
        max_new_tokens=300,
        suppress_tokens=[tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)],
    )
