//! `parse_command` and `parse_path` on arbitrary bytes.
//!
//! Besides "never panics", each accepted command is checked for what the
//! rest of relaygate relies on: nothing in a path or parameter can break the
//! line relaygate sends upstream (`MAIL FROM:<path> NAME=value`), that line
//! parses back to the same command, and a path keeps the client's text.
//!
//! Input: the whole input is one command line (as `read_command` hands it
//! over, without its line ending). The first byte also selects the path kind
//! and SMTPUTF8 for a direct `parse_path` call on the remaining bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use relaygate::smtp::address::{PathKind, parse_path};
use relaygate::smtp::{Command, Param, parse_command};

/// Longest path, angle brackets included (RFC 5321 4.5.3.1.3).
const MAX_PATH: usize = 256;

fuzz_target!(|data: &[u8]| {
    check_command(data);
    if let Some((&flags, rest)) = data.split_first()
        && let Ok(text) = std::str::from_utf8(rest)
    {
        let kind = if flags & 1 == 0 {
            PathKind::Reverse
        } else {
            PathKind::Forward
        };
        check_direct_path(text, kind, flags & 2 != 0);
    }
});

fn check_command(line: &[u8]) {
    let Ok(command) = parse_command(line) else {
        return;
    };
    // Accepted lines are UTF-8 without NUL, CR, LF, DEL or controls but TAB.
    let text = std::str::from_utf8(line).expect("accepted a line that is not UTF-8");
    assert!(
        !line.iter().any(|&b| (b < 32 && b != b'\t') || b == 127),
        "accepted control bytes: {line:?}"
    );
    let verb = text
        .split(' ')
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase();
    let expected_verb = match &command {
        Command::Helo(_) => "HELO",
        Command::Ehlo(_) => "EHLO",
        Command::Mail { .. } => "MAIL",
        Command::Rcpt { .. } => "RCPT",
        Command::Data => "DATA",
        Command::Rset => "RSET",
        Command::Noop => "NOOP",
        Command::Quit => "QUIT",
        Command::Vrfy => "VRFY",
        Command::Expn => "EXPN",
        Command::Help => "HELP",
        Command::StartTls => "STARTTLS",
        Command::Auth { .. } => "AUTH",
        Command::Bdat => "BDAT",
    };
    assert_eq!(verb, expected_verb, "{text:?} parsed as {command:?}");
    match &command {
        Command::Helo(name) | Command::Ehlo(name) => {
            assert!(!name.is_empty() && name.len() <= 255, "{command:?}");
            assert!(
                !name.bytes().any(|b| b.is_ascii_whitespace()),
                "{command:?}"
            );
        }
        Command::Mail { path, params } => {
            check_path(path, PathKind::Reverse, params);
            check_params(params);
            let mut upstream = format!("MAIL FROM:<{path}>");
            push_params(&mut upstream, params);
            assert_reparses(&upstream, &command);
        }
        Command::Rcpt { path, params } => {
            assert!(!path.is_empty(), "null forward path accepted");
            check_path(path, PathKind::Forward, params);
            check_params(params);
            let mut upstream = format!("RCPT TO:<{path}>");
            push_params(&mut upstream, params);
            assert_reparses(&upstream, &command);
        }
        Command::Auth { mechanism, initial } => {
            assert!(!mechanism.is_empty(), "{command:?}");
            assert_eq!(mechanism, &mechanism.to_ascii_uppercase());
            assert!(!mechanism.bytes().any(|b| b.is_ascii_whitespace()));
            if let Some(initial) = initial {
                assert!(!initial.is_empty());
                assert!(!initial.bytes().any(|b| b.is_ascii_whitespace()));
            }
        }
        _ => {}
    }
}

