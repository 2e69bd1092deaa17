"""The sender-domains decision, in plain Python (no WIT bindings), so it can be
tested with the stdlib's unittest outside the component (tests/test_rules.py).

A site maps sender domains to the client networks allowed to use them. Mail
whose MAIL FROM domain is mapped is refused when the client is outside the
networks given for that domain.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Callable, Optional

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_TEXT = "sender domain {domain} may not be used from {client}"


@dataclass
class Rules:
    """The effective configuration."""

    # Exact domain -> networks; "*.example.com" entries go to `subdomains`.
    domains: dict[str, list[Network]] = field(default_factory=dict)
    # Parent domain -> networks, for the domain itself and every subdomain.
    subdomains: dict[str, list[Network]] = field(default_factory=dict)
    # Refuse senders whose domain is not mapped at all.
    reject_unlisted: bool = False
    # Authenticated clients may use any domain.
    allow_authenticated: bool = False
    code: int = 550
    status: str = "5.7.1"
    text: str = DEFAULT_TEXT

    def networks_for(self, domain: str) -> Optional[list[Network]]:
        """The networks that may send as `domain`, or None when it is not mapped.
        An exact entry wins over a wildcard; the closest wildcard wins."""
        if domain in self.domains:
            return self.domains[domain]
        labels = domain.split(".")
        for start in range(len(labels)):
            parent = ".".join(labels[start:])
            if parent in self.subdomains:
                return self.subdomains[parent]
        return None


@dataclass
class Refusal:
    """Why a sender was refused, as the reply to give."""

    code: int
    status: str
    text: str


# A lookup of one config key: returns (kind, value) or None when the key is absent.
# kind is one of "text", "integer", "float", "boolean", "text-list".
Lookup = Callable[[str], Optional[tuple[str, object]]]


def parse_config(get: Lookup) -> tuple[Rules, list[str]]:
    """Builds the rules from the config; returns them with every problem found,
    each naming its key."""
    rules = Rules()
    errors: list[str] = []

    entry = get("sender_networks")
    if entry is None:
        errors.append('sender_networks: missing (list of "domain: network, network")')
    elif entry[0] != "text-list":
        errors.append('sender_networks: must be a list of "domain: network, network"')
    else:
        for line in entry[1]:  # type: ignore[union-attr]
            problem = _add_mapping(rules, line)
            if problem:
                errors.append(f"sender_networks: {problem}")

    unlisted = get("unlisted_domains")
    if unlisted is not None:
        if unlisted == ("text", "accept"):
            rules.reject_unlisted = False
        elif unlisted == ("text", "reject"):
            rules.reject_unlisted = True
        else:
            errors.append('unlisted_domains: must be "accept" or "reject"')

    authenticated = get("allow_authenticated")
    if authenticated is not None:
        if authenticated[0] == "boolean":
            rules.allow_authenticated = bool(authenticated[1])
        else:
            errors.append("allow_authenticated: must be true or false")

    code = get("reject_code")
    if code is not None:
        if code[0] == "integer" and (450 <= code[1] <= 459 or 550 <= code[1] <= 559):  # type: ignore[operator]
            rules.code = int(code[1])  # type: ignore[arg-type]
            rules.status = "4.7.1" if rules.code < 500 else "5.7.1"
        else:
            errors.append("reject_code: must be an SMTP code 450-459 or 550-559")

    text = get("reject_text")
    if text is not None:
        value = text[1]
        if text[0] != "text" or not value:
            errors.append("reject_text: must be a non-empty string")
        elif not all(" " <= ch <= "~" for ch in value):  # type: ignore[union-attr]
            errors.append("reject_text: must be printable ASCII")
        elif len(value) > 300:  # type: ignore[arg-type]
            errors.append("reject_text: longer than 300 characters")
        else:
            try:
                value.format(domain="d", client="c")  # type: ignore[union-attr]
            except (KeyError, IndexError, ValueError):
                errors.append("reject_text: only {domain} and {client} may appear in braces")
            else:
                rules.text = value  # type: ignore[assignment]
    return rules, errors


def _add_mapping(rules: Rules, line: str) -> Optional[str]:
    domain, sep, networks = line.partition(":")
    domain = domain.strip().lower().rstrip(".")
    if not sep or not domain:
        return f'"{line}" is not "domain: network, network"'
    table = rules.domains
    if domain.startswith("*."):
        table = rules.subdomains
        domain = domain[2:]
    if not _is_domain(domain):
        return f'"{domain}" is not a domain name'
    if domain in table:
        return f'"{domain}" is listed twice'
    parsed: list[Network] = []
    for text in networks.replace(",", " ").split():
        try:
            parsed.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            return f'"{text}" (for {domain}) is not an address or CIDR network'
    table[domain] = parsed
    return None


def _is_domain(name: str) -> bool:
    labels = name.split(".")
    return len(name) <= 253 and all(
        0 < len(label) <= 63
        and label[0] != "-"
        and label[-1] != "-"
        and all(ch.isalnum() or ch == "-" for ch in label)
        for label in labels
    )


def sender_domain(sender: str) -> Optional[str]:
    """The domain of a reverse path, lower case; None for `<>` or no domain."""
    if "@" not in sender:
        return None
    domain = sender.rpartition("@")[2].strip().lower().rstrip(".")
    return domain or None


def judge(rules: Rules, client_ip: str, sender: str, authenticated: bool) -> Optional[Refusal]:
    """None when the client may use this sender, else the refusal."""
    domain = sender_domain(sender)
    if domain is None:
        return None  # the null sender (bounces) is never refused here
    if authenticated and rules.allow_authenticated:
        return None
    networks = rules.networks_for(domain)
    if networks is None:
        if not rules.reject_unlisted:
            return None
        networks = []
    try:
        client = ipaddress.ip_address(client_ip)
    except ValueError:
        client = None
    if client is not None:
        if isinstance(client, ipaddress.IPv6Address) and client.ipv4_mapped:
            client = client.ipv4_mapped
        if any(client in network for network in networks):
            return None
    text = rules.text.format(domain=domain, client=client_ip)
    return Refusal(rules.code, rules.status, text)


def summary(rules: Rules) -> str:
    """One line for admins."""
    mapped = len(rules.domains) + len(rules.subdomains)
    unlisted = "refused" if rules.reject_unlisted else "accepted"
    auth = ", authenticated clients exempt" if rules.allow_authenticated else ""
    return f"{mapped} sender domains bound to networks, unlisted domains {unlisted}{auth}"
