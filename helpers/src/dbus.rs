//! A minimal, blocking D-Bus client: enough to ask a container's system
//! bus whether it answers, whether systemd is on it and what state a unit
//! is in, without spawning `busctl` (a few hundred microseconds instead of
//! tens of milliseconds); and, for the `sdme` command line, calls with
//! typed arguments (arrays, structs, variants), whole replies and the
//! signals that arrive in between (systemd's JobRemoved).
//!
//! The peer is a bus inside a container we do not trust: every length is
//! bounded, every read has a deadline, nothing is trusted to be well formed.
//!
//! Wire format: D-Bus specification, "Message Protocol" (little endian
//! written; both endians read).
//!
//! Hand-written rather than zbus: `sdme-boot-wait` is a small static binary
//! that makes three blocking calls; zbus, even through its blocking API,
//! runs an async executor and brings dozens of crates, and here every
//! bound on the hostile peer stays in view. Descriptor passing, which
//! `sdme exec` needs, costs one sendmsg(2) and one line of the
//! authentication here; and `sdme exec` authenticates with a socket that
//! a child connected from inside the guest's user namespace, which this
//! client takes as it is (a UnixStream).
//!
//! File descriptors (`sdme exec` hands its stdin, stdout and stderr to a
//! transient unit of the guest, as `systemd-run --pipe` does): only sent,
//! never received. The connection asks for them in the authentication
//! (NEGOTIATE_UNIX_FD, [`Conn::handshake_unix_fd`]); a [`Value::Fd`] is
//! written as type `h`, an index into the message's descriptors, which
//! travel with its first byte as SCM_RIGHTS ancillary data, their number
//! in the UNIX_FDS header field. Received messages that carry descriptors
//! are refused by the bus on a connection that did not negotiate them,
//! and a `h` read back is only its index (`U32`).

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// Largest message we accept (our replies are tiny; signals may arrive).
const MAX_MESSAGE: usize = 1 << 20;
const MAX_AUTH_LINE: usize = 512;
/// Most descriptors sent with one message (the kernel's SCM_MAX_FD is 253).
const MAX_FDS: usize = 16;

#[derive(Debug)]
pub enum Error {
    Io(std::io::Error),
    /// The peer sent something we do not understand.
    Protocol(String),
    /// The bus refused our authentication.
    Auth(String),
    /// A D-Bus error reply: name and message.
    Reply(String, String),
    Timeout,
    /// A signal interrupted a wait and the connection's interrupt check
    /// said to give up (Ctrl+C).
    Interrupted,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Io(e) => write!(f, "{e}"),
            Error::Protocol(s) => write!(f, "protocol error: {s}"),
            Error::Auth(s) => write!(f, "authentication refused: {s}"),
            Error::Reply(n, m) if m.is_empty() => write!(f, "{n}"),
            Error::Reply(n, m) => write!(f, "{n}: {m}"),
            Error::Timeout => write!(f, "no answer in time"),
            Error::Interrupted => write!(f, "interrupted"),
        }
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        if matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ) {
            Error::Timeout
        } else {
            Error::Io(e)
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// A D-Bus value. Read: a variant is replaced by its content, `y`, `n`,
/// `q`, `u` and `h` are `U32`, `i` is `I32`, `x` is `I64`, `t` and `d`
/// (its bits) are `U64`, an array of bytes is `Bytes`. Written: each type
/// takes the variant of its own name (`y` a `U32` below 256), and a
/// variant is `Variant(signature, value)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Str(String),
    Bool(bool),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    Bytes(Vec<u8>),
    /// An array's elements (a dict: its entries, each a `Struct`).
    Array(Vec<Value>),
    /// A struct's or dict entry's fields.
    Struct(Vec<Value>),
    /// Only written: a variant holding a value of the signature.
    Variant(String, Box<Value>),
    /// Only written, as `h`: a file descriptor of ours, sent with the
    /// message (it stays open here).
    Fd(RawFd),
}

/// Most arrays, and most structs (or dict entries), nested in one another.
const MAX_ARRAY_DEPTH: u32 = 32;
const MAX_STRUCT_DEPTH: u32 = 32;
/// Most containers of any kind, variants included, nested in one another
/// (the specification's 64: a hostile bus could otherwise nest variants
/// until our recursion overflows the stack).
const MAX_TOTAL_DEPTH: u32 = 64;

/// How deep the value being read sits in containers.
#[derive(Clone, Copy, Default)]
struct Depth {
    arrays: u32,
    structs: u32,
    total: u32,
}

impl Depth {
    fn enter(self, kind: u8) -> std::result::Result<Depth, String> {
        let mut d = self;
        d.total += 1;
        match kind {
            b'a' => d.arrays += 1,
            b'(' | b'{' => d.structs += 1,
            _ => {}
        }
        if d.arrays > MAX_ARRAY_DEPTH {
            return Err(format!("arrays nested deeper than {MAX_ARRAY_DEPTH}"));
        }
        if d.structs > MAX_STRUCT_DEPTH {
            return Err(format!("structs nested deeper than {MAX_STRUCT_DEPTH}"));
        }
        if d.total > MAX_TOTAL_DEPTH {
            return Err(format!("containers nested deeper than {MAX_TOTAL_DEPTH}"));
        }
        Ok(d)
    }
}

/// A parsed single complete type. Each value read walks this tree once,
/// so hostile signatures cost time in proportion to the bytes they describe.
#[derive(Debug)]
enum Type {
    Basic(u8),
    Variant,
    Array(Box<Type>),
    /// A struct or dict entry and its fields.
    Struct(Vec<Type>),
}

impl Type {
    /// Parse the single complete type at the start of `sig`, to be read at
    /// `depth`; returns it and the number of bytes it took.
    fn parse(sig: &[u8], depth: Depth) -> std::result::Result<(Type, usize), String> {
        let Some(&c) = sig.first() else {
            return Err("signature ends inside a type".into());
        };
        match c {
            b'y' | b'b' | b'n' | b'q' | b'i' | b'u' | b'x' | b't' | b'd' | b'h' | b's' | b'o'
            | b'g' => Ok((Type::Basic(c), 1)),
            b'v' => Ok((Type::Variant, 1)),
            b'a' => {
                let (elem, n) = Type::parse(&sig[1..], depth.enter(c)?)?;
                Ok((Type::Array(Box::new(elem)), 1 + n))
            }
            b'(' | b'{' => {
                let close = if c == b'(' { b')' } else { b'}' };
                let inner = depth.enter(c)?;
                let mut n = 1;
                let mut fields = Vec::new();
                while sig.get(n) != Some(&close) {
                    let (t, len) = Type::parse(&sig[n..], inner)?;
                    fields.push(t);
                    n += len;
                }
                if fields.is_empty() || (c == b'{' && fields.len() != 2) {
                    return Err(format!("malformed '{}' in signature", c as char));
                }
                Ok((Type::Struct(fields), n + 1))
            }
            _ => Err(format!("unsupported type '{}'", c as char)),
        }
    }

    /// Parse `sig`, which must be exactly one complete type.
    fn parse_one(sig: &[u8], depth: Depth) -> std::result::Result<Type, String> {
        match Type::parse(sig, depth)? {
            (t, n) if n == sig.len() => Ok(t),
            _ => Err("more than one type where one was expected".into()),
        }
    }

