//! Raising libvirt errors, so a plugin's message reaches the `virsh` user.
//!
//! `virReportErrorHelper` is private to libvirt and versioned
//! (`LIBVIRT_PRIVATE_x.y.z`): linking against it would stop the plugin from
//! loading on any other libvirt version, so it is looked up at run time.
//! Where it is missing, the message goes to stderr (the domain log in
//! libvirt's forked child) and the call still fails.

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

/// Raises `f` as libvirt's last error (domain "Lock Driver").
pub fn raise(f: &Failure, func: &'static str) {
    // One line, no NULs: libvirt prints it into the domain log and virsh.
    let text: String = f.message.chars().map(|c| if c == '\n' || c == '\0' { ' ' } else { c }).collect();
    let message = CString::new(text).expect("NULs removed");
    let func_c = CString::new(func).expect("function names have no NUL");
    // SAFETY: dlsym with RTLD_DEFAULT searches the global scope (libvirt.so is
    // loaded in every process that loads us); the name is NUL-terminated.
    let sym = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"virReportErrorHelper".as_ptr()) };
    if sym.is_null() {
        eprintln!("highlander: {}", message.to_string_lossy());
        return;
    }
    // SAFETY: the symbol has this signature in every libvirt since 0.9
    // (virerror.h); the format "%s" consumes exactly one C string argument.
    unsafe {
        let helper: ffi::virReportErrorHelperFn = std::mem::transmute(sym);
        if let Some(helper) = helper {
            helper(ffi::VIR_FROM_LOCKING as i32, f.kind.code(), c"highlander".as_ptr(), func_c.as_ptr(), 0, c"%s".as_ptr(), message.as_ptr());
        }
    }
}
