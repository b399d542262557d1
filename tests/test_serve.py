"""`vpgtrans serve`: the OpenAI-compatible endpoint over a real localhost socket, the page's handlers, and
what the server refuses to serve. The tiny chat model answers noise, but its streaming, stops and
token counts are real."""

from __future__ import annotations

import asyncio
import base64
import copy
import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn
from PIL import Image

from vpgtrans.chat.config import ChatSettings, ServeArgs
from vpgtrans.chat.serve import Visitor, ask, build_app, forget, halt, regenerate, serve
from vpgtrans.chat.session import ChatModel, ChatSession

SMALL = ServeArgs(max_image_mb=0.01, max_request_mb=0.05)  # 10 kB images, 50 kB requests
SETTINGS = ChatSettings(max_new_tokens=12)


@contextmanager
def running(app) -> Iterator[str]:
    """The app served by uvicorn on a free localhost port, in a thread; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="module")
def chat(chat_model) -> ChatModel:
    return ChatModel.load(str(chat_model))


@pytest.fixture(scope="module")
def client(chat) -> Iterator[httpx.Client]:
    with running(build_app(chat, SETTINGS, SMALL)) as url, httpx.Client(base_url=url, timeout=60) as http:
        yield http


def png(size: int = 16, noise: bool = False) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8) if noise else None
    image = Image.fromarray(pixels) if noise else Image.new("RGB", (size, size), (200, 30, 30))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def data_url(raw: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(raw).decode()}"


def with_image(url: str, text: str = "What is in the image?") -> list[dict]:
    parts = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": text}]
    return [{"role": "user", "content": parts}]


def complete(client: httpx.Client, **request) -> dict:
    response = client.post("/v1/chat/completions", json={"model": "tiny", **request})
    assert response.status_code == 200, response.text
    return response.json()


def test_answers_with_an_image(client, chat):
    answer = complete(client, messages=with_image(data_url(png())))
    choice = answer["choices"][0]
    assert answer["object"] == "chat.completion" and answer["id"].startswith("chatcmpl-")
    assert choice["message"]["role"] == "assistant" and isinstance(choice["message"]["content"], str)
    assert choice["finish_reason"] in ("stop", "length")
    used = answer["usage"]
    assert used["total_tokens"] == used["prompt_tokens"] + used["completion_tokens"]
    assert 1 <= used["completion_tokens"] <= SETTINGS.max_new_tokens
    text_only = complete(client, messages=[{"role": "user", "content": "What is in the image?"}])
    assert used["prompt_tokens"] >= text_only["usage"]["prompt_tokens"] + chat.num_query_tokens  # the image's tokens


def test_serve_listens_on_localhost_by_default(chat, monkeypatch, capsys):
    given = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: given.update(kwargs))
    serve(chat, SETTINGS, ServeArgs())
    assert (given["host"], given["port"]) == ("127.0.0.1", 7860)
    assert "http://127.0.0.1:7860/" in capsys.readouterr().out


def test_lists_the_model(client, chat_model):
    models = client.get("/v1/models").json()
    assert [m["id"] for m in models["data"]] == [chat_model.name]


def stream_events(client: httpx.Client, **request) -> list[str]:
    with client.stream("POST", "/v1/chat/completions", json={"stream": True, **request}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]


def test_streams_deltas_that_add_up_to_the_answer(client):
    request = {"messages": with_image(data_url(png())), "max_tokens": 12}
    whole = complete(client, **request)["choices"][0]
    events = stream_events(client, stream_options={"include_usage": True}, **request)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == whole["message"]["content"]
    assert chunks[-2]["choices"][0]["finish_reason"] == whole["finish_reason"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] >= 1


def test_max_tokens_and_finish_reason(client):
    one = complete(client, messages=with_image(data_url(png())), max_tokens=1)
    assert one["usage"]["completion_tokens"] == 1 and one["choices"][0]["finish_reason"] == "length"
    two = complete(client, messages=with_image(data_url(png())), max_completion_tokens=2, max_tokens=50)
    assert two["usage"]["completion_tokens"] <= 2


def test_sampling_follows_temperature_and_seed(client):
    def sample(**settings) -> str:
        messages = [{"role": "user", "content": "hello"}]
        return complete(client, messages=messages, max_tokens=16, **settings)["choices"][0]["message"]["content"]

    assert sample(temperature=1.5, seed=3) == sample(temperature=1.5, seed=3)
    assert len({sample(temperature=1.5, seed=seed) for seed in range(4)}) > 1
    assert sample(temperature=0, seed=1) == sample(temperature=0, seed=2)  # greedy ignores the seed


def image_message(url: str) -> dict:
    return {"messages": with_image(url)}


@pytest.mark.parametrize(
    ("request_body", "words"),
    [
        (image_message(data_url(b"hello", "text/plain")), "text/plain, not an image"),
        (image_message(data_url(b"not a png")), "cannot be decoded"),
        (image_message("data:image/png;base64,@@@"), "base64"),
        (image_message("file:///etc/passwd"), "not a data URL"),
        (image_message(data_url(png(64, noise=True))), "accepts images up to 0.01 MB"),
        (image_message("https://example.com/cat.png"), "remote image URLs are refused"),
        (image_message("HTTP://127.0.0.1/cat.png"), "remote image URLs are refused"),
        ({"messages": [{"role": "user", "content": "hi"}], "n": 2}, "n must be 1"),
        ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}, "last message"),
        ({"messages": [{"role": "tool", "content": "hi"}]}, "'tool' is unknown"),
        ({"messages": [{"role": "user", "content": "hi"}, {"role": "system", "content": "x"}]}, "only come first"),
        ({"messages": []}, "messages is empty"),
        ({"prompt": "hi"}, "messages: Field required"),
        ({"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": "hi"}], "temperature": -1}, "temperature must be at least 0"),
        ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, "max_new_tokens must be at least 1"),
    ],
)
def test_bad_requests_get_400_naming_the_problem(client, request_body, words):
    response = client.post("/v1/chat/completions", json=request_body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert words in error["message"]


def test_malformed_json_and_oversized_bodies(client):
    response = client.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400 and "JSON" in response.json()["error"]["message"]
    big = {"messages": [{"role": "user", "content": "x" * 60_000}]}
    response = client.post("/v1/chat/completions", json=big)
    assert response.status_code == 413 and "--max-request-mb" in response.json()["error"]["message"]
    assert complete(client, messages=[{"role": "user", "content": "still up?"}])["choices"]  # the server lives on


def test_serves_no_file_outside_gradio_folders(client, chat_model):
    assert client.get("/").status_code == 200  # the page
    uploaded = client.post("/gradio_api/upload", files={"files": ("red.png", png(), "image/png")})
    assert uploaded.status_code == 200, uploaded.text
    assert client.get(f"/gradio_api/file={uploaded.json()[0]}").content == png()  # what it does serve
    too_big = client.post("/gradio_api/upload", files={"files": ("big.png", png(64, noise=True), "image/png")})
    assert too_big.status_code == 413  # --max-image-mb holds for uploads too
    refused = [
        "/gradio_api/file=/etc/passwd",
        "/gradio_api/file=../../../../../../etc/passwd",
        "/gradio_api/file=%2Fetc%2Fpasswd",
        "/gradio_api/file=..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "/gradio_api/file/etc/passwd",
        "/file=/etc/passwd",
        f"/gradio_api/file={chat_model / 'config.json'}",
        "/gradio_api/file=https://example.com/x.png",
    ]
    for path in refused:
        response = client.get(path)
        assert response.status_code in (403, 404), path
        assert b"root:" not in response.content and b"model_type" not in response.content, path


def join(client: httpx.Client, image: str, session: str) -> httpx.Response:
    """Send pressed, as the page's script asks it (Send's click is the page's first event)."""
    data = [None, {"path": image, "meta": {"_type": "gradio.FileData"}}, "What is it?", 0.0, 1.0, 8, 1]
    return client.post("/gradio_api/queue/join", json={"data": data, "fn_index": 0, "session_hash": session})


