"""Write newsletter issues as Markdown files, render them into responsive email, send them."""

__version__ = "0.1.0"
