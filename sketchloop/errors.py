"""User-facing errors: the CLI prints their message on one line and exits non-zero."""


class SketchloopError(Exception):
    """An error caused by the user's input or environment, not by a bug."""


class PromptError(SketchloopError):
    """A prompt that cannot be parsed or cannot be drawn."""


class LayoutError(SketchloopError):
    """A scene graph whose objects cannot be placed on the canvas."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type's name when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
