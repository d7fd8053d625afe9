"""Answer extraction from free text (teacher and student outputs).

Model text is only ever matched with regular expressions, never evaluated. The final
answer is taken from the last "The answer is X" (the format the prompt asks for), then
from common fallbacks ("#### X", "Answer: X", a closing boxed value), then from the
last candidate of the right kind anywhere in the text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_NUMBER = r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+"
_MARKERS = [
    # Up to the end of the line or the next "the answer is", whichever comes first.
    re.compile(r"the (?:final )?answer is\s*:?\s*((?:(?!the (?:final )?answer is)[^\n])*)", re.IGNORECASE),
    re.compile(r"####\s*(.+)"),
    re.compile(r"\\boxed\{([^}]*)\}"),
    re.compile(r"^\s*(?:final )?answer\s*:\s*(.+)", re.IGNORECASE | re.MULTILINE),
]
_ARTICLES = re.compile(r"^(?:a|an|the|his|her|their)\s+", re.IGNORECASE)


def _marked_spans(text: str) -> list[str]:
    """Text after each answer marker, most authoritative marker first, last occurrence first."""
    spans: list[str] = []
    for pattern in _MARKERS:
        hits = [m.group(1).strip() for m in pattern.finditer(text)]
        spans.extend(reversed(hits))
    return spans


def normalize_number(raw: str) -> str | None:
    """'1,234' -> '1234', '12.50' -> '12.5', '3.0' -> '3'; None when not a number."""
    cleaned = raw.replace(",", "").strip()
    try:
        value = float(cleaned)
    except ValueError:
        return None
    if value != value or value in (float("inf"), float("-inf")):
        return None
    if value.is_integer():
        return str(int(value))
    return f"{value:.6f}".rstrip("0").rstrip(".")


def _first_number(span: str) -> str | None:
    # Drop thousands separators only when they sit between digit groups.
    match = re.search(_NUMBER, span.replace("$", ""))
    return normalize_number(match.group(0)) if match else None


def extract_number(text: str) -> str | None:
    for span in _marked_spans(text):
        value = _first_number(span.split("\n", 1)[0])
        if value is not None:
            return value
    numbers = re.findall(_NUMBER, text)
    return normalize_number(numbers[-1]) if numbers else None


_YES_NO = re.compile(r"\b(yes|no)\b", re.IGNORECASE)


def extract_yes_no(text: str) -> str | None:
    for span in _marked_spans(text):
        match = _YES_NO.search(span.split("\n", 1)[0])
        if match:
            return match.group(1).capitalize()
    hits = _YES_NO.findall(text)
    return hits[-1].capitalize() if hits else None


def normalize_text(raw: str) -> str:
    first_line = raw.strip().split("\n", 1)[0]
    cleaned = first_line.strip().strip("*_`\"'").rstrip(".!;:,").strip().strip("*_`\"'")
    return _ARTICLES.sub("", cleaned).strip().lower()


def extract_text(text: str, vocabulary: Iterable[str] = ()) -> str | None:
    """A short free-text answer; with a vocabulary, the last vocabulary word wins as fallback."""
    vocab = sorted({v.lower() for v in vocabulary}, key=len, reverse=True)
    for span in _marked_spans(text):
        answer = normalize_text(span)
        if vocab:
            # "Sarah is Elizabeth's mother-in-law" -> the relation word it names.
            found = _last_vocab_word(answer, vocab)
            if found:
                return found
        elif answer:
            return answer
    if vocab:
        return _last_vocab_word(text.lower(), vocab)
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return normalize_text(lines[-1]) if lines else None


def _last_vocab_word(text: str, vocab: list[str]) -> str | None:
    best: tuple[int, str] | None = None
    for word in vocab:
        for m in re.finditer(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text):
            if best is None or m.start() > best[0]:
                best = (m.start(), word)
    return best[1] if best else None


def extract(text: str, answer_format: str, vocabulary: Iterable[str] = ()) -> str | None:
    if answer_format == "number":
        return extract_number(text)
    if answer_format == "yes_no":
        return extract_yes_no(text)
    if answer_format == "text":
        return extract_text(text, vocabulary)
    raise ValueError(f"unknown answer format {answer_format!r}")
