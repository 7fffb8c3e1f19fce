//! The exported driver table and its C-ABI entry points.
//!
//! Every entry point is a thin shell: check pointers, copy what libvirt
//! lends, call `Manager`, and convert the outcome to libvirt's convention in
//! one place (`shell`): 0, or -1 with a libvirt error raised. No panic
//! crosses the boundary.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use crate::config::Config;
use crate::ffi;
use crate::manager::{Manager, Param};
use crate::report::{self, Failure, Kind};

/// Set once by the first drvInit that succeeds; read without locking (also
/// in libvirt's forked child, where a lock held by another thread at fork
/// would hang). A later drvInit (another libvirt driver sharing this loaded
/// copy, e.g. libxl with `libxl-highlander.conf`) keeps it, as libvirt's
/// sanlock plugin keeps its first configuration. A failed drvInit sets
/// nothing, so a corrected file loads on the next try.
static CONFIG: OnceLock<Config> = OnceLock::new();
/// drvInit runs once per libvirt driver that loads us (qemu, libxl).
static USERS: AtomicUsize = AtomicUsize::new(0);

#[no_mangle]
#[allow(non_upper_case_globals)]
pub static virLockDriverImpl: ffi::virLockDriver = ffi::virLockDriver {
    version: ffi::VIR_LOCK_MANAGER_VERSION,
    flags: ffi::VIR_LOCK_MANAGER_USES_STATE,
    drvInit: Some(drv_init),
    drvDeinit: Some(drv_deinit),
    drvNew: Some(drv_new),
    drvFree: Some(drv_free),
    drvAddResource: Some(drv_add_resource),
    drvAcquire: Some(drv_acquire),
    drvRelease: Some(drv_release),
    drvInquire: Some(drv_inquire),
};

/// Runs `body`, turning its failure or panic into a raised libvirt error.
fn shell(func: &'static str, body: impl FnOnce() -> Result<(), Failure>) -> c_int {
    let failure = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => return 0,
        Ok(Err(f)) => f,
        Err(_) => Failure::new(Kind::Internal, format!("highlander plugin bug in {func} (panic); please report it with the libvirtd log")),
    };
    report::raise(&failure, func);
    -1
}

fn config() -> Result<&'static Config, Failure> {
    CONFIG.get().ok_or_else(|| Failure::new(Kind::Internal, "highlander plugin used before drvInit"))
}

/// # Safety
/// `ptr` is NULL or a NUL-terminated string valid for the call.
unsafe fn opt_str(ptr: *const c_char) -> Result<Option<&'static str>, Failure> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: non-NULL and NUL-terminated per the caller's contract; the
    // 'static lifetime never escapes the call (callers copy).
    let s = unsafe { CStr::from_ptr(ptr) };
    s.to_str().map(Some).map_err(|_| Failure::new(Kind::InvalidArg, "libvirt passed a string that is not UTF-8"))
}

/// Copies libvirt's parameter array.
///
/// # Safety
/// `params` points to `n` valid `virLockManagerParam`s (or n == 0).
unsafe fn copy_params(n: usize, params: *const ffi::virLockManagerParam) -> Result<Vec<(String, Param)>, Failure> {
    if n == 0 {
        return Ok(Vec::new());
    }
    if params.is_null() {
        return Err(Failure::new(Kind::InvalidArg, format!("libvirt passed {n} parameters but no array")));
    }
    // SAFETY: per the contract, `params` points to `n` initialised elements.
    let params = unsafe { std::slice::from_raw_parts(params, n) };
    params
        .iter()
        .map(|p| {
            // SAFETY: libvirt's keys are static NUL-terminated strings.
            let key = unsafe { opt_str(p.key) }?.unwrap_or_default().to_owned();
            // SAFETY: the union member read is the one `type_` says libvirt wrote.
            let value = unsafe {
                match p.type_ as u32 {
                    ffi::VIR_LOCK_MANAGER_PARAM_TYPE_STRING => Param::Str(opt_str(p.value.str_)?.map(str::to_owned)),
                    ffi::VIR_LOCK_MANAGER_PARAM_TYPE_CSTRING => Param::Str(opt_str(p.value.cstr)?.map(str::to_owned)),
                    ffi::VIR_LOCK_MANAGER_PARAM_TYPE_INT | ffi::VIR_LOCK_MANAGER_PARAM_TYPE_UINT => Param::Uint(p.value.ui as u64),
                    ffi::VIR_LOCK_MANAGER_PARAM_TYPE_LONG | ffi::VIR_LOCK_MANAGER_PARAM_TYPE_ULONG => Param::Uint(p.value.ul),
                    ffi::VIR_LOCK_MANAGER_PARAM_TYPE_UUID => Param::Uuid(p.value.uuid),
                    other => return Err(Failure::new(Kind::InvalidArg, format!("parameter `{key}` has unsupported type {other}"))),
                }
            };
            Ok((key, value))
        })
        .collect()
}

/// # Safety
/// `man` is NULL or a libvirt lock manager whose privateData we set in drvNew.
unsafe fn manager<'a>(man: *mut ffi::virLockManager) -> Result<&'a mut Manager, Failure> {
    // SAFETY: checked for NULL; libvirt owns the struct for the call.
    let data = unsafe { man.as_mut() }.map(|m| m.privateData as *mut Manager).filter(|p| !p.is_null());
    // SAFETY: privateData is a Box<Manager> from drv_new, used by one call at a time.
    data.map(|p| unsafe { &mut *p }).ok_or_else(|| Failure::new(Kind::InvalidArg, "lock manager object missing or already freed"))
}

