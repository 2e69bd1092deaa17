// recipient-limits: at most N recipients per transaction, N chosen by the
// client's class (authenticated / trusted network / other), refused with the
// site's own reply text. The decision logic is in limits.c; this file reads
// the configuration and speaks the `policy` world through the checked-in
// bindings in policies/bindings/c/policy (policy.h).
#include <stdlib.h>
#include <string.h>

#include "policy.h"
#include "limits.h"

#define MAX_TRUSTED 256
#define MAX_ERRORS 16
#define MAX_LIMIT 100000

// The configuration, read once per instance (relaygate makes one instance
// per session and calls `init` only when it loads the module).
static struct {
  bool loaded;
  int64_t limit[3]; // indexed by client_class_t
  net_t trusted[MAX_TRUSTED];
  size_t trusted_len;
  char *reply_text;
  bool permanent;
  char *errors[MAX_ERRORS];
  size_t error_count;
} cfg;

static const char *const LIMIT_KEYS[3] = {
    "max_recipients_authenticated",
    "max_recipients_trusted",
    "max_recipients_other",
};
static const int64_t LIMIT_DEFAULTS[3] = {100, 100, 10};

static char *copy_text(const uint8_t *ptr, size_t len) {
  char *out = malloc(len + 1);
  if (!out) abort();
  memcpy(out, ptr, len);
  out[len] = '\0';
  return out;
}

// Records "KEY: PROBLEM" (problem may be followed by one quoted detail).
static void config_error(const char *key, const char *problem, const uint8_t *detail,
                         size_t detail_len) {
  if (cfg.error_count == MAX_ERRORS) return;
  size_t key_len = strlen(key), problem_len = strlen(problem);
  size_t total = key_len + 2 + problem_len + (detail ? detail_len + 3 : 0);
  char *text = malloc(total + 1);
  if (!text) abort();
  char *p = text;
  memcpy(p, key, key_len), p += key_len;
  memcpy(p, ": ", 2), p += 2;
  memcpy(p, problem, problem_len), p += problem_len;
  if (detail) {
    memcpy(p, " \"", 2), p += 2;
    memcpy(p, detail, detail_len), p += detail_len;
    *p++ = '"';
  }
  *p = '\0';
  cfg.errors[cfg.error_count++] = text;
}

// Looks `key` up; returns false when the table does not have it.
static bool config_get(const char *key, relaygate_policy_config_value_t *value) {
  policy_string_t name;
  policy_string_set(&name, key);
  return relaygate_policy_config_get(&name, value);
}

static void add_trusted(const char *key, const policy_string_t *entry) {
  if (cfg.trusted_len == MAX_TRUSTED) {
    config_error(key, "more than 256 networks", NULL, 0);
    return;
  }
  if (parse_net((const char *)entry->ptr, entry->len, &cfg.trusted[cfg.trusted_len])) {
    cfg.trusted_len++;
  } else {
    config_error(key, "not an address or CIDR network:", entry->ptr, entry->len);
  }
}

static void load_config(void) {
  if (cfg.loaded) return;
  cfg.loaded = true;
  relaygate_policy_config_value_t value;

  for (int class_ = 0; class_ < 3; class_++) {
    cfg.limit[class_] = LIMIT_DEFAULTS[class_];
    if (!config_get(LIMIT_KEYS[class_], &value)) continue;
    if (value.tag != RELAYGATE_POLICY_CONFIG_VALUE_INTEGER) {
      config_error(LIMIT_KEYS[class_], "must be an integer", NULL, 0);
    } else if (value.val.integer < 1 || value.val.integer > MAX_LIMIT) {
      config_error(LIMIT_KEYS[class_], "must be between 1 and 100000", NULL, 0);
    } else {
      cfg.limit[class_] = value.val.integer;
    }
    relaygate_policy_config_value_free(&value);
  }

  if (config_get("trusted_networks", &value)) {
    if (value.tag == RELAYGATE_POLICY_CONFIG_VALUE_TEXT_LIST) {
      for (size_t i = 0; i < value.val.text_list.len; i++) {
        add_trusted("trusted_networks", &value.val.text_list.ptr[i]);
      }
    } else if (value.tag == RELAYGATE_POLICY_CONFIG_VALUE_TEXT) {
      add_trusted("trusted_networks", &value.val.text);
    } else {
      config_error("trusted_networks", "must be a list of networks", NULL, 0);
    }
    relaygate_policy_config_value_free(&value);
  } else {
    // Default: the machine's own networks (the host's list is well formed;
    // a machine with more addresses than fit keeps the first ones).
    policy_list_string_t own;
    relaygate_policy_server_own_networks(&own);
    for (size_t i = 0; i < own.len && cfg.trusted_len < MAX_TRUSTED; i++) {
      if (parse_net((const char *)own.ptr[i].ptr, own.ptr[i].len, &cfg.trusted[cfg.trusted_len])) {
        cfg.trusted_len++;
      }
    }
    policy_list_string_free(&own);
  }

  cfg.reply_text = NULL;
  if (config_get("reply_text", &value)) {
    if (value.tag != RELAYGATE_POLICY_CONFIG_VALUE_TEXT) {
      config_error("reply_text", "must be a string", NULL, 0);
    } else if (value.val.text.len == 0 || value.val.text.len > 300) {
      config_error("reply_text", "must be 1 to 300 characters", NULL, 0);
    } else {
      bool printable = true;
      for (size_t i = 0; i < value.val.text.len; i++) {
        uint8_t c = value.val.text.ptr[i];
        printable &= c >= 0x20 && c < 0x7f;
      }
      if (printable) {
        cfg.reply_text = copy_text(value.val.text.ptr, value.val.text.len);
      } else {
        config_error("reply_text", "must be printable ASCII", NULL, 0);
      }
    }
    relaygate_policy_config_value_free(&value);
  }
  if (!cfg.reply_text) cfg.reply_text = copy_text((const uint8_t *)"too many recipients", 19);

  cfg.permanent = false;
  if (config_get("reply_permanent", &value)) {
    if (value.tag == RELAYGATE_POLICY_CONFIG_VALUE_BOOLEAN) {
      cfg.permanent = value.val.boolean;
    } else {
      config_error("reply_permanent", "must be true or false", NULL, 0);
    }
    relaygate_policy_config_value_free(&value);
  }
}

