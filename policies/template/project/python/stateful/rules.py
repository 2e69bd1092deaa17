"""Your policy's logic, in plain Python so `python3 -m unittest` tests it.

This template refuses mail from sender domains listed in the config key
`blocked_domains`, and defers a client's recipients over
`max_recipients_per_hour` (counted in relaygate's state store by app.py).
Replace it with your own rules."""

from typing import Optional

# How long a client's recipient count lasts, in milliseconds: one hour.
WINDOW_MS = 3_600_000

# `max_recipients_per_hour` when the config does not set it.
DEFAULT_LIMIT = 100


def blocked_domains(value) -> tuple[set[str], list[str]]:
    """Reads `blocked_domains` (a list of strings, or None when absent)."""
    if value is None:
        return set(), []
    if not isinstance(value, list):
        return set(), ["blocked_domains: must be a list of domains"]
    return {domain.strip().lower().rstrip(".") for domain in value}, []


def recipient_limit(value) -> tuple[int, list[str]]:
    """Reads `max_recipients_per_hour` (an integer, or None when absent)."""
    if value is None:
        return DEFAULT_LIMIT, []
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return DEFAULT_LIMIT, ["max_recipients_per_hour: must be a number of at least 1"]
    return value, []


def refuse_sender(blocked: set[str], sender: str) -> Optional[str]:
    """The reply text when `sender` is refused, else None."""
    domain = sender.rpartition("@")[2].lower().rstrip(".")
    if "@" in sender and domain in blocked:
        return f"mail from {domain} is not accepted here"
    return None


def counter_key(client_ip: str) -> str:
    """The state key counting the recipients of `client_ip` (relaygate
    prefixes it with the policy's name)."""
    return f"rcpt:{client_ip}"


def refuse_recipient(count: int, limit: int) -> Optional[str]:
    """The reply text when a client's `count`-th recipient this hour is over
    `limit`, else None."""
    if count > limit:
        return f"more than {limit} recipients this hour, try again later"
    return None
