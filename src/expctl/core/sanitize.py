"""Values are data, not layout: make any string safe to print inside one line of human or Markdown output.

Pure. Sweep values, failure messages and log-derived text can hold newlines, terminal escape sequences,
Unicode line separators or bidi overrides, Markdown and HTML. Printed raw, such a value could forge lines of a
plan or of a PR comment. ``one_line`` escapes every control character visibly (``\\n``, ``\\x1b``, ``\\u202e``);
``md_code`` and ``md_text`` additionally neutralise Markdown and HTML. JSON output needs none of this (the
JSON encoder escapes), so ``views.as_json`` stays raw and valid. ``redact`` hides credentials (a URL's user
information, secret and signature query values, given secret values) in what the CLI prints and in the errors
quoting a tracking URI.
``job_uri`` is the tracking URI a job is handed (no password in it), ``uri_credentials`` the environment
variables that carry what it left out, ``uri_secrets`` the values to hide in a message about that URI,
``shown_uri`` the URI with them hidden.
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
    # Zl/Zp: Unicode line and paragraph separators; Cs: a lone surrogate (a file name's undecodable byte, as
    # ``surrogateescape`` reads it: no terminal can print it, and writing it raises UnicodeEncodeError)
    return unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs")


def one_line(text: object, limit: int | None = None) -> str:
    """``text`` on one line with every control/format character escaped; optionally cut to ``limit``."""
    value = str(text)
    # isprintable() is False for every unsafe category (and for some safe ones): the common case, in C
    if not value.isprintable() and any(_unsafe(ch) for ch in value):
        value = "".join(_escape(ch) if _unsafe(ch) else ch for ch in value)
    if limit is not None and len(value) > limit:
        value = value[: limit - 1] + "…"
    return value


def log_line(text: str) -> str:
    """A line of a job's log as expctl prints it (to a terminal or a pipe): every control and format character
    escaped (a terminal escape sequence shows as ``\\x1b]0;…``, never retitles or clears a terminal) except
    tabs and the line's final newline."""
    body, newline = (text[:-1], "\n") if text.endswith("\n") else (text, "")
    if body.endswith("\r"):  # a CRLF line's carriage return is part of its end, not a control to show
        body, newline = body[:-1], newline and "\n"
    if any(_unsafe(ch) and ch != "\t" for ch in body):
        body = "".join(_escape(ch) if _unsafe(ch) and ch != "\t" else ch for ch in body)
    return body + newline


# scheme://userinfo@ — userinfo up to the authority's last '@' (an unencoded '@' in a password is still hidden)
_USERINFO = re.compile(r"\b([A-Za-z][A-Za-z0-9+.\-]*://)[^/\s]*@")
# credentials read from the environment by MLflow (the Databricks SDK it may use, libpq under its database
# store) and by the object stores MLflow's artifacts and fsspec's dataset sources use
SECRET_ENV = ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_PASSWORD", "DATABRICKS_TOKEN", "DATABRICKS_CLIENT_SECRET",
              "PGPASSWORD", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AZURE_STORAGE_KEY",
              "AZURE_STORAGE_ACCESS_KEY", "AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_SAS_TOKEN",
              "AZURE_CLIENT_SECRET")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without credentials: every URL's user information (``postgresql://u:pw@db``,
    ``https://token@host``) becomes ``***@``, and every one of ``secrets`` (the values of ``SECRET_ENV``, say)
    becomes ``***``. For messages that quote a tracking URI or a server's answer."""
    for secret in sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return _SECRET_QUERY.sub(r"\1***", _USERINFO.sub(r"\1***@", text))


# scheme://[userinfo@]rest — the parts of a URI ``job_uri`` reads (regex: the pure core imports no urllib)
_URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://(?:([^/?#\s]*)@)?(.*)$", re.DOTALL)
# query parameters that hold a secret (``?password=…`` of a database URI, ``?token=…``)
_SECRET_PARAMS = frozenset({"password", "passwd", "pwd", "pass", "token", "access_token", "auth_token", "secret",
                            "client_secret", "api_key", "apikey", "sslpassword"})
# signed-URL query parameters: each holds (part of) a credential
_SIGNATURES = frozenset({"sig", "signature", "x-amz-signature", "x-amz-credential", "x-amz-security-token",
                         "x-goog-signature", "x-goog-credential", "awsaccesskeyid"})
# ``?token=VALUE`` / ``&X-Amz-Signature=VALUE`` anywhere in a text (a URL quoted by a library's error): the value
_SECRET_QUERY = re.compile(r"(?i)([?&](?:" + "|".join(re.escape(k) for k in sorted(_SECRET_PARAMS | _SIGNATURES))
                           + r")=)[^&#\s'\"]*")
_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")


def _unquote(text: str) -> str:
    raw = _PERCENT.sub(lambda m: chr(int(m.group(1), 16)), text)
    try:
        return raw.encode("latin-1").decode()
    except (UnicodeEncodeError, UnicodeDecodeError):
        return raw


