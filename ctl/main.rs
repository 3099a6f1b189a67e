//! sottoctl: the operator's tool. One request to the running sottod over its
//! admin socket (`<data>/admin.sock`, PROTOCOL.md §12), one answer printed
//! for people or as one JSON object.
//!
//! Invariant: every frame read is bounded before it is buffered and checked
//! (size, opcode, strings) before use; the exit status says what happened:
//! 0 done, 1 refused by the server, 2 usage, 3 no server running, 4
//! permission denied, 5 no such user.

mod cli;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::{json, Value};
use sotto::opcodes::{self, AdminReply, MAX_MESSAGE};
use sotto::wire::{self, Status};

use cli::Opts;

/// Why sottoctl stops, and its exit status.
struct Fail {
    status: u8,
    code: u16,
    message: String,
}

fn fail(status: u8, message: impl Into<String>) -> Fail {
    Fail { status, code: 0, message: message.into() }
}

/// The answer frames of one request: the parts (status pending) and the final one.
struct Answer {
    parts: Vec<Vec<u8>>,
    last: Vec<u8>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Connects, sends `request`, reads until the final answer.
fn exchange(socket: &PathBuf, request: &[u8]) -> Result<Answer, Fail> {
    let shown = socket.display();
    let mut s = UnixStream::connect(socket).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            fail(3, format!("no server running: nothing listens on {shown} ({e})"))
        }
        std::io::ErrorKind::PermissionDenied => {
            fail(4, format!("permission denied: {shown}: run sottoctl as root or as sottod's service user"))
        }
        _ => fail(3, format!("cannot connect to {shown}: {e}")),
    })?;
    let mut frame = (request.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(request);
    s.write_all(&frame).map_err(|e| fail(4, refused_text(&shown.to_string(), &e.to_string())))?;
    let mut parts = Vec::new();
    loop {
        let mut len = [0u8; 4];
        if let Err(e) = s.read_exact(&mut len) {
            return Err(fail(4, refused_text(&shown.to_string(), &e.to_string())));
        }
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 || len > MAX_MESSAGE {
            return Err(fail(1, format!("the server sent a frame of {len} bytes: not an admin answer")));
        }
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).map_err(|e| fail(1, format!("the server closed mid-answer: {e}")))?;
        let hdr = wire::header(&body).map_err(|e| fail(1, format!("malformed answer: {e}")))?;
        if hdr.status == Status::Pending as u8 {
            // Bounded: a listing of every account is the longest answer.
            if parts.len() > 10_000_000 {
                return Err(fail(1, "the server's answer does not end"));
            }
            parts.push(body);
        } else {
            return Ok(Answer { parts, last: body });
        }
    }
}

/// The server closed without an answer: SO_PEERCRED refused this user.
fn refused_text(socket: &str, e: &str) -> String {
    format!(
        "permission denied: sottod closed {socket} without an answer ({e}); only root and its service user may use it"
    )
}

/// The final `arep` as an error, when it is one (or anything unexpected).
fn check(last: &[u8], expect: u32) -> Result<(), Fail> {
    let hdr = wire::header(last).map_err(|e| fail(1, format!("malformed answer: {e}")))?;
    let opcode = hdr.opcode.get();
    if opcode == expect && hdr.status != Status::Error as u8 {
        return Ok(());
    }
    if opcode == opcodes::AREP {
        let r = wire::decode::<AdminReply>(last).map_err(|e| fail(1, format!("malformed arep: {e}")))?;
        let message = r.reason().unwrap_or("(unreadable reason)").to_string();
        let code = r.hdr.code.get();
        if hdr.status != Status::Error as u8 {
            return Ok(());
        }
        let status = if code == 404 { 5 } else { 1 };
        return Err(Fail { status, code, message });
    }
    Err(fail(1, format!("unexpected answer opcode {opcode}")))
}

fn run(opts: &Opts) -> Result<(String, Value), Fail> {
    let req = cli::request(&opts.cmd, 1, now_ms()).map_err(|m| fail(2, m))?;
    let hdr = wire::header(&req).map_err(|_| fail(2, "internal: no header"))?;
    let answer = exchange(&opts.socket, &req)?;
    let expect = match hdr.opcode.get() {
        opcodes::ASHW => opcodes::AINF,
        opcodes::ASTS => opcodes::ASTT,
        _ => opcodes::AREP,
    };
    check(&answer.last, expect)?;
    cli::render(&opts.cmd, &answer.parts, &answer.last).map_err(|m| fail(1, m))
}

fn main() -> ExitCode {
    let opts = match cli::parse(std::env::args().skip(1).collect()) {
        Ok(Some(o)) => o,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            // The whole usage for a command line that is not one; a value refused says only why.
            let syntax = ["no command", "unknown command", "unknown option", "needs a value", "does not go with"];
            if syntax.iter().any(|w| e.contains(w)) {
                eprintln!("sottoctl: {e}\n{}", cli::USAGE);
            } else {
                eprintln!("sottoctl: {e} (sottoctl --help)");
            }
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok((text, value)) => {
            if opts.json {
                println!("{value}");
            } else {
                println!("{text}");
            }
            ExitCode::SUCCESS
        }
        Err(f) => {
            if opts.json {
                println!("{}", json!({"ok": false, "code": f.code, "message": f.message}));
            }
            eprintln!("sottoctl: {}", f.message);
            ExitCode::from(f.status)
        }
    }
}
