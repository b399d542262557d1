"""VL-Vicuna style chat: the template a model carries, stage 3's data and loss mask, instruction tuning
end to end, the chat engine (streaming, stops, context) and the terminal chat."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoProcessor, Blip2ForConditionalGeneration

from vpgtrans.chat.config import ChatSettings
from vpgtrans.chat.session import ChatModel, ChatSession, _held_back
from vpgtrans.chat.template import IMAGE_TOKEN, MINIGPT4_SYSTEM, answer_spans, end_marker, render
from vpgtrans.cli.main import main
from vpgtrans.errors import VPGTransError
from vpgtrans.io.images import open_rgb
from vpgtrans.method.graft import load_blip2
from vpgtrans.pipeline import initialise, save_model
from vpgtrans.training.conversations import (
    DESCRIBE_REQUESTS,
    ConversationCollator,
    ConversationDataset,
    load_conversations,
)

IMAGE_QUESTION = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what is it?"}]}]


@pytest.fixture(scope="module")
def minigpt4_model(zoo) -> Path:
    """A graft onto a destination whose tokenizer has no chat template: MiniGPT-4's format."""
    folder = zoo.root / "minigpt4_model"
    if not folder.exists():
        model, processor, _ = initialise(str(zoo.src), str(zoo.dst_llama), None)
        save_model(model, processor, folder)
    return folder


def _conversations(zoo, folder: Path, turns: int = 2) -> Path:
    """Our JSONL: one conversation per world image, `turns` questions each, answers from its captions."""
    rows = [json.loads(line) for line in zoo.data.read_text().splitlines()]
    path = folder / "conversations.jsonl"
    folder.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for row in rows:
            messages = []
            for turn in range(turns):
                messages += [
                    {"role": "user", "content": "describe it" if turn == 0 else "and the colour?"},
                    {"role": "assistant", "content": row["caption"] if turn == 0 else row["caption"].split()[2]},
                ]
            f.write(json.dumps({"image": str(zoo.data.parent / row["image"]), "messages": messages}) + "\n")
    return path


# --------------------------------------------------------------------------- the template


def test_minigpt4_template_when_the_tokenizer_has_none(minigpt4_model):
    model, processor = load_blip2(str(minigpt4_model))
    n = model.config.num_query_tokens
    text = render(processor, IMAGE_QUESTION, add_generation_prompt=True)
    human = f"Human: <Img>{IMAGE_TOKEN * n}</Img> what is it?"
    assert text == f"{processor.tokenizer.bos_token}{MINIGPT4_SYSTEM}###{human}###Assistant:"
    assert end_marker(processor) == "###"
    ids = processor.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids.count(model.config.image_token_index) == n


def test_a_plain_text_marker_stops_as_a_string_a_special_one_as_a_token(minigpt4_model, chat_model):
    """`###` tokenizes one way alone and another after an answer (LLaMA: `▁###` vs `##` + `#`), so it is a
    stop string; an EOS marker is a token the model emits as such."""
    minigpt4, own = ChatModel.load(str(minigpt4_model)), ChatModel.load(str(chat_model))
    assert (minigpt4.stop_ids, minigpt4.stop_strings) == ([minigpt4.tokenizer.eos_token_id], ["###"])
    assert (own.stop_ids, own.stop_strings) == ([own.tokenizer.eos_token_id], [])


def test_the_tokenizers_own_template_is_kept_with_images_in_place(chat_model):
    model, processor = load_blip2(str(chat_model))
    n = model.config.num_query_tokens
    conversation = [*IMAGE_QUESTION, {"role": "assistant", "content": "a square"}, {"role": "user", "content": "and?"}]
    text = render(processor, conversation, add_generation_prompt=True)
    bos, eos = processor.tokenizer.bos_token, processor.tokenizer.eos_token
    assert text == f"{bos}Question: {IMAGE_TOKEN * n}\nwhat is it?\nAnswer: a square{eos}Question: and?\nAnswer:"
    assert end_marker(processor) == eos
    assert (chat_model / "chat_template.jinja").read_text() == processor.chat_template


def test_a_second_image_gets_its_own_tokens(chat_model):
    model, processor = load_blip2(str(chat_model))
    two = [*IMAGE_QUESTION, {"role": "assistant", "content": "a"}, *IMAGE_QUESTION]
    assert render(processor, two).count(IMAGE_TOKEN) == 2 * model.config.num_query_tokens


@pytest.fixture(scope="module")
def instructed(chat_model, zoo, tmp_path_factory) -> Path:
    """A chat model: the grafted one after two steps of stage 3."""
    root = tmp_path_factory.mktemp("instructed")
    data = _conversations(zoo, root / "conv")
    flags = ["--stage3-steps", "2", "--batch-size", "4", "--stage3-warmup-steps", "0"]
    assert main(["instruct", "--model", str(chat_model), "--data", str(data), "--out", str(root / "run"), *flags]) == 0
    return root / "run" / "model"


