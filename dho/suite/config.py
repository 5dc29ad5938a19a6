"""config.yaml as the workflow reads it: schema check with defaults, one-line errors.

The schema is the workflow's (``workflow/schemas/config.schema.yaml``); a violation is a
:class:`~dho.errors.ConfigError` naming the key (``config key 'suites.ci.train': ...``).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from ..errors import ConfigError


def _with_defaults(validator_cls):
    """A jsonschema validator class that also fills in each property's ``default``."""
    from jsonschema import validators

    check_properties = validator_cls.VALIDATORS["properties"]

    def properties(validator, props, instance, schema):
        if isinstance(instance, dict):
            for name, sub in props.items():
                if isinstance(sub, dict) and "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from check_properties(validator, props, instance, schema)

    return validators.extend(validator_cls, {"properties": properties})


def key_path(parts) -> str:
    return ".".join(str(p) for p in parts)


def validate_config(config: dict[str, Any], schema_file: str | Path) -> dict[str, Any]:
    """``config`` checked against the schema, defaults filled in (a copy); the first
    violation (the deepest, most specific one) raises ConfigError naming its key."""
    import yaml
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    schema = yaml.safe_load(Path(schema_file).read_text())
    config = copy.deepcopy(config)
    validator = _with_defaults(Draft202012Validator)(schema)
    error = best_match(validator.iter_errors(config))
    if error is not None:
        where = key_path(error.absolute_path) or "(top level)"
        message = error.message if len(error.message) < 300 else error.message[:300] + "..."
        raise ConfigError(f"config key '{where}': {message}")
    return config


def chosen_suites(config: dict[str, Any]) -> list[str]:
    """``config['suite']`` (a name, a group name or a list of them) as suite names."""
    requested = config["suite"]
    requested = [requested] if isinstance(requested, str) else list(requested)
    out: list[str] = []
    for name in requested:
        for n in config["groups"].get(name, [name]):
            if n not in config["suites"]:
                known = ", ".join(sorted(config["suites"]) + sorted(config["groups"]))
                raise ConfigError(f"config key 'suite': unknown suite '{n}'; known: {known}")
            if n not in out:
                out.append(n)
    return out
