"""The component: binds rules.py to relaygate's WIT world `stateful-policy`
(the world `policy` plus the `state` import). componentize-py generates the
`wit_world` package from wit/."""

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import config, state
from wit_world.imports.types import Action, EsmtpExtensions, PolicyInfo, Reply, Verdict

import rules

ACCEPT = Verdict(Action.ACCEPT, None)


def _value(key):
    value = config.get(key)
    return None if value is None else value.value


def _settings():
    blocked, blocked_errors = rules.blocked_domains(_value("blocked_domains"))
    limit, limit_errors = rules.recipient_limit(_value("max_recipients_per_hour"))
    return blocked, limit, blocked_errors + limit_errors


class Hooks(exports.Hooks):
    def init(self):
        blocked, limit, errors = _settings()
        if errors:
            raise Err(errors)
        summary = f"{len(blocked)} sender domains blocked, {limit} recipients per client and hour"
        return PolicyInfo("my-policy", summary, False, False)

    def connect(self, session):
        return ACCEPT

    def helo(self, session, name, extended):
        return ACCEPT

    def extensions(self, session):
        return EsmtpExtensions.PIPELINING | EsmtpExtensions.AUTH | EsmtpExtensions.STARTTLS | EsmtpExtensions.SMTPUTF8 | EsmtpExtensions.CHUNKING

    def auth(self, session, mechanism, identity):
        return ACCEPT

    def mail_from(self, session, sender, params):
        blocked, _, _ = _settings()
        text = rules.refuse_sender(blocked, sender)
        if text is None:
            return ACCEPT
        return Verdict(Action.REJECT, Reply(550, "5.7.1", text))

    def rcpt_to(self, session, recipient, params):
        _, limit, _ = _settings()
        try:
            count = state.increment(rules.counter_key(session.client_ip), 1, rules.WINDOW_MS)
        except Err:
            # The store is down or slow: defer, so that the client retries.
            return Verdict(Action.TEMPFAIL, Reply(451, "4.3.0", "cannot count recipients now, try again later"))
        text = rules.refuse_recipient(count, limit)
        if text is None:
            return ACCEPT
        return Verdict(Action.TEMPFAIL, Reply(450, "4.7.1", text))

    def data(self, session, message):
        return ACCEPT
