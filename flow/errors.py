"""The one exception type the flow raises for bad input; the CLI prints it without a traceback."""


class FlowError(Exception):
    """A user-facing error: the message names the bad value and what would be valid."""
