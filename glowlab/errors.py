"""The one exception tree of glowlab.

Every error a user can cause is a :class:`GlowlabError`; the CLI prints its
message as one line and exits with its ``exit_code``. Anything else is a bug.
"""

from __future__ import annotations


class GlowlabWarning(UserWarning):
    """Something in the input was ignored; what was given still works."""


class GlowlabError(Exception):
    """Base of every error glowlab raises on purpose."""

    exit_code = 1


class ConfigurationError(GlowlabError):
    """A setting (environment variable, flag, file) is malformed."""

    exit_code = 2


class InvalidJobError(GlowlabError):
    """A job record breaks a rule; the message names the field and the rule."""

    exit_code = 3

    def __init__(self, message: str, *, field: str | None = None, index: int | None = None):
        self.field = field
        self.index = index
        prefix = f"job {index}: " if index is not None else ""
        super().__init__(prefix + message)

    def at(self, index: int) -> "InvalidJobError":
        """The same error, located at position ``index`` of a batch."""
        return InvalidJobError(str(self), field=self.field, index=index)


class QueueUnreachableError(GlowlabError):
    """beanstalkd cannot be reached at the configured address."""

    exit_code = 4


class QueueError(GlowlabError):
    """beanstalkd answered with an error."""

    exit_code = 5


class BeanstalkdMissingError(GlowlabError):
    """The ``beanstalkd`` binary is not installed."""

    exit_code = 6
