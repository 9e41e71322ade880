"""Values are data, not layout: make any string safe to print inside one line of human or Markdown output.

Pure. Sweep values, failure messages and log-derived text can hold newlines, terminal escape sequences,
Unicode line separators or bidi overrides, Markdown and HTML. Printed raw, such a value could forge lines of a
plan or of a PR comment. ``one_line`` escapes every control character visibly (``\\n``, ``\\x1b``, ``\\u202e``);
``md_code`` and ``md_text`` additionally neutralise Markdown and HTML. JSON output needs none of this (the
JSON encoder escapes), so ``views.as_json`` stays raw and valid. ``redact`` hides credentials (a URL's user
information, given secret values) in what the CLI prints.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterable

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(ch: str) -> str:
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _unsafe(ch: str) -> bool:
    # Cc: C0/C1 controls (newline, ESC, ...); Cf: format characters (bidi overrides, zero-width joiners);
    # Zl/Zp: Unicode line and paragraph separators
    return unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp")


def one_line(text: object, limit: int | None = None) -> str:
    """``text`` on one line with every control/format character escaped; optionally cut to ``limit``."""
    value = str(text)
    if any(_unsafe(ch) for ch in value):
        value = "".join(_escape(ch) if _unsafe(ch) else ch for ch in value)
    if limit is not None and len(value) > limit:
        value = value[: limit - 1] + "…"
    return value


# scheme://userinfo@ — userinfo up to the authority's last '@' (an unencoded '@' in a password is still hidden)
_USERINFO = re.compile(r"\b([A-Za-z][A-Za-z0-9+.\-]*://)[^/\s]*@")
# credentials MLflow (and the Databricks SDK it may use) read from the environment
SECRET_ENV = ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_PASSWORD", "DATABRICKS_TOKEN", "DATABRICKS_CLIENT_SECRET")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without credentials: every URL's user information (``postgresql://u:pw@db``,
    ``https://token@host``) becomes ``***@``, and every one of ``secrets`` (the values of ``SECRET_ENV``, say)
    becomes ``***``. For messages that quote a tracking URI or a server's answer."""
    for secret in sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return _USERINFO.sub(r"\1***@", text)


def md_text(text: object) -> str:
    """Plain text for a Markdown table cell: one line, HTML escaped, Markdown punctuation backslash-escaped."""
    value = html.escape(one_line(text), quote=False)
    return re.sub(r"([\\`*_\[\]|~])", r"\\\1", value)


def md_code(text: object) -> str:
    """An inline code span that no value can break out of (backticks, pipes, HTML)."""
    value = one_line(text).replace("|", "\\|")
    longest = max((len(m) for m in re.findall(r"`+", value)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if value.startswith("`") or value.endswith("`") or longest else ""
    return f"{fence}{pad}{value}{pad}{fence}"
