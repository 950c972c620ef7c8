"""Error types for bad user input; the command-line tools turn these into one clear message."""


class HrposeError(Exception):
    """Base of the errors that describe bad input rather than a bug."""


class DataError(HrposeError, ValueError):
    """A dataset, annotation, detection or image file that is missing, corrupt or inconsistent."""


class DataFileNotFoundError(DataError, FileNotFoundError):
    """An expected data file or folder does not exist."""
