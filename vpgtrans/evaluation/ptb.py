"""COCO caption tokenisation without Java.

:func:`ptb_tokenize` is a pure-Python equivalent of pycocoevalcap's ``PTBTokenizer``
(Stanford CoreNLP 3.4.1 ``PTBTokenizer -preserveLines -lowerCase`` followed by dropping the
punctuation tokens pycocoevalcap drops), so scoring captions needs no Java.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Hashable, Mapping, Sequence

#: Tokens pycocoevalcap removes after PTB tokenisation. Bracket tokens are listed in upper
#: case but the tokenizer has already lower-cased them, so "-lrb-" etc. survive (as in COCO).
PTB_PUNCTUATIONS = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"]
)

_L = "[^\\W\\d_\u00b2\u00b3\u00b9\u00bc-\u00be]"  # a letter
_AN = "(?:[^\\W_\u00b2\u00b3\u00b9\u00bc-\u00be]|[\u0300-\u036f\u00ad])"  # letter, digit, accent
_APO = "['`\u2018\u2019]"  # apostrophes the lexer accepts inside words (after normalisation)
_WORD = _L + _AN + r"*(?:[.!?]" + _L + _AN + r"*)*"
_NUM = r"(?:\d*(?:[.:,]\d+)+|\d+(?:[.:,]\d+)*)"
_THING_TAIL = r"(?:[-_](?:[dol]" + _APO + r"(?=" + _AN + r"))?" + _AN + r"+)*"
_CURLY_CLITICS = frozenset("\u2019" + c for c in ("s", "m", "d", "re", "ve", "ll")) | {"n\u2019t"}
_FRACTIONS = {"\u00bc": "1/4", "\u00bd": "1/2", "\u00be": "3/4"}
_BRACKETS = {"(": "-LRB-", ")": "-RRB-", "[": "-LSB-", "]": "-RSB-", "{": "-LCB-", "}": "-RCB-"}
_UNICODE_MAP = str.maketrans(
    {
        "\u00a0": " ",
        "\u2014": "--",
        "\u2013": "--",
        "\u2026": "...",
        "\u00a3": " # ",
        "\u20ac": " $ ",
        "\u00a4": " $ ",
        "\u00a2": " cents ",
    }
)
# Abbreviations that keep their period (case-insensitive), then the case-sensitive ones.
_ABBREV = (
    "adj|adm|adv|al|ala|apr|ariz|assn|assoc|asst|attys?|aug|ave|bancorp|bhd|bldg|blvd|brig|"
    "bros|calif|capt|cf|cie|cmdr|co|col|colo|comdr|conn|corp|cos|cpl|ct|dak|dec|dept|det|drs?|"
    "elec|ens|esq|est|etc|ext|feb|fla|fri|ft|ga|gen|govs?|hon|inc|ind|insp|intl|invt|jan|jos|jr|"
    "jul|jun|kans?|ky|lieut|lt|ltd|maj|mar|md|messrs|mfg|mich|minn|mlle|mme|mo|mon|mont|mrs?|ms|"
    "msgr|mtg?|natl|neb|nev|nov|oct|okla|penn|pfc|ph|plc|pres|profs?|pty|pvt|rd|reps?|rev|rt|"
    "sens?|sept?|seq|sfc|sgt|spc|sq|sr|st|ste|supts?|sys|tel|tenn|thu|thurs|tues?|univ|va|vs|vt|wed|"
    "wisc?|wm|wyo"
)
_ABBREV_CASED = "Ark|Az|Del|Ill|La|Mass|Miss|Ore|Pa|Tex|Wash"
# Capitalised words after which a one-letter acronym ("A.") ends a sentence (CoreNLP 3.4.1).
_FUNCTION_WORDS = "|".join(
    w[0] + "(?i:" + w[1:] + ")"
    for w in (
        "A About According Additionally After An As At But Earlier He Her Here However If In It "
        "Last Many More Mr. Ms. Now Once One Other Our She Since So Some Such That The Their "
        "Then There These They This We When While What Yet You"
    )
    .replace(".", "\\.")
    .split()
)


def _rule(pattern: str, flags: int = re.IGNORECASE) -> re.Pattern[str]:
    return re.compile(pattern, flags)


# Lexer rules in priority order. Like JFlex, the longest match wins (trailing context, the
# part of a match outside the group ``tok``, counts towards its length) and ties go to the
# earlier rule. Each rule gives the token text; ``None`` means "the matched ``tok`` as is".
_RULES: list[tuple[re.Pattern[str], str | None]] = [
    (_rule(r"(?P<tok>can)not(?!" + _L + ")"), None),
    (_rule(r"(?P<tok>gon|wan)na(?!" + _L + ")"), None),
    (_rule(r"(?P<tok>got)ta(?!" + _L + ")"), None),
    (_rule(r"(?P<tok>lem|gim)me(?!" + _L + ")"), None),
    (_rule(r"(?P<tok>" + _APO + r"t)(?:is|was)(?!" + _L + ")"), None),
    (_rule(r"</?[A-Za-z!][^<>\s]*>"), None),  # SGML tag
    (_rule(r"--+"), "--"),
    (_rule(r"(?P<tok>" + _WORD + ")" + _APO + r"(?:s|m|d|re|ve|ll|em)"), None),  # word|'s
    (_rule(r"(?P<tok>" + _L + r"*[a-mo-z])n" + _APO + r"t"), None),  # do|n't
    (_rule(r"(?P<tok>(?:th|y)')" + _WORD), None),  # th'|y' before a word
    (_rule(_WORD), None),  # WORD
    (_rule(r"(?P<tok>" + _WORD + r"\.)[,;:]"), None),  # "it." before a comma
    (
        _rule(_L + r"*[aeiouy]" + _APO + r"[aeiou]" + _L + r"*|[a-hj-xz]['`]" + _L + r"{2,}"),
        None,
    ),  # ma'am, shi'ite, c'mon
    (
        _rule(
            r"'(?:n'|n(?!" + _L + r")|em|till?|cause|[2-9]0s)|'\d\d(?=\s|$)|\u2019n\u2019"
            r"|(?:[dlj]|ol)'"
        ),
        None,
    ),
    (_rule(r"https?://[^\s\"<>|(){}]+[^\s\"<>|.!?(){},-]"), None),  # URL
    (_rule(r"[A-Za-z0-9][^\s\"<>|(){}]*@[^\s\"<>|(){}.]+(?:\.[^\s\"<>|(){}.]+)*"), None),
    (
        _rule(
            r"(?:www\.(?:[^\s\"<>|.!?(){},]+\.)+[a-zA-Z]{2,4}"
            r"|(?:[^\s\"`'<>|.!?(){},-_$]+\.)+(?:com|net|org|edu))"
            r"(?:/[^\s\"<>|()]+[^\s\"<>|.!?(){},-])?"
        ),
        None,
    ),  # likely URL
    (_rule(r"[@#][A-Za-z_][A-Za-z0-9_]*"), None),  # twitter name / hashtag
    # a curly apostrophe splits off 's 're ... even before letters, a straight one does not
    (_rule(r"['`](?:s|m|d|re|ve|ll|em)(?!" + _L + ")|\u2019(?:s|m|d|re|ve|ll|em)"), None),
    (_rule(r"n" + _APO + r"t" + _L + "*"), None),
    (_rule(r"\d{1,2}[-/]\d{1,2}[-/]\d{2,4}|\d{4}[-/]\d{1,2}[-/]\d{1,2}"), None),  # date
    (_rule(r"[-+]?" + _NUM), None),
    (_rule(r"(?:\d{1,4}[- ])?\d{1,4}\\?/\d{1,4}"), None),  # fraction (space -> nbsp below)
    (_rule(_AN + r"+(?:-" + _L + r"+){0,2}(?:\\?/" + _AN + r"+(?:-" + _L + r"+){0,2}){1,2}"), None),  # and/or
    (_rule(r"[A-Z]*\$|#", 0), None),  # dollar signs
    (_rule(r"[A-Z]+(?:[+&][A-Z]+)+", 0), None),  # AT&T
    # Abbreviations: a single letter before a capitalised function word loses its period.
    (
        _rule(r"(?P<tok>[A-Za-z])\.\s+(?:(?:" + _FUNCTION_WORDS + r")(?=\s)|<[^<>\s]*>)", 0),
        None,
    ),  # (first letter upper case, the rest in any case)
    (_rule(r"(?:ph|ed)\.d\.|(?:[A-Za-z]\.)+|(?:" + _ABBREV + r")\."), None),
    (_rule(r"(?:" + _ABBREV_CASED + r")\.", 0), None),
    (_rule(r"(?P<tok>(?:ca|figs?|nos?|prop|p|pp|arts?|op)\.)\s?\d"), None),
    # THING: alphanumerics (or a leading number) joined by single hyphens / underscores.
    (_rule(r"(?:[dol]" + _APO + r"(?=" + _AN + r"))?" + _AN + r"+" + _THING_TAIL), None),
    (_rule(r"[-+]?" + _NUM + _THING_TAIL), None),
    (_rule(_AN + r"[^\W_.,]*[.,]*(?:[.,]+[^\W_]+)*(?:-" + _AN + r"+)+"), None),  # HTHING
    (_rule(r"[<>]?[:;=][-o*']?[()DPdpO\\{@|\[\]](?![^\W_])", 0), None),  # smileys
    (_rule(r"[-^x=~<>']_[-^x=~<>']"), None),  # ^_^
    (_rule(r"\.\.\."), None),
    (_rule("[\u00bc\u00bd\u00be]"), None),
    (_rule(r"[?!]+"), None),
    (_rule(r"\*+|_+|@+|#+"), None),
    (_rule("``|''|[\"\u2018\u2019\u201c\u201d\u00ab\u00bb\u2039\u203a]"), "''"),
]


def _tokenize_line(line: str, following: str = "") -> list[str]:
    """PTB-tokenise one line (before lower-casing and punctuation removal); ``following`` is
    the text after it, which the lexer's trailing context may look at."""
    end = len(line := line.translate(_UNICODE_MAP))
    line += "\n" + following.translate(_UNICODE_MAP)
    tokens: list[str] = []
    pos = 0
    while pos < end:
        if line[pos].isspace():
            pos += 1
            continue
        best_len, consumed, token = 0, 1, _other_char(line[pos])
        for pattern, fixed in _RULES:
            m = pattern.match(line, pos)
            if m is None or m.end() - pos <= best_len:
                continue
            best_len = m.end() - pos
            if "tok" in pattern.groupindex:
                consumed, token = m.end("tok") - pos, m.group("tok")
            else:
                consumed, token = best_len, m.group(0)
            if fixed is not None:
                token = fixed
        token = _normalise_token(token)
        if token:
            tokens.append(token)
        pos += consumed
    return tokens


