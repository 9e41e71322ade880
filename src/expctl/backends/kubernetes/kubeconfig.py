"""Why a kubeconfig could not be loaded, in one line naming the file (no Kubernetes client here).

The client library's loader lets a file that is not YAML, not UTF-8 or not a mapping escape as a traceback
(``yaml.YAMLError``, ``UnicodeDecodeError``, ``TypeError``). ``load_errors`` is what the backend catches
around the loader (``LOAD_ERRORS`` and the client's own ``ConfigException``); ``load_problem`` says what went wrong.
"""

from __future__ import annotations

import os

import yaml

from expctl.core.errors import truncate
from expctl.core.sanitize import one_line

# OSError: unreadable; ValueError: undecodable bytes (UnicodeDecodeError) and bad values; TypeError and
# AttributeError: a document that is no mapping (a string, a list) where the loader indexes keys
LOAD_ERRORS: tuple[type[Exception], ...] = (OSError, ValueError, TypeError, AttributeError, yaml.YAMLError)


def load_errors(config_exception: type[Exception]) -> tuple[type[Exception], ...]:
    """What to catch around the loader: ``LOAD_ERRORS`` and the client's ``ConfigException``."""
    return (config_exception, *LOAD_ERRORS)


def load_problem(exc: BaseException, path: str | None) -> str:
    """``<file>: <what is wrong>``, one line, for an exception of the kubeconfig loader (``path``: the file it
    was given; None: the default kubeconfig, else the in-cluster service account)."""
    default = os.path.expanduser("~/.kube/config")
    where = path or ("~/.kube/config" if os.path.exists(default) else "in-cluster service account")
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        name = mark.name if mark.name and not mark.name.startswith("<") else where
        problem = one_line(exc.problem or exc.context or "syntax error")
        return f"{name}: not valid YAML ({problem}, line {mark.line + 1})"
    if isinstance(exc, yaml.YAMLError):
        return f"{where}: not valid YAML ({truncate(one_line(exc), 120)})"
    if isinstance(exc, UnicodeDecodeError):
        return f"{where}: not UTF-8 text (byte {exc.start})"
    if isinstance(exc, (TypeError, AttributeError)):
        return f"{where}: not a kubeconfig (a YAML mapping of clusters, users and contexts)"
    return f"{where}: {truncate(one_line(exc), 200)}"