    fn alignment(&self) -> usize {
        match self {
            Type::Basic(b'n' | b'q') => 2,
            Type::Basic(b'b' | b'i' | b'u' | b'h' | b's' | b'o') | Type::Array(_) => 4,
            Type::Basic(b'x' | b't' | b'd') | Type::Struct(_) => 8,
            _ => 1,
        }
    }
}

// ---------------------------------------------------------------- writing

#[derive(Default)]
struct W {
    b: Vec<u8>,
    /// The descriptors `h` values refer to, by index.
    fds: Vec<RawFd>,
}

impl W {
    fn pad(&mut self, a: usize) {
        while self.b.len() % a != 0 {
            self.b.push(0);
        }
    }
    fn u8(&mut self, v: u8) {
        self.b.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.pad(4);
        self.b.extend_from_slice(&v.to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.b.extend_from_slice(s.as_bytes());
        self.b.push(0);
    }
    fn sig(&mut self, s: &str) {
        self.u8(s.len() as u8);
        self.b.extend_from_slice(s.as_bytes());
        self.b.push(0);
    }
    fn u64(&mut self, v: u64) {
        self.pad(8);
        self.b.extend_from_slice(&v.to_le_bytes());
    }

    /// Write `v` as type `t`; a value that does not fit the type is a
    /// programming error, reported rather than sent malformed.
    fn value(&mut self, t: &Type, v: &Value, depth: Depth) -> Result<()> {
        let bad = || {
            Err(Error::Protocol(format!(
                "value {v:?} does not fit type {t:?}"
            )))
        };
        match (t, v) {
            (Type::Basic(b's' | b'o'), Value::Str(s)) => self.str(s),
            (Type::Basic(b'g'), Value::Str(s)) if s.len() < 256 => self.sig(s),
            (Type::Basic(b'b'), Value::Bool(b)) => self.u32(u32::from(*b)),
            (Type::Basic(b'y'), Value::U32(n)) if *n < 256 => self.u8(*n as u8),
            (Type::Basic(b'u'), Value::U32(n)) => self.u32(*n),
            (Type::Basic(b'i'), Value::I32(n)) => self.u32(*n as u32),
            (Type::Basic(b't'), Value::U64(n)) => self.u64(*n),
            (Type::Basic(b'x'), Value::I64(n)) => self.u64(*n as u64),
            (Type::Basic(b'h'), Value::Fd(fd)) if *fd >= 0 => {
                let i = match self.fds.iter().position(|f| f == fd) {
                    Some(i) => i,
                    None if self.fds.len() < MAX_FDS => {
                        self.fds.push(*fd);
                        self.fds.len() - 1
                    }
                    None => {
                        return Err(Error::Protocol(format!("more than {MAX_FDS} descriptors")))
                    }
                };
                self.u32(i as u32);
            }
            (Type::Variant, Value::Variant(sig, inner)) if sig.len() < 256 => {
                let d = depth.enter(b'v').map_err(Error::Protocol)?;
                let it = Type::parse_one(sig.as_bytes(), d).map_err(Error::Protocol)?;
                self.sig(sig);
                self.value(&it, inner, d)?;
            }
            (Type::Array(e), Value::Bytes(b)) if matches!(**e, Type::Basic(b'y')) => {
                self.u32(b.len() as u32);
                self.b.extend_from_slice(b);
            }
            (Type::Array(e), Value::Array(items)) => {
                let d = depth.enter(b'a').map_err(Error::Protocol)?;
                self.u32(0);
                let at = self.b.len() - 4;
                self.pad(e.alignment());
                let start = self.b.len();
                for i in items {
                    self.value(e, i, d)?;
                }
                let len = (self.b.len() - start) as u32;
                self.b[at..at + 4].copy_from_slice(&len.to_le_bytes());
            }
            (Type::Struct(fields), Value::Struct(vals)) if fields.len() == vals.len() => {
                let d = depth.enter(b'(').map_err(Error::Protocol)?;
                self.pad(8);
                for (f, x) in fields.iter().zip(vals) {
                    self.value(f, x, d)?;
                }
            }
            _ => return bad(),
        }
        Ok(())
    }
}

/// The body of a message of signature `sig` holding `args`, and the
/// descriptors its `h` values refer to.
fn body(sig: &str, args: &[Value]) -> Result<W> {
    let mut w = W::default();
    let mut rest = sig.as_bytes();
    let mut args = args.iter();
    while !rest.is_empty() {
        let (t, n) = Type::parse(rest, Depth::default()).map_err(Error::Protocol)?;
        let Some(v) = args.next() else {
            return Err(Error::Protocol(format!("too few arguments for '{sig}'")));
        };
        w.value(&t, v, Depth::default())?;
        rest = &rest[n..];
    }
    if args.next().is_some() {
        return Err(Error::Protocol(format!("too many arguments for '{sig}'")));
    }
    Ok(w)
}

/// Build a METHOD_CALL with string arguments only.
pub fn method_call(
    serial: u32,
    dest: &str,
    path: &str,
    iface: &str,
    member: &str,
    args: &[&str],
) -> Vec<u8> {
    let vals: Vec<Value> = args.iter().map(|a| Value::Str(a.to_string())).collect();
    let call = Call {
        dest,
        path,
        iface,
        member,
        sig: &"s".repeat(args.len()),
    };
    // Strings always fit the signature "s...".
    call.message(serial, &vals).unwrap_or_default()
}

/// A method to call: where, and the signature of its arguments.
#[derive(Clone, Copy, Debug)]
pub struct Call<'a> {
    pub dest: &'a str,
    pub path: &'a str,
    pub iface: &'a str,
    pub member: &'a str,
    pub sig: &'a str,
}

impl Call<'_> {
    /// The METHOD_CALL message with `args` (of the signature).
    pub fn message(&self, serial: u32, args: &[Value]) -> Result<Vec<u8>> {
        Ok(self.encode(serial, args)?.0)
    }

    /// The message and the descriptors to send with it.
    fn encode(&self, serial: u32, args: &[Value]) -> Result<(Vec<u8>, Vec<RawFd>)> {
        let body = body(self.sig, args)?;
        let fds = body.fds.clone();
        Ok((header(serial, self, body), fds))
    }
}

fn header(serial: u32, c: &Call, body: W) -> Vec<u8> {
    let (dest, path, iface, member, sig) = (c.dest, c.path, c.iface, c.member, c.sig);
    let mut m = W::default();
    m.u8(b'l');
    m.u8(1); // METHOD_CALL
    m.u8(0);
    m.u8(1); // protocol version
    m.u32(body.b.len() as u32);
    m.u32(serial);
    m.u32(0); // header field array length, patched below
    let start = m.b.len();
    let field = |m: &mut W, code: u8, sig: &str, val: &str| {
        m.pad(8);
        m.u8(code);
        m.sig(sig);
        if sig == "g" {
            m.sig(val);
        } else {
            m.str(val);
        }
    };
    field(&mut m, 1, "o", path);
    field(&mut m, 2, "s", iface);
    field(&mut m, 3, "s", member);
    field(&mut m, 6, "s", dest);
    if !sig.is_empty() {
        field(&mut m, 8, "g", sig);
    }
    if !body.fds.is_empty() {
        m.pad(8);
        m.u8(9); // UNIX_FDS
        m.sig("u");
        m.u32(body.fds.len() as u32);
    }
    let len = (m.b.len() - start) as u32;
    m.b[12..16].copy_from_slice(&len.to_le_bytes());
    m.pad(8);
    m.b.extend_from_slice(&body.b);
    m.b
}

