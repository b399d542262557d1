"""Talking to a BLIP-2 chat model: its template renders the conversation, the model answers, streaming.

`ChatModel` is a loaded model with its processor and end marker; `ChatSession` is one
conversation (images shown, turns asked, a transcript). The terminal chat, the web page and
the OpenAI-compatible endpoint all answer through `ChatModel.answer`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from PIL import Image
from transformers import StoppingCriteria, StoppingCriteriaList, StopStringCriteria, TextIteratorStreamer

from ..errors import VPGTransError
from ..io.images import to_rgb
from .config import ChatSettings
from .template import IMAGE_TOKEN, check_chat_model, end_marker, marker_token_id, render, stop_token_ids


@dataclass
class Reply:
    """One answer and what it took to produce it."""

    text: str
    prompt_tokens: int
    new_tokens: int
    dropped_turns: int = 0  # oldest turns left out to fit the context
    stopped: bool = False  # stopped by the user before its end


class _StopOnEvent(StoppingCriteria):
    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids, scores, **kwargs) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


def _held_back(text: str, marker: str) -> int:
    """Characters at the end of `text` that may be the start of `marker`: not shown until it is clear."""
    for keep in range(min(len(marker) - 1, len(text)), 0, -1):
        if marker.startswith(text[-keep:]):
            return keep
    return 0


def image_parts(content: Any) -> int:
    """How many images a message's content shows."""
    return 0 if isinstance(content, str) else sum(part.get("type") == "image" for part in content)