def test_transformers_alone_chats_as_vpgtrans_does(instructed, zoo):
    """AutoProcessor + apply_chat_template + generate, nothing of vpgtrans: the same greedy answer."""
    chat_model = instructed
    image = open_rgb(zoo.data.parent / "images" / "000000.png")
    processor = AutoProcessor.from_pretrained(chat_model)
    model = Blip2ForConditionalGeneration.from_pretrained(chat_model).eval()
    conversation = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "hi"}]}]
    inputs = processor.apply_chat_template(
        conversation,
        chat_template=processor.tokenizer.chat_template,  # transformers' Blip2Processor drops its own on loading
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
    )
    n = model.config.num_query_tokens
    assert int((inputs["input_ids"] == model.config.image_token_index).sum()) == n  # no second, prepended set
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=8, num_beams=1)
    plain = processor.tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()
    chat = ChatModel.load(str(chat_model))
    reply = chat.answer([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]}], [image],
                        ChatSettings(max_new_tokens=8))  # fmt: skip
    assert reply.text == plain.split(chat.marker)[0].strip()


def test_before_stage_3_the_processor_keeps_blip2s_habit(chat_model, zoo):
    """A transferred (not instruction-tuned) model: `processor(images=..., text=...)` prepends the image
    tokens as BLIP-2's does, and its template still renders for a tokenizer call of one's own."""
    processor = AutoProcessor.from_pretrained(chat_model)
    image = open_rgb(zoo.data.parent / "images" / "000000.png")
    inputs = processor(images=image, text="Question: what is it? Answer:", return_tensors="pt")
    image_token = processor.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    assert processor.num_query_tokens == int((inputs["input_ids"] == image_token).sum()) > 0
    text = processor.apply_chat_template(IMAGE_QUESTION, chat_template=processor.tokenizer.chat_template,
                                         add_generation_prompt=True)  # fmt: skip
    assert text.count(IMAGE_TOKEN) == processor.num_query_tokens


def test_a_model_without_a_template_is_refused(zoo):
    with pytest.raises(VPGTransError, match="no chat template"):
        ChatModel.load(str(zoo.src))


# --------------------------------------------------------------------------- stage 3 data and loss


def test_loss_covers_the_answers_and_their_end_marker_only(chat_model, zoo, tmp_path):
    model, processor = load_blip2(str(chat_model))
    data = load_conversations(_conversations(zoo, tmp_path))
    collate = ConversationCollator(processor, model.config.num_query_tokens, model.config.image_token_index, 256)
    images, messages, _ = ConversationDataset(data.records)[0]
    batch = collate([(images, messages, "x")])
    labels = batch["labels"][0]
    targets = processor.tokenizer.decode(labels[labels != -100])
    eos = processor.tokenizer.eos_token
    answers = [m["content"] for m in messages if m["role"] == "assistant"]
    assert targets.replace(" ", "") == "".join(a + eos for a in answers).replace(" ", "")
    assert int((batch["input_ids"] == model.config.image_token_index).sum()) == model.config.num_query_tokens
    assert batch["pixel_values"].shape[0] == 1


def test_answer_spans_include_the_minigpt4_separator(minigpt4_model):
    _, processor = load_blip2(str(minigpt4_model))
    text, spans = answer_spans(processor, [*IMAGE_QUESTION, {"role": "assistant", "content": "a red square"}])
    assert [text[a:b] for a, b in spans] == ["a red square###"]