def test_the_page_takes_only_uploaded_files(client, chat_model):
    for path in [
        "/etc/passwd",
        str(chat_model / "config.json"),
        "https://example.com/x.png",
        "/tmp/gradio/../../etc/passwd",
    ]:
        refused = join(client, path, "refused")
        assert refused.status_code == 403 and "uploaded first" in refused.json()["error"]["message"], path
    image = client.post("/gradio_api/upload", files={"files": ("red.png", png(), "image/png")}).json()[0]
    assert join(client, image, "uploaded").status_code == 200
    with client.stream("GET", "/gradio_api/queue/data", params={"session_hash": "uploaded"}) as events:
        done = next(json.loads(line[6:]) for line in events.iter_lines() if "process_completed" in line)
    assert done["success"], done
    chat = done["output"]["data"][0]
    assert [m["role"] for m in chat] == ["user", "assistant"] and chat[1]["content"][0]["text"]


# ------------------------------------------------------------------------------------------------
# The page's handlers, called as gradio calls them


def run(generator) -> list:
    async def drain() -> list:
        return [update async for update in generator]

    return asyncio.run(drain())


CONTROLS = (0.0, 1.0, 8, 1)  # temperature, top-p, max new tokens, beams


@pytest.fixture
def visitor(chat) -> Visitor:
    return copy.deepcopy(Visitor(ChatSession(chat, SETTINGS)))


