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


if __name__ == "__main__":
    unittest.main()
