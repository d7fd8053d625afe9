"""Chain-of-thought writers for the simulated teacher, one per built-in task.

Each writer builds a natural rationale from the generator's metadata and, when asked to
be wrong, makes a mistake of a kind a real LLM makes on that task. The rationale always
agrees with the answer it ends with, so a wrong reply looks as confident as a right one.
"""

from __future__ import annotations

import math
import random
import re
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol

from taloop.tasks.answers import normalize_number
from taloop.tasks.base import Example


@dataclass(frozen=True)
class Rationale:
    text: str
    answer: str
    error: str | None  # mistake kind, None when the teacher is right


class Writer(Protocol):
    def hardness(self, ex: Example) -> float:
        """Positive; larger = harder. Only ratios within one task matter.

        Reads the item's structure only (terms, premises, path length), never the gold
        answer or anything that fixes it: errors that track the answer would hand any
        signal with an answer bias (say, a leaning towards "Yes") a spurious AUC.
        """
        ...

    def write(self, ex: Example, wrong: bool, rng: random.Random) -> Rationale: ...

    def blind_spot(self, ex: Example) -> bool:
        """Whether ``ex`` is of the sub-type this task's systematic mistake applies to. Like
        hardness, it reads the item's structure, not its gold answer."""
        ...

    def write_blind(self, ex: Example, rng: random.Random) -> Rationale:
        """A wrong rationale by the task's one consistent wrong rule (``teacher.error_mode:
        systematic``), for an item in its blind spot."""
        ...


def _finish(body: str, answer: str, error: str | None) -> Rationale:
    return Rationale(f"{body.rstrip()}\nThe answer is {answer}.", answer, error)


def _slip(value: Fraction, rng: random.Random) -> Fraction:
    """A plausible arithmetic slip: off by one, a dropped carry, or swapped digits."""
    options = [value + 1, value - 1, value + 10, value - 10, value + 2]
    digits = str(int(value)) if value.denominator == 1 else ""
    if len(digits) >= 2 and digits[-1] != digits[-2]:
        options.append(Fraction(int(digits[:-2] + digits[-1] + digits[-2])))
    options = [v for v in options if v != value and v >= 0]
    return rng.choice(options)


