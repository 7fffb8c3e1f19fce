//! The plugin's configuration, `/etc/libvirt/qemu-highlander.conf`.
//!
//! libvirt derives the path from the plugin's name (`qemu-highlander.conf`
//! in libvirt's config dir; `libxl-highlander.conf` for libxl) and passes it
//! to drvInit. A missing file means every default. Anything else that is
//! wrong (an unknown key, a key set twice, a value of the wrong type or out
//! of range, a syntax error) fails drvInit with `FILE:LINE:` and the key,
//! which libvirtd logs; libvirt then refuses to start its QEMU driver, so
//! no guest runs with a half-understood configuration.
//!
//! # Syntax (libvirt's own, as in qemu.conf and qemu-sanlock.conf)
//!
//! `key = value`, one per line (or separated by `;`). `#` starts a comment,
//! on its own line or after a value. Values: whole numbers (`5`, `+5`,
//! `-1`), strings in double or single quotes (no escapes; `"""..."""` may
//! span lines), lists `[ v, v ]` (may span lines, not nested). Booleans are `0` or `1`.
//! Unlike libvirt, which silently uses the first of two settings of one
//! key, a repeated key is refused.
//!
//! # Keys
//!
//! | key | type | default | meaning |
//! |---|---|---|---|
//! | `socket` | string, absolute path | `"/run/highlander/highlanderd.sock"` | highlanderd's socket (`socket` in `/etc/highlander/highlanderd.conf`) |
//! | `lockspace` | string | unset: the daemon's first lockspace | highlander lockspace holding the automatic disk leases |
//! | `timeout` | whole seconds, 1..3600 | `60` | how long one daemon request may take before the call fails |
//! | `auto_disk_leases` | 0 / 1 | `1` | 1: every writable disk is leased automatically (shared disks with a shared lease, read-only disks not at all). 0: disks are not leased; only the domain's `<lease>` elements are |
//! | `require_lease_for_disks` | 0 / 1 | `!auto_disk_leases` (1 when `auto_disk_leases = 0`) | with `auto_disk_leases = 0`: refuse to start a domain that has writable, non-shared disks but no `<lease>`. Has no effect when `auto_disk_leases = 1` (every writable disk has a lease then) |
//!
//! `auto_disk_leases` and `require_lease_for_disks` mean what they mean in
//! `qemu-sanlock.conf`, and `require_lease_for_disks` has sanlock's default
//! rule (`!auto_disk_leases`). The one difference is `auto_disk_leases`'s
//! own default: 1 here (highlander exists to lease disks, and needs no host
//! id or lease directory to do so), 0 in sanlock. Whenever the
//! requirement matters (`auto_disk_leases = 0`) it defaults to 1, as in
//! sanlock.
//!
//! Whatever the keys say, a guest never starts unprotected when highlanderd
//! cannot be reached: registering the guest needs the daemon, and fails.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::report::{Failure, Kind};

/// Where libvirt's privileged QEMU driver looks for this file.
pub const DEFAULT_PATH: &str = "/etc/libvirt/qemu-highlander.conf";
/// highlanderd's default socket.
pub const DEFAULT_SOCKET: &str = "/run/highlander/highlanderd.sock";

/// Every key, in the order the docs list them.
pub const KEYS: &[&str] = &["socket", "lockspace", "timeout", "auto_disk_leases", "require_lease_for_disks"];

/// Keys of qemu-sanlock.conf that highlander deliberately has not, and where
/// their job is done instead.
const SANLOCK_ONLY: &[(&str, &str)] = &[
    ("host_id", "the host id is `host_id` in /etc/highlander/highlanderd.conf"),
    ("disk_lease_dir", "highlander keeps disk leases in its lockspace (key `lockspace`), not in lease files"),
    ("io_timeout", "the I/O timeout is stored in the lockspace when it is created (`highlander lockspace init --io-timeout`)"),
    ("user", "who may use highlanderd's socket is set by `group` in /etc/highlander/highlanderd.conf"),
    ("group", "who may use highlanderd's socket is set by `group` in /etc/highlander/highlanderd.conf"),
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The file this came from (named in messages); it may not exist.
    pub file: PathBuf,
    /// highlanderd's socket.
    pub socket: PathBuf,
    /// Lockspace for automatic disk leases; None = the daemon's first lockspace.
    pub lockspace: Option<String>,
    /// How long to wait for the daemon's answer.
    pub timeout: Duration,
    /// Lease every writable disk (true), or only `<lease>` elements (false).
    pub auto_disk_leases: bool,
    /// With `auto_disk_leases` off: refuse domains with writable disks and no `<lease>`.
    pub require_lease_for_disks: bool,
}

