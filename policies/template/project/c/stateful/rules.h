// Your policy's logic, free of the WIT bindings so test/run.sh tests it natively.
// This template refuses mail from sender domains listed in `blocked_domains`,
// and defers a client's recipients over `max_recipients_per_hour` (counted
// in relaygate's state store by policy.c).
#ifndef RULES_H
#define RULES_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// How long a client's recipient count lasts, in milliseconds: one hour.
#define WINDOW_MS 3600000u

// `max_recipients_per_hour` when the config does not set it.
#define DEFAULT_LIMIT 100

// True when the domain of `sender` (len bytes) equals one of `blocked`
// (each NUL-terminated, lower case), ignoring ASCII case.
bool sender_blocked(const char *sender, size_t len, char *const *blocked, size_t count);

// Writes the state key counting the recipients of the client at `ip` (len
// bytes), "rcpt:" and the address, NUL-terminated into `out` (cap bytes);
// false when it does not fit. relaygate prefixes keys with the policy's name.
bool counter_key(const char *ip, size_t len, char *out, size_t cap);

// True when a client's `count`-th recipient this hour is over `limit`.
bool recipient_over_limit(int64_t count, int64_t limit);
#endif
