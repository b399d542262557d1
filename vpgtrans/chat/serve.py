"""`vpgtrans serve`: a gradio chat page at `/` and an OpenAI-compatible `/v1/chat/completions`, one app.

Both answer through `ChatModel.answer`, streaming. The page gives each browser session its own
conversation (LLaVA and MiniGPT-4 demo their models the same way); the endpoint takes OpenAI's
request schema with images as base64 data URLs. The server reads no network (remote image URLs
are refused, and so is gradio's fetching of http(s) files for the page) and serves no file
outside gradio's upload and cache folders.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import html
import io
import json
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from copy import deepcopy
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Literal

from PIL import Image

from ..errors import VPGTransError
from ..io.images import open_rgb, to_rgb
from .config import ChatSettings, ServeArgs
from .session import ChatModel, ChatSession, Reply

try:
    import gradio as gr
    import uvicorn
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, StreamingResponse
    from gradio.utils import get_upload_folder
    from pydantic import BaseModel, Field, ValidationError
    from starlette.concurrency import run_in_threadpool
    from starlette.types import ASGIApp, Message, Receive, Scope, Send
except ImportError as exc:  # the `serve` extra is optional
    raise VPGTransError(f"vpgtrans serve needs gradio ({exc}): pip install 'vpgtrans[serve]'") from exc

MB = 1_000_000
ROLES = ("system", "user", "assistant")


def model_id(chat: ChatModel) -> str:
    """The model's name for clients: a folder's own name (not where it lies on the server), or the hub id."""
    path = Path(chat.name)
    return path.name if path.is_dir() else chat.name


async def stream(run: Callable[[Callable[[str], None]], Reply], stop: threading.Event) -> AsyncIterator[str | Reply]:
    """Run a blocking answer in a thread (`run(on_text)`), yielding its growing text here, then its Reply.
    Leaving early (a cancelled gradio event, a closed connection) sets `stop`, so the generation ends too."""
    loop = asyncio.get_running_loop()
    updates: asyncio.Queue[str | Reply | Exception] = asyncio.Queue()

    def put(item: str | Reply | Exception) -> None:
        loop.call_soon_threadsafe(updates.put_nowait, item)

    def work() -> None:
        try:
            put(run(put))
        except Exception as exc:  # re-raised in the caller's task
            put(exc)

    threading.Thread(target=work, daemon=True).start()
    try:
        while True:
            item = await updates.get()
            if isinstance(item, Exception):
                raise item
            yield item
            if isinstance(item, Reply):
                return
    finally:
        stop.set()


# ----------------------------------------------------------------------------------------------
# The OpenAI-compatible endpoint


class ApiError(Exception):
    """A request the endpoint refuses, answered in OpenAI's error shape."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None, status: int = 400):
        super().__init__(message)
        self.param, self.code, self.status = param, code, status


def error_body(message: str, param: str | None = None, code: str | None = None, status: int = 400) -> dict:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error_response(message: str, param: str | None = None, code: str | None = None, status: int = 400) -> JSONResponse:
    return JSONResponse(error_body(message, param, code, status), status)


class _ImageURL(BaseModel):
    url: str


class _TextPart(BaseModel):
    type: Literal["text"]
    text: str


class _ImagePart(BaseModel):
    type: Literal["image_url"]
    image_url: _ImageURL


class _Message(BaseModel):
    role: str
    content: str | list[Annotated[_TextPart | _ImagePart, Field(discriminator="type")]]


class _StreamOptions(BaseModel):
    include_usage: bool = False