impl Config {
    /// Every default, as if `file` did not exist.
    pub fn defaults(file: &Path) -> Config {
        Config {
            file: file.to_owned(),
            socket: PathBuf::from(DEFAULT_SOCKET),
            lockspace: None,
            timeout: Duration::from_secs(60),
            auto_disk_leases: true,
            require_lease_for_disks: false,
        }
    }

    /// Reads `file` (None: libvirt gave no path; the default one is named in
    /// messages but not read). A missing file means defaults.
    pub fn load(file: Option<&Path>) -> Result<Config, Failure> {
        let Some(file) = file else { return Ok(Config::defaults(Path::new(DEFAULT_PATH))) };
        match std::fs::read_to_string(file) {
            Ok(text) => Config::parse(file, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::defaults(file)),
            Err(e) => Err(Failure::new(Kind::ConfigUnsupported, format!("{}: cannot read: {e}", file.display()))),
        }
    }

    pub fn parse(file: &Path, text: &str) -> Result<Config, Failure> {
        let at = |line: usize, why: String| Failure::new(Kind::ConfigUnsupported, format!("{}:{line}: {why}", file.display()));
        let entries = entries(text).map_err(|(line, why)| at(line, why))?;
        let mut config = Config::defaults(file);
        let mut require = None;
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for Entry { key, line, value } in &entries {
            let bad = |why: String| at(*line, why);
            if let Some(first) = seen.insert(key.as_str(), *line) {
                return Err(bad(format!("`{key}` is set twice (first on line {first}); keep one")));
            }
            match key.as_str() {
                "socket" => {
                    let s = string(key, value, "\"/run/highlander/highlanderd.sock\"").map_err(bad)?;
                    if !s.starts_with('/') {
                        return Err(bad(format!("`socket` = {}: must be an absolute path", describe(value))));
                    }
                    config.socket = PathBuf::from(s);
                }
                "lockspace" => {
                    let s = string(key, value, "\"default\"").map_err(bad)?;
                    if s.len() > 64 || !s.chars().all(|c| c.is_ascii_graphic()) {
                        return Err(bad(format!("`lockspace` = {}: a lockspace name is 1 to 64 printable ASCII characters without spaces", describe(value))));
                    }
                    config.lockspace = Some(s);
                }
                "timeout" => {
                    let secs = match value {
                        Value::Int(n) if (1..=3600).contains(n) => *n as u64,
                        _ => return Err(bad(format!("`timeout` = {}: must be a whole number of seconds from 1 to 3600", describe(value)))),
                    };
                    config.timeout = Duration::from_secs(secs);
                }
                "auto_disk_leases" => config.auto_disk_leases = boolean(key, value).map_err(bad)?,
                "require_lease_for_disks" => require = Some(boolean(key, value).map_err(bad)?),
                other => return Err(bad(unknown_key(other))),
            }
        }
        // sanlock's rule: unset means "required exactly when disks are not
        // leased automatically".
        config.require_lease_for_disks = require.unwrap_or(!config.auto_disk_leases);
        Ok(config)
    }
}

