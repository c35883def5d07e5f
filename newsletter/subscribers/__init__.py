"""The subscriber list's ways in and out: CSV import, export, double opt-in."""
