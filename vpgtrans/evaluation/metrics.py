"""Benchmark metrics: CIDEr-D, VQA accuracy, GQA and OK-VQA, reproducing the official code.

Pure Python (numpy only); captions are tokenised first by :mod:`vpgtrans.ptb`.

* :func:`cider_d` is CIDEr-D as computed by ``pycocoevalcap.cider`` (n=4, sigma=6).
* :func:`vqa_accuracy` is the official VQA accuracy (``vqaEval.py``) incl. its quirks.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from functools import lru_cache

import numpy as np

from .ptb import ptb_tokenize, ptb_tokenize_sentence

# ---------------------------------------------------------------------------------------
# CIDEr-D
# ---------------------------------------------------------------------------------------


def _ngram_counts(sentence: str, n: int) -> Counter[tuple[str, ...]]:
    words = sentence.split()
    return Counter(tuple(words[i : i + k]) for k in range(1, n + 1) for i in range(len(words) - k + 1))


def cider_d(
    refs: Mapping[Hashable, Sequence[str]],
    cands: Mapping[Hashable, Sequence[str]],
    n: int = 4,
    sigma: float = 6.0,
) -> tuple[float, dict[Hashable, float]]:
    """CIDEr-D of one tokenised candidate per id against its tokenised references.

    Same as pycocoevalcap's ``Cider``: document frequencies from the references of the
    evaluated set, tf-idf n-gram vectors (n=1..4), candidate weights clipped at the reference
    weights, Gaussian length penalty (sigma=6, lengths counted as the scorer counts them:
    bigram occurrences), mean over n, mean over references, times 10. Returns the corpus
    score (mean of the per-id scores) and the per-id scores.
    """
    if set(refs) != set(cands):
        raise ValueError("refs and cands must have the same ids")
    ids = list(cands)
    if not ids:
        raise ValueError("nothing to score")
    for key in ids:
        if len(cands[key]) != 1:
            raise ValueError(f"id {key!r}: expected exactly one candidate, got {len(cands[key])}")
        if not refs[key]:
            raise ValueError(f"id {key!r}: no references")
    ref_counts = {key: [_ngram_counts(r, n) for r in refs[key]] for key in ids}
    doc_freq: Counter[tuple[str, ...]] = Counter()
    for counts in ref_counts.values():
        doc_freq.update(set().union(*counts))
    log_n_docs = math.log(float(len(ids)))

    def vectorise(counts: Counter[tuple[str, ...]]) -> tuple[list[dict], np.ndarray, int]:
        vec: list[dict[tuple[str, ...], float]] = [{} for _ in range(n)]
        norm = np.zeros(n)
        length = 0
        for gram, tf in counts.items():
            k = len(gram) - 1
            weight = float(tf) * (log_n_docs - math.log(max(1.0, doc_freq[gram])))
            vec[k][gram] = weight
            norm[k] += weight * weight
            if k == 1:  # pycocoevalcap's "length" counts bigram occurrences
                length += tf
        return vec, np.sqrt(norm), length

    scores: dict[Hashable, float] = {}
    for key in ids:
        vec, norm, length = vectorise(_ngram_counts(cands[key][0], n))
        total = np.zeros(n)
        for counts in ref_counts[key]:
            vec_r, norm_r, length_r = vectorise(counts)
            penalty = math.exp(-((length - length_r) ** 2) / (2 * sigma**2))
            for k in range(n):
                val = sum(min(w, vec_r[k].get(g, 0.0)) * vec_r[k].get(g, 0.0) for g, w in vec[k].items())
                if norm[k] != 0 and norm_r[k] != 0:
                    val /= norm[k] * norm_r[k]
                total[k] += val * penalty
        scores[key] = float(np.mean(total)) / len(ref_counts[key]) * 10.0
    return float(np.mean(list(scores.values()))), scores


def cider_d_raw(
    refs: Mapping[Hashable, Sequence[str]], cands: Mapping[Hashable, str]
) -> tuple[float, dict[Hashable, float]]:
    """CIDEr-D from raw (untokenised) references and one raw candidate per id."""
    return cider_d(ptb_tokenize(refs), {k: [ptb_tokenize_sentence(c)] for k, c in cands.items()})


# ---------------------------------------------------------------------------------------
# VQA accuracy (official vqaEval.py)
# ---------------------------------------------------------------------------------------

_CONTRACTIONS = {
    "aint": "ain't",
    "arent": "aren't",
    "cant": "can't",
    "couldve": "could've",
    "couldnt": "couldn't",
    "couldn'tve": "couldn't've",
    "couldnt've": "couldn't've",
    "didnt": "didn't",
    "doesnt": "doesn't",
    "dont": "don't",
    "hadnt": "hadn't",
    "hadnt've": "hadn't've",
    "hadn'tve": "hadn't've",
    "hasnt": "hasn't",
    "havent": "haven't",
    "hed": "he'd",
    "hed've": "he'd've",
    "he'dve": "he'd've",
    "hes": "he's",
    "howd": "how'd",
    "howll": "how'll",
    "hows": "how's",
    "Id've": "I'd've",
    "I'dve": "I'd've",
    "Im": "I'm",
    "Ive": "I've",
    "isnt": "isn't",
    "itd": "it'd",
    "itd've": "it'd've",
    "it'dve": "it'd've",
    "itll": "it'll",
    "let's": "let's",
    "maam": "ma'am",
    "mightnt": "mightn't",
    "mightnt've": "mightn't've",
    "mightn'tve": "mightn't've",
    "mightve": "might've",
    "mustnt": "mustn't",
    "mustve": "must've",
    "neednt": "needn't",
    "notve": "not've",
    "oclock": "o'clock",
    "oughtnt": "oughtn't",
    "ow's'at": "'ow's'at",
    "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at",
    "shant": "shan't",
    "shed've": "she'd've",
    "she'dve": "she'd've",
    "she's": "she's",
    "shouldve": "should've",
    "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've",
    "shouldn'tve": "shouldn't've",
    "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've",
    "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll",
    "somebodys": "somebody's",
    "someoned": "someone'd",
    "someoned've": "someone'd've",
    "someone'dve": "someone'd've",
    "someonell": "someone'll",
    "someones": "someone's",
    "somethingd": "something'd",
    "somethingd've": "something'd've",
    "something'dve": "something'd've",
    "somethingll": "something'll",
    "thats": "that's",
    "thered": "there'd",
    "thered've": "there'd've",
    "there'dve": "there'd've",
    "therere": "there're",
    "theres": "there's",
    "theyd": "they'd",
    "theyd've": "they'd've",
    "they'dve": "they'd've",
    "theyll": "they'll",
    "theyre": "they're",
    "theyve": "they've",
    "twas": "'twas",
    "wasnt": "wasn't",
    "wed've": "we'd've",
    "we'dve": "we'd've",
    "weve": "we've",
    "werent": "weren't",
    "whatll": "what'll",
    "whatre": "what're",
    "whats": "what's",
    "whatve": "what've",
    "whens": "when's",
    "whered": "where'd",
    "wheres": "where's",
    "whereve": "where've",
    "whod": "who'd",
    "whod've": "who'd've",
    "who'dve": "who'd've",
    "wholl": "who'll",
    "whos": "who's",
    "whove": "who've",
    "whyll": "why'll",
    "whyre": "why're",
    "whys": "why's",
    "wont": "won't",
    "wouldve": "would've",
    "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've",
    "yall": "y'all",
    "yall'll": "y'all'll",
    "y'allll": "y'all'll",
    "yall'd've": "y'all'd've",
    "y'alld've": "y'all'd've",
    "y'all'dve": "y'all'd've",
    "youd": "you'd",
    "youd've": "you'd've",
    "you'dve": "you'd've",
    "youll": "you'll",
    "youre": "you're",
    "youve": "you've",
}  # the capitalised keys ("Im", "Ive") never match after lower-casing: kept as official
_NUMBER_WORDS = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
_ARTICLES = frozenset({"a", "an", "the"})
_PUNCT = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!"]
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")  # the official (mis-typed) lookbehind
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")


def vqa_process_punctuation(text: str) -> str:
    """Official ``processPunctuation``: drop punctuation next to spaces or when the answer
    has a digit-comma-digit (so "1,000" -> "1000"), else replace it by a space; strip
    periods not followed by a digit ("3.5" stays, "yes." -> "yes")."""
    out = text
    has_number_comma = _COMMA_STRIP.search(text) is not None
    for p in _PUNCT:
        if p + " " in text or " " + p in text or has_number_comma:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD_STRIP.sub("", out, 32)  # official passes re.UNICODE (=32) as `count`


def vqa_process_digit_article(text: str) -> str:
    """Official ``processDigitArticle``: lower-case, number words -> digits, drop articles,
    restore apostrophes of common contractions ("dont" -> "don't")."""
    words = [_NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    return " ".join(_CONTRACTIONS.get(w, w) for w in words if w not in _ARTICLES)


def vqa_normalize(answer: str) -> str:
    """Full official normalisation of a predicted answer."""
    answer = answer.replace("\n", " ").replace("\t", " ").strip()
    return vqa_process_digit_article(vqa_process_punctuation(answer))


def vqa_accuracy(prediction: str, gt_answers: Sequence[str]) -> float:
    """Official VQA accuracy of one prediction against the (10) human answers.

    The prediction is fully normalised; the human answers get ``processPunctuation`` only,
    and only when they are not all identical (the dataset's answers are pre-normalised).
    acc = mean over leave-one-out subsets of min(#matches among the others / 3, 1).
    """
    return _leave_one_out_accuracy(vqa_normalize(prediction), _vqa_process_gts(gt_answers))


def _vqa_process_gts(gt_answers: Sequence[str]) -> list[str]:
    if not gt_answers:
        raise ValueError("no ground-truth answers")
    gts = list(gt_answers)
    return [vqa_process_punctuation(a) for a in gts] if len(set(gts)) > 1 else gts


def _leave_one_out_accuracy(pred: str, gts: Sequence[str]) -> float:
    matches = sum(a == pred for a in gts)
    # leaving out answer i leaves `matches - (gts[i] == pred)` matches among the others
    return float(np.mean([min(1.0, (matches - (a == pred)) / 3.0) for a in gts]))


# ---------------------------------------------------------------------------------------
# GQA and OK-VQA
# ---------------------------------------------------------------------------------------


def gqa_accuracy(prediction: str, gt_answer: str) -> float:
    """GQA exact match: 1.0 if prediction and answer are equal after the VQA normalisation
    (applied to both, so "t-shirt" matches "t-shirt"), else 0.0."""
    return float(vqa_normalize(prediction) == vqa_normalize(gt_answer))


@lru_cache(maxsize=65536)
def lemmatize_word(word: str) -> str:
    """Lemma of a noun ("glasses" -> "glass") or verb ("riding" -> "ride"); others as is.

    Mirrors the reference's spaCy step (lemma only for NOUN / VERB tokens) without a tagger:
    auxiliaries ("is", "has") stay, a word with a noun reading takes its noun lemma, else a
    verb lemma.
    """
    from lemminflect import getAllLemmas

    lemmas = getAllLemmas(word)
    if "AUX" in lemmas:
        return word
    for pos in ("NOUN", "VERB"):
        if pos in lemmas:
            return lemmas[pos][0]
    return word


def okvqa_normalize(answer: str) -> str:
    """VQA normalisation followed by word-wise lemmatisation."""
    return " ".join(lemmatize_word(w) for w in vqa_normalize(answer).split())


def okvqa_accuracy(prediction: str, gt_answers: Sequence[str]) -> float:
    """OK-VQA: VQA accuracy with the prediction and the human answers both lemmatised
    (OK-VQA's own answers are already lemmatised, for which this is a no-op)."""
    pred = okvqa_normalize(prediction)
    gts = [" ".join(lemmatize_word(w) for w in a.split()) for a in _vqa_process_gts(gt_answers)]
    return _leave_one_out_accuracy(pred, gts)
