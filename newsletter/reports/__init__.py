"""What happened to each issue, and to the list: figures, verdicts and the HTML report.

``thresholds`` holds the rates that matter to Amazon SES and Gmail and the verdicts on them (the
report, ``send``, ``status`` and the scheduler all read them there); ``figures`` turns the
database's aggregates (``newsletter.store.reports``) into plain dataclasses; ``html`` renders
them into one self-contained page, charts drawn by the vendored Chart.js (``vendor/``).
"""
