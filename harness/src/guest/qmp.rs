//! Just enough of QEMU's machine protocol (QMP) to save a guest: connect,
//! run a command, read its answer. QMP is one JSON object per line;
//! asynchronous events may arrive between a command and its answer and are
//! skipped.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    #[error("cannot reach QEMU's monitor at {path}: {source}")]
    Connect {
        path: String,
        source: std::io::Error,
    },
    #[error("QEMU's monitor failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("QEMU's monitor closed the connection")]
    Closed,
    #[error("QEMU's monitor sent something that is not JSON: {0}")]
    Garbled(String),
    #[error("QEMU refused `{command}`: {message}")]
    Refused { command: String, message: String },
    #[error("QEMU's monitor did not answer within the deadline")]
    Timeout,
    #[error("interrupted while waiting for QEMU's monitor")]
    Interrupted,
}

/// A negotiated QMP session.
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    deadline: Instant,
}

impl Qmp {
    /// Connects (QEMU creates the socket a moment after it starts), reads
    /// the greeting and leaves capabilities negotiation mode. Every later
    /// read also ends at `deadline`. An interrupt ends the wait: the guests
    /// are killed then, and a socket a killed QEMU left behind refuses
    /// every connection until the deadline, which outlasted the interrupted
    /// run's wind-down and lost its reports.
    pub fn connect(path: &Path, deadline: Instant) -> Result<Qmp, QmpError> {
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(_) if crate::children::interrupted() => return Err(QmpError::Interrupted),
                Err(source) if Instant::now() >= deadline => {
                    return Err(QmpError::Connect {
                        path: path.display().to_string(),
                        source,
                    })
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        };
        let writer = stream.try_clone()?;
        let mut qmp = Qmp {
            reader: BufReader::new(stream),
            writer,
            deadline,
        };
        let greeting = qmp.next_message()?;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Garbled(greeting.to_string()));
        }
        qmp.execute("qmp_capabilities", None)?;
        Ok(qmp)
    }

    /// Runs `command` and returns its `return` value.
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, QmpError> {
        let mut request = json!({ "execute": command });
        if let Some(a) = arguments {
            request["arguments"] = a;
        }
        let mut line = request.to_string();
        line.push('\n');
        self.writer.write_all(line.as_bytes())?;
        loop {
            let message = self.next_message()?;
            if let Some(r) = message.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = message.get("error") {
                return Err(QmpError::Refused {
                    command: command.to_string(),
                    message: e
                        .get("desc")
                        .and_then(Value::as_str)
                        .unwrap_or("no reason given")
                        .to_string(),
                });
            }
            // An event: not the answer.
        }
    }

    fn next_message(&mut self) -> Result<Value, QmpError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(QmpError::Timeout);
        }
        self.reader.get_ref().set_read_timeout(Some(left))?;
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => Err(QmpError::Closed),
            Ok(_) => serde_json::from_str(&line).map_err(|_| QmpError::Garbled(line)),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Err(QmpError::Timeout)
            }
            Err(e) => Err(e.into()),
        }
    }
}
