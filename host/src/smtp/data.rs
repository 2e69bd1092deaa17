//! Message data, free of I/O: line-by-line checks of what a client sends
//! after DATA ([`DataChecker`]) so that nothing reaches the upstream that
//! could end the message, or start another one, anywhere but where
//! relaygate itself sees the end (SMTP smuggling); and the header section
//! kept for the data hook.

/// Longest text line in a message, CRLF included (RFC 5321 4.5.3.1.6).
pub const MAX_TEXT_LINE: usize = 1000;
/// Header bytes kept for the data hook.
pub const MAX_KEPT_HEADERS: usize = 64 * 1024;

/// What was wrong with a message, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataProblem {
    /// A CR or LF not part of CRLF.
    BareLineEnding,
    /// A NUL byte.
    Nul,
    /// A text line over [`MAX_TEXT_LINE`].
    LineTooLong,
    /// Over `max_message_size`.
    TooBig,
}

/// Line-by-line checks of message data: line endings, NUL, line length,
/// size; finds the end-of-data line and collects the header section.
#[derive(Debug)]
pub struct DataChecker {
    max_size: u64,
    size: u64,
    previous_ended_with_crlf: bool,
    problem: Option<DataProblem>,
    in_headers: bool,
    header_bytes: usize,
    headers: Vec<(String, String)>,
    headers_truncated: bool,
}

impl DataChecker {
    /// Checks for one message of at most `max_size` bytes.
    pub fn new(max_size: u64) -> Self {
        Self {
            max_size,
            size: 0,
            previous_ended_with_crlf: true,
            problem: None,
            in_headers: true,
            header_bytes: 0,
            headers: Vec::new(),
            headers_truncated: false,
        }
    }

    /// Check one LF-terminated line; true when it is the end-of-data line
    /// (".\r\n" right after a CRLF).
    pub fn line(&mut self, line: &[u8]) -> bool {
        let crlf = line.len() >= 2 && line[line.len() - 2] == b'\r';
        if crlf && line.len() == 3 && line[0] == b'.' && self.previous_ended_with_crlf {
            return true;
        }
        self.previous_ended_with_crlf = crlf;
        let body = &line[..line.len() - if crlf { 2 } else { 1 }];
        if !crlf || memchr::memchr(b'\r', body).is_some() {
            self.flag(DataProblem::BareLineEnding);
        }
        if memchr::memchr(0, body).is_some() {
            self.flag(DataProblem::Nul);
        }
        if line.len() > MAX_TEXT_LINE {
            self.flag(DataProblem::LineTooLong);
        }
        let unstuffed = body.strip_prefix(b".").unwrap_or(body);
        self.size += unstuffed.len() as u64 + 2;
        if self.size > self.max_size {
            self.flag(DataProblem::TooBig);
        }
        if self.in_headers {
            self.header_line(unstuffed);
        }
        false
    }

    /// Account for an over-long line that will not be kept.
    pub fn overlong(&mut self, part: &[u8]) {
        self.size += part.len() as u64;
        self.previous_ended_with_crlf = false;
        self.flag(DataProblem::LineTooLong);
        if self.size > self.max_size {
            self.flag(DataProblem::TooBig);
        }
    }

    fn flag(&mut self, problem: DataProblem) {
        self.problem.get_or_insert(problem);
    }

    fn header_line(&mut self, line: &[u8]) {
        if line.is_empty() {
            self.in_headers = false;
            return;
        }
        self.header_bytes += line.len() + 2;
        if self.header_bytes > MAX_KEPT_HEADERS {
            self.headers_truncated = true;
            return;
        }
        let text = String::from_utf8_lossy(line);
        if line[0] == b' ' || line[0] == b'\t' {
            if let Some((_, value)) = self.headers.last_mut() {
                value.push(' ');
                value.push_str(text.trim());
            }
        } else if let Some((name, value)) = text.split_once(':') {
            self.headers
                .push((name.to_string(), value.trim().to_string()));
        } else {
            // Not a header field: the body started without a blank line.
            self.in_headers = false;
        }
    }