def _split(uri: str) -> tuple[str, str | None, str | None, str, list[tuple[str, str]]] | None:
    """(scheme, user, password, authority+path, query pairs) of ``uri``; None when it is no ``scheme://`` URI."""
    match = _URI.match(uri)
    if match is None:
        return None
    scheme, userinfo, rest = match.group(1).lower(), match.group(2), match.group(3)
    user = password = None
    if userinfo is not None:
        user, sep, pw = userinfo.partition(":")
        password = pw if sep else None
    base, _, query = rest.partition("?")
    query, hash_, fragment = query.partition("#")
    pairs = [(k, v) for k, _, v in (part.partition("=") for part in query.split("&") if part)]
    if hash_:
        pairs.append(("#", fragment))  # kept as it is, after the query
    return scheme, user, password, base, pairs


def _http(scheme: str) -> bool:
    return scheme in ("http", "https")


def _postgres(scheme: str) -> bool:
    return scheme.partition("+")[0] in ("postgresql", "postgres")


def job_uri(uri: str) -> str:
    """The tracking URI as a job is handed it: without a password. A database URI keeps its user name and loses
    its password; an ``http(s)`` URI loses its whole user information (a user name left in the URL would be
    sent as HTTP Basic auth and override ``MLFLOW_TRACKING_TOKEN``); query parameters that hold a secret
    (``password=``, ``token=`` …) are dropped. Pure; a URI without any of these is returned unchanged."""
    parts = _split(uri)
    if parts is None:
        return uri
    scheme, user, password, base, pairs = parts
    kept = [(k, v) for k, v in pairs if k == "#" or _unquote(k).lower() not in _SECRET_PARAMS]
    if password is None and kept == pairs and not (_http(scheme) and user is not None):
        return uri
    head = uri[: uri.index("://") + 3]
    userinfo = "" if user is None or _http(scheme) else f"{user}@"
    query = "&".join(f"{k}={v}" for k, v in kept if k != "#")
    fragment = [f"#{v}" for k, v in kept if k == "#"]
    return f"{head}{userinfo}{base}{'?' + query if query else ''}{''.join(fragment)}"


def uri_secrets(uri: str) -> list[str]:
    """The secret values ``uri`` holds (its password, as written and decoded; secret query values)."""
    parts = _split(uri)
    if parts is None:
        return []
    scheme, user, password, _, pairs = parts
    found = [v for k, v in pairs if k != "#" and _unquote(k).lower() in _SECRET_PARAMS and v]
    if password:
        found.append(password)
    if _http(scheme) and user and password is None:  # https://token@host: the user name is the secret
        found.append(user)
    return sorted({s for v in found for s in (v, _unquote(v))})


def uri_credentials(uri: str) -> dict[str, str] | None:
    """The environment variables that hand a job the password ``job_uri`` removed: ``MLFLOW_TRACKING_USERNAME``
    and ``MLFLOW_TRACKING_PASSWORD`` for an ``http(s)`` URI, ``PGPASSWORD`` for PostgreSQL; ``{}`` when the
    URI holds no secret; None when it holds one that no variable can carry (another database, a lone
    ``token@`` or a secret query parameter in an ``http(s)`` URI)."""
    parts = _split(uri)
    if parts is None:
        return {}
    scheme, user, password, _, pairs = parts
    secret_params = {_unquote(k).lower(): _unquote(v) for k, v in pairs if k != "#"
                     and _unquote(k).lower() in _SECRET_PARAMS}
    if _http(scheme):
        if secret_params:
            return None
        if user is not None and password is not None:
            return {"MLFLOW_TRACKING_USERNAME": _unquote(user), "MLFLOW_TRACKING_PASSWORD": _unquote(password)}
        return None if user else {}
    if password is None and not secret_params:
        return {}
    if _postgres(scheme) and set(secret_params) <= {"password"}:
        pw = _unquote(password) if password is not None else secret_params["password"]
        return {"PGPASSWORD": pw}
    return None


# Azure's fsspec URLs name ``container@account``: a user part that is no credential
_AZURE = frozenset({"abfs", "abfss", "az", "adl", "wasb", "wasbs"})
def data_location(url: str) -> str:
    """A dataset's location as expctl records it (manifests, the hash cache): a URL without its user information
    (Azure's ``container@`` is kept) and without query values that hold a secret or a signature; anything that
    is not a ``scheme://`` URL unchanged. fsspec reads with the URL as given."""
    parts = _split(url)
    if parts is None:
        return url
    scheme, user, password, base, pairs = parts
    keep_user = scheme in _AZURE and user is not None and password is None
    kept = [(k, v) for k, v in pairs
            if k == "#" or _unquote(k).lower() not in _SECRET_PARAMS | _SIGNATURES]
    if kept == pairs and (user is None or keep_user):
        return url
    userinfo = f"{user}@" if keep_user else ""
    query = "&".join(f"{k}={v}" for k, v in kept if k != "#")
    fragment = "".join(f"#{v}" for k, v in kept if k == "#")
    return f"{url[: url.index('://') + 3]}{userinfo}{base}{'?' + query if query else ''}{fragment}"


def shown_uri(uri: str) -> str:
    """``uri`` as a message, a link or ``describe`` shows it: its user information and the values of secret query
    parameters (``?password=``, ``?token=``) as ``***`` (``redact`` alone hides only the user information)."""
    return redact(uri, uri_secrets(uri))


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
