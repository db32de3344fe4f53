"""Where the exchange's client secret at a partner comes from.

A program's ``[connector.oauth]`` names exactly one source: ``client_secret_env`` (an
environment variable of the gateway), ``client_secret_file`` (a file, such as a mounted
Kubernetes or Docker secret) or, for sandbox partners only, an inline ``client_secret``,
which production refuses (:func:`exchange.programs.declarations.read_partners_directory`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from exchange.errors import ConfigurationError

if TYPE_CHECKING:  # declarations read secret files with this module while loading
    from exchange.programs.declarations import OAuthClientDeclaration


class SecretUnavailable(ConfigurationError):
    """The declared source holds no usable secret; ``reason`` says why, ``str()`` says where too."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.reason = reason


def read_secret_file(path: Path) -> str:
    """The secret ``path`` holds: its one line, without surrounding whitespace."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SecretUnavailable(str(path), "does not exist") from None
    except UnicodeDecodeError:
        raise SecretUnavailable(str(path), "is not UTF-8 text") from None
    except OSError as error:
        raise SecretUnavailable(str(path), f"cannot be read: {error.strerror}") from None
    secret = text.strip()
    if not secret:
        raise SecretUnavailable(str(path), "is empty")
    if "\n" in secret:
        raise SecretUnavailable(str(path), "holds more than one line (a secret file holds the secret alone)")
    return secret


def client_secret(oauth: OAuthClientDeclaration, environ: Mapping[str, str]) -> str:
    """The secret from whichever source ``oauth`` names."""
    if oauth.client_secret is not None:
        return oauth.client_secret
    if oauth.client_secret_file is not None:
        return read_secret_file(Path(oauth.client_secret_file))
    name = oauth.client_secret_env or ""
    secret = environ.get(name)
    if not secret:
        raise SecretUnavailable(f"environment variable {name}", "is not set")
    return secret