static void log_line(relaygate_policy_log_level_t level, const char *text) {
  policy_string_t message;
  policy_string_set(&message, text);
  relaygate_policy_log_write(level, &message);
}

static void accept_verdict(exports_relaygate_policy_hooks_verdict_t *ret) {
  ret->action = RELAYGATE_POLICY_TYPES_ACTION_ACCEPT;
  ret->reply.is_some = false;
}

// Writes the decimal form of `value` at `out`, returns the end.
static char *put_number(char *out, int64_t value) {
  char digits[24];
  int n = 0;
  do {
    digits[n++] = (char)('0' + value % 10);
    value /= 10;
  } while (value > 0);
  while (n > 0) *out++ = digits[--n];
  return out;
}

bool exports_relaygate_policy_hooks_init(exports_relaygate_policy_hooks_policy_info_t *ret,
                                         policy_list_string_t *err) {
  load_config();
  if (cfg.error_count > 0) {
    err->len = cfg.error_count;
    err->ptr = malloc(sizeof(policy_string_t) * cfg.error_count);
    if (!err->ptr) abort();
    for (size_t i = 0; i < cfg.error_count; i++) {
      policy_string_dup(&err->ptr[i], cfg.errors[i]);
    }
    return false;
  }
  char summary[160];
  char *p = summary;
  const char *parts[3] = {"max recipients: authenticated ", ", trusted ", ", other "};
  for (int class_ = 0; class_ < 3; class_++) {
    size_t len = strlen(parts[class_]);
    memcpy(p, parts[class_], len);
    p = put_number(p + len, cfg.limit[class_]);
  }
  const char *tail = cfg.permanent ? " (then 550 5.5.3)" : " (then 452 4.5.3)";
  size_t tail_len = strlen(tail);
  memcpy(p, tail, tail_len);
  p[tail_len] = '\0';
  policy_string_dup(&ret->name, "recipient-limits");
  policy_string_dup(&ret->summary, summary);
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
  return RELAYGATE_POLICY_TYPES_ESMTP_EXTENSIONS_PIPELINING |
         RELAYGATE_POLICY_TYPES_ESMTP_EXTENSIONS_AUTH |
         RELAYGATE_POLICY_TYPES_ESMTP_EXTENSIONS_STARTTLS |
         RELAYGATE_POLICY_TYPES_ESMTP_EXTENSIONS_SMTPUTF8 |
         RELAYGATE_POLICY_TYPES_ESMTP_EXTENSIONS_CHUNKING;
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
  exports_relaygate_policy_hooks_session_free(session);
  policy_string_free(sender);
  exports_relaygate_policy_hooks_list_parameter_free(params);
  accept_verdict(ret);
}

void exports_relaygate_policy_hooks_rcpt_to(exports_relaygate_policy_hooks_session_t *session,
                                            policy_string_t *recipient,
                                            exports_relaygate_policy_hooks_list_parameter_t *params,
                                            exports_relaygate_policy_hooks_verdict_t *ret) {
  load_config();
  uint8_t ip[16];
  bool known = parse_ip((const char *)session->client_ip.ptr, session->client_ip.len, ip);
  client_class_t class_ = known ? classify(session->auth_user.is_some, ip, cfg.trusted,
                                           cfg.trusted_len)
                                : (session->auth_user.is_some ? CLASS_AUTHENTICATED : CLASS_OTHER);
  size_t accepted = session->recipients.len;
  exports_relaygate_policy_hooks_session_free(session);
  policy_string_free(recipient);
  exports_relaygate_policy_hooks_list_parameter_free(params);

  if (recipient_allowed(accepted, cfg.limit[class_])) {
    accept_verdict(ret);
    return;
  }
  char line[80] = "recipient limit reached for client class ";
  strcat(line, class_name(class_));
  log_line(RELAYGATE_POLICY_LOG_LEVEL_INFO, line);
  ret->action = cfg.permanent ? RELAYGATE_POLICY_TYPES_ACTION_REJECT
                              : RELAYGATE_POLICY_TYPES_ACTION_TEMPFAIL;
  ret->reply.is_some = true;
  ret->reply.val.code = cfg.permanent ? 550 : 452;
  ret->reply.val.enhanced_status.is_some = true;
  policy_string_dup(&ret->reply.val.enhanced_status.val, cfg.permanent ? "5.5.3" : "4.5.3");
  policy_string_dup(&ret->reply.val.text, cfg.reply_text);
}

void exports_relaygate_policy_hooks_data(exports_relaygate_policy_hooks_session_t *session,
                                         exports_relaygate_policy_hooks_message_t *message,
                                         exports_relaygate_policy_hooks_verdict_t *ret) {
  exports_relaygate_policy_hooks_session_free(session);
  exports_relaygate_policy_hooks_message_free(message);
  accept_verdict(ret);
}
