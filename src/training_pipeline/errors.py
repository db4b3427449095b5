"""Errors that reach the user as one clear line (the entrypoints print them without a traceback)."""


class UserError(Exception):
    """A problem with what the user gave us: a path, a file's content, a config value."""


class ConfigError(UserError):
    """A config key or value that cannot work (misspelled key, unknown option, metric never logged)."""


class DataError(UserError):
    """Input data that cannot be read or is malformed (names the file and the record)."""
