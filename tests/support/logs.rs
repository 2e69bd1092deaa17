//! relaygate's log events captured in memory, as JSON lines, for tests that
//! check what is logged (decision traces, transaction lines).

use std::sync::{Arc, Mutex, OnceLock};

/// Installs, once per test binary, a global subscriber that keeps every
/// event at INFO or above as one JSON object per line, and returns that
/// buffer. Every test of the binary shares it: look for what is yours.
pub fn captured_json_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || LogWriter(sink.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("one subscriber per test binary");
        logs
    })
    .clone()
}

/// Appends what the subscriber writes to the shared buffer.
struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
