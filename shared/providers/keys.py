"""Provider API keys at rest: Fernet tokens under PROVIDER_KEYS_SECRET, never the key in clear.

PROVIDER_KEYS_SECRET holds one or more comma-separated Fernet keys, newest first. The first
encrypts; every one of them decrypts (MultiFernet), so the secret can be rotated: prepend a new
key, run `switchboard rotate-keys` to re-encrypt the stored tokens under it, then drop the old
key (docs/admin.md, Provider keys).

Nothing here puts a key, a token or the secret into a repr, a log line or an exception message:
a failure says what went wrong and which setting is involved, never a value.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr

from shared.settings import Settings

SECRET_SETTING = "PROVIDER_KEYS_SECRET"
HINT_CHARACTERS = 4
# A key this short would be half given away by its last four characters.
MIN_KEY_LENGTH_FOR_HINT = 2 * HINT_CHARACTERS


class ProviderKeysUnavailable(Exception):
    """No PROVIDER_KEYS_SECRET in this process: keys can be neither stored nor read."""

    def __init__(self) -> None:
        super().__init__(
            f"cannot store or read provider keys: {SECRET_SETTING} is not set (generate one "
            'with `python -c "from cryptography.fernet import Fernet; '
            'print(Fernet.generate_key().decode())"`, see docs/admin.md)'
        )


class InvalidKeyToken(Exception):
    """A stored token that none of the configured keys decrypts."""

    def __init__(self) -> None:
        super().__init__(
            "a stored provider key cannot be decrypted: the token is invalid, or the "
            f"{SECRET_SETTING} key that encrypted it was rotated away"
        )


def _fernet_keys(secret: str) -> list[Fernet]:
    """The Fernet keys of a PROVIDER_KEYS_SECRET value, newest first; ValueError (naming the
    setting and the key's position, never a value) when one is not a Fernet key."""
    parts = [part.strip() for part in secret.split(",") if part.strip()]
    if not parts:
        raise ValueError(f"{SECRET_SETTING} holds no key")
    keys = []
    for position, part in enumerate(parts, start=1):
        try:
            keys.append(Fernet(part))
        except ValueError:  # binascii.Error included: both carry no part of the key
            raise ValueError(
                f"{SECRET_SETTING}: key {position} of {len(parts)} is not a Fernet key "
                "(32 url-safe base64-encoded bytes, as Fernet.generate_key() makes)"
            ) from None
    return keys


def check_keys_secret(secret: str) -> None:
    """Raises ValueError when `secret` is not a usable PROVIDER_KEYS_SECRET (for Settings)."""
    _fernet_keys(secret)


class ProviderKeyBox:
    """Encrypts and decrypts provider keys under PROVIDER_KEYS_SECRET.

    Built without a secret (development or test without one), it refuses every operation with
    ProviderKeysUnavailable; production never starts without the secret (shared.settings).
    """

    __slots__ = ("_multi", "_key_count")

    def __init__(self, secret: str | SecretStr | None) -> None:
        if isinstance(secret, SecretStr):
            secret = secret.get_secret_value()
        keys = _fernet_keys(secret) if secret else []
        self._multi = MultiFernet(keys) if keys else None
        self._key_count = len(keys)

    @classmethod
    def from_settings(cls, settings: Settings) -> ProviderKeyBox:
        return cls(settings.PROVIDER_KEYS_SECRET)

    def __repr__(self) -> str:
        return f"ProviderKeyBox(keys={self._key_count})"

    __str__ = __repr__

    @property
    def available(self) -> bool:
        """Whether keys can be stored and read in this process."""
        return self._multi is not None

    def _fernet(self) -> MultiFernet:
        if self._multi is None:
            raise ProviderKeysUnavailable()
        return self._multi

    def encrypt(self, key: str) -> str:
        """A token for `key` under the newest secret key."""
        return self._fernet().encrypt(key.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        """The key in `token`; InvalidKeyToken when no configured secret key opens it."""
        fernet = self._fernet()
        try:
            return fernet.decrypt(token.encode("utf-8")).decode("utf-8")
        except (InvalidToken, UnicodeError, TypeError):
            # `from None`: the chained exception could carry the token.
            raise InvalidKeyToken() from None

    def rotate(self, token: str) -> str:
        """`token` re-encrypted under the newest secret key (its timestamp is kept)."""
        fernet = self._fernet()
        try:
            return fernet.rotate(token.encode("utf-8")).decode("ascii")
        except (InvalidToken, UnicodeError, TypeError):
            raise InvalidKeyToken() from None


def key_hint(key: str) -> str:
    """What an admin may see of a key: its last four characters ("…abcd"), and none of a key
    so short that four characters would give most of it away."""
    if len(key) < MIN_KEY_LENGTH_FOR_HINT:
        return "…"
    return "…" + key[-HINT_CHARACTERS:]
