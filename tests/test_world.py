"""Tests of the miniature world: determinism, pixel-faithful captions, scoring and files."""

import io
import json
import re

import numpy as np
import pytest
from PIL import Image

from vpgtrans.world import (
    COLOURS,
    NUMBER_WORDS,
    PLACE_PHRASES,
    SHAPE_PLURALS,
    VOCABULARY,
    Scene,
    SceneObject,
    WorldConfig,
    attribute_accuracy_by_kind,
    attribute_hits,
    caption,
    caption_attribute_hits,
    derive_scene,
    generate_scene,
    load_scenes,
    parse_caption,
    pretraining_texts,
    questions,
    render,
    score_caption,
    tokenize_words,
    write_dataset,
)

CONFIG = WorldConfig()


def png_bytes(scene: Scene, config: WorldConfig = CONFIG) -> bytes:
    buffer = io.BytesIO()
    render(scene, config).save(buffer, format="PNG")
    return buffer.getvalue()


def scenes(seed: int, n: int, config: WorldConfig = CONFIG) -> list[Scene]:
    rng = np.random.default_rng(seed)
    return [generate_scene(rng, config) for _ in range(n)]


def two_objects() -> Scene:
    return Scene(
        (
            SceneObject("red", "square", "large", "left", 1, 12),
            SceneObject("blue", "circle", "small", "right", 23, 13),
        )
    )


def test_same_seed_same_images_and_captions() -> None:
    first, second, other = scenes(7, 30), scenes(7, 30), scenes(8, 30)
    assert [png_bytes(s) for s in first] == [png_bytes(s) for s in second]
    assert [caption(s) for s in first] == [caption(s) for s in second]
    assert [caption(s) for s in first] != [caption(s) for s in other]
    assert [png_bytes(s) for s in first] != [png_bytes(s) for s in other]


@pytest.mark.parametrize("image_size, n", [(32, 200), (48, 30), (64, 30)])
def test_captions_match_pixels(image_size: int, n: int) -> None:
    config = WorldConfig(image_size=image_size)
    for scene in scenes(image_size, n, config):
        image = render(scene, config)
        assert image.size == (image_size, image_size) and image.mode == "RGB"
        derived = derive_scene(image, config)
        assert derived.attribute_set() == scene.attribute_set()
        assert caption(derived) == caption(scene)
        assert derived == scene  # boxes and background come back too


def test_scenes_respect_config() -> None:
    config = WorldConfig(min_objects=2, max_objects=3)
    counts = {len(s.objects) for s in scenes(3, 100, config)}
    assert counts == {2, 3}
    for scene in scenes(4, 100):
        positions = [o.position for o in scene.objects]
        assert len(set(positions)) == len(positions)
        assert scene.background <= CONFIG.max_background
    with pytest.raises(ValueError):
        WorldConfig(min_objects=0)


def test_caption_grammar_is_short_and_in_vocabulary() -> None:
    assert caption(two_objects()) == "a large red square on the left and a small blue circle on the right"
    for scene in scenes(5, 200):
        words = tokenize_words(caption(scene))
        assert len(words) <= 30
        assert set(words) <= set(VOCABULARY)


def test_score_perfect_wrong_colour_and_empty() -> None:
    scene = two_objects()
    assert score_caption(caption(scene), scene) == 1.0
    assert caption_attribute_hits(caption(scene), scene) == (8, 8)
    wrong = "a large green square on the left and a small blue circle on the right"
    assert score_caption(wrong, scene) == pytest.approx(7 / 8)
    assert score_caption("", scene) == 0.0
    assert score_caption("a picture of nothing", scene) == 0.0
    assert score_caption("a large red square on the left", scene) == pytest.approx(4 / 8)


def test_attribute_hits_by_kind() -> None:
    scene = two_objects()
    assert attribute_hits(caption(scene), scene) == ({"colour": 2, "shape": 2, "size": 2, "position": 2}, 2)
    # right places and sizes, wrong colours and shapes: what a model that cannot see objects' identity writes
    blind = "a large yellow cross on the left and a small yellow cross on the right"
    assert attribute_hits(blind, scene) == ({"colour": 0, "shape": 0, "size": 2, "position": 2}, 2)
    assert attribute_hits(blind + " and a small yellow cross at the top", scene)[1] == 3  # a hallucination counts
    by_kind = attribute_accuracy_by_kind([caption(scene), blind], [scene, scene])
    assert by_kind == {"colour": 0.5, "shape": 0.5, "size": 1.0, "position": 1.0}
    assert caption_attribute_hits(blind, scene) == (4, 8)


def test_hallucinated_objects_do_not_raise_the_score() -> None:
    scene = two_objects()
    perfect = caption(scene)
    extra = perfect + " and a small yellow triangle at the top"
    assert score_caption(extra, scene) < score_caption(perfect, scene)
    # A wrong second mention still gets credit for what it gets right: it is not extra.
    partial = "a large red square on the left"
    assert score_caption(partial + " and a small white cross at the bottom", scene) == pytest.approx(5 / 8)
    assert caption_attribute_hits(partial + " and a small white cross at the bottom . a red circle", scene) == (5, 12)
    everything = " and ".join(f"a {c} {s}" for c in COLOURS for s in ("square", "circle", "triangle"))
    assert score_caption(everything, scene) < 0.2
    for scene, other in zip(scenes(6, 50), scenes(60, 50)):
        assert score_caption(caption(scene) + " and " + caption(other), scene) < 1.0


@pytest.mark.parametrize(
    "text",
    [
        "a small blue circle on the right and a large red square on the left",
        "a red large square on the left, a blue small circle on the right.",
        "A big red square in the middle left and a little blue circle on the right",
        "on the left is a large red square and on the right a small blue circle",
        "the large red square is on the left and the small blue circle is on the right",
    ],
)
def test_word_order_variations_parse(text: str) -> None:
    assert score_caption(text, two_objects()) == 1.0


