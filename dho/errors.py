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


def yaml_problem(error: Exception) -> str:
    """One line for a PyYAML error: ``line L, column C: what`` (PyYAML's own text spans lines)."""
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    what = " ".join(str(getattr(error, "problem", None) or error).split())
    context = getattr(error, "context", None)
    if context and getattr(error, "problem", None):
        what = f"{what} ({' '.join(str(context).split())})"
    return f"line {mark.line + 1}, column {mark.column + 1}: {what}" if mark is not None else what


def load_yaml_file(path, what: str = "file"):
    """Parse a YAML file (safe loader); a missing or invalid file is a :class:`ConfigError` of one
    line naming the file and, for bad YAML, the line and column."""
    from pathlib import Path

    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{what} {path} is not valid YAML: {yaml_problem(e)}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{what} {path} is not UTF-8 text: {e}") from None
