// The component: binds rules.c to relaygate's WIT world `stateful-policy`
// (the world `policy` plus the `state` import) through the bindings in gen/.
// Ownership: free the arguments you are given; return heap strings (dup).
#include <stdlib.h>
#include <string.h>

#include "gen/stateful_policy.h"
#include "rules.h"

static char **blocked;       // lower-case domains, NUL-terminated
static size_t blocked_count;
static int64_t limit = DEFAULT_LIMIT;
static bool loaded, bad_domains, bad_limit;

static void load_blocked(void) {
  stateful_policy_string_t key;
  stateful_policy_string_set(&key, "blocked_domains");
  relaygate_policy_config_value_t value;
  if (!relaygate_policy_config_get(&key, &value)) return;
  if (value.tag == RELAYGATE_POLICY_CONFIG_VALUE_TEXT_LIST) {
    blocked_count = value.val.text_list.len;
    blocked = calloc(blocked_count ? blocked_count : 1, sizeof *blocked);
    for (size_t i = 0; i < blocked_count; i++) {
      stateful_policy_string_t *s = &value.val.text_list.ptr[i];
      blocked[i] = calloc(s->len + 1, 1);
      for (size_t k = 0; k < s->len; k++) {
        char c = (char)s->ptr[k];
        blocked[i][k] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
      }
    }
  } else {
    bad_domains = true;
  }
  relaygate_policy_config_value_free(&value);
}

static void load_limit(void) {
  stateful_policy_string_t key;
  stateful_policy_string_set(&key, "max_recipients_per_hour");
  relaygate_policy_config_value_t value;
  if (!relaygate_policy_config_get(&key, &value)) return;
  if (value.tag == RELAYGATE_POLICY_CONFIG_VALUE_INTEGER && value.val.integer >= 1) {
    limit = value.val.integer;
  } else {
    bad_limit = true;
  }
  relaygate_policy_config_value_free(&value);
}

static void load(void) {
  if (loaded) return;
  loaded = true;
  load_blocked();
  load_limit();
}

static void accept_verdict(exports_relaygate_policy_hooks_verdict_t *ret) {
  ret->action = RELAYGATE_POLICY_TYPES_ACTION_ACCEPT;
  ret->reply.is_some = false;
}

static void refuse_verdict(exports_relaygate_policy_hooks_verdict_t *ret, uint8_t action,
                           uint16_t code, const char *status, const char *text) {
  ret->action = action;
  ret->reply.is_some = true;
  ret->reply.val.code = code;
  ret->reply.val.enhanced_status.is_some = true;
  stateful_policy_string_dup(&ret->reply.val.enhanced_status.val, status);
  stateful_policy_string_dup(&ret->reply.val.text, text);
}

bool exports_relaygate_policy_hooks_init(exports_relaygate_policy_hooks_policy_info_t *ret,
                                         stateful_policy_list_string_t *err) {
  load();
  if (bad_domains || bad_limit) {
    err->len = 0;
    err->ptr = malloc(2 * sizeof(stateful_policy_string_t));
    if (bad_domains)
      stateful_policy_string_dup(&err->ptr[err->len++], "blocked_domains: must be a list of domains");
    if (bad_limit)
      stateful_policy_string_dup(&err->ptr[err->len++],
                                 "max_recipients_per_hour: must be a number of at least 1");
    return false;
  }
  stateful_policy_string_dup(&ret->name, "my-policy");
  stateful_policy_string_dup(&ret->summary,
                             "refuses senders from blocked_domains, counts recipients per client");
  ret->open_relay = false;
  ret->needs_client_name = false;
  return true;
}

void exports_relaygate_policy_hooks_connect(exports_relaygate_policy_hooks_session_t *session,
                                            exports_relaygate_policy_hooks_verdict_t *ret) {
  exports_relaygate_policy_hooks_session_free(session);
  accept_verdict(ret);
}

void exports_relaygate_policy_hooks_helo(exports_relaygate_policy_hooks_session_t *session,
                                         stateful_policy_string_t *name, bool extended,
                                         exports_relaygate_policy_hooks_verdict_t *ret) {
  (void)extended;
  exports_relaygate_policy_hooks_session_free(session);
  stateful_policy_string_free(name);
  accept_verdict(ret);
}

exports_relaygate_policy_hooks_esmtp_extensions_t
exports_relaygate_policy_hooks_extensions(exports_relaygate_policy_hooks_session_t *session) {
  exports_relaygate_policy_hooks_session_free(session);
  return 0x1f; // every extension the host can offer
}

void exports_relaygate_policy_hooks_auth(exports_relaygate_policy_hooks_session_t *session,
                                         stateful_policy_string_t *mechanism,
                                         stateful_policy_string_t *identity,
                                         exports_relaygate_policy_hooks_verdict_t *ret) {
  exports_relaygate_policy_hooks_session_free(session);
  stateful_policy_string_free(mechanism);
  stateful_policy_string_free(identity);
  accept_verdict(ret);
}

void exports_relaygate_policy_hooks_mail_from(exports_relaygate_policy_hooks_session_t *session,
                                              stateful_policy_string_t *sender,
                                              exports_relaygate_policy_hooks_list_parameter_t *params,
                                              exports_relaygate_policy_hooks_verdict_t *ret) {
  load();
  bool refuse = sender_blocked((const char *)sender->ptr, sender->len, blocked, blocked_count);
  exports_relaygate_policy_hooks_session_free(session);
  stateful_policy_string_free(sender);
  exports_relaygate_policy_hooks_list_parameter_free(params);
  if (refuse) {
    refuse_verdict(ret, RELAYGATE_POLICY_TYPES_ACTION_REJECT, 550, "5.7.1",
                   "mail from this domain is not accepted here");
  } else {
    accept_verdict(ret);
  }
}

void exports_relaygate_policy_hooks_rcpt_to(exports_relaygate_policy_hooks_session_t *session,
                                            stateful_policy_string_t *recipient,
                                            exports_relaygate_policy_hooks_list_parameter_t *params,
                                            exports_relaygate_policy_hooks_verdict_t *ret) {
  load();
  char key_text[128];
  bool fits = counter_key((const char *)session->client_ip.ptr, session->client_ip.len, key_text,
                          sizeof key_text);
  exports_relaygate_policy_hooks_session_free(session);
  stateful_policy_string_free(recipient);
  exports_relaygate_policy_hooks_list_parameter_free(params);
  int64_t count = 0;
  relaygate_policy_state_state_error_t error;
  stateful_policy_string_t key;
  stateful_policy_string_set(&key, key_text);
  if (!fits || !relaygate_policy_state_increment(&key, 1, WINDOW_MS, &count, &error)) {
    if (fits) relaygate_policy_state_state_error_free(&error);
    // The store is down or slow: defer, so that the client retries.
    refuse_verdict(ret, RELAYGATE_POLICY_TYPES_ACTION_TEMPFAIL, 451, "4.3.0",
                   "cannot count recipients now, try again later");
  } else if (recipient_over_limit(count, limit)) {
    refuse_verdict(ret, RELAYGATE_POLICY_TYPES_ACTION_TEMPFAIL, 450, "4.7.1",
                   "too many recipients this hour, try again later");
  } else {
    accept_verdict(ret);
  }
}

void exports_relaygate_policy_hooks_data(exports_relaygate_policy_hooks_session_t *session,
                                         exports_relaygate_policy_hooks_message_t *message,
                                         exports_relaygate_policy_hooks_verdict_t *ret) {
  exports_relaygate_policy_hooks_session_free(session);
  exports_relaygate_policy_hooks_message_free(message);
  accept_verdict(ret);
}
