"""Per-product keys: keyed pseudonyms and per-person date offsets, both derived with HMAC-SM3.

A data product gets its own secret key, held by the data holder. Every pseudonym and every date offset in
that product is an HMAC-SM3 (GB/T 32905 hash, RFC 2104 construction) of the original value under that key,
so the same patient gets the same pseudonym throughout one product, and two products made with different
keys cannot be joined unless the holder releases the mapping. A plain hash was rejected: anyone can hash all
18-character resident IDs of a region and reverse it. OpenSSL's SM3 comes through ``cryptography``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes, hmac

from medspace.core import ConfigError

#: Bytes of key material; SM3's block is 64 bytes and its digest 32, so 32 bytes of key is full strength.
KEY_BYTES = 32


@dataclass(frozen=True)
class ProductKey:
    """The secret key of one data product; never written into the product or its reports.

    Example:
        >>> key = ProductKey.from_hex("00" * 32)
        >>> key.pseudonym("110105194912310021")
        '479b6cab750cae4a1ddf94c9'
        >>> other = ProductKey.from_hex("11" * 32)
        >>> key.pseudonym("110105194912310021") == other.pseudonym("110105194912310021")
        False
    """

    secret: bytes = field(repr=False)
    _keyed: hmac.HMAC = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.secret) < 16:
            raise ConfigError(
                f"a product key needs at least 16 bytes, got {len(self.secret)}; "
                "make one with `ProductKey.generate()` or `openssl rand -hex 32`"
            )
        # Keyed once: copying a keyed HMAC skips the key schedule, which halves the cost per value.
        object.__setattr__(self, "_keyed", hmac.HMAC(self.secret, hashes.SM3()))

    @classmethod
    def generate(cls) -> ProductKey:
        """A fresh random key from the operating system's CSPRNG."""
        return cls(secrets.token_bytes(KEY_BYTES))

    @classmethod
    def from_hex(cls, text: str) -> ProductKey:
        """A key written as hexadecimal (as ``openssl rand -hex 32`` prints it)."""
        try:
            return cls(bytes.fromhex(text.strip()))
        except ValueError as err:
            raise ConfigError(
                "a product key must be hexadecimal, e.g. the output of `openssl rand -hex 32`"
            ) from err

    def digest(self, purpose: str, value: str) -> bytes:
        """HMAC-SM3 of ``value`` under this key, separated by ``purpose`` so pseudonyms and offsets differ."""
        mac = self._keyed.copy()
        mac.update(purpose.encode())
        mac.update(b"\x00")
        mac.update(value.encode())
        return mac.finalize()

    def fingerprint(self) -> str:
        """A short public fingerprint of the key, for reports: which key made a product, not the key."""
        return self.digest("fingerprint", "").hex()[:16]

    def pseudonym(self, value: str, *, length: int = 24) -> str:
        """A keyed pseudonym: the first ``length`` hex digits of HMAC-SM3 (96 bits by default)."""
        return self.digest("pseudonym", value).hex()[:length]

    def pseudonym_int(self, value: str) -> int:
        """A keyed pseudonym as a positive 63-bit integer, for integer keys such as OMOP's ``person_id``."""
        return int.from_bytes(self.digest("pseudonym", value)[:8], "big") >> 1

    def date_offset_days(self, person_key: str, max_days: int = 365) -> int:
        """The per-person date shift in days, in ``[-max_days, max_days]`` and never 0.

        The same person gets the same offset for every date of the product, in every table and in free text,
        so intervals between one person's events are kept exactly.
        """
        if max_days < 1:
            raise ConfigError(f"a date shift needs max_days >= 1, got {max_days}")
        draw = int.from_bytes(self.digest("date-offset", person_key)[:8], "big") % (2 * max_days)
        return draw - max_days if draw < max_days else draw - max_days + 1