@pytest.fixture
def image_file(tmp_path) -> str:
    path = tmp_path / "red.png"
    path.write_bytes(png())
    return str(path)


def upload(path: str) -> dict:
    """The image box's value as the page hands it over (unprocessed)."""
    return {"path": path, "orig_name": Path(path).name, "meta": {"_type": "gradio.FileData"}}


def test_each_browser_session_gets_its_own_conversation(chat):
    first = Visitor(ChatSession(chat, SETTINGS))
    second = copy.deepcopy(first)
    assert second.session is not first.session and second.session.chat is chat
    assert second.stop is not first.stop


def test_ask_streams_the_answer_and_keeps_the_image(visitor, image_file):
    updates = run(ask(visitor, upload(image_file), "  What colour?  ", *CONTROLS))
    shown, box, image = updates[0]
    assert box == "" and shown[-1] == {"role": "user", "content": [{"path": image_file}, "What colour?"]}
    final, _, image = updates[-1]
    assert image is None  # the image box empties once the image is asked about
    assert final[-1]["role"] == "assistant" and final[-1]["content"] == visitor.session.messages[-1]["content"]
    assert visitor.session.image_names == [image_file]
    assert visitor.session.settings.max_new_tokens == 8  # the page's controls act


def test_a_new_image_goes_with_the_next_question(visitor, image_file):
    run(ask(visitor, upload(image_file), "first", *CONTROLS))
    run(ask(visitor, None, "second", *CONTROLS))
    run(ask(visitor, upload(image_file), "third", *CONTROLS))
    users = [m["content"] for m in visitor.session.messages if m["role"] == "user"]
    assert [sum(p["type"] == "image" for p in content) for content in users] == [1, 0, 1]


def test_a_bad_image_is_a_warning_not_a_crash(visitor, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.warns(UserWarning, match="cannot be decoded"):
        updates = run(ask(visitor, upload(str(bad)), "hi", *CONTROLS))
    assert updates[-1][0] == [] and visitor.session.messages == []


def test_an_empty_question_gives_the_box_back(visitor):
    with pytest.warns(UserWarning, match="empty question"):
        updates = run(ask(visitor, None, "   ", *CONTROLS))
    assert updates[-1][:2] == ([], "   ") and visitor.session.messages == []


def test_regenerate_and_clear(visitor):
    with pytest.warns(UserWarning, match="nothing to regenerate"):
        run(regenerate(visitor, *CONTROLS))
    run(ask(visitor, None, "hi", *CONTROLS))
    final = run(regenerate(visitor, 1.0, 1.0, 4, 1))[-1]
    assert len(visitor.session.messages) == 2 and final[-1]["role"] == "assistant"
    assert visitor.session.settings.temperature == 1.0
    assert forget(visitor) == ([], "", None) and visitor.session.messages == []


def test_stop_ends_the_answer_where_it_is(visitor):
    async def stopped_early() -> list:
        updates = []
        async for update in ask(visitor, None, "hi", 0.0, 1.0, 200, 1):
            updates.append(update)
            if len(updates) == 2:  # Stop pressed once the first words show
                halt(visitor)
        return updates

    stopped = asyncio.run(stopped_early())[-1][0][-1]["content"]
    full = run(ask(copy.deepcopy(visitor), None, "hi", 0.0, 1.0, 200, 1))[-1][0][-1]["content"]
    assert full.startswith(stopped) and len(stopped) < len(full)


def test_bad_controls_are_a_warning(visitor):
    with pytest.warns(UserWarning, match="top_p"):
        run(ask(visitor, None, "hi", 0.0, 0.0, 8, 1))
    assert visitor.session.messages == []