// ---------------------------------------------------------------- reading

struct R<'a> {
    b: &'a [u8],
    pos: usize,
    be: bool,
}

impl<'a> R<'a> {
    fn err<T>(&self, what: &str) -> Result<T> {
        Err(Error::Protocol(format!("{what} at offset {}", self.pos)))
    }
    fn align(&mut self, a: usize) -> Result<()> {
        let p = self.pos.div_ceil(a) * a;
        if p > self.b.len() {
            return self.err("truncated padding");
        }
        self.pos = p;
        Ok(())
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        match self.pos.checked_add(n) {
            Some(end) if end <= self.b.len() => {
                let s = &self.b[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            _ => self.err("truncated message"),
        }
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32> {
        self.align(4)?;
        let s = self.take(4)?;
        let a = [s[0], s[1], s[2], s[3]];
        Ok(if self.be {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        })
    }
    /// A string or object path: u32 length, bytes, NUL.
    fn str(&mut self) -> Result<String> {
        let n = self.u32()? as usize;
        self.nul_terminated(n, "string")
    }
    /// A signature: u8 length, bytes, NUL.
    fn sig(&mut self) -> Result<String> {
        let n = self.u8()? as usize;
        self.nul_terminated(n, "signature")
    }
    /// `n` bytes of UTF-8 and the NUL after them.
    fn nul_terminated(&mut self, n: usize, what: &str) -> Result<String> {
        let s = self.take(n)?;
        if self.u8()? != 0 {
            return self.err(&format!("{what} not NUL-terminated"));
        }
        String::from_utf8(s.to_vec()).or_else(|_| self.err(&format!("{what} not UTF-8")))
    }
    /// Read one value of the single complete type `sig`.
    fn value(&mut self, sig: &str) -> Result<Value> {
        let depth = Depth::default();
        let t = Type::parse_one(sig.as_bytes(), depth).or_else(|e| self.err(&e))?;
        self.value_of(&t, depth)
    }
    /// Read one value of type `t`, which sits at `depth`.
    fn value_of(&mut self, t: &Type, depth: Depth) -> Result<Value> {
        match t {
            Type::Basic(b's' | b'o') => Ok(Value::Str(self.str()?)),
            Type::Basic(b'g') => Ok(Value::Str(self.sig()?)),
            Type::Basic(b'b') => Ok(Value::Bool(self.u32()? != 0)),
            Type::Basic(b'y') => Ok(Value::U32(self.u8()? as u32)),
            Type::Basic(c @ (b'n' | b'q')) => {
                self.align(2)?;
                let s = self.take(2)?;
                let a = [s[0], s[1]];
                let v = if self.be {
                    u16::from_be_bytes(a)
                } else {
                    u16::from_le_bytes(a)
                };
                Ok(if *c == b'n' {
                    Value::I32(i32::from(v as i16))
                } else {
                    Value::U32(u32::from(v))
                })
            }
            Type::Basic(c @ (b'x' | b't' | b'd')) => {
                self.align(8)?;
                let s = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(s);
                let v = if self.be {
                    u64::from_be_bytes(a)
                } else {
                    u64::from_le_bytes(a)
                };
                Ok(if *c == b'x' {
                    Value::I64(v as i64)
                } else {
                    Value::U64(v)
                })
            }
            Type::Basic(b'i') => Ok(Value::I32(self.u32()? as i32)),
            Type::Basic(_) => Ok(Value::U32(self.u32()?)),
            Type::Variant => {
                let sig = self.sig()?;
                let inner = depth.enter(b'v').or_else(|e| self.err(&e))?;
                let t = Type::parse_one(sig.as_bytes(), inner).or_else(|e| self.err(&e))?;
                self.value_of(&t, inner)
            }
            Type::Array(elem) => {
                let len = self.u32()? as usize;
                self.align(elem.alignment())?;
                let end = match self.pos.checked_add(len) {
                    Some(end) if end <= self.b.len() => end,
                    _ => return self.err("array past the end"),
                };
                if matches!(**elem, Type::Basic(b'y')) {
                    let n = end - self.pos;
                    return Ok(Value::Bytes(self.take(n)?.to_vec()));
                }
                // Nesting was checked when the type was parsed.
                let inner = depth.enter(b'a').or_else(|e| self.err(&e))?;
                // Every element takes at least one byte, so this ends; the
                // message's bound bounds the elements kept.
                let mut items = Vec::new();
                while self.pos < end {
                    items.push(self.value_of(elem, inner)?);
                }
                if self.pos != end {
                    return self.err("array elements overrun its length");
                }
                Ok(Value::Array(items))
            }
            Type::Struct(fields) => {
                self.align(8)?;
                let inner = depth.enter(b'(').or_else(|e| self.err(&e))?;
                let mut vals = Vec::with_capacity(fields.len());
                for f in fields {
                    vals.push(self.value_of(f, inner)?);
                }
                Ok(Value::Struct(vals))
            }
        }
    }
}

/// A parsed message (only what we need).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub kind: u8,
    pub reply_serial: Option<u32>,
    pub error_name: Option<String>,
    pub signature: String,
    /// PATH, INTERFACE and MEMBER (signals and calls); empty if absent.
    pub path: String,
    pub interface: String,
    pub member: String,
    /// UNIX_FDS: how many descriptors came with it (0 when absent).
    pub unix_fds: u32,
    /// The body's values.
    pub args: Vec<Value>,
}

/// Total length of the message whose first 16 bytes are `head`.
pub fn message_len(head: &[u8; 16]) -> Result<usize> {
    let be = match head[0] {
        b'l' => false,
        b'B' => true,
        _ => return Err(Error::Protocol("bad endianness byte".into())),
    };
    let rd = |o: usize| {
        let a = [head[o], head[o + 1], head[o + 2], head[o + 3]];
        (if be {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        }) as usize
    };
    let body = rd(4);
    let fields = rd(12);
    let total = (16usize + fields).div_ceil(8) * 8 + body;
    if body > MAX_MESSAGE || fields > MAX_MESSAGE || total > MAX_MESSAGE {
        return Err(Error::Protocol(format!(
            "message too large ({total} bytes)"
        )));
    }
    Ok(total)
}

/// Parse a complete message.
pub fn parse_message(b: &[u8]) -> Result<Message> {
    if b.len() < 16 {
        return Err(Error::Protocol("short message".into()));
    }
    let be = b[0] == b'B';
    let mut r = R { b, pos: 1, be };
    let kind = r.u8()?;
    let _flags = r.u8()?;
    if r.u8()? != 1 {
        return r.err("unsupported protocol version");
    }
    let body_len = r.u32()? as usize;
    let _serial = r.u32()?;
    let fields_len = r.u32()? as usize;
    let fields_end = 16 + fields_len;
    if fields_end > b.len() {
        return r.err("header fields past the end");
    }
    let mut msg = Message {
        kind,
        reply_serial: None,
        error_name: None,
        signature: String::new(),
        path: String::new(),
        interface: String::new(),
        member: String::new(),
        unix_fds: 0,
        args: Vec::new(),
    };
    while r.pos < fields_end {
        r.align(8)?;
        if r.pos >= fields_end {
            break;
        }
        let code = r.u8()?;
        let sig = r.sig()?;
        let v = r.value(&sig)?;
        match (code, v) {
            (1, Value::Str(s)) => msg.path = s,
            (2, Value::Str(s)) => msg.interface = s,
            (3, Value::Str(s)) => msg.member = s,
            (4, Value::Str(s)) => msg.error_name = Some(s),
            (5, Value::U32(n)) => msg.reply_serial = Some(n),
            (8, Value::Str(s)) => msg.signature = s,
            (9, Value::U32(n)) => msg.unix_fds = n,
            _ => {}
        }
    }
    r.pos = fields_end;
    r.align(8)?;
    let body_start = r.pos;
    if body_start + body_len != b.len() {
        return r.err("body length mismatch");
    }
    let sig = msg.signature.clone();
    let mut rest = sig.as_bytes();
    while !rest.is_empty() {
        let (t, n) = Type::parse(rest, Depth::default()).or_else(|e| r.err(&e))?;
        msg.args.push(r.value_of(&t, Depth::default())?);
        rest = &rest[n..];
    }
    Ok(msg)
}

// ---------------------------------------------------------------- connection

/// An authenticated connection to a bus.
pub struct Conn {
    sock: UnixStream,
    serial: u32,
    /// Signals that arrived while waiting for a reply, oldest first.
    signals: std::collections::VecDeque<Message>,
    /// Asked when a read is interrupted by a signal: true gives up.
    interrupt: Option<fn() -> bool>,
    /// The bus agreed to pass file descriptors (NEGOTIATE_UNIX_FD).
    unix_fd: bool,
    /// Replies to calls sent by [`Conn::call_all`] that came before
    /// their turn.
    replies: Vec<Message>,
}

impl std::os::fd::AsRawFd for Conn {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.sock.as_raw_fd()
    }
}

/// Most signals kept while waiting for a reply (the oldest go first).
const MAX_QUEUED_SIGNALS: usize = 4096;
/// Most replies kept for calls of [`Conn::call_all`] not yet asked for.
const MAX_PENDING: usize = 64;

/// sendmsg(2) of `msg` with `fds` as SCM_RIGHTS; returns the bytes sent
/// (at least one: the descriptors go with the first byte).
fn send_with_fds(sock: RawFd, msg: &[u8], fds: &[RawFd]) -> Result<usize> {
    let payload = std::mem::size_of_val(fds);
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(payload as u32) } as usize;
    // u64 elements: the control buffer must be aligned for cmsghdr.
    let mut control = vec![0u64; space.div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: msg.as_ptr() as *mut libc::c_void,
        iov_len: msg.len(),
    };
    // SAFETY: zeroed msghdr is valid; the pointers set below outlive the
    // call; CMSG_FIRSTHDR points into `control`, which has room for one
    // header and `payload` bytes (CMSG_SPACE).
    let n = unsafe {
        let mut mh: libc::msghdr = std::mem::zeroed();
        mh.msg_iov = &mut iov;
        mh.msg_iovlen = 1;
        mh.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        mh.msg_controllen = space as _;
        let cm = libc::CMSG_FIRSTHDR(&mh);
        (*cm).cmsg_level = libc::SOL_SOCKET;
        (*cm).cmsg_type = libc::SCM_RIGHTS;
        (*cm).cmsg_len = libc::CMSG_LEN(payload as u32) as _;
        std::ptr::copy_nonoverlapping(fds.as_ptr() as *const u8, libc::CMSG_DATA(cm), payload);
        libc::sendmsg(sock, &mh, libc::MSG_NOSIGNAL)
    };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::Interrupted {
            return send_with_fds(sock, msg, fds);
        }
        return Err(e.into());
    }
    Ok(n as usize)
}

