"""Your policy's logic, in plain Python so `python3 -m unittest` tests it.

This template refuses mail from sender domains listed in the config key
`blocked_domains`. Replace it with your own rule."""

from typing import Optional


def blocked_domains(value) -> tuple[set[str], list[str]]:
    """Reads `blocked_domains` (a list of strings, or None when absent)."""
    if value is None:
        return set(), []
    if not isinstance(value, list):
        return set(), ["blocked_domains: must be a list of domains"]
    return {domain.strip().lower().rstrip(".") for domain in value}, []


def refuse_sender(blocked: set[str], sender: str) -> Optional[str]:
    """The reply text when `sender` is refused, else None."""
    domain = sender.rpartition("@")[2].lower().rstrip(".")
    if "@" in sender and domain in blocked:
        return f"mail from {domain} is not accepted here"
    return None
