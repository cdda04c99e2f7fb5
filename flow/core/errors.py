"""The one exception type the flow raises for bad input; the CLI prints it as one line, no traceback."""

from __future__ import annotations


class FlowError(Exception):
    """A user-facing error: the message names the bad value and what would be valid.

    ``option`` is the neutral name of the setting at fault (``"acc_bits"``, ``"folding"``, ...), when
    there is one; the command line turns it into the flag or Make variable the user typed.
    """

    def __init__(self, message: str, option: str | None = None):
        super().__init__(message)
        self.option = option