fn remaining(deadline: Instant) -> Result<Duration> {
    let now = Instant::now();
    if now >= deadline {
        return Err(Error::Timeout);
    }
    Ok((deadline - now).max(Duration::from_millis(1)))
}

impl Conn {
    /// Connect to the socket at `path`, authenticate (SASL EXTERNAL with
    /// the credentials the kernel passes, so it also works when our uid is
    /// mapped differently inside the container) and say Hello.
    pub fn connect(path: &std::path::Path, deadline: Instant) -> Result<Conn> {
        let sock = UnixStream::connect(path)?;
        Conn::handshake(sock, deadline)
    }

    pub fn handshake(sock: UnixStream, deadline: Instant) -> Result<Conn> {
        Conn::handshake_with(sock, false, deadline)
    }

    /// [`Conn::handshake`], also asking the bus to pass file descriptors
    /// (an error if it does not agree).
    pub fn handshake_unix_fd(sock: UnixStream, deadline: Instant) -> Result<Conn> {
        Conn::handshake_with(sock, true, deadline)
    }

    fn handshake_with(sock: UnixStream, unix_fd: bool, deadline: Instant) -> Result<Conn> {
        let mut c = Conn {
            sock,
            serial: 0,
            signals: std::collections::VecDeque::new(),
            interrupt: None,
            unix_fd: false,
            replies: Vec::new(),
        };
        c.sock.set_write_timeout(Some(remaining(deadline)?))?;
        c.sock.write_all(b"\0AUTH EXTERNAL\r\n")?;
        let mut line = c.read_line(deadline)?;
        if line.starts_with("DATA") {
            c.sock.write_all(b"DATA\r\n")?;
            line = c.read_line(deadline)?;
        }
        if !line.starts_with("OK ") {
            return Err(Error::Auth(line));
        }
        if unix_fd {
            c.sock.write_all(b"NEGOTIATE_UNIX_FD\r\n")?;
            let line = c.read_line(deadline)?;
            if line != "AGREE_UNIX_FD" {
                return Err(Error::Auth(format!("file descriptor passing: {line}")));
            }
            c.unix_fd = true;
        }
        c.sock.write_all(b"BEGIN\r\n")?;
        c.call(
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "Hello",
            &[],
            deadline,
        )?;
        Ok(c)
    }

