"""Answer extraction from free text (teacher and student outputs).

Model text is only ever matched with regular expressions, never evaluated. The final
answer is taken from the last "The answer is X" (the format the prompt asks for), then
from common fallbacks ("#### X", "Answer: X", a closing boxed value), then from the
last candidate of the right kind anywhere in the text.

Strict extraction (``strict=True``, :func:`extract_strict`) reads only the "The answer is
X" line. Signals use it: a sample that never states its answer in the asked-for format is
not a confident answer, and the lenient fallbacks would turn rambling that happens to end
in a number into agreement.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# A number: commas only as thousands separators between full three-digit groups ("1,234",
# not "2,3", a list), a minus sign only where no word or digit precedes it ("-12" in "= -12",
# not in the range "10-12"), a fraction as its value ("3/4" -> 0.75).
_NUMBER = r"(?:(?<![\w.])-)?(?:(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:/\d+(?![\d,]|\.\d))?|\.\d+)"
# Up to the end of the line or the next "the answer is", whichever comes first.
_ANSWER_LINE = re.compile(
    r"the (?:final )?answer is\s*:?\s*((?:(?!the (?:final )?answer is)[^\n])*)", re.IGNORECASE
)
_MARKERS = [
    _ANSWER_LINE,
    re.compile(r"####\s*(.+)"),
    re.compile(r"\\boxed\{([^}]*)\}"),
    re.compile(r"^\s*(?:final )?answer\s*:\s*(.+)", re.IGNORECASE | re.MULTILINE),
]
_ARTICLES = re.compile(r"^(?:a|an|the|his|her|their)\s+", re.IGNORECASE)


# What surrounds an answer without being part of it: closing punctuation and markdown.
_ANSWER_TRIM = " \t*_`\"'.!;:,"


def _marked_spans(text: str, strict: bool = False) -> list[str]:
    """Text after each answer marker, most authoritative marker first, last occurrence first;
    ``strict``: the "The answer is X" marker only."""
    spans: list[str] = []
    for pattern in _MARKERS[:1] if strict else _MARKERS:
        hits = [m.group(1).strip() for m in pattern.finditer(text)]
        spans.extend(reversed(hits))
    return spans


def normalize_number(raw: str) -> str | None:
    """'1,234' -> '1234', '12.50' -> '12.5', '3.0' -> '3', '3/4' -> '0.75'; None when not a
    number (or a fraction over zero)."""
    cleaned = raw.replace(",", "").strip()
    numerator, _, denominator = cleaned.partition("/")
    try:
        value = float(numerator) / float(denominator) if denominator else float(cleaned)
    except (ValueError, ZeroDivisionError):
        return None
    if value != value or value in (float("inf"), float("-inf")):
        return None
    # Compared at six decimals; + 0.0 turns the -0.0 that rounding a tiny negative gives into 0.
    value = round(value, 6) + 0.0
    if value.is_integer():
        return str(int(value))
    return f"{value:.6f}".rstrip("0").rstrip(".")


def _first_number(span: str) -> str | None:
    match = re.search(_NUMBER, span.replace("$", ""))
    return normalize_number(match.group(0)) if match else None


def final_answer_span(text: str) -> tuple[int, int] | None:
    """Character span of X in the last "The answer is X" line, without closing punctuation
    or markdown; None when there is no such line or it states nothing."""
    matches = list(_ANSWER_LINE.finditer(text))
    if not matches:
        return None
    start, end = matches[-1].span(1)
    raw = text[start:end]
    stripped = raw.lstrip(_ANSWER_TRIM)
    start += len(raw) - len(stripped)
    end = start + len(stripped.rstrip(_ANSWER_TRIM))
    return (start, end) if end > start else None


def extract_number(text: str, strict: bool = False) -> str | None:
    for span in _marked_spans(text, strict):
        value = _first_number(span.split("\n", 1)[0])
        if value is not None:
            return value
    if strict:
        return None
    numbers = re.findall(_NUMBER, text)
    return normalize_number(numbers[-1]) if numbers else None


_YES_NO = re.compile(r"\b(yes|no)\b", re.IGNORECASE)


def extract_yes_no(text: str, strict: bool = False) -> str | None:
    for span in _marked_spans(text, strict):
        match = _YES_NO.search(span.split("\n", 1)[0])
        if match:
            return match.group(1).capitalize()
    if strict:
        return None
    hits = _YES_NO.findall(text)
    return hits[-1].capitalize() if hits else None


def normalize_text(raw: str) -> str:
    first_line = raw.strip().split("\n", 1)[0]
    cleaned = first_line.strip().strip("*_`\"'").rstrip(".!;:,").strip().strip("*_`\"'")
    return _ARTICLES.sub("", cleaned).strip().lower()


def extract_text(text: str, vocabulary: Iterable[str] = (), strict: bool = False) -> str | None:
    """A short free-text answer; with a vocabulary, the last vocabulary word wins as fallback."""
    vocab = sorted({v.lower() for v in vocabulary}, key=len, reverse=True)
    for span in _marked_spans(text, strict):
        answer = normalize_text(span)
        if vocab:
            # "Sarah is Elizabeth's mother-in-law" -> the relation word it names.
            found = _last_vocab_word(answer, vocab)
            if found:
                return found
        elif answer:
            return answer
    if strict:
        return None
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


def extract(
    text: str, answer_format: str, vocabulary: Iterable[str] = (), strict: bool = False
) -> str | None:
    if answer_format == "number":
        return extract_number(text, strict)
    if answer_format == "yes_no":
        return extract_yes_no(text, strict)
    if answer_format == "text":
        return extract_text(text, vocabulary, strict)
    raise ValueError(f"unknown answer format {answer_format!r}")


def extract_strict(text: str, answer_format: str, vocabulary: Iterable[str] = ()) -> str | None:
    """Only the answer stated on a "The answer is X" line (see the module docstring)."""
    return extract(text, answer_format, vocabulary, strict=True)
