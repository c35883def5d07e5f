"""Commands of the web part (being built)."""

COMMANDS: tuple[object, ...] = ()
