// The recipient-limits decision, free of any WIT binding so that it can be
// compiled and tested natively (test/test_limits.c).
#ifndef RECIPIENT_LIMITS_H
#define RECIPIENT_LIMITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// An IPv4 or IPv6 network; IPv4 is kept as an IPv4-mapped IPv6 address so
// one comparison serves both families.
typedef struct {
  uint8_t addr[16];
  unsigned prefix; // 0..128 over the mapped form
} net_t;

// Who the client is, from most to least trusted.
typedef enum {
  CLASS_AUTHENTICATED = 0, // logged in with SMTP AUTH
  CLASS_TRUSTED = 1,       // connects from a trusted network
  CLASS_OTHER = 2,         // everyone else
} client_class_t;

// Parses an address ("192.0.2.1", "2001:db8::1") of `len` bytes into 16
// bytes (IPv4 mapped). Returns false when it is not an address.
bool parse_ip(const char *text, size_t len, uint8_t out[16]);

// Parses "ADDR" or "ADDR/PREFIX". Returns false on anything else.
bool parse_net(const char *text, size_t len, net_t *out);

// True when the address `ip` (16 bytes) lies in `net`.
bool net_contains(const net_t *net, const uint8_t ip[16]);

// The class of a client: authenticated beats trusted beats other.
client_class_t classify(bool authenticated, const uint8_t ip[16],
                        const net_t *trusted, size_t trusted_len);

// True when one more recipient is allowed after `accepted` ones under `limit`.
bool recipient_allowed(size_t accepted, int64_t limit);

// The class's name for log lines and replies.
const char *class_name(client_class_t class_);

#endif
