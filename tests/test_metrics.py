"""Tests for vpgtrans.metrics: CIDEr-D against pycocoevalcap, PTB tokenisation, VQA/GQA/OK-VQA."""

from __future__ import annotations

import random
import shutil

import pytest

from vpgtrans.evaluation.metrics import (
    cider_d,
    cider_d_raw,
    gqa_accuracy,
    okvqa_accuracy,
    okvqa_normalize,
    vqa_accuracy,
    vqa_normalize,
    vqa_process_punctuation,
)
from vpgtrans.evaluation.ptb import ptb_tokenize, ptb_tokenize_sentence

# --------------------------------------------------------------------------- fixtures

_VOCAB = (
    "a an the man woman dog cat two people riding wave surfboard on top of with in at near "
    "grey kitchen table sitting standing next to black white red blue small large bus train "
    "pizza giraffe tennis player racket street sign clock tower"
).split()

# Hand-written captions with the punctuation and shapes real COCO captions have.
_RAW_REFS = {
    0: [
        "A man riding a wave on top of a surfboard.",
        "A surfer rides a large wave.",
        "A man on a surfboard riding a wave!",
        "Surfer (in black) on a wave.",
        "a person surfing a big wave in the ocean",
    ],
    1: [
        "The dog's bone isn't there; it's gone.",
        "A dog chewing on a bone.",
        "A brown dog with a bone in its mouth.",
        "dog, bone, grass",
        "A dog eats a bone.",
    ],
    2: [
        "Two people -- one in black-and-white -- at 4:45pm.",
        "Two people standing outside.",
        "A couple of people stand near a clock tower.",
        "Two men near a 10-year-old clock.",
        "People waiting at the station at 4:45.",
    ],
}


def _caption(rng: random.Random) -> str:
    return " ".join(rng.choice(_VOCAB) for _ in range(rng.randint(1, 14)))


def _fixture() -> tuple[dict[int, list[str]], dict[int, list[str]]]:
    """20 images x 5 tokenised references and one tokenised candidate each."""
    rng = random.Random(0)
    raw_refs = {i: [_caption(rng) for _ in range(5)] for i in range(20)}
    raw_cands = {i: _caption(rng) for i in range(20)}
    raw_refs.update(_RAW_REFS)
    raw_cands.update(
        {
            0: "A man riding a wave on a surfboard.",
            1: "a dog with a bone",
            2: "Two people standing next to a clock tower.",
        }
    )
    raw_cands[3] = raw_refs[3][0]  # exact copy of a reference
    raw_cands[4] = ""  # empty candidate
    raw_cands[5] = "dog"  # one word: no bigrams
    raw_cands[6] = "the the the the the the"  # repeated n-grams (clipping)
    raw_refs[7][0] = "a"  # one-word reference
    refs = ptb_tokenize(raw_refs)
    cands = {k: [ptb_tokenize_sentence(c)] for k, c in raw_cands.items()}
    return refs, cands


# --------------------------------------------------------------------------- CIDEr-D


def test_cider_d_matches_pycocoevalcap() -> None:
    from pycocoevalcap.cider.cider import Cider

    refs, cands = _fixture()
    ours, ours_per_image = cider_d(refs, cands)
    theirs, theirs_per_image = Cider().compute_score(refs, cands)
    assert ours == pytest.approx(theirs, abs=1e-6)
    assert len(theirs_per_image) == len(ours_per_image) == 20
    for key, score in zip(refs, theirs_per_image):  # pycocoevalcap keeps the dict order
        assert ours_per_image[key] == pytest.approx(score, abs=1e-6)
    assert ours > 0.1 and ours_per_image[3] > ours_per_image[4] == 0.0


def test_cider_d_string_ids_and_raw_variant() -> None:
    refs, cands = _fixture()
    str_refs = {f"img{k}": v for k, v in refs.items()}
    str_cands = {f"img{k}": v for k, v in cands.items()}
    assert cider_d(str_refs, str_cands)[0] == pytest.approx(cider_d(refs, cands)[0], abs=1e-12)
    score, per_image = cider_d_raw(_RAW_REFS, {0: "A man riding a wave.", 1: "A dog.", 2: "x"})
    assert set(per_image) == {0, 1, 2} and score > 0


