//! Raising libvirt errors, so a plugin's message reaches the `virsh` user.
//!
//! `virReportErrorHelper` is private to libvirt and versioned
//! (`LIBVIRT_PRIVATE_x.y.z`): linking against it would stop the plugin from
//! loading on any other libvirt version, so it is looked up at run time
//! (in drvInit, before any fork).
//! Where it is missing (a process that loaded us without libvirt, like the
//! FFI tests), the message goes to stderr as `highlander: MESSAGE` and the
//! call still fails.

use std::ffi::CString;

use crate::ffi;

/// What went wrong, as libvirt classifies it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Internal,
    InvalidArg,
    OperationFailed,
    ConfigUnsupported,
    Timeout,
    Busy,
}

impl Kind {
    fn code(self) -> i32 {
        (match self {
            Kind::Internal => ffi::VIR_ERR_INTERNAL_ERROR,
            Kind::InvalidArg => ffi::VIR_ERR_INVALID_ARG,
            Kind::OperationFailed => ffi::VIR_ERR_OPERATION_FAILED,
            Kind::ConfigUnsupported => ffi::VIR_ERR_CONFIG_UNSUPPORTED,
            Kind::Timeout => ffi::VIR_ERR_OPERATION_TIMEOUT,
            Kind::Busy => ffi::VIR_ERR_RESOURCE_BUSY,
        }) as i32
    }
}

/// A failure to hand to libvirt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: Kind,
    pub message: String,
}

impl Failure {
    pub fn new(kind: Kind, message: impl Into<String>) -> Failure {
        Failure { kind, message: message.into() }
    }
}

/// libvirt's error helper, looked up once in drvInit: dlsym takes the
/// dynamic loader's lock, which libvirt's forked child must not touch.
static HELPER: std::sync::OnceLock<ffi::virReportErrorHelperFn> = std::sync::OnceLock::new();

/// Resolves libvirt's error helper (idempotent).
pub fn init() {
    HELPER.get_or_init(|| {
        // SAFETY: dlsym with RTLD_DEFAULT searches the global scope (libvirt.so
        // is loaded in every process that loads us); the name is NUL-terminated.
        let sym = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"virReportErrorHelper".as_ptr()) };
        // SAFETY: the symbol has this signature in every libvirt since 0.9
        // (virerror.h); a NULL pointer becomes None.
        unsafe { std::mem::transmute::<*mut libc::c_void, ffi::virReportErrorHelperFn>(sym) }
    });
}

/// Raises `f` as libvirt's last error (domain "Lock Driver").
pub fn raise(f: &Failure, func: &'static str) {
    // One line, no NULs: libvirt prints it into the domain log and virsh.
    let text: String = f.message.chars().map(|c| if c == '\n' || c == '\0' { ' ' } else { c }).collect();
    let message = CString::new(text).expect("NULs removed");
    let func_c = CString::new(func).expect("function names have no NUL");
    match HELPER.get().copied().flatten() {
        // SAFETY: the format "%s" consumes exactly one C string argument.
        Some(helper) => unsafe {
            helper(ffi::VIR_FROM_LOCKING as i32, f.kind.code(), c"highlander".as_ptr(), func_c.as_ptr(), 0, c"%s".as_ptr(), message.as_ptr());
        },
        None => write_stderr(&format!("highlander: {}\n", message.to_string_lossy())),
    }
}

/// One write(2) to fd 2: no lock of std's `Stderr` (libvirt's forked child
/// must take no lock another thread may have held at fork), and one write
/// keeps concurrent messages from interleaving mid-line.
fn write_stderr(text: &str) {
    let mut rest = text.as_bytes();
    while !rest.is_empty() {
        // SAFETY: writes `rest.len()` initialised bytes from a live slice.
        let n = unsafe { libc::write(2, rest.as_ptr().cast(), rest.len()) };
        if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        if n <= 0 {
            return; // nowhere to report it; the call still fails
        }
        rest = &rest[n as usize..];
    }
}
