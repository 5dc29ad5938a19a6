"""User-facing errors.

Anything a user can cause (bad config, missing data or weights, corrupt files, a NaN
loss) is raised as a :class:`DhoError` subclass with a message that names the key,
file or value and says what was expected.  The CLI prints it as one line and exits 2,
never a traceback from deep inside torch.
"""


class DhoError(Exception):
    """Base class: printed as ``error: <message>`` by the CLI (exit status 2)."""


class ConfigError(DhoError):
    """A spec/config key is unknown, of the wrong type or out of range."""


class DataError(DhoError):
    """A dataset folder, split file, list file or image is missing or malformed."""


class WeightsUnavailable(DhoError):
    """Pretrained weights are not available offline."""


class CheckpointError(DhoError):
    """A checkpoint, teacher file or logits file is corrupt, truncated or mismatched."""


class TrainingError(DhoError):
    """Training diverged (NaN/inf loss) or otherwise cannot continue."""


class OutputError(DhoError):
    """An output cannot be written (unwritable folder, disk full)."""
