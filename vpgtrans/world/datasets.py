"""Writing datasets (images + captions, questions, conversations, scenes) and text-only pretraining corpora."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np

from .conversations import conversation_turns, to_messages
from .language import caption, questions
from .scene import Scene, WorldConfig, generate_scene, render

CONVERSATION_STREAM = 1  # image i's conversation draws from rng (seed, i, this): the other files stay as they were


def write_dataset(
    out_dir: str | Path,
    n: int,
    seed: int,
    config: WorldConfig = WorldConfig(),
    layout: Literal["jsonl", "imagefolder"] = "jsonl",
) -> Path:
    """Write n scenes as PNGs plus caption, QA and ground-truth scene files; return the caption file.

    Image i depends only on (seed, i), so a small dataset is a prefix of a larger one.
    "jsonl" writes captions.jsonl ({"image", "caption"}); "imagefolder" writes
    metadata.jsonl ({"file_name", "caption"}) for `datasets.load_dataset("imagefolder")`.
    Both write qa.jsonl, conversations.jsonl ({"image", "messages", "kinds"}: one conversation
    about each image, the image opening its first user turn, and the kind of each answer) and
    scenes.jsonl; image paths are relative to out_dir.
    """
    if layout not in ("jsonl", "imagefolder"):
        raise ValueError(f"unknown layout {layout!r}")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    caption_path = out / ("captions.jsonl" if layout == "jsonl" else "metadata.jsonl")
    image_key = "image" if layout == "jsonl" else "file_name"
    question_id = 0
    with (
        caption_path.open("w") as captions_file,
        (out / "qa.jsonl").open("w") as qa_file,
        (out / "conversations.jsonl").open("w") as conversations_file,
        (out / "scenes.jsonl").open("w") as scenes_file,
    ):
        for i in range(n):
            rng = np.random.default_rng([seed, i])
            scene = generate_scene(rng, config)
            name = f"images/{i:06d}.png"
            render(scene, config).save(out / name)
            captions_file.write(json.dumps({image_key: name, "caption": caption(scene)}) + "\n")
            scenes_file.write(json.dumps({"image": name, **scene.to_dict()}) + "\n")
            for question, answer in questions(scene, rng, config):
                qa_file.write(
                    json.dumps({"image": name, "question_id": question_id, "question": question, "answer": answer})
                    + "\n"
                )
                question_id += 1
            conversations_file.write(json.dumps(conversation_record(name, scene, seed, i, config)) + "\n")
    return caption_path


def conversation_record(image: str, scene: Scene, seed: int, index: int, config: WorldConfig) -> dict:
    """conversations.jsonl's line for image `index`: it depends on (seed, index) alone."""
    turns = conversation_turns(scene, np.random.default_rng([seed, index, CONVERSATION_STREAM]), config)
    return {"image": image, "messages": to_messages(turns), "kinds": [t.kind for t in turns]}


def world_folder(folder: str | Path, n: int, seed: int, config: WorldConfig = WorldConfig()) -> Path:
    """A world folder of n scenes (`write_dataset`), generated once, atomically, and reused; a folder from
    before the world had conversations is written again. Returns its captions file."""
    import shutil

    from ..io.atomic import atomic_dir

    folder = Path(folder)
    if (folder / "captions.jsonl").exists() and not (folder / "conversations.jsonl").exists():
        shutil.rmtree(folder)
    if not (folder / "captions.jsonl").exists():
        with atomic_dir(folder) as tmp:
            write_dataset(tmp, n, seed, config)
    return folder / "captions.jsonl"


def load_scenes(path: str | Path) -> list[Scene]:
    """Read scenes.jsonl back, in file order, to score captions against ground truth."""
    with Path(path).open() as f:
        return [Scene.from_dict(json.loads(line)) for line in f if line.strip()]


def pretraining_texts(n: int, seed: int, config: WorldConfig = WorldConfig()) -> list[str]:
    """Text-only corpus that teaches a toy LM to read its context, not just to babble captions.

    Texts cycle through three kinds: a caption followed by a copy of it, a caption followed
    by one to three "Question: ... Answer: ..." pairs answered from it, one per line (so an
    answer ends at a newline, where BLIP-2's VQA protocol stops), and a plain caption.
    """
    rng = np.random.default_rng(seed)
    texts = []
    for i in range(n):
        scene = generate_scene(rng, config)
        text = caption(scene)
        if i % 3 == 0:
            text = f"{text} . {text}"
        elif i % 3 == 1:
            pairs = questions(scene, rng, config)
            picks = rng.choice(len(pairs), size=min(len(pairs), int(rng.integers(1, 4))), replace=False)
            text += " ." + "".join(f"\nQuestion: {pairs[k][0]} Answer: {pairs[k][1]}" for k in picks)
        texts.append(text)
    return texts