def _other_char(ch: str) -> str:
    """A character no rule matches is a token of its own, unless the lexer cannot
    tokenise it (controls, format and private-use characters, lone accents, characters
    outside the BMP, currency signs it does not know), which it deletes."""
    category = unicodedata.category(ch)
    unknown_currency = category == "Sc" and ch not in "$\u00a5"
    if ord(ch) > 0xFFFF or category[0] in "CM" or ch == "\ufffd" or unknown_currency:
        return ""
    return ch


def _normalise_token(tok: str) -> str:
    """Token-level PTB escapes: brackets (also inside smileys), fraction spaces, curly
    apostrophes of split-off clitics."""
    tok = tok.replace("\u00ad", "")  # soft hyphens
    if tok.lower() in _CURLY_CLITICS:
        return tok.replace("\u2019", "'")
    if any(b in tok for b in _BRACKETS):
        return "".join(_BRACKETS.get(c, c) for c in tok)
    if tok in _FRACTIONS:
        return _FRACTIONS[tok]
    if "/" in tok and " " in tok:
        return tok.replace(" ", "\u00a0")
    return tok


def ptb_tokenize_sentence(sentence: str, following: str = "") -> str:
    """Tokenise one caption like pycocoevalcap: lower-cased PTB tokens, punctuation dropped,
    joined by single spaces.

    ``following``: the captions after this one in pycocoevalcap's newline-joined input. The
    Java lexer looks past the line end in one case: a final one-letter acronym ("... letter
    A.") followed by "The", "A", ... loses its period.
    """
    tokens = _tokenize_line(sentence.replace("\n", " "), following)
    return " ".join(t.lower() for t in tokens if t.lower() not in PTB_PUNCTUATIONS)


def ptb_tokenize(captions: Mapping[Hashable, Sequence[str]]) -> dict[Hashable, list[str]]:
    """``{id: [raw caption, ...]}`` -> ``{id: [tokenised caption, ...]}``, the same as
    pycocoevalcap's ``PTBTokenizer().tokenize({id: [{"caption": c}, ...]})``."""
    flat = [(key, c.replace("\n", " ")) for key, caps in captions.items() for c in caps]
    out: dict[Hashable, list[str]] = {key: [] for key in captions}
    for i, (key, caption) in enumerate(flat):
        j = i + 1  # the lexer's lookahead needs the text past the next non-blank caption
        while j < len(flat) and not flat[j][1].strip():
            j += 1
        following = "\n".join(c for _, c in flat[i + 1 : j + 2])
        out[key].append(ptb_tokenize_sentence(caption, following))
    return out
