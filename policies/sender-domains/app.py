"""relaygate policy `sender-domains`: which client networks may send as which
sender domains. The logic is in rules.py; this module binds it to the WIT world
`relaygate:policy/policy` (componentize-py generates `wit_world`)."""

from typing import Optional

import rules
from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import config, log
from wit_world.imports.types import (
    Action,
    EsmtpExtensions,
    Message,
    Parameter,
    PolicyInfo,
    Reply,
    Session,
    Verdict,
)

ACCEPT = Verdict(Action.ACCEPT, None)

# relaygate makes a fresh instance per session; the config is read on first use.
_loaded: Optional[tuple[rules.Rules, list[str]]] = None


def _lookup(key: str):
    value = config.get(key)
    if value is None:
        return None
    if isinstance(value, config.Value_Text):
        return ("text", value.value)
    if isinstance(value, config.Value_Integer):
        return ("integer", value.value)
    if isinstance(value, config.Value_Float):
        return ("float", value.value)
    if isinstance(value, config.Value_Boolean):
        return ("boolean", value.value)
    return ("text-list", list(value.value))


def _rules() -> tuple[rules.Rules, list[str]]:
    global _loaded
    if _loaded is None:
        _loaded = rules.parse_config(_lookup)
    return _loaded


class Hooks(exports.Hooks):
    def init(self) -> PolicyInfo:
        effective, errors = _rules()
        if errors:
            raise Err(errors)
        return PolicyInfo(
            name="sender-domains",
            summary=rules.summary(effective),
            open_relay=False,
            needs_client_name=False,
        )

    def connect(self, session: Session) -> Verdict:
        return ACCEPT

    def helo(self, session: Session, name: str, extended: bool) -> Verdict:
        return ACCEPT

    def extensions(self, session: Session) -> EsmtpExtensions:
        return (
            EsmtpExtensions.PIPELINING
            | EsmtpExtensions.AUTH
            | EsmtpExtensions.STARTTLS
            | EsmtpExtensions.SMTPUTF8
            | EsmtpExtensions.CHUNKING
        )

    def auth(self, session: Session, mechanism: str, identity: str) -> Verdict:
        return ACCEPT

    def mail_from(self, session: Session, sender: str, params: list[Parameter]) -> Verdict:
        effective, errors = _rules()
        if errors:
            # init refuses such a config; fail closed if a hook runs anyway.
            return Verdict(Action.TEMPFAIL, Reply(451, "4.3.0", "policy misconfigured"))
        refusal = rules.judge(effective, session.client_ip, sender, session.auth_user is not None)
        if refusal is None:
            return ACCEPT
        log.write(log.Level.INFO, f"sender domain refused for client {session.client_ip}")
        action = Action.REJECT if refusal.code >= 500 else Action.TEMPFAIL
        return Verdict(action, Reply(refusal.code, refusal.status, refusal.text))

    def rcpt_to(self, session: Session, recipient: str, params: list[Parameter]) -> Verdict:
        return ACCEPT

    def data(self, session: Session, message: Message) -> Verdict:
        return ACCEPT