def test_parse_caption_reads_grid_places() -> None:
    mentions = parse_caption("a small white cross in the bottom right and a large purple diamond in the center")
    assert [(m.colour, m.shape, m.size, m.position) for m in mentions] == [
        ("white", "cross", "small", "bottom right"),
        ("purple", "diamond", "large", "center"),
    ]


def answer_from(scene: Scene, question: str) -> str:
    """Independent oracle: answer a world question from a scene, insisting on unique referents."""
    places = {phrase: pos for pos, phrase in PLACE_PHRASES.items()}
    plurals = {plural: shape for shape, plural in SHAPE_PLURALS.items()}

    def the(**attrs: str) -> SceneObject:
        (match,) = [o for o in scene.objects if all(getattr(o, k) == v for k, v in attrs.items())]
        return match

    def count(**attrs: str) -> str:
        return NUMBER_WORDS[sum(all(getattr(o, k) == v for k, v in attrs.items()) for o in scene.objects)]

    patterns = [
        (r"how many objects are there", lambda: count()),
        (r"what colour is the object (.+)", lambda p: the(position=places[p]).colour),
        (r"what shape is the (\w+) object", lambda c: the(colour=c).shape),
        (r"what shape is (.+)", lambda p: the(position=places[p]).shape),
        (r"what colour is the (\w+)", lambda s: the(shape=s).colour),
        (r"what size is the (\w+) (\w+)", lambda c, s: the(colour=c, shape=s).size),
        (r"how many (\w+) objects are there", lambda c: count(colour=c)),
        (r"how many (\w+) are there", lambda p: count(shape=plurals[p])),
        (r"is there a (\w+) (\w+)", lambda c, s: "yes" if count(colour=c, shape=s) != "zero" else "no"),
        (
            r"is the (\w+) (\w+) left of the (\w+) (\w+)",
            lambda c1, s1, c2, s2: "yes" if the(colour=c1, shape=s1).col < the(colour=c2, shape=s2).col else "no",
        ),
        (
            r"is the (\w+) (\w+) above the (\w+) (\w+)",
            lambda c1, s1, c2, s2: "yes" if the(colour=c1, shape=s1).row < the(colour=c2, shape=s2).row else "no",
        ),
    ]
    for pattern, answer in patterns:
        if match := re.fullmatch(pattern + r"\?", question):
            return answer(*match.groups())
    raise AssertionError(f"unknown question {question!r}")


def test_questions_are_answerable_from_pixels() -> None:
    rng = np.random.default_rng(0)
    kinds: set[str] = set()
    for scene in scenes(9, 200):
        seen = derive_scene(render(scene))
        pairs = questions(scene, rng)
        assert len({q for q, _ in pairs}) == len(pairs)
        for question, answer in pairs:
            assert answer_from(seen, question) == answer, question
            assert len(answer.split()) == 1
            assert set(tokenize_words(question)) <= set(VOCABULARY)
            kinds.add(" ".join(question.split()[:2]))
    assert kinds == {"how many", "what colour", "what shape", "what size", "is there", "is the"}


def test_write_dataset_jsonl_layout(tmp_path) -> None:
    from datasets import load_dataset

    path = write_dataset(tmp_path, 12, seed=3)
    assert path == tmp_path / "captions.jsonl"
    rows = load_dataset("json", data_files=str(path), split="train")
    assert len(rows) == 12 and rows[0]["image"] == "images/000000.png"
    loaded = load_scenes(tmp_path / "scenes.jsonl")
    for row, scene in zip(rows, loaded):
        assert row["caption"] == caption(scene)
        assert derive_scene(Image.open(tmp_path / row["image"])) == scene
    by_image = {
        json.loads(line)["image"]: Scene.from_dict(json.loads(line)) for line in (tmp_path / "scenes.jsonl").open()
    }
    qa = [json.loads(line) for line in (tmp_path / "qa.jsonl").open()]
    assert [q["question_id"] for q in qa] == list(range(len(qa)))
    for q in qa:
        assert answer_from(by_image[q["image"]], q["question"]) == q["answer"]
    # image i depends only on (seed, i): a smaller dataset is a prefix of a larger one
    write_dataset(tmp_path / "small", 5, seed=3)
    assert load_scenes(tmp_path / "small" / "scenes.jsonl") == loaded[:5]


def test_write_dataset_imagefolder_layout(tmp_path) -> None:
    from datasets import load_dataset

    path = write_dataset(tmp_path, 10, seed=4, layout="imagefolder")
    assert path == tmp_path / "metadata.jsonl"
    rows = load_dataset("imagefolder", data_dir=str(tmp_path), split="train")
    assert len(rows) == 10
    by_caption = sorted(rows["caption"])
    assert by_caption == sorted(caption(s) for s in load_scenes(tmp_path / "scenes.jsonl"))
    assert rows[0]["image"].size == (32, 32)
    with pytest.raises(ValueError):
        write_dataset(tmp_path, 1, seed=0, layout="parquet")  # type: ignore[arg-type]


def test_pretraining_texts() -> None:
    texts = pretraining_texts(30, seed=1)
    assert texts == pretraining_texts(30, seed=1)
    assert texts != pretraining_texts(30, seed=2)
    copies = [t for t in texts if " . " in t and "Question:" not in t]
    qa = [t for t in texts if "Question:" in t and "Answer:" in t]
    plain = [t for t in texts if " . " not in t and "Question:" not in t]
    assert copies and qa and plain
    for text in copies:
        first, second = text.split(" . ")
        assert first == second
    for text in texts:
        assert set(tokenize_words(text)) <= set(VOCABULARY)
