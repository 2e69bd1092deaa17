#include "rules.h"

#include <string.h>

static char lower(char c) { return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c; }

bool sender_blocked(const char *sender, size_t len, char *const *blocked, size_t count) {
  size_t at = len;
  for (size_t i = 0; i < len; i++) {
    if (sender[i] == '@') at = i;
  }
  if (at == len) return false;
  const char *domain = sender + at + 1;
  size_t domain_len = len - at - 1;
  for (size_t b = 0; b < count; b++) {
    if (strlen(blocked[b]) != domain_len) continue;
    size_t i = 0;
    while (i < domain_len && lower(domain[i]) == blocked[b][i]) i++;
    if (i == domain_len) return true;
  }
  return false;
}

bool counter_key(const char *ip, size_t len, char *out, size_t cap) {
  static const char prefix[] = "rcpt:";
  size_t prefix_len = sizeof prefix - 1;
  if (prefix_len + len + 1 > cap) return false;
  memcpy(out, prefix, prefix_len);
  memcpy(out + prefix_len, ip, len);
  out[prefix_len + len] = '\0';
  return true;
}

bool recipient_over_limit(int64_t count, int64_t limit) { return count > limit; }