def _fmt(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    return normalize_number(f"{float(value):.4f}") or str(float(value))


# --- gsm_symbolic -----------------------------------------------------------------------

_NUM = r"\d[\d,]*(?:\.\d+)?"
_OP = r"[-+*/×÷]"
_EQUATION = re.compile(rf"(\$?{_NUM}(?:\s*{_OP}\s*\$?{_NUM})+)(\s*=\s*)(\$?)({_NUM})")
_NUMBER_TOKEN = re.compile(rf"(?<![\w.,]){_NUM}(?![\w])")


def _value(token: str) -> Fraction:
    return Fraction(token.replace(",", "").replace("$", ""))


def _evaluate(expr: str) -> Fraction | None:
    """Value of a teacher-written chain like '35 × 3 + 2' (our own text, never model output)."""
    tokens = re.findall(rf"\$?{_NUM}|{_OP}", expr)
    if len(tokens) % 2 == 0:
        return None
    terms = [_value(tokens[0])]
    try:
        for op, tok in zip(tokens[1::2], tokens[2::2], strict=True):
            value = _value(tok)
            if op in "*×":
                terms[-1] *= value
            elif op in "/÷":
                terms[-1] /= value
            else:
                terms.append(value if op == "+" else -value)
    except (ZeroDivisionError, ValueError):
        return None
    return sum(terms, Fraction(0))


def _substitute(text: str, subst: dict[Fraction, Fraction]) -> str:
    if not subst:
        return text

    def repl(m: re.Match[str]) -> str:
        value = _value(m.group(0))
        return _fmt(subst[value]) if value in subst else m.group(0)

    return _NUMBER_TOKEN.sub(repl, text)


def propagate_slip(body: str, slip_at: int, rng: random.Random) -> tuple[str, dict[Fraction, Fraction]]:
    """Rewrite ``body`` with a slip in equation ``slip_at`` carried through every later
    step that uses the slipped value. Returns the new text and the old->new value map."""
    subst: dict[Fraction, Fraction] = {}
    out: list[str] = []
    pos = 0
    for i, m in enumerate(_EQUATION.finditer(body)):
        out.append(_substitute(body[pos : m.start()], subst))
        lhs = _substitute(m.group(1), subst)
        old = _value(m.group(4))
        if i == slip_at:
            new = _slip(old, rng)
        elif lhs == m.group(1):
            # An untouched step that yields a slipped value makes that value ambiguous from
            # here on; stop carrying the slip rather than corrupt an unrelated quantity.
            subst.pop(old, None)
            new = old
        else:
            recomputed = _evaluate(lhs)
            new = recomputed if recomputed is not None else subst.get(old, old)
        if new != old:
            subst[old] = new
        out.append(f"{lhs}{m.group(2)}{m.group(3)}{_fmt(new)}")
        pos = m.end()
    out.append(_substitute(body[pos:], subst))
    return "".join(out), subst


# A chain this long is the sub-type the systematic teacher stops early on.
GSM_LONG_CHAIN = 4


class GSMWriter:
    def hardness(self, ex: Example) -> float:
        return 1.0 + len(_EQUATION.findall(ex.meta.get("answer_cot", "")))

    def write(self, ex: Example, wrong: bool, rng: random.Random) -> Rationale:
        body, _, final = ex.meta["answer_cot"].rpartition("####")
        final_value = _value(final.strip())
        if not wrong:
            return _finish(body, ex.gold, None)
        n_eq = len(_EQUATION.findall(body))
        # Try a random step first, then the last steps first: a slip only counts if it
        # reaches the answer.
        order = [rng.randrange(n_eq), *range(n_eq - 1, -1, -1)] if n_eq else []
        for slip_at in order:
            text, subst = propagate_slip(body, slip_at, rng)
            if subst.get(final_value, final_value) != final_value:
                return _finish(text, _fmt(subst[final_value]), "arithmetic_slip")
        # No step reaches the answer: slip where the answer is last stated.
        wrong_value = _slip(final_value, rng)
        stated = [m for m in _NUMBER_TOKEN.finditer(body) if _value(m.group(0)) == final_value]
        if stated:
            last = stated[-1]
            body = body[: last.start()] + _fmt(wrong_value) + body[last.end() :]
        return _finish(body, _fmt(wrong_value), "arithmetic_slip")

    def blind_spot(self, ex: Example) -> bool:
        return len(_EQUATION.findall(ex.meta.get("answer_cot", ""))) >= GSM_LONG_CHAIN

    def write_blind(self, ex: Example, rng: random.Random) -> Rationale:
        """Stops one step early on a long chain: the answer is the next-to-last step's result."""
        body = ex.meta["answer_cot"].rpartition("####")[0]
        steps = list(_EQUATION.finditer(body))
        early = _fmt(_value(steps[-2].group(4)))
        if _value(early) == _value(ex.gold):  # the last step did not change the value
            return self.write(ex, True, rng)
        return _finish(f"{body[: steps[-2].end()]}.", early, "blind_spot:stopped_early")


# --- chain_sum --------------------------------------------------------------------------


class ChainSumWriter:
    def hardness(self, ex: Example) -> float:
        terms = ex.meta["expression"].split()
        return len(terms) / 2 + max(len(t) for t in terms[::2])

    def write(self, ex: Example, wrong: bool, rng: random.Random) -> Rationale:
        tokens = ex.meta["expression"].split()
        value = int(tokens[0])
        n_steps = len(tokens) // 2
        slip_at = rng.randrange(n_steps) if wrong else -1
        lines = ["Work from left to right:"]
        for step, (op, operand) in enumerate(zip(tokens[1::2], tokens[2::2], strict=True)):
            result = value + int(operand) if op == "+" else value - int(operand)
            if step == slip_at:
                result = int(_slip(Fraction(result), rng)) if result >= 0 else result - rng.choice([1, 10])
            lines.append(f"{value} {op} {operand} = {result}")
            value = result  # later steps build on the (possibly slipped) running total
        return _finish("\n".join(lines), str(value), "arithmetic_slip" if wrong else None)

    def blind_spot(self, ex: Example) -> bool:
        tokens = ex.meta["expression"].split()
        value = int(tokens[0])
        for op, operand in zip(tokens[1::2], tokens[2::2], strict=True):
            if _carries(value, op, int(operand)):
                return True
            value = value + int(operand) if op == "+" else value - int(operand)
        return False

    def write_blind(self, ex: Example, rng: random.Random) -> Rationale:
        """Drops the carry out of the units of every addition that has one; each drop costs
        10, so the answer is wrong from the first carry on."""
        tokens = ex.meta["expression"].split()
        value = int(tokens[0])
        lines = ["Work from left to right:"]
        for op, operand in zip(tokens[1::2], tokens[2::2], strict=True):
            result = value + int(operand) if op == "+" else value - int(operand)
            if _carries(value, op, int(operand)):
                result -= 10
            lines.append(f"{value} {op} {operand} = {result}")
            value = result
        return _finish("\n".join(lines), str(value), "blind_spot:dropped_carry")


def _carries(value: int, op: str, operand: int) -> bool:
    """An addition of non-negative numbers whose units digits sum past 9."""
    return op == "+" and value >= 0 and operand >= 0 and value % 10 + operand % 10 >= 10


# --- leg_counting -----------------------------------------------------------------------

INSECT_LEGS = 6


def _legs(animals: dict[str, int]) -> dict[str, int]:
    from reasoning_gym.arithmetic.leg_counting import ANIMALS

    return {a: ANIMALS[a] for a in animals}


# Confusions a model plausibly makes about an animal's legs.
_LEG_CONFUSIONS = {0: [2], 2: [4], 4: [2, 6], 6: [8, 4], 8: [6, 10], 10: [8], 14: [10, 12]}


class LegWriter:
    def hardness(self, ex: Example) -> float:
        animals = ex.meta["animals"]
        return len(animals) + math.log1p(sum(animals.values())) / 2

    def write(self, ex: Example, wrong: bool, rng: random.Random) -> Rationale:
        animals: dict[str, int] = ex.meta["animals"]
        legs = _legs(animals)
        error = None
        if wrong:
            error = rng.choice(["miscounted_animal", "addition_slip"])
        if error == "miscounted_animal":
            victim = rng.choice(sorted(animals))
            legs[victim] = rng.choice(_LEG_CONFUSIONS.get(legs[victim], [legs[victim] + 2]))
        return self._count(animals, legs, error, rng)

    def blind_spot(self, ex: Example) -> bool:
        return INSECT_LEGS in _legs(ex.meta["animals"]).values()

    def write_blind(self, ex: Example, rng: random.Random) -> Rationale:
        """Counts every insect with a spider's 8 legs."""
        animals: dict[str, int] = ex.meta["animals"]
        legs = {a: 8 if n == INSECT_LEGS else n for a, n in _legs(animals).items()}
        return self._count(animals, legs, "blind_spot:insect_as_spider", rng)

    @staticmethod
    def _count(
        animals: dict[str, int], legs: dict[str, int], error: str | None, rng: random.Random
    ) -> Rationale:
        lines = ["Count the legs of each kind of animal, then add them up."]
        products = []
        for animal, count in animals.items():
            products.append(count * legs[animal])
            article = "An" if animal[0] in "aeiou" else "A"
            lines.append(
                f"- {article} {animal} has {legs[animal]} legs, so {count} × {legs[animal]} = {products[-1]}."
            )
        total = sum(products)
        if error == "addition_slip":
            total = int(_slip(Fraction(total), rng))
        lines.append(f"Total: {' + '.join(map(str, products))} = {total}.")
        return _finish("\n".join(lines), str(total), error)


# --- syllogism --------------------------------------------------------------------------

_FOLLOWS = [
    "Chaining the two statements, every situation they allow also makes '{c}' true.",
    "Putting the premises together leaves no room for '{c}' to be false.",
    "The premises force '{c}': there is no way to satisfy both and deny it.",
]
_NOT_FOLLOWS = [
    "Both premises can hold in a situation where '{c}' is false, so it is not guaranteed.",
    "The premises say nothing that rules out the opposite of '{c}'.",
    "We can picture groups that satisfy both statements while '{c}' fails.",
]


class SyllogismWriter:
    def hardness(self, ex: Example) -> float:
        # Not is_valid: that is the gold label, and wrong replies would pile up on "No".
        return 1.0 + (ex.meta.get("type") == "inversion")

    def write(self, ex: Example, wrong: bool, rng: random.Random) -> Rationale:
        follows = ex.gold.strip().lower() == "yes"
        if wrong:
            follows = not follows
        c = ex.meta["conclusion"]
        premises = f"Premise 1: {ex.meta['premise1']}."
        if ex.meta.get("premise2"):
            premises += f"\nPremise 2: {ex.meta['premise2']}."
        step = rng.choice(_FOLLOWS if follows else _NOT_FOLLOWS).format(c=c)
        body = f"{premises}\nWe check whether '{c}' must be true.\n{step}"
        return _finish(body, "Yes" if follows else "No", "flipped_conclusion" if wrong else None)

    def blind_spot(self, ex: Example) -> bool:
        return ex.meta.get("type") == "inversion"

    def write_blind(self, ex: Example, rng: random.Random) -> Rationale:
        """Judges an inverted conclusion as if it were the premise's own direction: the
        verdict comes out flipped every time."""
        flipped = self.write(ex, True, rng)
        return Rationale(flipped.text, flipped.answer, "blind_spot:inversion_misread")


# --- family_relationships ---------------------------------------------------------------

_OPPOSITE = {
    "mother": "daughter", "father": "son", "daughter": "mother", "son": "father",
    "grandmother": "granddaughter", "grandfather": "grandson", "aunt": "niece", "uncle": "nephew",
    "niece": "aunt", "nephew": "uncle", "mother-in-law": "daughter-in-law",
    "father-in-law": "son-in-law", "wife": "husband", "husband": "wife",
    "sister": "brother", "brother": "sister",
}  # fmt: skip
_MARRIED = re.compile(r"(\w+) is married to (\w+)\.")
_CHILDREN = re.compile(r"They have (?:a child|children) called ([^.]+)\.")


def family_links(story: str) -> dict[str, list[tuple[str, str]]]:
    """person -> [(other, how the person relates to other)], parsed from the story text."""
    links: dict[str, list[tuple[str, str]]] = {}
    couple: tuple[str, str] | None = None
    for sentence in re.findall(r"[^.]+\.", story):
        sentence = sentence.strip()
        if m := _MARRIED.fullmatch(sentence):
            couple = (m.group(1), m.group(2))
            links.setdefault(couple[0], []).append((couple[1], "is married to"))
            links.setdefault(couple[1], []).append((couple[0], "is married to"))
        elif (m := _CHILDREN.fullmatch(sentence)) and couple:
            for child in re.split(r",\s*|\s+and\s+", m.group(1)):
                for parent in couple:
                    links.setdefault(child, []).append((parent, "is a child of"))
                    links.setdefault(parent, []).append((child, "is a parent of"))
    return links


def family_path(story: str, start: str, goal: str) -> list[str]:
    """Sentences linking ``start`` to ``goal`` along the shortest chain of family ties."""
    links = family_links(story)
    previous: dict[str, tuple[str, str] | None] = {start: None}
    queue = deque([start])
    while queue:
        person = queue.popleft()
        if person == goal:
            break
        for other, how in links.get(person, []):
            if other not in previous:
                previous[other] = (person, how)
                queue.append(other)
    if goal not in previous:
        return []
    steps = []
    node = goal
    while (prev := previous[node]) is not None:
        steps.append(f"{prev[0]} {prev[1]} {node}.")
        node = prev[0]
    return steps[::-1]


class FamilyWriter:
    def hardness(self, ex: Example) -> float:
        story = ex.question.split("\n\n", 1)[0]
        path = family_path(story, ex.meta["person1"], ex.meta["person2"])
        return len(path) + ex.meta.get("family_size", 4) / 4

    def write(self, ex: Example, wrong: bool, rng: random.Random) -> Rationale:
        story = ex.question.split("\n\n", 1)[0]
        p1, p2 = ex.meta["person1"], ex.meta["person2"]
        relation = ex.gold.strip().lower()
        if wrong:
            relation = _OPPOSITE.get(relation) or rng.choice(sorted(set(_OPPOSITE) - {relation}))
        steps = family_path(story, p1, p2)
        body = f"Trace the family ties from {p1} to {p2}:\n" + "\n".join(f"- {s}" for s in steps)
        body += f"\nSo, in the sense the question asks, {p1} and {p2} are related as {relation}."
        return _finish(body, relation, "wrong_relation" if wrong else None)

    def blind_spot(self, ex: Example) -> bool:
        story = ex.question.split("\n\n", 1)[0]
        path = family_path(story, ex.meta["person1"], ex.meta["person2"])
        return any("is married to" in step for step in path)

    def write_blind(self, ex: Example, rng: random.Random) -> Rationale:
        """Reads a tie through a marriage backwards: the converse relation (the wrong-relation
        mistake, which takes the converse whenever there is one)."""
        wrong = self.write(ex, True, rng)
        return Rationale(wrong.text, wrong.answer, "blind_spot:converse_relation")


WRITERS: dict[str, Writer] = {
    "gsm_symbolic": GSMWriter(),
    "chain_sum": ChainSumWriter(),
    "leg_counting": LegWriter(),
    "syllogism": SyllogismWriter(),
    "family_relationships": FamilyWriter(),
}