class ChatModel:
    """A BLIP-2 model that chats: the template its processor carries decides the format and the stop."""

    def __init__(self, model, processor, name: str = ""):
        self.model, self.processor, self.name = model.eval(), processor, name
        self.tokenizer = processor.tokenizer
        self.num_query_tokens = model.config.num_query_tokens
        check_chat_model(model, processor)
        self.marker = end_marker(processor)
        # End-of-answer token ids, and the marker as a stop string when it is not a token of its own:
        # read off the template once, not per answer.
        self.stop_ids = stop_token_ids(processor)
        self.stop_strings = [] if marker_token_id(processor) is not None else [self.marker]
        self.image_token_id = self.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        self.max_positions = getattr(model.config.text_config, "max_position_embeddings", None)
        self.lock = threading.Lock()  # one generation at a time on one model

    @classmethod
    def load(cls, ref: str, precision: str = "fp32") -> ChatModel:
        from ..method.graft import load_blip2
        from ..pipeline import check_precision
        from ..training.stages import DTYPES, set_precision

        check_precision(precision)
        model, processor = load_blip2(ref, DTYPES[precision])
        set_precision(model, precision)
        if torch.cuda.is_available():
            model.to("cuda")
        return cls(model, processor, ref)

    def fit(self, messages: list[dict], settings: ChatSettings) -> tuple[list[dict], list[int], int, int]:
        """(messages kept, prompt ids, turns dropped, new-token budget): the oldest turns go first,
        whole, until the prompt fits the context and leaves room to answer."""
        room = settings.max_context
        if self.max_positions:
            room = min(room, self.max_positions - min(settings.max_new_tokens, self.max_positions // 2))
        first = 1 if messages and messages[0]["role"] == "system" else 0
        dropped = 0
        while True:
            text = render(self.processor, messages, add_generation_prompt=True)
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            if len(ids) <= room:
                break
            users = [i for i in range(first, len(messages)) if messages[i]["role"] == "user"]
            if len(users) <= 1:
                raise VPGTransError(
                    f"the last question with its images takes {len(ids)} tokens; the context holds {room} "
                    f"(--max-context {settings.max_context}, the model's {self.max_positions} positions less room "
                    "to answer): ask a shorter question"
                )
            messages = messages[:first] + messages[users[1] :]
            dropped += 1
        budget = settings.max_new_tokens
        if self.max_positions:
            budget = max(1, min(budget, self.max_positions - len(ids)))
        return messages, ids, dropped, budget

    @torch.no_grad()
    def answer(
        self,
        messages: list[dict],
        images: list[Image.Image],
        settings: ChatSettings = ChatSettings(),
        on_text: Callable[[str], None] | None = None,
        stop: threading.Event | None = None,
    ) -> Reply:
        """The assistant's next answer to `messages` (image parts in order of `images`). `on_text` sees
        the answer as it grows (with beam search, at once); `stop` ends it early."""
        shown = sum(image_parts(m["content"]) for m in messages)
        if shown != len(images):
            raise VPGTransError(f"the conversation shows {shown} images but {len(images)} were given")
        kept, ids, dropped, budget = self.fit(messages, settings)
        images = images[len(images) - sum(image_parts(m["content"]) for m in kept) :]
        eos = self.stop_ids
        stop = stop or threading.Event()
        criteria = [_StopOnEvent(stop)]
        if self.stop_strings:
            criteria.append(StopStringCriteria(self.tokenizer, self.stop_strings))
        device = next(self.model.language_model.parameters()).device
        sample = settings.temperature > 0
        kwargs: dict[str, Any] = {
            "input_ids": torch.tensor([ids], device=device),
            "attention_mask": torch.ones(1, len(ids), dtype=torch.long, device=device),
            "max_new_tokens": budget,
            "num_beams": settings.num_beams,
            "do_sample": sample,
            "temperature": settings.temperature if sample else None,
            "top_p": settings.top_p if sample else None,
            "eos_token_id": eos,
            "pad_token_id": self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else eos[0],
            "suppress_tokens": [self.image_token_id],
            "stopping_criteria": StoppingCriteriaList(criteria),
        }
        if images:
            pixels = self.processor.image_processor([to_rgb(im) for im in images], return_tensors="pt")["pixel_values"]
            kwargs["pixel_values"] = pixels.to(device, self.model.vision_model.embeddings.patch_embedding.weight.dtype)
        generate = self.model.generate if images else self.model.language_model.generate
        with self.lock:
            if settings.seed is not None:
                torch.manual_seed(settings.seed)
            streaming = settings.num_beams == 1 and on_text is not None
            output = self._stream(generate, kwargs, on_text, stop) if streaming else generate(**kwargs)
        new = output[0, len(ids) :] if self.model.config.use_decoder_only_language_model else output[0]
        text = self.tokenizer.decode(new, skip_special_tokens=True).split(self.marker)[0].strip()
        if on_text and not streaming:
            on_text(text)
        return Reply(text, len(ids), int(len(new)), dropped, stop.is_set())

    def _stream(
        self, generate: Callable, kwargs: dict, on_text: Callable[[str], None], stop: threading.Event
    ) -> torch.Tensor:
        """Generate in a thread, handing `on_text` the answer so far, never a part of the end marker.
        Ctrl-C stops the answer where it is."""
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        result: dict[str, Any] = {}

        def work() -> None:
            try:
                result["output"] = generate(**kwargs, streamer=streamer)
            except BaseException as exc:  # re-raised in the caller's thread
                result["error"] = exc
                streamer.end()

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        text, shown = "", 0
        try:
            for piece in streamer:
                text += piece
                cut = text.find(self.marker)
                visible = (text[:cut] if cut >= 0 else text[: len(text) - _held_back(text, self.marker)]).lstrip()
                if len(visible) > shown and not stop.is_set():
                    on_text(visible)
                    shown = len(visible)
        except KeyboardInterrupt:  # Ctrl-C: generation ends at its next token; what came so far is kept
            stop.set()
        thread.join()
        if "error" in result:
            raise result["error"]
        return result["output"]


@dataclass
class ChatSession:
    """One conversation: images shown so far, turns asked and answered."""

    chat: ChatModel
    settings: ChatSettings = field(default_factory=ChatSettings)
    messages: list[dict] = field(default_factory=list)
    images: list[Image.Image] = field(default_factory=list)
    image_names: list[str] = field(default_factory=list)
    pending: list[tuple[Image.Image, str]] = field(default_factory=list)  # shown, not yet asked about

    def show(self, image: Image.Image, name: str) -> None:
        """An image for the next question."""
        self.pending.append((to_rgb(image), name))

    def ask(
        self, text: str, on_text: Callable[[str], None] | None = None, stop: threading.Event | None = None
    ) -> Reply:
        if not text.strip():
            raise VPGTransError("empty question")
        content = [{"type": "image"} for _ in self.pending] + [{"type": "text", "text": text.strip()}]
        before = (list(self.messages), list(self.images), list(self.image_names), list(self.pending))
        self.messages.append({"role": "user", "content": content})
        self.images += [image for image, _ in self.pending]
        self.image_names += [name for _, name in self.pending]
        self.pending = []
        try:
            return self._answer(on_text, stop)
        except BaseException:  # the question stays unasked: the conversation is as it was
            self.messages, self.images, self.image_names, self.pending = before
            raise

    def regenerate(self, on_text: Callable[[str], None] | None = None, stop: threading.Event | None = None) -> Reply:
        """The last answer again (a sample differs; greedy decoding repeats itself)."""
        if not self.messages or self.messages[-1]["role"] != "assistant":
            raise VPGTransError("nothing to regenerate: no answer yet")
        last = self.messages.pop()
        try:
            return self._answer(on_text, stop)
        except BaseException:
            self.messages.append(last)
            raise

    def _answer(self, on_text, stop) -> Reply:
        reply = self.chat.answer(self.messages, self.images, self.settings, on_text, stop)
        self.messages.append({"role": "assistant", "content": reply.text})
        return reply

    def reset(self) -> None:
        self.messages, self.images, self.image_names, self.pending = [], [], [], []

    def transcript(self) -> dict:
        """The conversation as JSON: image parts name their files."""
        names = iter(self.image_names)
        messages = [
            {
                **m,
                "content": m["content"]
                if isinstance(m["content"], str)
                else [{**p, "image": next(names)} if p["type"] == "image" else p for p in m["content"]],
            }
            for m in self.messages
        ]
        return {"model": self.chat.name, "settings": asdict(self.settings), "messages": messages}
