// The component: binds rules.c to relaygate's WIT world `policy` through the
// checked-in bindings in policies/bindings/c/policy (`policy.h`).
// Ownership: free the arguments you are given; return heap strings (dup).
#include <stdlib.h>
#include <string.h>

#include "policy.h"
#include "rules.h"

static char **blocked;       // lower-case domains, NUL-terminated
static size_t blocked_count;
static bool loaded, bad_config;

static void load(void) {
  if (loaded) return;
  loaded = true;
  policy_string_t key;
  policy_string_set(&key, "blocked_domains");
  relaygate_policy_config_value_t value;
  if (!relaygate_policy_config_get(&key, &value)) return;
  if (value.tag == RELAYGATE_POLICY_CONFIG_VALUE_TEXT_LIST) {
    blocked_count = value.val.text_list.len;
    blocked = calloc(blocked_count ? blocked_count : 1, sizeof *blocked);
    for (size_t i = 0; i < blocked_count; i++) {
      policy_string_t *s = &value.val.text_list.ptr[i];
      blocked[i] = calloc(s->len + 1, 1);
      for (size_t k = 0; k < s->len; k++) {
        char c = (char)s->ptr[k];
        blocked[i][k] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
      }
    }
  } else {
    bad_config = true;
  }
  relaygate_policy_config_value_free(&value);
}

static void accept_verdict(exports_relaygate_policy_hooks_verdict_t *ret) {
  ret->action = RELAYGATE_POLICY_TYPES_ACTION_ACCEPT;
  ret->reply.is_some = false;
}

bool exports_relaygate_policy_hooks_init(exports_relaygate_policy_hooks_policy_info_t *ret,
                                         policy_list_string_t *err) {
  load();
  if (bad_config) {
    err->len = 1;
    err->ptr = malloc(sizeof(policy_string_t));
    policy_string_dup(&err->ptr[0], "blocked_domains: must be a list of domains");
    return false;
  }
  policy_string_dup(&ret->name, "my-policy");
  policy_string_dup(&ret->summary, "refuses senders from blocked_domains");
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
                                         policy_string_t *name, bool extended,
                                         exports_relaygate_policy_hooks_verdict_t *ret) {
  (void)extended;
  exports_relaygate_policy_hooks_session_free(session);
  policy_string_free(name);
  accept_verdict(ret);
}

exports_relaygate_policy_hooks_esmtp_extensions_t
exports_relaygate_policy_hooks_extensions(exports_relaygate_policy_hooks_session_t *session) {
  exports_relaygate_policy_hooks_session_free(session);
  return 0x1f; // every extension the host can offer
}

void exports_relaygate_policy_hooks_auth(exports_relaygate_policy_hooks_session_t *session,
                                         policy_string_t *mechanism, policy_string_t *identity,
                                         exports_relaygate_policy_hooks_verdict_t *ret) {
  exports_relaygate_policy_hooks_session_free(session);
  policy_string_free(mechanism);
  policy_string_free(identity);
  accept_verdict(ret);
}

void exports_relaygate_policy_hooks_mail_from(exports_relaygate_policy_hooks_session_t *session,
                                              policy_string_t *sender,
                                              exports_relaygate_policy_hooks_list_parameter_t *params,
                                              exports_relaygate_policy_hooks_verdict_t *ret) {
  load();
  bool refuse = sender_blocked((const char *)sender->ptr, sender->len, blocked, blocked_count);
  exports_relaygate_policy_hooks_session_free(session);
  policy_string_free(sender);
  exports_relaygate_policy_hooks_list_parameter_free(params);
  if (!refuse) {
    accept_verdict(ret);
    return;
  }
  ret->action = RELAYGATE_POLICY_TYPES_ACTION_REJECT;
  ret->reply.is_some = true;
  ret->reply.val.code = 550;
  ret->reply.val.enhanced_status.is_some = true;
  policy_string_dup(&ret->reply.val.enhanced_status.val, "5.7.1");
  policy_string_dup(&ret->reply.val.text, "mail from this domain is not accepted here");
}

void exports_relaygate_policy_hooks_rcpt_to(exports_relaygate_policy_hooks_session_t *session,
                                            policy_string_t *recipient,
                                            exports_relaygate_policy_hooks_list_parameter_t *params,
                                            exports_relaygate_policy_hooks_verdict_t *ret) {
  exports_relaygate_policy_hooks_session_free(session);
  policy_string_free(recipient);
  exports_relaygate_policy_hooks_list_parameter_free(params);
  accept_verdict(ret);
}

void exports_relaygate_policy_hooks_data(exports_relaygate_policy_hooks_session_t *session,
                                         exports_relaygate_policy_hooks_message_t *message,
                                         exports_relaygate_policy_hooks_verdict_t *ret) {
  exports_relaygate_policy_hooks_session_free(session);
  exports_relaygate_policy_hooks_message_free(message);
  accept_verdict(ret);
}
