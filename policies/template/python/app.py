"""The component: binds rules.py to relaygate's WIT world `policy`.
componentize-py generates the `wit_world` package from ../../../wit."""

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import config
from wit_world.imports.types import Action, EsmtpExtensions, PolicyInfo, Reply, Verdict

import rules

ACCEPT = Verdict(Action.ACCEPT, None)


def _settings():
    value = config.get("blocked_domains")
    return rules.blocked_domains(None if value is None else value.value)


class Hooks(exports.Hooks):
    def init(self):
        blocked, errors = _settings()
        if errors:
            raise Err(errors)
        return PolicyInfo("my-policy", f"{len(blocked)} sender domains blocked", False, False)

    def connect(self, session):
        return ACCEPT

    def helo(self, session, name, extended):
        return ACCEPT

    def extensions(self, session):
        return EsmtpExtensions.PIPELINING | EsmtpExtensions.AUTH | EsmtpExtensions.STARTTLS | EsmtpExtensions.SMTPUTF8 | EsmtpExtensions.CHUNKING

    def auth(self, session, mechanism, identity):
        return ACCEPT

    def mail_from(self, session, sender, params):
        blocked, _ = _settings()
        text = rules.refuse_sender(blocked, sender)
        if text is None:
            return ACCEPT
        return Verdict(Action.REJECT, Reply(550, "5.7.1", text))

    def rcpt_to(self, session, recipient, params):
        return ACCEPT

    def data(self, session, message):
        return ACCEPT
