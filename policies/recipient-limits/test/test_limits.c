// Native unit tests of limits.c: `./test/run.sh` (also run by build.sh).
#include "../limits.h"

#include <stdio.h>
#include <string.h>

static int failures = 0;

#define CHECK(cond)                                                      \
  do {                                                                   \
    if (!(cond)) {                                                       \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      failures++;                                                        \
    }                                                                    \
  } while (0)

static bool ip(const char *s, uint8_t out[16]) { return parse_ip(s, strlen(s), out); }
static bool net(const char *s, net_t *out) { return parse_net(s, strlen(s), out); }

static bool in(const char *network, const char *address) {
  net_t n;
  uint8_t a[16];
  return net(network, &n) && ip(address, a) && net_contains(&n, a);
}

int main(void) {
  uint8_t a[16];
  net_t n;
  // Addresses.
  CHECK(ip("192.0.2.1", a) && a[10] == 0xff && a[12] == 192 && a[15] == 1);
  CHECK(ip("::1", a) && a[15] == 1 && a[0] == 0);
  CHECK(ip("2001:db8::7", a) && a[0] == 0x20 && a[1] == 0x01 && a[15] == 7);
  CHECK(ip("::ffff:192.0.2.1", a) && a[12] == 192);
  CHECK(ip("1:2:3:4:5:6:7:8", a) && a[15] == 8);
  CHECK(!ip("256.0.0.1", a));
  CHECK(!ip("1.2.3", a));
  CHECK(!ip("01.2.3.4", a));
  CHECK(!ip("1::2::3", a));
  CHECK(!ip("1:2:3:4:5:6:7:8:9", a));
  CHECK(!ip("mx.example.com", a));
  CHECK(!ip("", a));
  // Networks.
  CHECK(net("10.0.0.0/8", &n) && n.prefix == 104);
  CHECK(net("2001:db8::/32", &n) && n.prefix == 32);
  CHECK(net("192.0.2.7", &n) && n.prefix == 128);
  CHECK(!net("10.0.0.0/33", &n));
  CHECK(!net("10.0.0.0/", &n));
  CHECK(!net("2001:db8::/129", &n));
  CHECK(in("10.0.0.0/8", "10.200.3.4"));
  CHECK(!in("10.0.0.0/8", "11.0.0.1"));
  CHECK(in("127.0.0.0/8", "127.0.0.5"));
  CHECK(in("2001:db8::/32", "2001:db8:1::1"));
  CHECK(!in("2001:db8::/32", "2001:db9::1"));
  CHECK(in("0.0.0.0/0", "203.0.113.9"));
  CHECK(!in("0.0.0.0/0", "2001:db8::1"));
  CHECK(in("192.0.2.7/32", "192.0.2.7") && !in("192.0.2.7/32", "192.0.2.8"));
  // Classes.
  net_t trusted[1];
  CHECK(net("127.0.0.0/8", &trusted[0]));
  CHECK(ip("127.0.0.1", a) && classify(true, a, trusted, 1) == CLASS_AUTHENTICATED);
  CHECK(ip("127.0.0.1", a) && classify(false, a, trusted, 1) == CLASS_TRUSTED);
  CHECK(ip("198.51.100.1", a) && classify(false, a, trusted, 1) == CLASS_OTHER);
  CHECK(ip("198.51.100.1", a) && classify(false, a, trusted, 0) == CLASS_OTHER);
  // Limits.
  CHECK(recipient_allowed(0, 1));
  CHECK(!recipient_allowed(1, 1));
  CHECK(recipient_allowed(2, 3) && !recipient_allowed(3, 3));
  CHECK(!recipient_allowed(0, 0));
  if (failures == 0) printf("limits: all checks passed\n");
  return failures == 0 ? 0 : 1;
}
