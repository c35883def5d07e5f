"""Commands of the events part (being built)."""

COMMANDS: tuple[object, ...] = ()
