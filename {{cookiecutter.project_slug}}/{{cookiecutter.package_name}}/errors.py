"""Errors a user can cause. They live at the package top, so any module (data, losses, engine)
may raise them without importing the machinery; the scripts turn them into one sentence."""


class UserError(Exception):
    """A problem with the user's input (flag, data, checkpoint): the message says what and how to fix it."""


class DivergedError(UserError):
    """The loss stopped being a finite number; the last good checkpoint is left as it was."""