fn unknown_key(key: &str) -> String {
    if let Some((_, instead)) = SANLOCK_ONLY.iter().find(|(k, _)| *k == key) {
        return format!("`{key}` is a qemu-sanlock.conf setting that highlander does not use: {instead} (known keys: {})", KEYS.join(", "));
    }
    let hint = KEYS.iter().find(|k| edit_distance(k, key) <= 2).map(|k| format!("; did you mean `{k}`?")).unwrap_or_default();
    format!("unknown key `{key}` (known keys: {}){hint}", KEYS.join(", "))
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

fn string(key: &str, value: &Value, example: &str) -> Result<String, String> {
    match value {
        Value::Str(s) if !s.is_empty() => Ok(s.clone()),
        _ => Err(format!("`{key}` = {}: must be a non-empty quoted string, e.g. {key} = {example}", describe(value))),
    }
}

fn boolean(key: &str, value: &Value) -> Result<bool, String> {
    match value {
        Value::Int(0) => Ok(false),
        Value::Int(1) => Ok(true),
        _ => Err(format!("`{key}` = {}: must be 0 or 1", describe(value))),
    }
}

/// A value in libvirt's conf syntax.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Value {
    Int(i64),
    Str(String),
    List(Vec<Value>),
    /// An unquoted word (`yes`, `/run/x`, `5s`): never valid, kept so the
    /// key's own message can say what it wants instead.
    Bare(String),
}

/// How a value was written, for messages.
fn describe(v: &Value) -> String {
    match v {
        Value::Int(n) => n.to_string(),
        Value::Str(s) => format!("{s:?}"),
        Value::List(items) => format!("[{}]", items.iter().map(describe).collect::<Vec<_>>().join(", ")),
        Value::Bare(w) => format!("{w} (unquoted)"),
    }
}

struct Entry {
    key: String,
    /// 1-based line of the key.
    line: usize,
    value: Value,
}