@pytest.mark.parametrize(
    "refs, cands",
    [({1: ["a b"]}, {2: ["a b"]}), ({1: ["a b"]}, {1: ["a", "b"]}), ({1: []}, {1: ["a"]}), ({}, {})],
)
def test_cider_d_rejects_bad_input(refs: dict, cands: dict) -> None:
    with pytest.raises(ValueError):
        cider_d(refs, cands)


# --------------------------------------------------------------------------- PTB tokeniser

# Expected outputs produced by pycocoevalcap's Java PTBTokenizer (CoreNLP 3.4.1).
_PTB_CASES = {
    "A man riding a wave on top of a surfboard.": "a man riding a wave on top of a surfboard",
    'A grey cat (sitting) on the TV\'s "remote".': "a grey cat -lrb- sitting -rrb- on the tv 's remote",
    "The dog's bone isn't there; it's 1,000 feet & 3.5 miles away!": "the dog 's bone is n't there it 's 1,000 feet & 3.5 miles away",
    "Two people -- one in black-and-white -- at 4:45pm, w/ a U.S. flag.": "two people one in black-and-white at 4:45 pm w / a u.s. flag",
    "I can't believe they wanna keep 40% of that... cannot gonna": "i ca n't believe they wan na keep 40 % of that can not gon na",
    "A 'quoted' word and `backticks' and/or 5*3 {braces} [brackets]": "a quoted word and backticks and/or 5 * 3 -lcb- braces -rcb- -lsb- brackets -rsb-",
    "Mr. Smith and Dr. Who on St. Patrick's day, etc. e.g. a.m.": "mr. smith and dr. who on st. patrick 's day etc. e.g. a.m.",
    "Don\u2019t it\u2019s \u201csmart quotes\u201d \u2014 dash \u2013 endash \u2026 ellipsis "
    "\u00bd cup \u00a35": "do n't it 's smart quotes dash endash ellipsis 1/2 cup # 5",
    "OK... this is it.. test ?! a? b! c: d;e": "ok this is it test ?! a b c d e",
    "A sign with the letter B. The end.": "a sign with the letter b the end",
    "a 10-year-old boy's t-shirt, 2nd place, 1980s, '90s, 90's": "a 10-year-old boy 's t-shirt 2nd place 1980s '90s 90 's",
    "y'all ma'am o'clock rock'n'roll 'em 'til ol' d'oh": "y' all ma'am o'clock rock 'n' roll 'em 'til ol' d'oh",
    "Emoji \U0001f600 and caf\u00e9 na\u00efve": "emoji and caf\u00e9 na\u00efve",
}


@pytest.mark.parametrize("raw, expected", list(_PTB_CASES.items()))
def test_ptb_tokenize_sentence(raw: str, expected: str) -> None:
    assert ptb_tokenize_sentence(raw) == expected


def test_ptb_tokenize_looks_past_the_caption_end() -> None:
    # The Java lexer reads "B." + newline + "The" as a sentence end (and drops the period),
    # but keeps "B." before a lower-case word or at the end of the input.
    out = ptb_tokenize({1: ["the letter B.", "The end", "the letter B.", "the end"]})
    assert out == {1: ["the letter b", "the end", "the letter b.", "the end"]}


def _java_corpus() -> list[str]:
    rng = random.Random(1)
    extras = list(_PTB_CASES) + [
        "it's",
        "don't",
        "U.S.",
        "e.g.",
        "t-shirt",
        "3.5",
        "1,000",
        "(a)",
        '"b"',
        "A.",
        "x...",
        "$5",
        "50%",
        "w/",
        "and/or",
        "mid-air",
        "o'clock",
        "they're",
        "B&W",
        "no. 5",
        "etc.,",
    ]
    lines = []
    for _ in range(300):
        words = [rng.choice(extras if rng.random() < 0.3 else _VOCAB) for _ in range(rng.randint(1, 12))]
        line = " ".join(words)
        lines.append(line[0].upper() + line[1:] + rng.choice(["", ".", " .", "!", "..."]))
    return lines