class CompletionRequest(BaseModel):
    """The fields of OpenAI's chat completions request this server reads; the others are ignored, and
    an omitted setting keeps the server's (`vpgtrans serve` flags)."""

    messages: list[_Message]
    model: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    n: int = 1
    seed: int | None = None
    stream: bool = False
    stream_options: _StreamOptions | None = None


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused as soon as it passes `limit` bytes (it need not all arrive first)."""
    too_big = ApiError(
        f"the request body is over {limit / MB:g} MB (--max-request-mb)", code="request_too_large", status=413
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_big
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_big
    return bytes(body)


def parse_request(body: bytes) -> CompletionRequest:
    """The request, or a 400 naming the first field at fault."""
    try:
        return CompletionRequest.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"]).lstrip(".")
        raise ApiError(f"{where or 'request'}: {first['msg']}", where or None) from exc


_DATA_URL = re.compile(r"data:(?P<mime>[^;,]*)(?P<params>(?:;[^;,]*)*),(?P<data>.*)", re.DOTALL)


def decode_image(url: str, where: str, max_bytes: int) -> Image.Image:
    """An image part's picture, from a base64 data URL only (the server reads no network); its size is
    checked before it is decoded."""
    if url.lower().startswith(("http://", "https://")):
        raise ApiError(
            f"{where}: remote image URLs are refused (this server reads no network); send the image as a data "
            "URL (data:image/png;base64,...)",
            where,
            "remote_image_url",
        )
    match = _DATA_URL.fullmatch(url)
    if not match:
        raise ApiError(f"{where}: not a data URL; send the image as data:image/png;base64,...", where, "bad_image_url")
    if not match["mime"].lower().startswith("image/"):
        raise ApiError(
            f"{where}: the data URL holds {match['mime'] or 'untyped data'}, not an image", where, "not_image"
        )
    if ";base64" not in match["params"].lower():
        raise ApiError(f"{where}: the data URL is not base64-encoded", where, "bad_image_url")
    size = len(match["data"]) * 3 // 4
    if size > max_bytes:
        raise ApiError(
            f"{where}: the image is {size / MB:.2f} MB; this server accepts images up to {max_bytes / MB:g} MB "
            "(--max-image-mb)",
            where,
            "image_too_large",
        )
    try:
        raw = base64.b64decode(match["data"], validate=True)
    except binascii.Error as exc:
        raise ApiError(f"{where}: the data URL's base64 is malformed ({exc})", where, "bad_image_url") from exc
    try:
        with Image.open(io.BytesIO(raw)) as image:
            return to_rgb(image)
    except Exception as exc:  # PIL's decoders raise many kinds on a corrupt or hostile file
        raise ApiError(f"{where}: the image cannot be decoded ({exc})", where, "bad_image") from exc


def conversation(request: CompletionRequest, max_image_bytes: int) -> tuple[list[dict], list[Image.Image]]:
    """The request's messages as the chat template takes them (image parts `{"type": "image"}`) and their
    decoded images in order."""
    if not request.messages:
        raise ApiError("messages is empty: send at least the user's question", "messages")
    messages: list[dict] = []
    images: list[Image.Image] = []
    for i, message in enumerate(request.messages):
        where = f"messages[{i}]"
        if message.role not in ROLES:
            raise ApiError(f"{where}.role {message.role!r} is unknown: roles are {', '.join(ROLES)}", f"{where}.role")
        if message.role == "system" and i:
            raise ApiError(f"{where}: a system message may only come first", f"{where}.role")
        content: str | list[dict] = message.content if isinstance(message.content, str) else []
        for j, part in enumerate([] if isinstance(message.content, str) else message.content):
            if isinstance(part, _TextPart):
                content.append({"type": "text", "text": part.text})
            else:
                images.append(decode_image(part.image_url.url, f"{where}.content[{j}].image_url.url", max_image_bytes))
                content.append({"type": "image"})
        messages.append({"role": message.role, "content": content})
    if messages[-1]["role"] != "user":
        last = f"messages[{len(messages) - 1}].role"
        raise ApiError(f"{last} is {messages[-1]['role']!r}: the last message must be the user's, to answer", last)
    return messages, images


def request_settings(request: CompletionRequest, settings: ChatSettings) -> ChatSettings:
    """The server's decoding settings with the request's; an out-of-range value fails their validation."""
    if request.n != 1:
        raise ApiError(f"n is {request.n}: this server gives one choice per request (n must be 1)", "n")
    limit = request.max_completion_tokens if request.max_completion_tokens is not None else request.max_tokens
    given = {"temperature": request.temperature, "top_p": request.top_p, "max_new_tokens": limit, "seed": request.seed}
    return replace(settings, **{k: v for k, v in given.items() if v is not None})


def finish_reason(reply: Reply, budget: int) -> str:
    """Why the answer ended: "length" when it ran out of new tokens, else "stop"."""
    return "length" if reply.new_tokens >= budget and not reply.stopped else "stop"


def usage(reply: Reply) -> dict:
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.new_tokens,
        "total_tokens": reply.prompt_tokens + reply.new_tokens,
    }


def completion(ident: str, model: str, reply: Reply, budget: int) -> dict:
    """A non-streaming answer in OpenAI's shape."""
    return {
        "id": ident,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.text},
                "finish_reason": finish_reason(reply, budget),
                "logprobs": None,
            }
        ],
        "usage": usage(reply),
    }


