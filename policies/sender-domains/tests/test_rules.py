"""Unit tests of rules.py, run with the stdlib: `python3 -m unittest discover tests`."""

import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import rules  # noqa: E402


def lookup(table):
    kinds = {bool: "boolean", int: "integer", float: "float", str: "text", list: "text-list"}
    return lambda key: (kinds[type(table[key])], table[key]) if key in table else None


def configured(**table):
    effective, errors = rules.parse_config(lookup(table))
    assert not errors, errors
    return effective


SITE = {
    "sender_networks": [
        "example.com: 192.0.2.0/24, 2001:db8::/32",
        "*.example.org: 10.0.0.0/8",
        "shop.example.org: 198.51.100.7",
    ]
}


class ParseConfig(unittest.TestCase):
    def test_site_config(self):
        effective = configured(**SITE)
        self.assertEqual(set(effective.domains), {"example.com", "shop.example.org"})
        self.assertEqual(set(effective.subdomains), {"example.org"})
        self.assertIn("3 sender domains", rules.summary(effective))

    def test_every_problem_names_its_key(self):
        _, errors = rules.parse_config(
            lookup(
                {
                    "sender_networks": ["example.com 192.0.2.0/24", "bad_domain!: 10.0.0.0/8", "x.com: 10.0.0.300"],
                    "unlisted_domains": "maybe",
                    "allow_authenticated": 1,
                    "reject_code": 250,
                    "reject_text": "no {sender}",
                }
            )
        )
        self.assertEqual(len(errors), 7, errors)
        for key, error in zip(
            ["sender_networks"] * 3
            + ["unlisted_domains", "allow_authenticated", "reject_code", "reject_text"],
            errors,
        ):
            self.assertTrue(error.startswith(key + ":"), error)

    def test_missing_map_is_an_error(self):
        _, errors = rules.parse_config(lookup({}))
        self.assertEqual(len(errors), 1)
        self.assertTrue(errors[0].startswith("sender_networks:"))

    def test_duplicate_domain(self):
        _, errors = rules.parse_config(lookup({"sender_networks": ["a.com: ::1", "A.com: ::1"]}))
        self.assertEqual(errors, ['sender_networks: "a.com" is listed twice'])


class Judge(unittest.TestCase):
    def setUp(self):
        self.rules = configured(**SITE)

    def test_mapped_domain_inside_its_networks(self):
        self.assertIsNone(rules.judge(self.rules, "192.0.2.44", "alice@example.com", False))
        self.assertIsNone(rules.judge(self.rules, "2001:db8:5::1", "alice@Example.COM", False))
        self.assertIsNone(rules.judge(self.rules, "::ffff:192.0.2.44", "a@example.com", False))

    def test_mapped_domain_outside_its_networks(self):
        refusal = rules.judge(self.rules, "203.0.113.9", "alice@example.com", False)
        self.assertIsNotNone(refusal)
        self.assertEqual((refusal.code, refusal.status), (550, "5.7.1"))
        self.assertEqual(refusal.text, "sender domain example.com may not be used from 203.0.113.9")

    def test_wildcard_and_exact(self):
        self.assertIsNone(rules.judge(self.rules, "10.1.2.3", "a@example.org", False))
        self.assertIsNone(rules.judge(self.rules, "10.1.2.3", "a@lists.example.org", False))
        self.assertIsNotNone(rules.judge(self.rules, "192.0.2.1", "a@lists.example.org", False))
        # The exact entry wins over the wildcard.
        self.assertIsNotNone(rules.judge(self.rules, "10.1.2.3", "a@shop.example.org", False))
        self.assertIsNone(rules.judge(self.rules, "198.51.100.7", "a@shop.example.org", False))

    def test_unlisted_and_null_sender(self):
        self.assertIsNone(rules.judge(self.rules, "203.0.113.9", "bob@elsewhere.net", False))
        self.assertIsNone(rules.judge(self.rules, "203.0.113.9", "", False))
        strict = configured(**SITE, unlisted_domains="reject")
        self.assertIsNotNone(rules.judge(strict, "192.0.2.1", "bob@elsewhere.net", False))
        self.assertIsNone(rules.judge(strict, "203.0.113.9", "", False))

    def test_authenticated(self):
        self.assertIsNotNone(rules.judge(self.rules, "203.0.113.9", "a@example.com", True))
        lenient = configured(**SITE, allow_authenticated=True)
        self.assertIsNone(rules.judge(lenient, "203.0.113.9", "a@example.com", True))

    def test_custom_reply(self):
        custom = configured(**SITE, reject_code=451, reject_text="{domain} mail must leave via the office ({client})")
        refusal = rules.judge(custom, "203.0.113.9", "a@example.com", False)
        self.assertEqual((refusal.code, refusal.status), (451, "4.7.1"))
        self.assertEqual(refusal.text, "example.com mail must leave via the office (203.0.113.9)")


if __name__ == "__main__":
    unittest.main()