@pytest.mark.skipif(shutil.which("java") is None, reason="needs Java for pycocoevalcap's PTBTokenizer")
def test_ptb_tokenize_matches_java_ptbtokenizer() -> None:
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    captions = {i: [c] for i, c in enumerate(_java_corpus())}
    java = PTBTokenizer().tokenize({k: [{"caption": c} for c in v] for k, v in captions.items()})
    assert ptb_tokenize(captions) == java


# --------------------------------------------------------------------------- VQA accuracy


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Two", "2"),
        ("none", "0"),
        ("ten dogs", "10 dogs"),  # number words -> digits
        ("The dog", "dog"),
        ("a red car", "red car"),
        ("an apple", "apple"),  # articles
        ("dont", "don't"),
        ("isnt", "isn't"),
        ("Im", "im"),  # contractions ("Im" key is dead)
        ("1,000", "1000"),
        ("3.5", "3.5"),
        ("yes.", "yes"),
        ("U.S.", "us"),  # periods, commas
        ("black-and-white", "black and white"),
        ("t-shirt", "t shirt"),  # inner punctuation
        ("yes !", "yes"),
        ("red, white", "red white"),
        ("  yes\n", "yes"),
        ("left/right", "left right"),
        ("10:30", "10:30"),
        ("it's", "it's"),
    ],
)
def test_vqa_normalize(raw: str, expected: str) -> None:
    assert vqa_normalize(raw) == expected


def test_vqa_process_punctuation_number_comma_strips_everything() -> None:
    # A digit,digit pattern anywhere makes the official code delete (not space) punctuation.
    assert vqa_process_punctuation("1,000-2,000") == "10002000"
    assert vqa_process_punctuation("a-b") == "a b"


def test_vqa_accuracy_leave_one_out() -> None:
    ten = ["2"] * 10
    assert vqa_accuracy("two", ten) == 1.0
    assert vqa_accuracy("2.", ten) == 1.0
    assert vqa_accuracy("3", ten) == 0.0
    # k matching humans: each leave-one-out subset has k or k-1 matches among 9
    for k in range(11):
        gts = ["yes"] * k + ["no"] * (10 - k)
        expected = (k * min(1.0, (k - 1) / 3) + (10 - k) * min(1.0, k / 3)) / 10
        assert vqa_accuracy("Yes", gts) == pytest.approx(expected)
    assert vqa_accuracy("yes", ["yes"] * 3 + ["no"] * 7) == pytest.approx(0.9)
    assert vqa_accuracy("yes", ["yes"] + ["no"] * 9) == pytest.approx(0.3)


def test_vqa_accuracy_gt_processing_is_official() -> None:
    # Disagreeing human answers get punctuation processing (not digits/articles) ...
    gts = ["t-shirt"] * 4 + ["shirt"] * 6
    assert vqa_accuracy("t shirt", gts) == 1.0
    assert vqa_accuracy("T-Shirt", gts) == 1.0
    # ... identical ones are used as they are (the dataset's answers are pre-normalised).
    assert vqa_accuracy("t-shirt", ["t-shirt"] * 10) == 0.0
    with pytest.raises(ValueError):
        vqa_accuracy("yes", [])


# --------------------------------------------------------------------------- GQA / OK-VQA


def test_gqa_accuracy() -> None:
    assert gqa_accuracy("The table.", "table") == 1.0
    assert gqa_accuracy("Yes", "yes") == 1.0
    assert gqa_accuracy("t-shirt", "t-shirt") == 1.0
    assert gqa_accuracy("chairs", "chair") == 0.0


def test_okvqa_lemmatises_both_sides() -> None:
    assert okvqa_normalize("Riding") == "ride"
    assert okvqa_normalize("The glasses") == "glass"
    assert okvqa_normalize("skiing") == "ski"
    assert okvqa_normalize("is") == "is"
    assert okvqa_accuracy("glasses", ["glass"] * 10) == 1.0
    assert okvqa_accuracy("surfing", ["surf"] * 3 + ["wave"] * 7) == pytest.approx(0.9)
    assert okvqa_accuracy("Two dogs", ["2 dog"] * 10) == 1.0
    assert okvqa_accuracy("cat", ["dog"] * 10) == 0.0
