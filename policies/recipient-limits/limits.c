// Address parsing, network matching and the limit itself (see limits.h).
// Written without libc calls beyond memcpy/memset so it needs no WASI.
#include "limits.h"

#include <string.h>

static int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Dotted-quad IPv4 into out[0..4].
static bool parse_ipv4(const char *s, size_t len, uint8_t out[4]) {
  size_t i = 0;
  for (int part = 0; part < 4; part++) {
    if (part > 0) {
      if (i >= len || s[i] != '.') return false;
      i++;
    }
    unsigned value = 0;
    size_t digits = 0;
    while (i < len && s[i] >= '0' && s[i] <= '9') {
      value = value * 10 + (unsigned)(s[i] - '0');
      if (value > 255 || (digits == 1 && s[i - 1] == '0')) return false;
      i++;
      digits++;
    }
    if (digits == 0) return false;
    out[part] = (uint8_t)value;
  }
  return i == len;
}

// RFC 4291 text form, with "::" and an optional trailing dotted quad.
static bool parse_ipv6(const char *s, size_t len, uint8_t out[16]) {
  uint16_t groups[8];
  int count = 0, gap = -1;
  size_t i = 0;
  if (len >= 2 && s[0] == ':' && s[1] == ':') {
    gap = 0;
    i = 2;
  } else if (len >= 1 && s[0] == ':') {
    return false;
  }
  while (i < len) {
    if (count == 8) return false;
    // A trailing IPv4 part takes two groups.
    size_t end = i;
    while (end < len && s[end] != ':') end++;
    bool dotted = false;
    for (size_t k = i; k < end; k++) dotted |= s[k] == '.';
    if (dotted) {
      uint8_t v4[4];
      if (end != len || count > 6 || !parse_ipv4(s + i, end - i, v4)) return false;
      groups[count++] = (uint16_t)(v4[0] << 8 | v4[1]);
      groups[count++] = (uint16_t)(v4[2] << 8 | v4[3]);
      i = end;
      break;
    }
    if (end == i || end - i > 4) return false;
    unsigned value = 0;
    for (size_t k = i; k < end; k++) {
      int h = hex_value(s[k]);
      if (h < 0) return false;
      value = value << 4 | (unsigned)h;
    }
    groups[count++] = (uint16_t)value;
    i = end;
    if (i < len) { // at ':'
      i++;
      if (i < len && s[i] == ':') {
        if (gap >= 0) return false;
        gap = count;
        i++;
      } else if (i == len) {
        return false; // trailing single ':'
      }
    }
  }
  if (gap < 0 && count != 8) return false;
  if (gap >= 0 && count > 7) return false;
  uint16_t full[8] = {0};
  if (gap < 0) {
    memcpy(full, groups, sizeof full);
  } else {
    int tail = count - gap;
    for (int k = 0; k < gap; k++) full[k] = groups[k];
    for (int k = 0; k < tail; k++) full[8 - tail + k] = groups[gap + k];
  }
  for (int k = 0; k < 8; k++) {
    out[2 * k] = (uint8_t)(full[k] >> 8);
    out[2 * k + 1] = (uint8_t)(full[k] & 0xff);
  }
  return true;
}

bool parse_ip(const char *text, size_t len, uint8_t out[16]) {
  uint8_t v4[4];
  if (parse_ipv4(text, len, v4)) {
    memset(out, 0, 10);
    out[10] = 0xff;
    out[11] = 0xff;
    memcpy(out + 12, v4, 4);
    return true;
  }
  return parse_ipv6(text, len, out);
}

bool parse_net(const char *text, size_t len, net_t *out) {
  size_t slash = len;
  for (size_t i = 0; i < len; i++) {
    if (text[i] == '/') {
      slash = i;
      break;
    }
  }
  if (!parse_ip(text, slash, out->addr)) return false;
  uint8_t v4[4];
  bool is_v4 = parse_ipv4(text, slash, v4);
  unsigned max = is_v4 ? 32 : 128;
  unsigned prefix = max;
  if (slash < len) {
    size_t digits = len - slash - 1;
    if (digits == 0 || digits > 3) return false;
    prefix = 0;
    for (size_t i = slash + 1; i < len; i++) {
      if (text[i] < '0' || text[i] > '9') return false;
      prefix = prefix * 10 + (unsigned)(text[i] - '0');
    }
    if (prefix > max) return false;
  }
  out->prefix = is_v4 ? prefix + 96 : prefix;
  return true;
}

bool net_contains(const net_t *net, const uint8_t ip[16]) {
  unsigned bits = net->prefix;
  for (unsigned byte = 0; byte < 16 && bits > 0; byte++) {
    unsigned take = bits >= 8 ? 8 : bits;
    uint8_t mask = (uint8_t)(0xff << (8 - take));
    if ((net->addr[byte] & mask) != (ip[byte] & mask)) return false;
    bits -= take;
  }
  return true;
}

client_class_t classify(bool authenticated, const uint8_t ip[16],
                        const net_t *trusted, size_t trusted_len) {
  if (authenticated) return CLASS_AUTHENTICATED;
  for (size_t i = 0; i < trusted_len; i++) {
    if (net_contains(&trusted[i], ip)) return CLASS_TRUSTED;
  }
  return CLASS_OTHER;
}

bool recipient_allowed(size_t accepted, int64_t limit) {
  return limit > 0 && (uint64_t)accepted < (uint64_t)limit;
}

const char *class_name(client_class_t class_) {
  switch (class_) {
  case CLASS_AUTHENTICATED: return "authenticated";
  case CLASS_TRUSTED: return "trusted";
  default: return "other";
  }
}