/// Splits `text` into entries; an error is (line, message).
fn entries(text: &str) -> Result<Vec<Entry>, (usize, String)> {
    let mut p = Parser { s: text.as_bytes(), pos: 0, line: 1 };
    let mut out = Vec::new();
    loop {
        p.skip_blanks(true);
        let Some(c) = p.peek() else { break };
        if c == b'#' {
            p.skip_to_eol();
            continue;
        }
        let line = p.line;
        if !c.is_ascii_alphabetic() {
            return Err((line, format!("expected `key = value`, found {}", p.rest_of_line())));
        }
        let key = p.take_while(|c| c.is_ascii_alphanumeric() || c == b'_');
        p.skip_blanks(false);
        if p.peek() != Some(b'=') {
            return Err((line, format!("expected `=` after `{key}`, found {}", p.rest_of_line())));
        }
        p.pos += 1;
        p.skip_blanks(false);
        let value = p.value(&key)?;
        p.skip_blanks(false);
        if p.peek() == Some(b'#') {
            p.skip_to_eol();
        }
        match p.peek() {
            None | Some(b'\n' | b'\r') => {}
            Some(b';') => p.pos += 1,
            Some(_) => return Err((p.line, format!("`{key}`: unexpected {} after the value", p.rest_of_line()))),
        }
        out.push(Entry { key, line, value });
    }
    Ok(out)
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    line: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn skip_blanks(&mut self, newlines: bool) {
        while let Some(c) = self.peek() {
            match c {
                b' ' | b'\t' => {}
                b'\r' if newlines => {}
                b'\n' if newlines => self.line += 1,
                _ => break,
            }
            self.pos += 1;
        }
    }

    fn skip_to_eol(&mut self) {
        while !matches!(self.peek(), None | Some(b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> String {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.pos]).into_owned()
    }

    /// The rest of the current line, quoted and shortened, for messages.
    fn rest_of_line(&self) -> String {
        let rest = &self.s[self.pos.min(self.s.len())..];
        let end = rest.iter().position(|c| *c == b'\n' || *c == b'\r').unwrap_or(rest.len());
        let text: String = String::from_utf8_lossy(&rest[..end]).trim_end().chars().take(40).collect();
        if text.is_empty() {
            "the end of the line".into()
        } else {
            format!("{text:?}")
        }
    }

    fn value(&mut self, key: &str) -> Result<Value, (usize, String)> {
        let line = self.line;
        let err = |why: &str| (line, format!("`{key}`: {why}"));
        match self.peek() {
            None | Some(b'\n' | b'\r' | b'#' | b';') => Err(err("missing value after `=`")),
            Some(b'"') if self.s[self.pos..].starts_with(b"\"\"\"") => {
                self.pos += 3;
                let start = self.pos;
                while !self.s[self.pos..].starts_with(b"\"\"\"") {
                    match self.peek() {
                        None => return Err(err("string opened with \"\"\" is never closed")),
                        Some(b'\n') => self.line += 1,
                        Some(_) => {}
                    }
                    self.pos += 1;
                }
                let s = String::from_utf8_lossy(&self.s[start..self.pos]).into_owned();
                self.pos += 3;
                Ok(Value::Str(s))
            }
            Some(q @ (b'"' | b'\'')) => {
                self.pos += 1;
                let s = self.take_while(|c| c != q && c != b'\n' && c != b'\r');
                if self.peek() != Some(q) {
                    return Err(err(&format!("unterminated string (it must end with {} on the same line)", q as char)));
                }
                self.pos += 1;
                Ok(Value::Str(s))
            }
            Some(b'[') => {
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    self.skip_blanks(true);
                    match self.peek() {
                        None => return Err(err("list is not closed with `]`")),
                        Some(b']') => break,
                        // Refused before recursing: a file of `[` would overflow the stack.
                        Some(b'[') => return Err(err("a list cannot hold another list (no key takes lists)")),
                        Some(_) => {}
                    }
                    items.push(self.value(key)?);
                    self.skip_blanks(true);
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b']') => break,
                        None => return Err(err("list is not closed with `]`")),
                        Some(_) => return Err((self.line, format!("`{key}`: expected `,` or `]` in the list, found {}", self.rest_of_line()))),
                    }
                }
                self.pos += 1;
                Ok(Value::List(items))
            }
            Some(_) => {
                let word = self.take_while(|c| !matches!(c, b' ' | b'\t' | b'\n' | b'\r' | b'#' | b';' | b',' | b']'));
                let digits = word.strip_prefix(['+', '-']).unwrap_or(&word);
                if !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit()) {
                    let n: i64 = word.strip_prefix('+').unwrap_or(&word).parse().map_err(|_| err(&format!("number {word} is out of range")))?;
                    return Ok(Value::Int(n));
                }
                Ok(Value::Bare(word))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: &str = "/etc/libvirt/qemu-highlander.conf";

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(Path::new(F), text).map_err(|e| {
            assert_eq!(e.kind, Kind::ConfigUnsupported);
            e.message
        })
    }

    #[test]
    fn reads_every_key_in_libvirts_syntax() {
        let c = parse(
            "# comment\nsocket = \"/tmp/s.sock\"   # trailing comment\n\n  timeout=5;lockspace = 'ls1'\r\nauto_disk_leases = 0\nrequire_lease_for_disks = +0\n",
        )
        .unwrap();
        assert_eq!(
            c,
            Config {
                file: F.into(),
                socket: "/tmp/s.sock".into(),
                lockspace: Some("ls1".into()),
                timeout: Duration::from_secs(5),
                auto_disk_leases: false,
                require_lease_for_disks: false,
            }
        );
        assert_eq!(parse("").unwrap(), Config::defaults(Path::new(F)));
        assert_eq!(Config::load(Some(Path::new("/nonexistent/qemu-highlander.conf"))).unwrap(), Config::defaults(Path::new("/nonexistent/qemu-highlander.conf")));
    }

    #[test]
    fn require_lease_for_disks_defaults_like_sanlock() {
        let d = parse("").unwrap();
        assert!(d.auto_disk_leases && !d.require_lease_for_disks);
        let manual = parse("auto_disk_leases = 0").unwrap();
        assert!(!manual.auto_disk_leases && manual.require_lease_for_disks);
        assert!(parse("auto_disk_leases = 1\nrequire_lease_for_disks = 1").unwrap().require_lease_for_disks);
        // Order does not matter.
        assert!(!parse("require_lease_for_disks = 0\nauto_disk_leases = 0").unwrap().require_lease_for_disks);
    }

    #[test]
    fn every_mistake_names_file_line_and_key() {
        assert_eq!(
            parse("socket = \"/x\"\nauto_disk_lease = 1\n").unwrap_err(),
            format!("{F}:2: unknown key `auto_disk_lease` (known keys: socket, lockspace, timeout, auto_disk_leases, require_lease_for_disks); did you mean `auto_disk_leases`?")
        );
        assert_eq!(parse("\n\nrequire_lease_for_disks = 2").unwrap_err(), format!("{F}:3: `require_lease_for_disks` = 2: must be 0 or 1"));
        assert_eq!(parse("auto_disk_leases = yes").unwrap_err(), format!("{F}:1: `auto_disk_leases` = yes (unquoted): must be 0 or 1"));
        assert_eq!(parse("auto_disk_leases = \"1\"").unwrap_err(), format!("{F}:1: `auto_disk_leases` = \"1\": must be 0 or 1"));
        assert!(parse("timeout = soon").unwrap_err().starts_with(&format!("{F}:1: `timeout` = soon (unquoted): must be a whole number of seconds")));
        assert!(parse("timeout = 5s").unwrap_err().contains("`timeout` = 5s (unquoted)"));
        assert!(parse("timeout = 0").unwrap_err().contains("from 1 to 3600"));
        assert!(parse("timeout = 99999999999999999999999").unwrap_err().contains(":1: `timeout`: number 99999999999999999999999 is out of range"));
        assert!(parse("socket = /unquoted").unwrap_err().contains("`socket` = /unquoted (unquoted): must be a non-empty quoted string"));
        assert!(parse("socket = \"relative.sock\"").unwrap_err().contains("must be an absolute path"));
        assert!(parse("socket = [ \"/a\" ]").unwrap_err().contains("`socket` = [\"/a\"]: must be a non-empty quoted string"));
        assert!(parse("lockspace = \"two words\"").unwrap_err().contains("`lockspace` = \"two words\": a lockspace name"));
        assert_eq!(parse("timeout = 5\n# x\ntimeout = 6").unwrap_err(), format!("{F}:3: `timeout` is set twice (first on line 1); keep one"));
        assert!(parse("host_id = 1").unwrap_err().contains(":1: `host_id` is a qemu-sanlock.conf setting that highlander does not use: the host id is `host_id` in /etc/highlander/highlanderd.conf"));
        assert!(parse("frobnicate = 1").unwrap_err().ends_with("require_lease_for_disks)"));
    }

    #[test]
    fn syntax_errors_name_the_line() {
        assert_eq!(parse("a\n\ngarbage").unwrap_err(), format!("{F}:1: expected `=` after `a`, found the end of the line"));
        assert_eq!(parse("\n= 5").unwrap_err(), format!("{F}:2: expected `key = value`, found \"= 5\""));
        assert_eq!(parse("socket = \"/x").unwrap_err(), format!("{F}:1: `socket`: unterminated string (it must end with \" on the same line)"));
        assert_eq!(parse("socket =\n").unwrap_err(), format!("{F}:1: `socket`: missing value after `=`"));
        assert_eq!(parse("timeout = 5 6").unwrap_err(), format!("{F}:1: `timeout`: unexpected \"6\" after the value"));
        assert!(parse("x = [ 1,\n 2").unwrap_err().contains(":1: `x`: list is not closed"));
        // Multi-line values: later lines are still counted right.
        assert!(parse("x = [\n  \"a\",\n  'b' , 3,\n]\n= 5").unwrap_err().starts_with(&format!("{F}:5: expected `key = value`")));
        assert!(parse("lockspace = \"\"\"two\nlines\"\"\"\nbogus = 1").unwrap_err().starts_with(&format!("{F}:1: `lockspace` = \"two\\nlines\"")));
        assert!(parse("socket = \"\"\"/multi\nline\"\"\"\nbogus = 1").unwrap_err().starts_with(&format!("{F}:3: unknown key `bogus`")));
        assert!(parse("x = [\n  \"a\",\n]\n\nbogus = 1").unwrap_err().starts_with(&format!("{F}:1: unknown key `x`")));
    }

    #[test]
    fn deeply_nested_lists_are_refused_not_a_stack_overflow() {
        // Found while fuzzing (fuzz/fuzz_targets/plugin_config.rs): each `[`
        // recursed, and a file of them overflowed libvirtd's stack.
        let deep = format!("socket = {}", "[".repeat(200_000));
        assert_eq!(parse(&deep).unwrap_err(), format!("{F}:1: `socket`: a list cannot hold another list (no key takes lists)"));
        assert!(parse("x = [ 1, [ 2 ] ]").unwrap_err().contains(":1: `x`: a list cannot hold another list"));
    }
}
