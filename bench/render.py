"""Median time to render the ASIT issue: files → validated Issue → inlined HTML + text part,
for the original and each of its translations (target ≤ 30 ms per language).

    .venv/bin/python bench/render.py [--runs 200] [--issue 2025-04-asit-highlights]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from newsletter.authoring.content import find_issue, load_issue, translation_files
from newsletter.authoring.render import render_issue
from newsletter.config import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--issue", default="2025-04-asit-highlights")
    args = parser.parse_args()
    settings = load_settings(ROOT / "newsletter.toml", env={})
    folder = find_issue(settings, args.issue)

    languages = [None, *(language for language in translation_files(folder)
                         if language in settings.offered_languages)]
    print(f"issue            {args.issue}")
    for language in languages:
        measure(folder, settings, language, args.runs)


def measure(folder: Path, settings: Settings, language: str | None, runs: int) -> None:
    def once() -> float:
        start = time.perf_counter()
        rendered = render_issue(load_issue(folder, settings, language), settings)
        elapsed = time.perf_counter() - start
        assert rendered.html and rendered.text
        return elapsed * 1000

    cold = once()
    times = sorted(once() for _ in range(runs))
    print(f"\nlanguage         {language or settings.language}"
          + (" (the original)" if language is None else ""))
    print(f"first render     {cold:7.2f} ms (templates compiled, caches empty)")
    print(f"median           {statistics.median(times):7.2f} ms over {runs} runs"
          f"  target 30 ms: {'met' if statistics.median(times) <= 30 else 'MISSED'}")
    print(f"p95              {times[int(len(times) * 0.95) - 1]:7.2f} ms")
    print(f"fastest          {times[0]:7.2f} ms")


if __name__ == "__main__":
    main()
