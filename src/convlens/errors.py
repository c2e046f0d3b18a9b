"""The one exception type users see: its message is a single line naming the problem."""


class ConvlensError(Exception):
    """A problem with the user's input or environment, reported without a traceback."""
