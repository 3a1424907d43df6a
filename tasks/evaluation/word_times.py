"""Word times against a reference transcript with utterance times (NIST .stm: file, channel,
speaker, start, end, text per line): how many of the reference words a word list finds, and
how many of those it puts inside their utterance.

Pure Python on purpose: the speech environment's benchmark (benchmarks/speech_words.py) and the
project's tests both score the speech worker's words with it.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path


def letters(text: str) -> str:
    """Lower-case letters and digits only: how words are compared (no case, punctuation, spaces)."""
    return re.sub(r"[^a-z0-9]", "", text.lower())


def stm_words(path: Path) -> list[tuple[str, float, float]]:
    """Every reference word, compared form, with its utterance's start and end (seconds)."""
    words = []
    for line in path.read_text().splitlines():
        _, _, _, start, end, text = line.split(maxsplit=5)
        words += [(letters(word), float(start), float(end)) for word in text.split()]
    return words


def inside_utterances(words: list[dict], reference: list[tuple[str, float, float]], slack_s: float = 0.25) -> tuple[int, int]:
    """(inside, matched): the reference words matched by text, in order, to `words` (dicts with
    word, start, end), and how many of those have their middle inside their utterance, give or
    take `slack_s`."""
    found = [letters(w["word"]) for w in words]
    matcher = difflib.SequenceMatcher(a=[r[0] for r in reference], b=found, autojunk=False)
    inside = matched = 0
    for block in matcher.get_matching_blocks():
        for i, j in zip(range(block.a, block.a + block.size), range(block.b, block.b + block.size), strict=True):
            middle = (words[j]["start"] + words[j]["end"]) / 2
            inside += reference[i][1] - slack_s <= middle <= reference[i][2] + slack_s
            matched += 1
    return inside, matched