/// Hands a string to libvirt, which frees it with free().
fn to_c_heap(s: &str) -> *mut c_char {
    // SAFETY: malloc of len+1 bytes; checked for NULL before writing.
    unsafe {
        let p = libc::malloc(s.len() + 1) as *mut c_char;
        if !p.is_null() {
            std::ptr::copy_nonoverlapping(s.as_ptr() as *const c_char, p, s.len());
            *p.add(s.len()) = 0;
        }
        p
    }
}

/// # Safety
/// `out` is NULL or a valid `char **`.
unsafe fn put_state(out: *mut *mut c_char, state: Option<String>) -> Result<(), Failure> {
    if out.is_null() {
        return Ok(());
    }
    let ptr = match state {
        Some(s) => {
            let p = to_c_heap(&s);
            if p.is_null() {
                return Err(Failure::new(Kind::Internal, "out of memory for the lock state"));
            }
            p
        }
        None => std::ptr::null_mut(),
    };
    // SAFETY: `out` is a valid, writable `char **` per the contract.
    unsafe { *out = ptr };
    Ok(())
}

unsafe extern "C" fn drv_init(_version: c_uint, config_file: *const c_char, _flags: c_uint) -> c_int {
    report::init();
    shell("drvInit", || {
        // SAFETY: libvirt passes NULL or a NUL-terminated path.
        let file = unsafe { opt_str(config_file) }?.map(Path::new);
        if CONFIG.get().is_none() {
            let loaded = Config::load(file)?;
            let _ = CONFIG.set(loaded);
        }
        USERS.fetch_add(1, Ordering::SeqCst);
        Ok(())
    })
}

unsafe extern "C" fn drv_deinit() -> c_int {
    shell("drvDeinit", || {
        // The config stays: statics go with the library at dlclose.
        let _ = USERS.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        Ok(())
    })
}

unsafe extern "C" fn drv_new(man: *mut ffi::virLockManager, type_: c_uint, nparams: usize, params: *mut ffi::virLockManagerParam, _flags: c_uint) -> c_int {
    shell("drvNew", || {
        // SAFETY: checked for NULL; libvirt owns it for the call.
        let man = unsafe { man.as_mut() }.ok_or_else(|| Failure::new(Kind::InvalidArg, "no lock manager object"))?;
        // SAFETY: libvirt passes `nparams` valid params.
        let params = unsafe { copy_params(nparams, params) }?;
        let m = Manager::new(type_, &params)?;
        man.privateData = Box::into_raw(Box::new(m)) as *mut c_void;
        Ok(())
    })
}

unsafe extern "C" fn drv_free(man: *mut ffi::virLockManager) {
    let _ = catch_unwind(|| {
        // SAFETY: checked for NULL; privateData is NULL or our Box<Manager>,
        // and libvirt calls drvFree once per object.
        if let Some(man) = unsafe { man.as_mut() } {
            let data = std::mem::replace(&mut man.privateData, std::ptr::null_mut()) as *mut Manager;
            if !data.is_null() {
                // SAFETY: from Box::into_raw in drv_new, not yet freed.
                drop(unsafe { Box::from_raw(data) });
            }
        }
    });
}

unsafe extern "C" fn drv_add_resource(man: *mut ffi::virLockManager, type_: c_uint, name: *const c_char, nparams: usize, params: *mut ffi::virLockManagerParam, flags: c_uint) -> c_int {
    shell("drvAddResource", || {
        // SAFETY: pointers come from libvirt for this call.
        let (m, name, params) = unsafe { (manager(man)?, opt_str(name)?, copy_params(nparams, params)?) };
        let name = name.ok_or_else(|| Failure::new(Kind::InvalidArg, "resource without a name"))?;
        m.add_resource(config()?, type_, name, &params, flags)
    })
}

unsafe extern "C" fn drv_acquire(man: *mut ffi::virLockManager, state: *const c_char, flags: c_uint, action: ffi::virDomainLockFailureAction, fd: *mut c_int) -> c_int {
    shell("drvAcquire", || {
        // SAFETY: pointers come from libvirt for this call.
        let (m, state) = unsafe { (manager(man)?, opt_str(state)?) };
        let state = state.filter(|s| !s.is_empty()).map(|s| std::ffi::CString::new(s).expect("came from a C string"));
        if let Some(handle) = m.acquire(config()?, state.as_deref(), flags, action)? {
            // QEMU must inherit the guest's handle: clear close-on-exec.
            // SAFETY: `handle` is an open fd we own; F_SETFD only changes its flags.
            unsafe { libc::fcntl(handle, libc::F_SETFD, 0) };
            // SAFETY: `fd` is NULL or a valid int pointer from libvirt.
            if let Some(out) = unsafe { fd.as_mut() } {
                *out = handle;
            }
        }
        Ok(())
    })
}

unsafe extern "C" fn drv_release(man: *mut ffi::virLockManager, state: *mut *mut c_char, _flags: c_uint) -> c_int {
    shell("drvRelease", || {
        // SAFETY: pointers come from libvirt for this call.
        let m = unsafe { manager(man) }?;
        // Only a pause asks for the state back (a detach passes NULL).
        let out = m.release(config()?, !state.is_null())?;
        // SAFETY: `state` is NULL or a valid `char **`.
        unsafe { put_state(state, out) }
    })
}

unsafe extern "C" fn drv_inquire(man: *mut ffi::virLockManager, state: *mut *mut c_char, _flags: c_uint) -> c_int {
    shell("drvInquire", || {
        // SAFETY: pointers come from libvirt for this call.
        let m = unsafe { manager(man) }?;
        let out = m.inquire(config()?)?;
        // SAFETY: `state` is NULL or a valid `char **`.
        unsafe { put_state(state, out) }
    })
}
