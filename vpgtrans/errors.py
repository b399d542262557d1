"""The one exception users see: a bad input, named precisely."""


class VPGTransError(Exception):
    """A user-facing error: the message names the file, line or field at fault."""
