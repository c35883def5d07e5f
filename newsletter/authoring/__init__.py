"""Authoring: issue files → validated ``Issue`` → rendered email, and the checks before a
send."""
