import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import rules  # noqa: E402


class Rules(unittest.TestCase):
    def test_blocked_domain_is_refused(self):
        blocked, errors = rules.blocked_domains(["Spam.Example"])
        self.assertEqual(errors, [])
        self.assertIsNotNone(rules.refuse_sender(blocked, "x@spam.example"))
        self.assertIsNone(rules.refuse_sender(blocked, "x@ham.example"))
        self.assertIsNone(rules.refuse_sender(blocked, ""))

    def test_bad_config(self):
        self.assertEqual(rules.blocked_domains("spam.example")[1], ["blocked_domains: must be a list of domains"])
        self.assertEqual(len(rules.recipient_limit(0)[1]), 1)

    def test_recipients_over_the_limit(self):
        self.assertEqual(rules.recipient_limit(None), (rules.DEFAULT_LIMIT, []))
        self.assertIsNone(rules.refuse_recipient(2, 2))
        self.assertIsNotNone(rules.refuse_recipient(3, 2))
        self.assertEqual(rules.counter_key("192.0.2.1"), "rcpt:192.0.2.1")


if __name__ == "__main__":
    unittest.main()