def test_three_layouts_read_alike(zoo, tmp_path):
    image = zoo.data.parent / "images" / "000000.png"
    (tmp_path / "ours.jsonl").write_text(
        json.dumps(
            {
                "image": str(image),
                "messages": [{"role": "user", "content": "<image>\nhi"}, {"role": "assistant", "content": "a b"}],
            }
        )
        + "\n"  # fmt: skip
    )
    llava = [{"image": str(image), "conversations": [{"from": "human", "value": "hi\n<image>"},
                                                    {"from": "gpt", "value": "a b"}]}]  # fmt: skip
    (tmp_path / "llava.json").write_text(json.dumps(llava))
    align = tmp_path / "cc_sbu_align"
    (align / "image").mkdir(parents=True)
    open_rgb(image).save(align / "image" / "2.jpg")
    (align / "filter_cap.json").write_text(json.dumps({"annotations": [{"image_id": "2", "caption": "a b"}]}))
    expected = ({"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]},
                {"role": "assistant", "content": "a b"})  # fmt: skip
    assert load_conversations(tmp_path / "ours.jsonl").records[0].messages == expected
    assert load_conversations(tmp_path / "llava.json").records[0].messages == expected
    aligned = load_conversations(align).records[0].messages
    assert aligned[0]["content"][1]["text"] == DESCRIBE_REQUESTS[0] and aligned[1]["content"] == "a b"


@pytest.mark.parametrize(
    "messages, image, message",
    [
        ([{"role": "user", "content": "<image> hi"}, {"role": "assistant", "content": "a"}], None,
         "turn shows <image> but the record names no image"),
        ([{"role": "user", "content": "hi"}, {"role": "user", "content": "a"}], True,
         "turn 2: role 'user' where 'assistant' belongs"),
        ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": " "}], True, "turn 2: an empty answer"),
        ([{"role": "user", "content": "hi"}], True, "ends with a user turn, not an answer"),
        ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "<image>"}], True,
         "<image> in a assistant turn"),
        ([{"role": "bot", "content": "hi"}], True, "role 'bot' where 'user' belongs"),
    ],
)  # fmt: skip
def test_bad_conversations_name_the_line_and_turn(zoo, tmp_path, messages, image, message):
    row = {"messages": messages, **({"image": str(zoo.data.parent / "images" / "000000.png")} if image else {})}
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(VPGTransError, match=f"{path}:1.*{message}"):
        load_conversations(path)


def test_bad_llava_role_names_the_record(zoo, tmp_path):
    path = tmp_path / "llava.json"
    path.write_text(json.dumps([{"image": "x.png", "conversations": [{"from": "robot", "value": "hi"}]}]))
    with pytest.raises(VPGTransError, match=r"llava.json \[record 0\] turn 1: 'from' is 'robot'"):
        load_conversations(path)


# --------------------------------------------------------------------------- stage 3 end to end


def test_instruct_trains_exactly_its_parts_and_exports_a_chat_model(chat_model, zoo, tmp_path, capsys):
    data = _conversations(zoo, tmp_path / "conv")
    out = tmp_path / "run"
    flags = ["--stage3-steps", "3", "--batch-size", "4", "--stage3-warmup-steps", "1", "--stage3-lr", "1e-3"]
    assert main(["instruct", "--model", str(chat_model), "--data", str(data), "--out", str(out), *flags,
                 "--stage3-train", "projection"]) == 0  # fmt: skip
    before, after = load_file(chat_model / "model.safetensors"), load_file(out / "model" / "model.safetensors")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"language_projection.weight", "language_projection.bias"}
    record = json.loads((out / "run.json").read_text())
    stage = record["stages"]["instruct"]
    assert stage["config"]["warmup_steps"] == 1 and stage["config"]["min_lr_ratio"] == 0.1
    assert record["chat_data"]["samples"] == 48 and len(stage["result"]["losses"]) == 3
    generation = json.loads((out / "model" / "generation_config.json").read_text())
    assert generation["max_new_tokens"] == 300 and "num_beams" not in generation  # chat decoding, not captioning
    ChatModel.load(str(out / "model"))  # it chats


def test_instruct_refuses_a_model_without_a_template_before_out_exists(zoo, tmp_path, capsys):
    data = _conversations(zoo, tmp_path / "conv")
    assert main(["instruct", "--model", str(zoo.src), "--data", str(data), "--out", str(tmp_path / "run")]) == 2
    assert "no chat template" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_transfer_with_chat_runs_three_stages(chat_model, zoo, tmp_path):
    data = _conversations(zoo, tmp_path / "conv")
    out = tmp_path / "run"
    args = ["--src", str(zoo.src), "--dst", str(zoo.root / "dst_chat"), "--data", str(zoo.data), "--chat", str(data)]
    steps = ["--stage1-steps", "1", "--stage2-steps", "1", "--stage3-steps", "1", "--batch-size", "8"]
    assert main(["transfer", *args, "--out", str(out), *steps]) == 0
    record = json.loads((out / "run.json").read_text())
    assert list(record["stages"]) == ["warmup", "finetune", "instruct"] and record["status"] == "done"
    assert json.loads((out / "model" / "generation_config.json").read_text())["max_new_tokens"] == 300


# --------------------------------------------------------------------------- the chat engine


def test_answers_stream_and_stop_before_the_marker(chat_model, zoo):
    chat = ChatModel.load(str(chat_model))
    image = open_rgb(zoo.data.parent / "images" / "000000.png")
    seen: list[str] = []
    reply = chat.answer(IMAGE_QUESTION, [image], ChatSettings(max_new_tokens=12), on_text=seen.append)
    assert len(seen) > 1 and all(b.startswith(a) for a, b in zip(seen, seen[1:]))
    assert reply.text.endswith(seen[-1][-4:])  # (a random model's stray bytes may decode apart, not the text)
    assert chat.marker not in reply.text and reply.prompt_tokens > chat.num_query_tokens


