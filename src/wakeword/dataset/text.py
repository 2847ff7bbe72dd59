"""Texts to synthesise: the phrase, adversarial near-misses made from it, and general speech."""
from __future__ import annotations

import glob
import logging
import random
import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path

logger = logging.getLogger(__name__)

_VOWELS = "aeiouy"
_ONSETS = ["b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z", "sh", "ch", "br", "st"]
_VOWEL_SWAPS = {"a": ["e", "o", "u"], "e": ["a", "i", "o"], "i": ["e", "a", "u"], "o": ["a", "u", "oo"],
                "u": ["o", "a", "ee"], "y": ["i", "ee"]}


def normalise(text: str) -> str:
    """Lower case, letters/digits/apostrophes and single spaces only."""
    return re.sub(r"\s+", " ", re.sub(r"[^a-z0-9' ]", " ", text.lower())).strip()


def contains_phrase(text: str, phrase: str) -> bool:
    """True when ``text`` contains the phrase (a negative must never say the wake word)."""
    return normalise(phrase).replace(" ", "") in normalise(text).replace(" ", "")


def word_list() -> list[str]:
    txt = resources.files("wakeword.dataset.resources").joinpath("words.txt").read_text()
    return sorted(set(txt.split()))


def common_words() -> list[str]:
    """The 4,000 most frequent English words, most frequent first (resources/NOTICE.md)."""
    txt = resources.files("wakeword.dataset.resources").joinpath("common_words.txt").read_text()
    return txt.split()


def sentence_list() -> list[str]:
    txt = resources.files("wakeword.dataset.resources").joinpath("sentences.txt").read_text()
    return [s.strip() for s in txt.splitlines() if s.strip()]


_SENTENCE_OK = re.compile(r"[A-Z][A-Za-z ,.'!?;:-]*[A-Za-z.!?]")


def corpus_sentences(paths: tuple[str, ...] | list[str], min_words: int = 3, max_words: int = 16) -> list[str]:
    """Natural English sentences from text files: plain text, or fortune(6) files (entries between ``%`` lines,
    as Debian's ``fortunes`` package holds them). A path may be a file, a folder (its files without an extension:
    fortune's data files; ``.txt`` files) or a ``*`` pattern; one that is not there is skipped with a log line.
    Entries are split into sentences; attributions (``-- Name``), lines of code or art and sentences with digits
    or other symbols (which engines read out unpredictably) are left out, and each sentence is kept once.
    Sorted, so the draw from it depends on the corpus, not on the file system's order."""
    files: list[Path] = []
    for pat in paths:
        full = str(Path(pat).expanduser())
        found = sorted(glob.glob(full)) if glob.has_magic(full) else ([full] if Path(full).exists() else [])
        if not found:
            logger.info("sentence corpus %s is not there: skipped", pat)
        for f in map(Path, found):
            if f.is_dir():
                files += sorted(p for p in f.iterdir() if p.is_file() and (not p.suffix or p.suffix == ".txt"))
            elif f.is_file():
                files.append(f)
    out: set[str] = set()
    for f in files:
        try:
            txt = f.read_bytes().decode("utf-8", errors="replace")
        except OSError as e:
            logger.warning("sentence corpus file %s cannot be read (%s): skipped", f, e)
            continue
        for entry in re.split(r"^%\s*$", txt, flags=re.M):
            lines = [ln.strip() for ln in entry.splitlines()]
            body = " ".join(ln for ln in lines if ln and not ln.startswith("--"))
            for sent in re.split(r"(?<=[.!?])\s+", re.sub(r"\s+", " ", body).strip()):
                sent = re.sub(r"^[A-Z][A-Z.' ]{0,24}:\s+", "", sent.strip(" \"'"))  # a dialogue's "BOB: ", "Q: "
                if min_words <= len(sent.split()) <= max_words and _SENTENCE_OK.fullmatch(sent):
                    out.add(sent)
    return sorted(out)


def sentence_texts(phrase: str, n: int, seed: int, sentences: list[str]) -> list[str]:
    """``n`` sentences drawn from ``sentences`` without repeats (cycling, each repeat for another voice, when the
    corpus is smaller), never one that says the phrase. The draw order does not depend on the phrase (a sentence
    that says it is skipped for the next), so every phrase shares the other positions' texts (the clip cache)."""
    order = list(sentences)
    random.Random(seed + 3).shuffle(order)
    ok = [s for s in order if not contains_phrase(s, phrase)]
    if not ok or n <= 0:
        return []
    return [ok[i % len(ok)] for i in range(n)]


def _syllable_chunks(word: str) -> list[str]:
    """Split a word at vowel-group boundaries: 'computer' -> ['com', 'pu', 'ter']."""
    chunks = re.findall(r"[^aeiouy]*[aeiouy]+(?:[^aeiouy]+$|[^aeiouy](?=[^aeiouy]))?", word)
    rest = word[len("".join(chunks)):]
    if rest and chunks:
        chunks[-1] += rest
    return chunks or [word]


def partial_phrases(phrase: str) -> list[str]:
    """Pieces of the phrase: sub-sequences of words and leading/trailing syllables of each word."""
    words = normalise(phrase).split()
    out: set[str] = set()
    for i in range(len(words)):
        for j in range(i + 1, len(words) + 1):
            if j - i < len(words):
                out.add(" ".join(words[i:j]))
    for w in words:
        syl = _syllable_chunks(w)
        for k in range(1, len(syl)):
            out.add("".join(syl[:k]))
            out.add("".join(syl[k:]))
    return sorted(s for s in out if len(s) >= 2 and not contains_phrase(s, phrase))


