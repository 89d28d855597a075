"""User-facing errors: the CLI prints their message and exits non-zero, without a traceback."""


class UserError(Exception):
    """Bad input from the user (config, file, path). The message says where and what was expected."""


class ConfigError(UserError):
    """An unknown config key, a value of the wrong type, or an invalid combination."""


class DataError(UserError):
    """A malformed problem row; the message names the file, the line and the field."""


class Stopped(Exception):
    """Training stopped on a signal after checkpointing; the process exits with ``128 + signal number``."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum
