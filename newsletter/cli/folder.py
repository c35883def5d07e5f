"""Commands that make and customise a newsletter folder: init, templates."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
