"""User-facing errors. The CLI turns each into one line on stderr and an exit code.

Anything that is not an EdgekitError is a bug in edgekit and keeps its traceback.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable

EXIT_OK = 0
EXIT_FAILED = 1  # a budget or fidelity check failed
EXIT_USAGE = 2  # bad input or usage
EXIT_INTERNAL = 3


class EdgekitError(Exception):
    """A problem with the user's input or environment: one clear line, exit 2."""

    exit_code = EXIT_USAGE


class InputError(EdgekitError):
    """A file, option or value given by the user is wrong."""


class ProfileError(InputError):
    """A target profile is missing or invalid."""


class DataError(InputError):
    """Calibration or evaluation data does not fit the model."""


class ConversionError(EdgekitError):
    """A converter could not produce an artifact from a valid-looking input."""


class MissingDependency(EdgekitError):
    """An optional package is not installed; the message names the extra."""


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for a close match, else the accepted values."""
    choices = sorted(set(choices))
    close = difflib.get_close_matches(value, choices, n=1, cutoff=0.6)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f" (accepted: {', '.join(choices)})" if choices else ""