def mutations(word: str, rng: random.Random, n: int) -> list[str]:
    """Pronounceable near-misses of one word: swapped onset, swapped vowel, dropped syllable."""
    out: set[str] = set()
    syl = _syllable_chunks(word)
    for _ in range(n * 20):
        if len(out) >= n:
            break
        kind = rng.random()
        if kind < 0.4:  # new onset of a random syllable
            k = rng.randrange(len(syl))
            m = re.match(r"[^aeiouy]*", syl[k])
            onset = m.group(0) if m else ""
            new = syl[:k] + [rng.choice(_ONSETS) + syl[k][len(onset):]] + syl[k + 1:]
        elif kind < 0.8:  # swap one vowel
            idx = [i for i, c in enumerate(word) if c in _VOWEL_SWAPS]
            if not idx:
                continue
            i = rng.choice(idx)
            new = [word[:i] + rng.choice(_VOWEL_SWAPS[word[i]]) + word[i + 1:]]
        elif len(syl) > 1:  # drop a syllable
            k = rng.randrange(len(syl))
            new = syl[:k] + syl[k + 1:]
        else:
            continue
        cand = "".join(new)
        if cand != word and len(cand) >= 2:
            out.add(cand)
    return sorted(out)


def phonemes(texts: list[str]) -> list[str]:
    """espeak-ng phoneme strings (one call for all texts); empty strings if espeak-ng is absent."""
    if not texts or shutil.which("espeak-ng") is None:
        return [""] * len(texts)
    proc = subprocess.run(["espeak-ng", "-q", "-x", "-v", "en-us"], input="\n".join(texts).encode(),
                          capture_output=True, timeout=120, check=False)
    lines = [ln.strip() for ln in proc.stdout.decode(errors="replace").splitlines() if ln.strip()]
    if len(lines) != len(texts):
        logger.warning("espeak-ng phonemisation returned %d lines for %d texts", len(lines), len(texts))
        return [""] * len(texts)
    return [re.sub(r"[ '',_:]", "", ln) for ln in lines]


def _edit_distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def close_words(word: str, candidates: list[str], k: int) -> list[str]:
    """The ``k`` candidates whose espeak-ng phonemes are closest to ``word``'s (orthography if absent)."""
    ph = phonemes([word] + candidates)
    target, cands = (ph[0], ph[1:]) if ph[0] else (word, candidates)
    scored = sorted((_edit_distance(target, c) / max(len(target), 1), w) for w, c in zip(candidates, cands)
                    if w != word)
    return [w for _, w in scored[:k]]


def adversarial_texts(phrase: str, n: int, seed: int) -> list[str]:
    """Up to ``n`` texts that sound like the phrase but are not it (deterministic in ``seed``)."""
    rng = random.Random(seed)
    words = normalise(phrase).split()
    pool: set[str] = set(partial_phrases(phrase))
    vocab = word_list()
    for i, w in enumerate(words):
        variants = mutations(w, rng, 30) + close_words(w, vocab, 12)
        for v in variants:
            pool.add(" ".join(words[:i] + [v] + words[i + 1:]))
            pool.add(v)
    pool = {p for p in pool if not contains_phrase(p, phrase)}
    # A spelling change that is pronounced exactly like the phrase ('computor') would be a
    # mislabelled positive: drop texts whose phonemes equal the phrase's.
    cands = sorted(pool)
    ph = phonemes([normalise(phrase)] + cands)
    texts = [t for t, p in zip(cands, ph[1:]) if not ph[0] or p != ph[0]]
    rng.shuffle(texts)
    # Cycle when the pool is smaller than n: each repeat is rendered by another voice/prosody.
    return [texts[i % len(texts)] for i in range(n)] if texts else []


def speech_texts(phrase: str, n: int, seed: int) -> list[str]:
    """General negative speech: curated sentences and random word sequences, never saying the phrase.

    Drawn from lists that do not depend on the phrase; a draw that says it is replaced by one from a second
    stream, so every other position holds the same text for every phrase (the clip cache then serves a second
    phrase the same clips, dataset/build.py)."""
    rng = random.Random(seed + 1)
    alt = random.Random(f"{seed}:{normalise(phrase)}")
    vocab, sentences = word_list(), sentence_list()

    def draw(r: random.Random) -> str:
        if sentences and r.random() < 0.4:
            return r.choice(sentences)
        return " ".join(r.choice(vocab) for _ in range(r.randint(1, 6)))

    safe = [w for w in vocab if not contains_phrase(w, phrase)] or ["okay"]
    out = []
    for _ in range(n):
        text = draw(rng)
        for _ in range(100):  # a phrase that most draws say (a very common word) falls back to one safe word
            if not contains_phrase(text, phrase):
                break
            text = draw(alt)
        else:
            text = alt.choice(safe)
        out.append(text)
    return out


def word_texts(phrase: str, n: int, seed: int) -> list[str]:
    """``n`` isolated common words (never the phrase or a word containing it), with statement /
    question / exclamation punctuation so the engines vary their prosody. Deterministic in ``seed``;
    cycles (each repeat gets another voice) when ``n`` exceeds the vocabulary. The order does not depend on the
    phrase (a word containing it is replaced by the next one that does not), so every phrase shares the other
    positions' texts."""
    rng = random.Random(seed + 2)
    vocab = list(common_words())
    rng.shuffle(vocab)
    ok = [w for w in vocab if not contains_phrase(w, phrase)]
    if not ok:
        return []
    out = []
    for i in range(n):
        w = vocab[i % len(vocab)]
        if contains_phrase(w, phrase):
            w = ok[i % len(ok)]
        out.append(w + rng.choice(["", ".", "!", "?"]))
    return out
