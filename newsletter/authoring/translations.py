"""An issue's translations (``issue.<lang>.md`` beside ``issue.md``) held to the original's shape.

A translation says the same in another language: the same sections, the same blocks, the same
images, links to the same places and the same placeholders. Each difference is a ``Problem``
at the translation's file and line, so that the translator can jump to it; what the original
has there is named with its own line.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable

from newsletter.authoring.content import Issue, Landmark
from newsletter.errors import Problem

INTRO = "the introduction"


def compare(original: Issue, translation: Issue) -> list[Problem]:
    """Every structural difference of ``translation`` from ``original``, in file order."""
    problems: list[Problem] = []

    def problem(line: int, field: str, message: str) -> None:
        problems.append(Problem(translation.source, line, field, message))

    mine, theirs = _parts(translation.outline), _parts(original.outline)
    if len(mine) != len(theirs):
        line = mine[-1][0] if len(mine) > 1 else 1
        problem(line, "sections", f"{len(mine) - 1} section(s) ('## ' headings); "
                f"{_where(original)} has {len(theirs) - 1}")
    for index, ((line, part), (their_line, their_part)) in enumerate(zip(mine, theirs,
                                                                         strict=False)):
        name = INTRO if index == 0 else f"section {index}"
        blocks = [landmark.value for landmark in part if landmark.kind == "block"]
        their_blocks = [landmark.value for landmark in their_part if landmark.kind == "block"]
        if blocks != their_blocks:
            problem(line, "blocks", f"{name} has {_names(blocks)}; the original's "
                    f"({_where(original, their_line)}) has {_names(their_blocks)}")
        for kind in ("image", "link"):
            _differences(problem, name, kind, line, part, their_part, original)
    _differences(problem, "the issue", "placeholder", 1, list(translation.outline),
                 list(original.outline), original)
    return sorted(problems, key=lambda p: p.line)


def _parts(outline: Iterable[Landmark]) -> list[tuple[int, list[Landmark]]]:
    """The outline cut at each section: (line of the heading, landmarks), the intro first."""
    parts: list[tuple[int, list[Landmark]]] = [(1, [])]
    for landmark in outline:
        if landmark.kind == "section":
            parts.append((landmark.line, []))
        else:
            parts[-1][1].append(landmark)
    return parts


def _differences(problem: Callable[[int, str, str], None], name: str, kind: str, line: int,
                 part: list[Landmark], their_part: list[Landmark], original: Issue) -> None:
    """Images, links or placeholders of one part that only one side has, as problems."""
    mine = Counter(landmark.value for landmark in part if landmark.kind == kind)
    theirs = Counter(landmark.value for landmark in their_part if landmark.kind == kind)
    if kind == "placeholder":  # used as often as the sentence needs: only which ones counts
        mine, theirs = Counter(set(mine)), Counter(set(theirs))
    shown = {"placeholder": "{{%s}}", "image": "image %s", "link": "link to %s"}[kind]
    for value in mine - theirs:
        at = next(landmark.line for landmark in part
                  if landmark.kind == kind and landmark.value == value)
        problem(at, kind, f"{shown % value} is not in {name} of the original "
                f"({_where(original)})")
    for value in theirs - mine:
        at = next(landmark.line for landmark in their_part
                  if landmark.kind == kind and landmark.value == value)
        problem(line, kind, f"{shown % value} of the original ({_where(original, at)}) is "
                f"missing from {name}")


def _names(blocks: list[str]) -> str:
    return ", ".join(f"::: {name}" for name in blocks) if blocks else "no ::: blocks"


def _where(issue: Issue, line: int | None = None) -> str:
    return issue.source.name + (f":{line}" if line else "")