/// What a MAIL/RCPT path must be to be safe in `MAIL FROM:<path>` (the
/// round trip of that line is checked by the caller).
fn check_path(path: &str, kind: PathKind, params: &[Param]) {
    assert!(path.len() + 2 <= MAX_PATH, "path too long: {}", path.len());
    assert_no_controls_or_bare_spaces(path);
    let utf8 = params
        .iter()
        .any(|p| p.name == "SMTPUTF8" && p.value.is_none());
    if !utf8 {
        assert!(path.is_ascii(), "non-ASCII path without SMTPUTF8: {path:?}");
    }
    // The path alone, bracketed, passes the same check and is kept as is.
    assert_eq!(
        parse_path(&format!("<{path}>"), kind, utf8).as_deref(),
        Ok(path)
    );
    let postmaster = kind == PathKind::Forward && path.eq_ignore_ascii_case("postmaster");
    if !path.is_empty() && !postmaster {
        assert!(path.contains('@'), "mailbox without @: {path:?}");
    }
}

/// No ASCII control byte anywhere; a space only inside a quoted local part.
fn assert_no_controls_or_bare_spaces(path: &str) {
    assert!(
        !path.bytes().any(|b| b < 32 || b == 127),
        "control byte in path {path:?}"
    );
    let mailbox = match path.strip_prefix('@') {
        Some(_) => {
            let (route, mailbox) = path.split_once(':').expect("source route without ':'");
            assert!(!route.contains(' '), "space in source route {path:?}");
            mailbox
        }
        None => path,
    };
    let domain = match mailbox.strip_prefix('"') {
        Some(quoted) => {
            let mut escaped = false;
            let close = quoted
                .char_indices()
                .find_map(|(i, c)| match c {
                    _ if escaped => {
                        escaped = false;
                        None
                    }
                    '\\' => {
                        escaped = true;
                        None
                    }
                    '"' => Some(i),
                    _ => None,
                })
                .expect("unterminated quoted local part");
            &quoted[close + 1..]
        }
        None => mailbox,
    };
    assert!(
        !domain.contains(' '),
        "space outside quotes in path {path:?}"
    );
}

/// `KEYWORD[=value]`: the keyword upper-cased `ALPHA / DIGIT / "-"`, the
/// value non-empty without spaces or control bytes (but TAB in a non-ASCII
/// value, see the report), and without `=` when ASCII.
fn check_params(params: &[Param]) {
    for p in params {
        assert!(!p.name.is_empty(), "{p:?}");
        assert!(
            p.name
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-'),
            "{p:?}"
        );
        if let Some(v) = &p.value {
            assert!(!v.is_empty(), "{p:?}");
            assert!(
                !v.bytes()
                    .any(|b| b == b' ' || (b < 32 && b != b'\t') || b == 127),
                "{p:?}"
            );
            if v.is_ascii() {
                assert!(
                    v.bytes().all(|b| (33..=126).contains(&b) && b != b'='),
                    "{p:?}"
                );
            }
        }
    }
}

fn push_params(line: &mut String, params: &[Param]) {
    for p in params {
        line.push(' ');
        line.push_str(&p.name);
        if let Some(v) = &p.value {
            line.push('=');
            line.push_str(v);
        }
    }
}

/// The line relaygate would send upstream parses back to the same command:
/// the upstream cannot read it differently from how relaygate read the client.
fn assert_reparses(line: &str, command: &Command) {
    assert_eq!(
        parse_command(line.as_bytes()).as_ref(),
        Ok(command),
        "upstream form {line:?}"
    );
}

/// `parse_path` on its own: keeps the client's text, never lets a control
/// byte or an unquoted space through, and is idempotent.
fn check_direct_path(text: &str, kind: PathKind, utf8: bool) {
    let Ok(path) = parse_path(text, kind, utf8) else {
        return;
    };
    let inner = match text.strip_prefix('<') {
        Some(rest) => rest.strip_suffix('>').expect("accepted an unclosed path"),
        None => text,
    };
    assert_eq!(path, inner, "path text changed");
    assert!(path.len() + 2 <= MAX_PATH);
    assert_no_controls_or_bare_spaces(&path);
    if !utf8 {
        assert!(path.is_ascii());
    }
    if kind == PathKind::Forward {
        assert!(!path.is_empty());
    }
    assert_eq!(
        parse_path(&format!("<{path}>"), kind, utf8).as_deref(),
        Ok(path.as_str())
    );
}