    /// True while the message is still clean, i.e. its lines may go upstream.
    pub fn forwarding(&self) -> bool {
        self.problem.is_none()
    }

    /// The first problem found.
    pub fn problem(&self) -> Option<DataProblem> {
        self.problem
    }

    /// Size so far (unstuffed, CRLF counted).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The header fields collected, and whether they were cut.
    pub fn into_headers(self) -> (Vec<(String, String)>, bool) {
        (self.headers, self.headers_truncated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed a whole DATA stream through the checker as the connection would.
    fn check(data: &[u8], max: u64) -> (bool, Option<DataProblem>, u64) {
        let mut checker = DataChecker::new(max);
        let mut rest = data;
        while let Some(pos) = memchr::memchr(b'\n', rest) {
            if checker.line(&rest[..=pos]) {
                return (true, checker.problem(), checker.size());
            }
            rest = &rest[pos + 1..];
        }
        (false, checker.problem(), checker.size())
    }

    #[test]
    fn clean_messages() {
        assert_eq!(
            check(b"Subject: x\r\n\r\nbody\r\n.\r\n", 1000),
            (true, None, 20)
        );
        assert_eq!(check(b".\r\n", 1000), (true, None, 0));
        assert_eq!(check(b"..leading dot\r\n.\r\n", 1000), (true, None, 14));
    }

    #[test]
    fn smuggling_variants_never_end_the_message_and_are_flagged() {
        let variants: [&[u8]; 6] = [
            b"a\n.\nMAIL FROM:<x@y>\r\n",
            b"a\n.\r\nMAIL FROM:<x@y>\r\n",
            b"a\r\n.\nMAIL FROM:<x@y>\r\n",
            b"a\r.\r\nMAIL FROM:<x@y>\r\n",
            b"a\r\n.\r\r\nMAIL FROM:<x@y>\r\n",
            b"a\r\n\r.\r\nMAIL FROM:<x@y>\r\n",
        ];
        for data in variants {
            let (ended, problem, _) = check(data, 1000);
            assert!(
                !ended,
                "{:?} ended the message",
                String::from_utf8_lossy(data)
            );
            assert_eq!(
                problem,
                Some(DataProblem::BareLineEnding),
                "{:?}",
                String::from_utf8_lossy(data)
            );
        }
        // After a bare LF the real end still needs CRLF.CRLF.
        assert_eq!(
            check(b"a\nb\r\n.\r\n", 1000),
            (true, Some(DataProblem::BareLineEnding), 6)
        );
    }

    #[test]
    fn limits() {
        assert_eq!(check(b"a\0b\r\n.\r\n", 1000).1, Some(DataProblem::Nul));
        assert_eq!(
            check(b"0123456789\r\n.\r\n", 5).1,
            Some(DataProblem::TooBig)
        );
        let long = [b"x".repeat(MAX_TEXT_LINE - 1), b"\r\n.\r\n".to_vec()].concat();
        assert_eq!(check(&long, 1 << 20).1, Some(DataProblem::LineTooLong));
        let ok = [b"x".repeat(MAX_TEXT_LINE - 2), b"\r\n.\r\n".to_vec()].concat();
        assert_eq!(check(&ok, 1 << 20).1, None);
    }

    #[test]
    fn headers_are_collected_and_unfolded() {
        let mut checker = DataChecker::new(1 << 20);
        for line in [
            &b"Subject: hello\r\n"[..],
            b"\tworld\r\n",
            b"From: a@b\r\n",
            b"\r\n",
            b"X: not a header\r\n",
        ] {
            checker.line(line);
        }
        let (headers, truncated) = checker.into_headers();
        assert_eq!(
            headers,
            vec![
                ("Subject".into(), "hello world".into()),
                ("From".into(), "a@b".into())
            ]
        );
        assert!(!truncated);
    }
}
