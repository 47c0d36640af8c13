"""The one exception type users see: a message naming the thing that is wrong and what was expected."""


class E2UError(Exception):
    """Bad input or an unusable resource. The message is one line, fit to print as it is."""
