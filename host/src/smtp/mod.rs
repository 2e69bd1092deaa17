//! The SMTP vocabulary, free of I/O: command lines in, typed commands and
//! replies out.

pub mod address;
pub mod command;
pub mod data;
pub mod reply;

pub use command::{Command, CommandError, Param, parse_command};
pub use reply::Reply;
