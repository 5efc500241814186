"""Pseudonymisation of Finnish personal identity codes (henkilötunnus) at ingestion.

A ``hetu`` is validated with python-stdnum and replaced by a keyed HMAC-SHA256 pseudonym:
the same person gets the same ``client_id`` in every table and every run with the same
key, and an unrelated one under another key. There is no default key.
"""

from __future__ import annotations

import hashlib
import hmac

from stdnum.exceptions import ValidationError
from stdnum.fi import hetu as _hetu

from hbeval.privacy import normalise_for_codes
from hbeval.study.config import KEY_HOWTO, key_problem

PREFIX = "p"
DIGEST_CHARS = 20  # 80 bits: collisions are negligible for a national register


def check_hetu(value: str) -> str | None:
    """Return the compact, upper-case hetu, or ``None`` when it is not valid.

    Temporary identifiers (individual numbers 900–999) are accepted: registers hold them
    for people without a permanent code.
    """
    try:
        return _hetu.validate(_normal_form(value), allow_temporary=True)
    except (ValidationError, ValueError, TypeError):
        return None


def _normal_form(value: object) -> str:
    """The hetu as registers write it: NFKC, every dash variant a hyphen, upper case, no
    spaces (a code written with an en dash and a lower-case check character is the same
    person as the code written with a hyphen and an upper-case one)."""
    return "".join(normalise_for_codes(str(value)).split())


def why_invalid(value: str) -> str:
    try:
        _hetu.validate(_normal_form(value), allow_temporary=True)
    except ValidationError as e:
        return f"not a valid henkilötunnus ({getattr(e, 'message', e)})"
    except Exception as e:  # pragma: no cover - defensive
        return f"not a valid henkilötunnus ({e})"
    return ""


def weak_key_message(key: bytes) -> str | None:
    """Why the pseudonym ``key`` is refused (fewer than 128 bits of randomness, by
    :func:`hbeval.study.config.key_problem`, the rule the allocation key follows), with how to
    make a good one; ``None`` when it will do.

    A weak key lets anyone who can read a ``client_id`` find the identity code behind it by
    trying keys: the pseudonyms of a register's codes under each guess are quick to compute.
    """
    why = key_problem(key)
    if why is None:
        return None
    return ("the pseudonym key (the environment variable named by privacy.key_env, default HBEVAL_PSEUDONYM_KEY, "
            f"or privacy.key_file) is too weak: {why}; {KEY_HOWTO}")


def pseudonym(hetu: str, key: bytes) -> str:
    """Keyed pseudonym of a *valid, compact* hetu."""
    if not key:
        raise ValueError("a pseudonym key is required")
    digest = hmac.new(key, hetu.encode("ascii"), hashlib.sha256).hexdigest()
    return f"{PREFIX}{digest[:DIGEST_CHARS]}"