def test_the_end_marker_is_held_back_while_it_may_be_starting():
    assert _held_back("a red ##", "###") == 2 and _held_back("a red #", "###") == 1 and _held_back("a red", "###") == 0


def test_sampling_settings_act(chat_model, zoo):
    chat = ChatModel.load(str(chat_model))
    image = open_rgb(zoo.data.parent / "images" / "000000.png")

    def answer(**settings):
        return chat.answer(IMAGE_QUESTION, [image], ChatSettings(max_new_tokens=10, **settings)).text

    samples = {answer(temperature=5.0, seed=seed) for seed in range(4)}
    assert len(samples) > 1  # a hot temperature samples
    assert answer(temperature=5.0, seed=1) == answer(temperature=5.0, seed=1)  # a seed repeats
    assert chat.answer(IMAGE_QUESTION, [image], ChatSettings(max_new_tokens=1)).new_tokens == 1


def test_old_turns_are_dropped_whole_to_fit_the_context(chat_model, zoo):
    chat = ChatModel.load(str(chat_model))
    session = ChatSession(chat, ChatSettings(max_new_tokens=4, max_context=40))
    session.show(open_rgb(zoo.data.parent / "images" / "000000.png"), "a.png")
    session.ask("describe the image")
    reply = session.ask("and what colour is the object at the top left?")
    assert reply.dropped_turns == 1  # the image turn went, with its image
    assert len(session.messages) == 4  # the transcript keeps every turn


def test_a_stop_event_ends_the_answer(chat_model, zoo):
    chat = ChatModel.load(str(chat_model))
    stop = threading.Event()
    stop.set()
    reply = chat.answer(IMAGE_QUESTION, [open_rgb(zoo.data.parent / "images" / "000000.png")],
                        ChatSettings(max_new_tokens=50), on_text=lambda text: None, stop=stop)  # fmt: skip
    assert reply.stopped and reply.new_tokens <= 1


def test_terminal_chat_through_stdin(chat_model, zoo, tmp_path):
    images = zoo.data.parent / "images"
    lines = ["describe the image", f"/image {images / '000001.png'}", "and this one?", f"/save {tmp_path / 't.json'}",
             "/reset", "/image nowhere.png", "/nonsense", "hello", "/quit"]  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "vpgtrans.cli.main", "chat", "--model", str(chat_model), "--image",
         str(images / "000000.png"), "--max-new-tokens", "6"],
        input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.count("assistant> ") == 3 and "(conversation reset)" in out
    assert "error: /image: image nowhere.png not found" in out and "unknown command /nonsense" in out
    transcript = json.loads((tmp_path / "t.json").read_text())
    shown = [p["image"] for m in transcript["messages"] if m["role"] == "user" for p in m["content"] if "image" in p]
    assert shown == [str(images / "000000.png"), str(images / "000001.png")] and len(transcript["messages"]) == 4


# Real chat LLMs' templates (their tokenizer_config.json, tools branches left out): the same code path.
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
QWEN25_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}"
    "{%- else %}{{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant."
    '<|im_end|>\n\' }}{%- endif %}{%- for message in messages %}{%- if (message.role == "user") or '
    '(message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}'
    "{{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"
)


@pytest.mark.parametrize(
    "template, specials, marker",
    [
        (LLAMA3_TEMPLATE, ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"], "<|eot_id|>"),
        (QWEN25_TEMPLATE, ["<|im_start|>", "<|im_end|>"], "<|im_end|>"),
    ],
)
def test_real_chat_templates_get_images_markers_and_answer_spans(zoo, template, specials, marker):
    from transformers import AutoTokenizer, Blip2Processor

    from vpgtrans.chat.template import attach_chat_template, stop_token_ids
    from vpgtrans.world import tiny

    tokenizer = AutoTokenizer.from_pretrained(zoo.dst_llama)
    tokenizer.add_tokens([*specials, IMAGE_TOKEN], special_tokens=True)
    tokenizer.chat_template = template
    processor = attach_chat_template(Blip2Processor(tiny.image_processor(32), tokenizer, num_query_tokens=32), 32)
    conversation = [*IMAGE_QUESTION, {"role": "assistant", "content": "a red square"}]
    text, spans = answer_spans(processor, conversation)
    assert text.count(IMAGE_TOKEN) == 32 and [text[a:b].strip() for a, b in spans] == [f"a red square{marker}"]
    assert end_marker(processor) == marker
    assert tokenizer.convert_tokens_to_ids(marker) in stop_token_ids(processor)
