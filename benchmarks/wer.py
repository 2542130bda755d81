"""Word error rate: word-level Levenshtein distance between a reference and a transcript."""

from __future__ import annotations

import re

_NOT_WORD = re.compile(r"[^a-z0-9' ]+")


def normalise(text: str) -> str:
    """Lowercase, punctuation dropped, single spaces: the form Vosk writes and we compare."""
    return " ".join(_NOT_WORD.sub(" ", text.lower()).split())


def word_errors(reference: str, hypothesis: str) -> int:
    """Substitutions + deletions + insertions turning `reference` into `hypothesis` (words)."""
    ref, hyp = normalise(reference).split(), normalise(hypothesis).split()
    previous = list(range(len(hyp) + 1))
    for i, ref_word in enumerate(ref, 1):
        current = [i]
        for j, hyp_word in enumerate(hyp, 1):
            substitution = previous[j - 1] + (ref_word != hyp_word)
            current.append(min(substitution, previous[j] + 1, current[j - 1] + 1))
        previous = current
    return previous[-1]


def wer(reference: str, hypothesis: str) -> float:
    """Word errors per reference word (can exceed 1 with many insertions)."""
    words = len(normalise(reference).split())
    errors = word_errors(reference, hypothesis)
    if words == 0:
        return 0.0 if errors == 0 else float("inf")
    return errors / words


def corpus_wer(pairs: list[tuple[str, str]]) -> float:
    """Total word errors over total reference words, for (reference, hypothesis) pairs."""
    words = sum(len(normalise(reference).split()) for reference, _ in pairs)
    errors = sum(word_errors(reference, hypothesis) for reference, hypothesis in pairs)
    return errors / words if words else 0.0