    fn read_exact(&mut self, buf: &mut [u8], deadline: Instant) -> Result<()> {
        let mut got = 0;
        while got < buf.len() {
            if self.interrupt.is_some_and(|f| f()) {
                return Err(Error::Interrupted);
            }
            self.sock.set_read_timeout(Some(remaining(deadline)?))?;
            match self.sock.read(&mut buf[got..]) {
                Ok(0) => {
                    return Err(Error::Io(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "connection closed by the bus",
                    )))
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                    if self.interrupt.is_some_and(|f| f()) {
                        return Err(Error::Interrupted);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// One auth line, read byte by byte (the lines are short and the
    /// binary protocol starts right after the last one).
    fn read_line(&mut self, deadline: Instant) -> Result<String> {
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        loop {
            self.read_exact(&mut b, deadline)?;
            if b[0] == b'\n' {
                break;
            }
            line.push(b[0]);
            if line.len() > MAX_AUTH_LINE {
                return Err(Error::Protocol("authentication line too long".into()));
            }
        }
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        Ok(String::from_utf8_lossy(&line).into_owned())
    }

    fn read_message(&mut self, deadline: Instant) -> Result<Message> {
        let mut head = [0u8; 16];
        self.read_exact(&mut head, deadline)?;
        let total = message_len(&head)?;
        let mut buf = vec![0u8; total];
        buf[..16].copy_from_slice(&head);
        self.read_exact(&mut buf[16..], deadline)?;
        parse_message(&buf)
    }

    /// Reads interrupted by a signal (EINTR: a handler installed without
    /// SA_RESTART) ask `f`; when it says true the wait ends with
    /// [`Error::Interrupted`].
    pub fn set_interrupt(&mut self, f: fn() -> bool) {
        self.interrupt = Some(f);
    }

    /// Call a method with string arguments and return the reply's values.
    pub fn call(
        &mut self,
        dest: &str,
        path: &str,
        iface: &str,
        member: &str,
        args: &[&str],
        deadline: Instant,
    ) -> Result<Vec<Value>> {
        let vals: Vec<Value> = args.iter().map(|a| Value::Str(a.to_string())).collect();
        let sig = "s".repeat(args.len());
        let call = Call {
            dest,
            path,
            iface,
            member,
            sig: &sig,
        };
        self.call_with(&call, &vals, deadline)
    }

    /// The next signal for which `want` is true: one that arrived while a
    /// reply was awaited, else the next read (others are dropped).
    pub fn wait_signal(
        &mut self,
        want: impl Fn(&Message) -> bool,
        deadline: Instant,
    ) -> Result<Message> {
        if let Some(i) = self.signals.iter().position(&want) {
            if let Some(m) = self.signals.remove(i) {
                return Ok(m);
            }
        }
        self.signals.clear();
        loop {
            let m = self.read_message(deadline)?;
            if m.kind == 4 && want(&m) {
                return Ok(m);
            }
        }
    }

    /// Call `call` with `args` (of its signature) and return the reply's
    /// values; signals read meanwhile are kept for [`Conn::wait_signal`].
    pub fn call_with(
        &mut self,
        call: &Call,
        args: &[Value],
        deadline: Instant,
    ) -> Result<Vec<Value>> {
        let serial = self.send(call, args, deadline)?;
        self.reply(serial, deadline)
    }

    /// Send the calls one after the other without waiting, then wait for
    /// every reply: one round trip for all. The replies' values in the
    /// calls' order; the first error reply is the error.
    pub fn call_all(
        &mut self,
        calls: &[(Call, Vec<Value>)],
        deadline: Instant,
    ) -> Result<Vec<Vec<Value>>> {
        let mut serials = Vec::with_capacity(calls.len());
        for (c, args) in calls {
            serials.push(self.send(c, args, deadline)?);
        }
        let mut out = Vec::with_capacity(calls.len());
        for s in serials {
            // Replies come in the order of the calls only per destination:
            // the ones for later serials read meanwhile are kept.
            out.push(self.reply(s, deadline));
        }
        out.into_iter().collect()
    }

    /// Write one METHOD_CALL (and its descriptors); returns its serial.
    fn send(&mut self, call: &Call, args: &[Value], deadline: Instant) -> Result<u32> {
        self.serial += 1;
        let (msg, fds) = call.encode(self.serial, args)?;
        if !fds.is_empty() && !self.unix_fd {
            return Err(Error::Protocol(
                "descriptors to send on a connection that did not negotiate them".into(),
            ));
        }
        self.sock.set_write_timeout(Some(remaining(deadline)?))?;
        let sent = if fds.is_empty() {
            0
        } else {
            send_with_fds(self.sock.as_raw_fd(), &msg, &fds)?
        };
        self.sock.write_all(&msg[sent..])?;
        Ok(self.serial)
    }

    /// The reply to `serial`: from the replies kept, else read (signals
    /// are kept, replies to other serials of ours kept for their turn).
    fn reply(&mut self, serial: u32, deadline: Instant) -> Result<Vec<Value>> {
        let m = match self
            .replies
            .iter()
            .position(|m| m.reply_serial == Some(serial))
        {
            Some(i) => self.replies.swap_remove(i),
            None => loop {
                let m = self.read_message(deadline)?;
                match m.reply_serial {
                    Some(s) if s == serial => break m,
                    // A later call's (of call_all): kept for its turn.
                    Some(s)
                        if s > serial && s <= self.serial && self.replies.len() < MAX_PENDING =>
                    {
                        self.replies.push(m)
                    }
                    _ if m.kind == 4 => self.keep_signal(m),
                    _ => {}
                }
            },
        };
        match m.kind {
            2 => Ok(m.args),
            3 => {
                let text = match m.args.first() {
                    Some(Value::Str(s)) => s.clone(),
                    _ => String::new(),
                };
                Err(Error::Reply(m.error_name.unwrap_or_default(), text))
            }
            k => Err(Error::Protocol(format!("unexpected message type {k}"))),
        }
    }

    fn keep_signal(&mut self, m: Message) {
        if self.signals.len() >= MAX_QUEUED_SIGNALS {
            self.signals.pop_front();
        }
        self.signals.push_back(m);
    }

    /// The next signal, in the order the bus sent them: the oldest kept
    /// while a reply was awaited, else the next one read.
    pub fn next_signal(&mut self, deadline: Instant) -> Result<Message> {
        if let Some(m) = self.signals.pop_front() {
            return Ok(m);
        }
        loop {
            let m = self.read_message(deadline)?;
            if m.kind == 4 {
                return Ok(m);
            }
        }
    }

    /// `org.freedesktop.DBus.NameHasOwner`.
    pub fn name_has_owner(&mut self, name: &str, deadline: Instant) -> Result<bool> {
        match self
            .call(
                "org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus",
                "NameHasOwner",
                &[name],
                deadline,
            )?
            .first()
        {
            Some(Value::Bool(b)) => Ok(*b),
            _ => Err(Error::Protocol(
                "NameHasOwner did not return a boolean".into(),
            )),
        }
    }

    /// systemd's view of a unit: (LoadState, ActiveState, SubState).
    pub fn unit_state(
        &mut self,
        unit: &str,
        deadline: Instant,
    ) -> Result<(String, String, String)> {
        let path = match self
            .call(
                "org.freedesktop.systemd1",
                "/org/freedesktop/systemd1",
                "org.freedesktop.systemd1.Manager",
                "LoadUnit",
                &[unit],
                deadline,
            )?
            .first()
        {
            Some(Value::Str(p)) => p.clone(),
            _ => {
                return Err(Error::Protocol(
                    "LoadUnit did not return an object path".into(),
                ))
            }
        };
        let mut get = |prop: &str| -> Result<String> {
            match self
                .call(
                    "org.freedesktop.systemd1",
                    &path,
                    "org.freedesktop.DBus.Properties",
                    "Get",
                    &["org.freedesktop.systemd1.Unit", prop],
                    deadline,
                )?
                .first()
            {
                Some(Value::Str(s)) => Ok(s.clone()),
                _ => Err(Error::Protocol(format!("property {prop} is not a string"))),
            }
        };
        Ok((get("LoadState")?, get("ActiveState")?, get("SubState")?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::FromRawFd;

    #[test]
    fn strings_and_signatures_must_end_in_nul_and_be_utf8() {
        let msg = |r: Result<String>| match r {
            Err(Error::Protocol(m)) => m,
            other => panic!("{other:?}"),
        };
        let le = |b| R {
            b,
            pos: 0,
            be: false,
        };
        assert_eq!(le(&[2, 0, 0, 0, b'h', b'i', 0]).str().unwrap(), "hi");
        let e = msg(le(&[2, 0, 0, 0, b'h', b'i', b'!']).str());
        assert_eq!(e, "string not NUL-terminated at offset 7");
        let e = msg(le(&[1, 0xff, 0]).sig());
        assert_eq!(e, "signature not UTF-8 at offset 3");
        let e = msg(le(&[1, b's', b'x']).sig());
        assert_eq!(e, "signature not NUL-terminated at offset 3");
    }

    #[test]
    fn call_round_trips_through_the_parser() {
        let m = method_call(
            7,
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "NameHasOwner",
            &["org.freedesktop.systemd1"],
        );
        let mut head = [0u8; 16];
        head.copy_from_slice(&m[..16]);
        assert_eq!(message_len(&head).unwrap(), m.len());
        let p = parse_message(&m).unwrap();
        assert_eq!(p.kind, 1);
        assert_eq!(p.signature, "s");
        assert_eq!(p.args, vec![Value::Str("org.freedesktop.systemd1".into())]);
    }

    /// A reply as dbus-daemon would send it: big endian, with a variant.
    #[test]
    fn parses_big_endian_variant_reply() {
        let mut b: Vec<u8> = vec![b'B', 2, 1, 1];
        let body: Vec<u8> = {
            // v -> sig "s", pad to 4, u32 len, "active\0"
            let mut v = vec![1, b's', 0, 0];
            v.extend_from_slice(&6u32.to_be_bytes());
            v.extend_from_slice(b"active\0");
            v
        };
        b.extend_from_slice(&(body.len() as u32).to_be_bytes());
        b.extend_from_slice(&9u32.to_be_bytes());
        let mut fields = Vec::new();
        // REPLY_SERIAL (5) u 3
        fields.extend_from_slice(&[5, 1, b'u', 0]);
        fields.extend_from_slice(&3u32.to_be_bytes());
        // SIGNATURE (8) g "v"
        fields.extend_from_slice(&[8, 1, b'g', 0, 1, b'v', 0]);
        b.extend_from_slice(&(fields.len() as u32).to_be_bytes());
        b.extend_from_slice(&fields);
        while b.len() % 8 != 0 {
            b.push(0);
        }
        b.extend_from_slice(&body);
        let m = parse_message(&b).unwrap();
        assert_eq!(m.reply_serial, Some(3));
        assert_eq!(m.args, vec![Value::Str("active".into())]);
    }

    #[test]
    fn refuses_garbage_without_panicking() {
        let mut head = [0u8; 16];
        head[0] = b'x';
        assert!(message_len(&head).is_err());
        head[0] = b'l';
        head[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(message_len(&head).is_err());
        for n in 0..64 {
            let junk: Vec<u8> = (0..n).map(|i| (i * 37 % 251) as u8).collect();
            let _ = parse_message(&junk);
        }
        // Truncated string length.
        let mut m = method_call(1, "a", "/", "i", "m", &["x"]);
        let n = m.len();
        m.truncate(n - 2);
        assert!(parse_message(&m).is_err());
    }

    /// A METHOD_RETURN to serial 1 whose body has signature `sig`.
    fn reply(sig: &str, body: &[u8]) -> Vec<u8> {
        let mut w = W {
            b: vec![b'l', 2, 0, 1],
            ..W::default()
        };
        w.u32(body.len() as u32);
        w.u32(9);
        w.u32(0);
        let start = w.b.len();
        w.pad(8);
        w.u8(5);
        w.sig("u");
        w.u32(1);
        w.pad(8);
        w.u8(8);
        w.sig("g");
        w.sig(sig);
        let len = (w.b.len() - start) as u32;
        w.b[12..16].copy_from_slice(&len.to_le_bytes());
        w.pad(8);
        w.b.extend_from_slice(body);
        w.b
    }

    /// Write one value of the complete type at the start of `t` (arrays
    /// with one element, bytes 7); returns the bytes of `t` it used.
    fn build(w: &mut W, t: &[u8]) -> usize {
        match t[0] {
            b'a' => {
                w.u32(0);
                let at = w.b.len() - 4;
                w.pad(match t[1] {
                    b'(' | b'{' => 8,
                    b's' | b'a' => 4,
                    _ => 1,
                });
                let start = w.b.len();
                let n = build(w, &t[1..]);
                let len = (w.b.len() - start) as u32;
                w.b[at..at + 4].copy_from_slice(&len.to_le_bytes());
                1 + n
            }
            b'(' | b'{' => {
                w.pad(8);
                let mut n = 1;
                while t[n] != b')' && t[n] != b'}' {
                    n += build(w, &t[n..]);
                }
                n + 1
            }
            b'y' => {
                w.u8(7);
                1
            }
            b's' => {
                w.str("k");
                1
            }
            c => panic!("no builder for {}", c as char),
        }
    }

    /// A reply whose body is one variant holding a value of type `inner`.
    fn variant_of(inner: &str) -> Vec<u8> {
        let mut w = W::default();
        w.sig(inner);
        build(&mut w, inner.as_bytes());
        reply("v", &w.b)
    }

    /// A reply whose body is `n` variants, each in the one before, around
    /// the string "deep".
    fn variants(n: usize) -> Vec<u8> {
        let mut w = W::default();
        for _ in 1..n {
            w.sig("v");
        }
        w.sig("s");
        w.str("deep");
        reply("v", &w.b)
    }

    fn nesting_error(m: &[u8]) -> String {
        match parse_message(m) {
            Err(Error::Protocol(e)) if e.contains("nested deeper than") => e,
            other => panic!("expected a nesting error, got {other:?}"),
        }
    }

    #[test]
    fn variants_nest_at_most_64_deep() {
        let m = parse_message(&variants(64)).unwrap();
        assert_eq!(m.args, vec![Value::Str("deep".into())]);
        let e = nesting_error(&variants(65));
        assert!(e.starts_with("containers nested deeper than 64"), "{e}");
        // What used to overflow the stack: a message full of variants.
        let e = nesting_error(&variants(300_000));
        assert!(e.starts_with("containers nested deeper than 64"), "{e}");
    }

    #[test]
    fn arrays_and_structs_nest_as_the_specification_allows() {
        let nest = |arrays: usize, structs: usize| {
            format!(
                "{}{}y{}",
                "a".repeat(arrays),
                "(".repeat(structs),
                ")".repeat(structs)
            )
        };
        // The variant counts: 1 + 31 + 32 = 64 containers.
        let m = parse_message(&variant_of(&nest(31, 32))).unwrap();
        assert!(matches!(m.args[..], [Value::Array(_)]), "{:?}", m.args);
        assert!(parse_message(&variant_of(&nest(32, 0))).is_ok());
        let e = nesting_error(&variant_of(&nest(32, 32)));
        assert!(e.starts_with("containers nested deeper than 64"), "{e}");
        let e = nesting_error(&variant_of(&nest(33, 0)));
        assert!(e.starts_with("arrays nested deeper than 32"), "{e}");
        let e = nesting_error(&variant_of(&nest(0, 33)));
        assert!(e.starts_with("structs nested deeper than 32"), "{e}");
        // Dict entries count as structs; arrays inside variants inside
        // arrays add up.
        let e = nesting_error(&variant_of(&format!("a{{s{}}}", nest(0, 32))));
        assert!(e.starts_with("structs nested deeper than 32"), "{e}");
        let mut w = W::default();
        w.sig("av");
        w.u32(0);
        let at = w.b.len() - 4;
        let start = w.b.len();
        // 32 arrays alone are fine, but here they sit in a 33rd.
        w.sig(&nest(32, 0));
        build(&mut w, nest(32, 0).as_bytes());
        let len = (w.b.len() - start) as u32;
        w.b[at..at + 4].copy_from_slice(&len.to_le_bytes());
        let e = nesting_error(&reply("v", &w.b));
        assert!(e.starts_with("arrays nested deeper than 32"), "{e}");
    }

    #[test]
    fn arrays_must_hold_whole_elements() {
        // One element of "(yy)" is 2 bytes; a length of 3 cuts the next.
        let mut w = W::default();
        w.sig("a(yy)");
        w.u32(3);
        w.pad(8);
        w.b.extend_from_slice(&[1, 2, 0, 0, 0, 0, 0, 0, 3, 4]);
        match parse_message(&reply("v", &w.b)) {
            Err(Error::Protocol(e)) => assert!(e.starts_with("array"), "{e}"),
            other => panic!("{other:?}"),
        }
    }

    /// What SetUnitProperties and GetMachineAddresses carry: arrays of
    /// structs, variants, 64-bit numbers and byte arrays survive a trip
    /// through the writer and the reader.
    #[test]
    fn typed_arguments_round_trip() {
        let props = Value::Array(vec![
            Value::Struct(vec![
                Value::Str("MemoryMax".into()),
                Value::Variant("t".into(), Box::new(Value::U64(314_572_800))),
            ]),
            Value::Struct(vec![
                Value::Str("CPUWeight".into()),
                Value::Variant("t".into(), Box::new(Value::U64(u64::MAX))),
            ]),
        ]);
        let addrs = Value::Array(vec![Value::Struct(vec![
            Value::I32(-2),
            Value::Bytes(vec![10, 0, 0, 1]),
        ])]);
        let args = [
            Value::Str("sdme-a.service".into()),
            Value::Bool(true),
            props,
            addrs,
        ];
        let call = Call {
            dest: "d",
            path: "/p",
            iface: "i",
            member: "m",
            sig: "sba(sv)a(iay)",
        };
        let m = parse_message(&call.message(3, &args).unwrap()).unwrap();
        assert_eq!(m.member, "m");
        assert_eq!(m.path, "/p");
        // Variants come back as their content.
        let Value::Array(p) = &m.args[2] else {
            panic!("{:?}", m.args)
        };
        assert_eq!(
            p[0],
            Value::Struct(vec![
                Value::Str("MemoryMax".into()),
                Value::U64(314_572_800)
            ])
        );
        assert_eq!(m.args[3], args[3]);
        assert_eq!(m.args[..2], args[..2]);
        // A value of the wrong type is refused, not sent.
        let e = call.message(3, &[Value::U32(1)]).unwrap_err();
        assert!(e.to_string().contains("does not fit"), "{e}");
        assert!(call.message(3, &args[..3]).is_err());
    }

    /// A fake bus on a socketpair: auth, Hello, NameHasOwner.
    #[test]
    fn talks_to_a_fake_bus() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let server = std::thread::spawn(move || {
            let mut buf = [0u8; 256];
            let mut got = Vec::new();
            while !got.ends_with(b"AUTH EXTERNAL\r\n") {
                let n = b.read(&mut buf).unwrap();
                got.extend_from_slice(&buf[..n]);
            }
            b.write_all(b"DATA\r\n").unwrap();
            got.clear();
            while !got.ends_with(b"DATA\r\n") {
                let n = b.read(&mut buf).unwrap();
                got.extend_from_slice(&buf[..n]);
            }
            b.write_all(b"OK 1234\r\n").unwrap();
            let mut begin = [0u8; 7];
            b.read_exact(&mut begin).unwrap();
            assert_eq!(&begin, b"BEGIN\r\n");
            for (serial, body_sig, body) in [
                (1u32, "s", {
                    let mut v = 4u32.to_le_bytes().to_vec();
                    v.extend_from_slice(b":1.1\0");
                    v
                }),
                (2u32, "b", 1u32.to_le_bytes().to_vec()),
            ] {
                let mut head = [0u8; 16];
                b.read_exact(&mut head).unwrap();
                let mut rest = vec![0u8; message_len(&head).unwrap() - 16];
                b.read_exact(&mut rest).unwrap();
                // A signal first, to be skipped.
                let mut w = W {
                    b: vec![b'l', 4, 0, 1],
                    ..W::default()
                };
                w.u32(0);
                w.u32(100);
                w.u32(0);
                b.write_all(&w.b).unwrap();
                let mut w = W {
                    b: vec![b'l', 2, 0, 1],
                    ..W::default()
                };
                w.u32(body.len() as u32);
                w.u32(200 + serial);
                w.u32(0);
                let start = w.b.len();
                w.pad(8);
                w.u8(5);
                w.sig("u");
                w.u32(serial);
                w.pad(8);
                w.u8(8);
                w.sig("g");
                w.sig(body_sig);
                let len = (w.b.len() - start) as u32;
                w.b[12..16].copy_from_slice(&len.to_le_bytes());
                w.pad(8);
                w.b.extend_from_slice(&body);
                b.write_all(&w.b).unwrap();
            }
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut c = Conn::handshake(a, deadline).unwrap();
        assert!(c
            .name_has_owner("org.freedesktop.systemd1", deadline)
            .unwrap());
        server.join().unwrap();
    }

    /// StartTransientUnit's shape: descriptors as `h` in variants inside
    /// an array of structs are written as indexes (one per descriptor,
    /// reused when repeated), and UNIX_FDS says how many.
    #[test]
    fn descriptors_are_indexes_and_counted() {
        let fd = |name: &str, fd| {
            Value::Struct(vec![
                Value::Str(name.into()),
                Value::Variant("h".into(), Box::new(Value::Fd(fd))),
            ])
        };
        let props = Value::Array(vec![
            fd("StandardInputFileDescriptor", 0),
            fd("StandardOutputFileDescriptor", 1),
            fd("StandardErrorFileDescriptor", 1),
            Value::Struct(vec![
                Value::Str("ExecStart".into()),
                Value::Variant(
                    "a(sasb)".into(),
                    Box::new(Value::Array(vec![Value::Struct(vec![
                        Value::Str("true".into()),
                        Value::Array(vec![Value::Str("true".into())]),
                        Value::Bool(false),
                    ])])),
                ),
            ]),
        ]);
        let call = Call {
            dest: "org.freedesktop.systemd1",
            path: "/org/freedesktop/systemd1",
            iface: "org.freedesktop.systemd1.Manager",
            member: "StartTransientUnit",
            sig: "ssa(sv)a(sa(sv))",
        };
        let args = [
            Value::Str("run-x.service".into()),
            Value::Str("fail".into()),
            props,
            Value::Array(vec![]),
        ];
        let (bytes, fds) = call.encode(1, &args).unwrap();
        assert_eq!(fds, [0, 1]);
        let m = parse_message(&bytes).unwrap();
        assert_eq!(m.unix_fds, 2);
        let Value::Array(p) = &m.args[2] else {
            panic!("{:?}", m.args)
        };
        let idx: Vec<&Value> = p[..3]
            .iter()
            .map(|e| match e {
                Value::Struct(f) => &f[1],
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(idx, [&Value::U32(0), &Value::U32(1), &Value::U32(1)]);
        // Without descriptors there is no UNIX_FDS field.
        let m = parse_message(&method_call(1, "a", "/", "i", "m", &["x"])).unwrap();
        assert_eq!(m.unix_fds, 0);
        // A negative descriptor is refused, not sent.
        let c = Call { sig: "h", ..call };
        assert!(c.encode(1, &[Value::Fd(-1)]).is_err());
        let many: Vec<Value> = (0..=MAX_FDS as i32).map(Value::Fd).collect();
        let c = Call {
            sig: &"h".repeat(many.len()),
            ..call
        };
        assert!(c.encode(1, &many).is_err());
    }

    /// Receive one message and its SCM_RIGHTS descriptors (the bus's side).
    fn recv_with_fds(sock: &UnixStream) -> (Vec<u8>, Vec<RawFd>) {
        let mut buf = vec![0u8; 4096];
        let mut control = [0u64; 16];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        // SAFETY: test code; the buffers outlive the call.
        unsafe {
            let mut mh: libc::msghdr = std::mem::zeroed();
            mh.msg_iov = &mut iov;
            mh.msg_iovlen = 1;
            mh.msg_control = control.as_mut_ptr() as *mut libc::c_void;
            mh.msg_controllen = std::mem::size_of_val(&control) as _;
            let n = libc::recvmsg(sock.as_raw_fd(), &mut mh, 0);
            assert!(n > 0);
            buf.truncate(n as usize);
            let mut fds = Vec::new();
            let cm = libc::CMSG_FIRSTHDR(&mh);
            assert!(!cm.is_null(), "no descriptors came");
            assert_eq!((*cm).cmsg_type, libc::SCM_RIGHTS);
            let count = ((*cm).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / 4;
            let data = libc::CMSG_DATA(cm) as *const RawFd;
            for i in 0..count {
                fds.push(*data.add(i));
            }
            (buf, fds)
        }
    }

    /// The descriptors really travel: the peer writes into the pipe it
    /// got, and we read that from our end.
    #[test]
    fn descriptors_travel_with_the_message() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut c = Conn {
            sock: a,
            serial: 0,
            signals: Default::default(),
            interrupt: None,
            unix_fd: true,
            replies: Vec::new(),
        };
        let (mut rd, wr) = std::io::pipe().unwrap();
        let call = Call {
            dest: "d",
            path: "/p",
            iface: "i",
            member: "m",
            sig: "sh",
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        let args = [Value::Str("x".into()), Value::Fd(wr.as_raw_fd())];
        c.send(&call, &args, deadline).unwrap();
        let (bytes, fds) = recv_with_fds(&b);
        let m = parse_message(&bytes).unwrap();
        assert_eq!((m.unix_fds, fds.len()), (1, 1));
        assert_eq!(m.args[1], Value::U32(0));
        // SAFETY: a descriptor we were just given.
        let mut got = unsafe { std::fs::File::from_raw_fd(fds[0]) };
        got.write_all(b"through").unwrap();
        drop((got, wr));
        let mut s = String::new();
        rd.read_to_string(&mut s).unwrap();
        assert_eq!(s, "through");
        // Without NEGOTIATE_UNIX_FD nothing is sent.
        c.unix_fd = false;
        let e = c.send(&call, &args, deadline).unwrap_err();
        assert!(e.to_string().contains("did not negotiate"), "{e}");
    }

    /// The bus's auth side: reads lines until `until`, answers `answer`.
    fn auth_step(b: &mut UnixStream, until: &[u8], answer: &[u8]) {
        let mut got = Vec::new();
        let mut byte = [0u8; 1];
        while !got.ends_with(until) {
            b.read_exact(&mut byte).unwrap();
            got.push(byte[0]);
        }
        b.write_all(answer).unwrap();
    }

    #[test]
    fn negotiates_descriptor_passing() {
        for agree in [true, false] {
            let (a, mut b) = UnixStream::pair().unwrap();
            let server = std::thread::spawn(move || {
                auth_step(&mut b, b"AUTH EXTERNAL\r\n", b"DATA\r\n");
                auth_step(&mut b, b"DATA\r\n", b"OK 1234\r\n");
                let answer: &[u8] = if agree {
                    b"AGREE_UNIX_FD\r\n"
                } else {
                    b"ERROR\r\n"
                };
                auth_step(&mut b, b"NEGOTIATE_UNIX_FD\r\n", answer);
                if agree {
                    auth_step(&mut b, b"BEGIN\r\n", b"");
                    let mut head = [0u8; 16];
                    b.read_exact(&mut head).unwrap();
                    let mut rest = vec![0u8; message_len(&head).unwrap() - 16];
                    b.read_exact(&mut rest).unwrap();
                    b.write_all(&reply("s", &{
                        let mut w = W::default();
                        w.str(":1.1");
                        w.b
                    }))
                    .unwrap();
                }
            });
            let deadline = Instant::now() + Duration::from_secs(5);
            match Conn::handshake_unix_fd(a, deadline) {
                Ok(c) => assert!(agree && c.unix_fd),
                Err(Error::Auth(e)) => assert!(!agree && e.contains("ERROR"), "{e}"),
                Err(e) => panic!("{e}"),
            }
            server.join().unwrap();
        }
    }

    /// call_all: every call sent before any reply is read; replies that
    /// come out of order (another destination answers first) and signals
    /// in between are kept, and signals come back in the order sent.
    #[test]
    fn calls_in_one_round_trip() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let mut c = Conn {
            sock: a,
            serial: 0,
            signals: Default::default(),
            interrupt: None,
            unix_fd: false,
            replies: Vec::new(),
        };
        let server = std::thread::spawn(move || {
            let mut serials = Vec::new();
            for _ in 0..3 {
                let mut head = [0u8; 16];
                b.read_exact(&mut head).unwrap();
                let mut rest = vec![0u8; message_len(&head).unwrap() - 16];
                b.read_exact(&mut rest).unwrap();
                serials.push(u32::from_le_bytes([head[8], head[9], head[10], head[11]]));
            }
            let answer = |to: u32, n: u32| {
                let mut m = reply("u", &n.to_le_bytes());
                // reply() answers serial 1: patch REPLY_SERIAL's value.
                m[20..24].copy_from_slice(&to.to_le_bytes());
                m
            };
            let signal = |member: &str| {
                let mut w = W {
                    b: vec![b'l', 4, 0, 1],
                    ..W::default()
                };
                w.u32(0);
                w.u32(100);
                w.u32(0);
                let start = w.b.len();
                w.pad(8);
                w.u8(3);
                w.sig("s");
                w.str(member);
                let len = (w.b.len() - start) as u32;
                w.b[12..16].copy_from_slice(&len.to_le_bytes());
                w.pad(8);
                w.b
            };
            b.write_all(&answer(serials[2], 30)).unwrap();
            b.write_all(&signal("First")).unwrap();
            b.write_all(&answer(serials[0], 10)).unwrap();
            b.write_all(&signal("Second")).unwrap();
            b.write_all(&answer(serials[1], 20)).unwrap();
            b.write_all(&signal("Third")).unwrap();
        });
        let call = Call {
            dest: "d",
            path: "/p",
            iface: "i",
            member: "m",
            sig: "",
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        let calls = vec![(call, vec![]), (call, vec![]), (call, vec![])];
        let r = c.call_all(&calls, deadline).unwrap();
        assert_eq!(r, [[Value::U32(10)], [Value::U32(20)], [Value::U32(30)]]);
        server.join().unwrap();
        let order: Vec<String> = (0..3)
            .map(|_| c.next_signal(deadline).unwrap().member)
            .collect();
        assert_eq!(order, ["First", "Second", "Third"]);
    }
}