def chunk(ident: str, model: str, choices: list[dict], **extra: Any) -> str:
    """One server-sent event of a streamed answer."""
    body = {"id": ident, "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
    return f"data: {json.dumps({**body, 'choices': choices, **extra})}\n\n"


async def events(
    chat: ChatModel,
    messages: list[dict],
    images: list[Image.Image],
    settings: ChatSettings,
    budget: int,
    usage_too: bool,
) -> AsyncIterator[str]:
    """The answer as server-sent events: the role, text deltas that add up to the answer, the finish reason
    (and the usage when asked for), then [DONE]. A closed connection stops the generation."""
    ident, model, sent, stop = f"chatcmpl-{uuid.uuid4().hex}", model_id(chat), "", threading.Event()
    yield chunk(ident, model, [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
    try:
        async for update in stream(lambda on_text: chat.answer(messages, images, settings, on_text, stop), stop):
            # Trailing spaces wait: the final answer is stripped, and the deltas must add up to it.
            text = update.text if isinstance(update, Reply) else update.rstrip()
            if len(text) > len(sent) and text.startswith(sent):
                yield chunk(
                    ident, model, [{"index": 0, "delta": {"content": text[len(sent) :]}, "finish_reason": None}]
                )
                sent = text
            reply = update
    except VPGTransError as exc:
        yield f"data: {json.dumps(error_body(str(exc)))}\n\n"
    else:
        yield chunk(ident, model, [{"index": 0, "delta": {}, "finish_reason": finish_reason(reply, budget)}])
        if usage_too:
            yield chunk(ident, model, [], usage=usage(reply))
    yield "data: [DONE]\n\n"


def add_openai_routes(app: FastAPI, chat: ChatModel, settings: ChatSettings, args: ServeArgs) -> None:
    """`POST /v1/chat/completions` and `GET /v1/models`, with errors in OpenAI's shape."""
    created = int(time.time())

    @app.exception_handler(ApiError)
    async def refused(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(str(exc), exc.param, exc.code, exc.status)

    @app.exception_handler(VPGTransError)
    async def invalid(request: Request, exc: VPGTransError) -> JSONResponse:
        return error_response(str(exc))

    @app.get("/v1/models")
    async def models() -> dict:
        return {
            "object": "list",
            "data": [{"id": model_id(chat), "object": "model", "created": created, "owned_by": "vpgtrans"}],
        }

    @app.post("/v1/chat/completions")
    async def completions(request: Request) -> Any:
        asked = parse_request(await read_body(request, int(args.max_request_mb * MB)))
        messages, images = conversation(asked, int(args.max_image_mb * MB))
        wanted = request_settings(asked, settings)
        # Fitting first makes a too-long conversation a 400 even when streaming, and gives the token budget.
        budget = (await run_in_threadpool(chat.fit, messages, wanted))[3]
        if asked.stream:
            usage_too = bool(asked.stream_options and asked.stream_options.include_usage)
            return StreamingResponse(
                events(chat, messages, images, wanted, budget, usage_too),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache"},
            )
        reply = await run_in_threadpool(chat.answer, messages, images, wanted)
        return completion(f"chatcmpl-{uuid.uuid4().hex}", model_id(chat), reply, budget)


# ----------------------------------------------------------------------------------------------
# What gradio may read: uploads, nothing else

_REMOTE_FILE = re.compile(r"/file[=/]\s*https?:", re.IGNORECASE)


def file_paths(value: Any) -> Iterator[str]:
    """Every file path (a FileData's `path`) in a gradio request's JSON."""
    if isinstance(value, dict):
        if isinstance(value.get("path"), str):
            yield value["path"]
        value = list(value.values())
    if isinstance(value, list):
        for item in value:
            yield from file_paths(item)


def uploaded(path: str) -> bool:
    """Whether `path` is a file a user uploaded: in gradio's upload folder (never a URL)."""
    folder = Path(get_upload_folder()).resolve()
    return "://" not in path and Path(path).resolve().is_relative_to(folder)


async def whole_body(receive: Receive) -> bytes:
    body = bytearray()
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return bytes(body)


def replayed(body: bytes, receive: Receive) -> Receive:
    """`receive` that hands over an already-read body first."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay


def refused_by_gradio_guard(scope: Scope, body: bytes | None) -> str | None:
    """Why a request to the page's routes is refused, if it is: gradio's file route relays http(s) URLs,
    and a mounted gradio app (never `launch`ed) skips its check that a file input names an upload,
    copying whatever server file or URL a client names into its cache, whence it is served."""
    if _REMOTE_FILE.search(scope["path"]):
        return "this server fetches no URLs"
    try:
        paths = list(file_paths(json.loads(body))) if body else []
    except ValueError:  # not JSON: gradio parses it, or refuses it, itself
        paths = []
    foreign = [path for path in paths if not uploaded(path)]
    return f"files must be uploaded first, not named: {', '.join(foreign)}" if foreign else None


def gradio_guard(app: ASGIApp) -> ASGIApp:
    """The server reads no network and gives the page no file but its uploads: see `refused_by_gradio_guard`.
    Only bodies of POSTs to gradio's API are read here (not the uploads' form data)."""

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        inspect = (
            scope["method"] == "POST"
            and scope["path"].startswith("/gradio_api/")
            and not headers.get(b"content-type", b"").startswith(b"multipart/form-data")
        )
        body = await whole_body(receive) if inspect else None
        reason = refused_by_gradio_guard(scope, body)
        if reason:
            await error_response(reason, code="refused", status=403)(scope, receive, send)
            return
        await app(scope, replayed(body, receive) if inspect else receive, send)

    return guarded


# ----------------------------------------------------------------------------------------------
# The chat page


class Visitor:
    """One browser session: its conversation, the switch that stops its running answer, and a lock so
    that one answer at a time changes the conversation. (Not a dataclass: gradio would turn its initial
    value into the page's config.)"""

    def __init__(self, session: ChatSession):
        self.session, self.stop, self.busy = session, threading.Event(), threading.Lock()

    def __deepcopy__(self, memo: dict) -> Visitor:
        """gr.State copies its initial value for every browser session: a new conversation with the same
        model (copying the model would copy its weights)."""
        return Visitor(ChatSession(self.session.chat, deepcopy(self.session.settings, memo)))


def history(session: ChatSession) -> list[dict]:
    """The conversation as the chatbot shows it: a question's images (their upload paths) before its text."""
    return [
        {
            "role": m["role"],
            "content": m["content"]
            if isinstance(m["content"], str)
            else [{"path": p["image"]} if p["type"] == "image" else p["text"] for p in m["content"]],
        }
        for m in session.transcript()["messages"]
    ]


def question(image: str | None, text: str) -> dict:
    """The question as `history` will show it once asked."""
    return {"role": "user", "content": [*([{"path": image}] if image else []), text.strip()]}


def page_settings(
    base: ChatSettings, temperature: float, top_p: float, max_new_tokens: float, num_beams: float
) -> ChatSettings:
    """The page's generation controls over the server's settings (sliders may hand back floats)."""
    return replace(
        base,
        temperature=float(temperature),
        top_p=float(top_p),
        max_new_tokens=int(max_new_tokens),
        num_beams=int(num_beams),
    )


def attach(session: ChatSession, image: str | None) -> None:
    """The image in the upload box goes with the next question: the box holds what is pending."""
    session.pending.clear()
    if image:
        session.show(open_rgb(image, "the uploaded image"), image)


def warn(exc: Exception) -> None:
    """A problem shown on the page (gradio renders the message as HTML)."""
    gr.Warning(html.escape(str(exc)))


def answering(
    visitor: Visitor, run: Callable[[Callable[[str], None], threading.Event], Reply]
) -> AsyncIterator[str | Reply]:
    """`run(on_text, stop)` streamed, under the visitor's lock, with a new stop switch for the Stop button."""
    stop = visitor.stop = threading.Event()

    def locked(on_text: Callable[[str], None]) -> Reply:
        with visitor.busy:
            return run(on_text, stop)

    return stream(locked, stop)


async def ask(visitor: Visitor, upload: dict | None, text: str, *controls: float) -> AsyncIterator[tuple]:
    """Ask the question, with the uploaded image, streaming the answer into the chat. Outputs: the
    chat, the question box (cleared; given back on an error), the image box (cleared once asked).
    The upload comes unprocessed (gradio's FileData, its path checked to be in gradio's upload folder):
    gradio's own decoding would turn a bad image into a stack trace instead of a warning."""
    session = visitor.session
    image = upload["path"] if upload else None
    try:
        session.settings = page_settings(session.settings, *controls)
        attach(session, image)
    except VPGTransError as exc:
        warn(exc)
        yield history(session), gr.skip(), gr.skip()
        return
    shown = [*history(session), question(image, text)]
    yield shown, "", gr.skip()
    try:
        async for update in answering(visitor, lambda on_text, stop: session.ask(text, on_text, stop)):
            if isinstance(update, str):
                yield [*shown, {"role": "assistant", "content": update}], gr.skip(), gr.skip()
    except VPGTransError as exc:  # the session is as it was
        warn(exc)
        yield history(session), text, gr.skip()
        return
    yield history(session), gr.skip(), None


async def regenerate(visitor: Visitor, *controls: float) -> AsyncIterator[list[dict]]:
    """The last answer again, streaming, with the page's current controls."""
    session = visitor.session
    try:
        session.settings = page_settings(session.settings, *controls)
    except VPGTransError as exc:
        warn(exc)
        yield history(session)
        return
    shown = history(session)
    shown = shown[:-1] if shown and shown[-1]["role"] == "assistant" else shown
    yield shown
    try:
        async for update in answering(visitor, lambda on_text, stop: session.regenerate(on_text, stop)):
            if isinstance(update, str):
                yield [*shown, {"role": "assistant", "content": update}]
    except VPGTransError as exc:
        warn(exc)
    yield history(session)


def halt(visitor: Visitor) -> None:
    """Stop: the running answer ends at its next token and keeps what it has."""
    visitor.stop.set()


def forget(visitor: Visitor) -> tuple[list, str, None]:
    """Clear: a new conversation, once a running answer has stopped."""
    visitor.stop.set()
    with visitor.busy:
        visitor.session.reset()
    return [], "", None


def build_page(chat: ChatModel, settings: ChatSettings) -> gr.Blocks:
    """The chat page: an image, the chat, a question box with Send, Stop, Regenerate and Clear, and the
    generation controls, which act on every answer."""
    name = model_id(chat)
    with gr.Blocks(title=f"vpgtrans: {name}", analytics_enabled=False) as page:
        visitor = gr.State(Visitor(ChatSession(chat, settings)))
        gr.Markdown(f"### Chat with {html.escape(name)}\nAn image goes with the next question; answers stream.")
        with gr.Row():
            with gr.Column(scale=1):
                image = gr.Image(
                    type="filepath", image_mode=None, sources=["upload", "clipboard"], label="Image", elem_id="image"
                )
                with gr.Accordion("Generation", open=False):
                    controls = [
                        gr.Slider(
                            0, max(2.0, settings.temperature), settings.temperature, label="Temperature (0: greedy)"
                        ),
                        gr.Slider(min(0.01, settings.top_p), 1, settings.top_p, label="Top-p (when sampling)"),
                        gr.Slider(
                            1,
                            max(1024, settings.max_new_tokens),
                            settings.max_new_tokens,
                            step=1,
                            label="Max new tokens",
                        ),
                        gr.Slider(
                            1,
                            max(8, settings.num_beams),
                            settings.num_beams,
                            step=1,
                            label="Beams (above 1: no streaming)",
                        ),
                    ]
            with gr.Column(scale=2):
                chatbot = gr.Chatbot(label="Conversation", elem_id="chatbot", height=480)
                text = gr.Textbox(placeholder="Ask about the image", show_label=False, elem_id="question")
                with gr.Row():
                    send = gr.Button("Send", variant="primary", elem_id="send")
                    stop = gr.Button("Stop", elem_id="stop")
                    again = gr.Button("Regenerate", elem_id="regenerate")
                    clear = gr.Button("Clear", elem_id="clear")
        asking = [visitor, image, text, *controls]
        running = [
            send.click(ask, asking, [chatbot, text, image], preprocess=False),
            text.submit(ask, asking, [chatbot, text, image], preprocess=False),
            again.click(regenerate, [visitor, *controls], [chatbot]),
        ]
        stop.click(halt, [visitor], None, cancels=running, queue=False)
        clear.click(forget, [visitor], [chatbot, text, image], cancels=running, queue=False)
    return page


# ----------------------------------------------------------------------------------------------
# The app


def build_app(chat: ChatModel, settings: ChatSettings, args: ServeArgs) -> FastAPI:
    """The endpoint under /v1 and the page at /. Gradio serves only its upload and cache folders (never the
    model's folder, blocked outright) and fetches no URL."""
    app = FastAPI(title="vpgtrans serve", docs_url=None, redoc_url=None, openapi_url=None)
    add_openai_routes(app, chat, settings, args)
    app.add_middleware(gradio_guard)
    model_folder = Path(chat.name)
    return gr.mount_gradio_app(
        app,
        build_page(chat, settings),
        path="/",
        max_file_size=int(args.max_image_mb * MB),
        blocked_paths=[str(model_folder.resolve())] if model_folder.is_dir() else [],
        ssr_mode=False,
        mcp_server=False,
        run_history=False,
    )


def serve(chat: ChatModel, settings: ChatSettings, args: ServeArgs) -> None:
    """Serve the page and the endpoint until Ctrl-C."""
    app = build_app(chat, settings, args)
    url = f"http://{f'[{args.host}]' if ':' in args.host else args.host}:{args.port}"
    print(f"chat page: {url}/   OpenAI-compatible API: {url}/v1   model: {model_id(chat)}   (Ctrl-C stops)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
