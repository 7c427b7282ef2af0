"""Word matching for grounding: a query's words found in transcript, caption or on-screen
text, exactly (or by stem) and, for what speech recognition and OCR get slightly wrong,
by sound and by spelling.

- exact: the word (or its stem, for words of six letters or more) inside the text with
  spaces removed, so OCR that drops spaces still matches.
- by sound: :func:`phonetic_key`, a small Metaphone-like key (consonant sounds, voiced and
  voiceless pairs merged), so "ferry" meets "fairy" and "Patel" meets "Pattel".
- by spelling: character trigrams (Dice overlap of the padded word), so "chocolatte"
  meets "chocolate".

A sound or spelling match counts less than an exact one (:data:`FUZZY_WEIGHT`).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict

import numpy as np

FUZZY_WEIGHT = 0.6  # a word heard or spelt alike counts this much of a word found exactly
PHONETIC_CREDIT = 0.8  # how alike two words with the same sound key are, on the trigram scale
MIN_DICE = 0.5  # spelling overlap below this is no match
MIN_FUZZY_LEN = 4  # shorter words are too often alike by chance
STOPWORDS = set(
    """a an the and or of to in on at by for with from into onto over under is are was were be been
being it its this that these those there here what which who whom whose when where why how does do did doing
done has have had having i you he she we they me him her us them my your his our their some any about as than
then so such very can could should would will shall may might must not no yes up down out off again once
scene video shown shows show part moment time say says said tell tells someone something""".split()
)


def compact(text: str) -> str:
    """``text`` lower-cased with everything but letters and digits removed."""
    return re.sub(r"[^0-9a-z]+", "", text.lower())


def query_words(query: str) -> list[str]:
    words = [w for w in re.findall(r"[0-9a-z]+", query.lower()) if w not in STOPWORDS]
    return [w for w in words if len(w) > 1 or w.isdigit()]


def stem(word: str) -> str:
    """What of ``word`` must be found: a long word without its last three letters, so
    "sleeping" finds "sleeps" and "judging" finds "judge"."""
    return word[: max(4, len(word) - 3)] if len(word) >= 6 else word


_START = (("kn", "n"), ("gn", "n"), ("pn", "n"), ("wr", "r"), ("wh", "w"), ("x", "s"))
_RULES = (
    (r"sch", "sk"),
    (r"t?ch", "9"),
    (r"sh", "9"),
    (r"ph", "f"),
    (r"th", "0"),
    (r"(?<=.)gh", ""),
    (r"ck", "k"),
    (r"c(?=[eiy])", "s"),
    (r"c", "k"),
    (r"q", "k"),
    (r"dg(?=[eiy])", "j"),
    (r"x", "ks"),
    (r"[wy](?![aeiou])", ""),
    (r"h", ""),
)
_VOICING = str.maketrans({"b": "p", "d": "t", "g": "k", "v": "f", "z": "s", "j": "x", "9": "x"})


def phonetic_key(word: str) -> str:
    """A sound key for an English word: its consonant sounds, upper-case (a leading vowel
    is kept as ``A``). Words that sound alike get the same key; it is made for the slips
    of speech recognition, not for linguistics."""
    w = re.sub(r"[^a-z]", "", word.lower())
    if not w:
        return ""
    for a, b in _START:
        if w.startswith(a):
            w = b + w[len(a) :]
            break
    w = re.sub(r"(.)\1+", r"\1", w)
    for pattern, repl in _RULES:
        w = re.sub(pattern, repl, w)
    if not w:
        return ""
    head = "a" if w[0] in "aeiou" else w[0]
    body = re.sub(r"[aeiou]", "", w[1:])
    return re.sub(r"(.)\1+", r"\1", (head + body).translate(_VOICING)).upper()


def trigrams(word: str) -> set[str]:
    padded = f"#{word}#"
    return {padded[i : i + 3] for i in range(len(padded) - 2)}


class Haystack:
    """Texts joined into one string, so a word is looked for in all of them by one scan."""

    def __init__(self, texts: list[str]) -> None:
        self.count = len(texts)
        self.joined = "\x00".join(texts)
        self.starts = np.cumsum([0] + [len(t) + 1 for t in texts[:-1]]) if texts else np.zeros(0, int)

    def contains(self, needle: str) -> np.ndarray:
        """1.0 for each text that holds ``needle``, else 0.0."""
        found = np.zeros(self.count, dtype=np.float32)
        at = [m.start() for m in re.finditer(re.escape(needle), self.joined)]
        if at:
            found[np.searchsorted(self.starts, at, side="right") - 1] = 1.0
        return found


class WordIndex:
    """The words of a list of texts, ready for exact, sound-alike and spelt-alike lookups."""

    def __init__(self, texts: list[str]) -> None:
        self.count = len(texts)
        self.hay = Haystack([compact(t) for t in texts])
        where: dict[str, set[int]] = defaultdict(set)
        for i, text in enumerate(texts):
            for w in re.findall(r"[a-z]+", text.lower()):
                if len(w) >= MIN_FUZZY_LEN - 1:
                    where[w].add(i)
        self.vocab = list(where)
        self.texts_of = [np.fromiter(where[w], dtype=np.int64) for w in self.vocab]
        self.sizes = np.array([len(trigrams(w)) for w in self.vocab], dtype=np.float32)
        self.by_key: dict[str, list[int]] = defaultdict(list)
        self.by_gram: dict[str, list[int]] = defaultdict(list)
        for v, w in enumerate(self.vocab):
            key = phonetic_key(w)
            if len(key) >= 2:
                self.by_key[key].append(v)
            for g in trigrams(w):
                self.by_gram[g].append(v)

    def exact(self, words: list[str]) -> np.ndarray:
        """Share of ``words`` each text holds, found whole or by stem."""
        out = np.zeros(self.count, dtype=np.float32)
        if not words or not self.count:
            return out
        for w in words:
            out += self.hay.contains(stem(w))
        return out / len(words)

    def alike(self, word: str) -> np.ndarray:
        """How near each text comes to holding ``word`` by sound or spelling (0..1; 0 where
        no word of it is alike), not counting the word itself."""
        out = np.zeros(self.count, dtype=np.float32)
        if len(word) < MIN_FUZZY_LEN or word.isdigit() or not self.count:
            return out
        credit: dict[int, float] = {}
        key = phonetic_key(word)
        if len(key) >= 2:
            for v in self.by_key.get(key, ()):
                credit[v] = PHONETIC_CREDIT
        grams = trigrams(word)
        shared = Counter(v for g in grams for v in self.by_gram.get(g, ()))
        for v, n in shared.items():
            dice = 2.0 * n / (len(grams) + self.sizes[v])
            if dice >= MIN_DICE:
                credit[v] = max(credit.get(v, 0.0), min(0.95, float(dice)))
        for v, c in credit.items():
            if self.vocab[v] != word:
                np.maximum.at(out, self.texts_of[v], c)
        return out


def fuzzy_scores(words: list[str], index: WordIndex) -> np.ndarray:
    """Share of ``words`` each text holds only by sound or spelling (each word weighted by
    how alike it is); a word a text holds exactly counts there under :meth:`WordIndex.exact`."""
    out = np.zeros(index.count, dtype=np.float32)
    if not words or not index.count:
        return out
    for w in words:
        out += np.where(index.hay.contains(stem(w)) > 0, 0.0, index.alike(w))
    return out / len(words)


def word_scores(words: list[str], index: WordIndex) -> np.ndarray:
    """Exact matches plus sound or spelling matches at :data:`FUZZY_WEIGHT`, per text (0..1)."""
    return index.exact(words) + FUZZY_WEIGHT * fuzzy_scores(words, index)
