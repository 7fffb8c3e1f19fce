//! The identity of a file on a GlusterFS volume reached by libgfapi (QEMU's
//! `gluster://` disks), without mounting it: the volume id and the file's
//! GFID, the same two facts the FUSE rule reads (`gluster.rs`), so a guest
//! on `gluster://server/vol/img` and one on the FUSE path of that file
//! take one lease. libgfapi is loaded when first needed (dlopen), so hosts
//! without GlusterFS need nothing installed.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::OnceLock;

const LIBRARY: &CStr = c"libgfapi.so.0";
/// GFAPI_HANDLE_LENGTH: a handle is the 16-byte GFID.
const HANDLE_LEN: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum GfapiError {
    #[error("libgfapi is not installed ({0}); install the glusterfs-client package (Debian: libgfapi0) on this host")]
    Missing(String),
    #[error("GlusterFS volume {volume} on {server}: {what} failed ({source})")]
    Call { volume: String, server: String, what: &'static str, source: std::io::Error },
}

type Glfs = c_void;
type GlfsObject = c_void;

/// The libgfapi calls used, resolved once.
struct Api {
    new: unsafe extern "C" fn(*const c_char) -> *mut Glfs,
    set_volfile_server: unsafe extern "C" fn(*mut Glfs, *const c_char, *const c_char, c_int) -> c_int,
    set_logging: unsafe extern "C" fn(*mut Glfs, *const c_char, c_int) -> c_int,
    init: unsafe extern "C" fn(*mut Glfs) -> c_int,
    get_volumeid: unsafe extern "C" fn(*mut Glfs, *mut c_char, usize) -> c_int,
    lookupat: unsafe extern "C" fn(*mut Glfs, *mut GlfsObject, *const c_char, *mut libc::stat, c_int) -> *mut GlfsObject,
    extract_handle: unsafe extern "C" fn(*mut GlfsObject, *mut u8, c_int) -> isize,
    h_close: unsafe extern "C" fn(*mut GlfsObject) -> c_int,
    fini: unsafe extern "C" fn(*mut Glfs) -> c_int,
}

fn api() -> Result<&'static Api, GfapiError> {
    static API: OnceLock<Result<Api, String>> = OnceLock::new();
    API.get_or_init(load).as_ref().map_err(|e| GfapiError::Missing(e.clone()))
}

fn load() -> Result<Api, String> {
    // SAFETY: LIBRARY is NUL-terminated; the handle is never closed, so the
    // symbols below stay valid for the life of the process.
    let lib = unsafe { libc::dlopen(LIBRARY.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if lib.is_null() {
        // SAFETY: dlerror returns null or a NUL-terminated string that stays
        // valid until the next dl* call, which comes after it is copied.
        let why = unsafe {
            let why = libc::dlerror();
            if why.is_null() { "dlopen failed".to_owned() } else { CStr::from_ptr(why).to_string_lossy().into_owned() }
        };
        return Err(why);
    }
    let sym = |name: &CStr| -> Result<*mut c_void, String> {
        // SAFETY: `lib` is a live handle and `name` is NUL-terminated.
        let p = unsafe { libc::dlsym(lib, name.as_ptr()) };
        if p.is_null() {
            Err(format!("{} has no {}", LIBRARY.to_string_lossy(), name.to_string_lossy()))
        } else {
            Ok(p)
        }
    };
    // SAFETY: each symbol is libgfapi's function of that name, whose C
    // prototype (glusterfs/api/glfs.h, glfs-handles.h, GlusterFS ≥ 3.7.4)
    // the field's type spells out.
    unsafe {
        Ok(Api {
            new: function(sym(c"glfs_new")?),
            set_volfile_server: function(sym(c"glfs_set_volfile_server")?),
            set_logging: function(sym(c"glfs_set_logging")?),
            init: function(sym(c"glfs_init")?),
            get_volumeid: function(sym(c"glfs_get_volumeid")?),
            lookupat: function(sym(c"glfs_h_lookupat")?),
            extract_handle: function(sym(c"glfs_h_extract_handle")?),
            h_close: function(sym(c"glfs_h_close")?),
            fini: function(sym(c"glfs_fini")?),
        })
    }
}

/// A symbol's address as the function pointer type `F`.
///
/// # Safety
/// `F` must be the function's true C signature.
unsafe fn function<F: Copy>(address: *mut c_void) -> F {
    assert_eq!(std::mem::size_of::<F>(), std::mem::size_of::<*mut c_void>());
    // SAFETY: F is a function pointer (the assert checks its size) of the
    // function at `address`, as the caller guarantees.
    unsafe { std::mem::transmute_copy::<*mut c_void, F>(&address) }
}

/// A connection to one volume; closed on drop.
struct Volume<'a> {
    api: &'a Api,
    fs: *mut Glfs,
}

impl Drop for Volume<'_> {
    fn drop(&mut self) {
        // SAFETY: `fs` came from glfs_new and is finalised once, here.
        unsafe { (self.api.fini)(self.fs) };
    }
}


/// `(volume id, GFID)` of `path` (relative to the volume's root) on
/// `volume`, reached through the volfile server `server:port`.
pub fn volume_and_gfid(server: &str, port: u16, volume: &str, path: &str) -> Result<(String, String), GfapiError> {
    let api = api()?;
    let failed = |what: &'static str| {
        let source = std::io::Error::last_os_error();
        move || GfapiError::Call { volume: volume.to_owned(), server: format!("{server}:{port}"), what, source }
    };
    let text = |s: &str| CString::new(s).map_err(|_| GfapiError::Call { volume: volume.to_owned(), server: server.to_owned(), what: "a name with a NUL byte", source: std::io::ErrorKind::InvalidInput.into() });
    let (cvol, cserver, cpath) = (text(volume)?, text(server)?, text(path)?);
    // SAFETY: `cvol` is NUL-terminated; a null return is handled.
    let fs = unsafe { (api.new)(cvol.as_ptr()) };
    if fs.is_null() {
        return Err(failed("glfs_new")());
    }
    let vol = Volume { api, fs };
    // SAFETY: `vol.fs` is live; the strings are NUL-terminated. Logging to
    // /dev/null at level 0 keeps libgfapi off the daemon's stderr.
    unsafe {
        if (api.set_volfile_server)(vol.fs, c"tcp".as_ptr(), cserver.as_ptr(), c_int::from(port)) != 0 {
            return Err(failed("glfs_set_volfile_server")());
        }
        (api.set_logging)(vol.fs, c"/dev/null".as_ptr(), 0);
        if (api.init)(vol.fs) != 0 {
            return Err(failed("connecting (glfs_init)")());
        }
    }
    let mut id = [0u8; 16];
    // SAFETY: `id` has room for the 16 bytes glfs_get_volumeid writes.
    if unsafe { (api.get_volumeid)(vol.fs, id.as_mut_ptr().cast(), id.len()) } < 0 {
        return Err(failed("glfs_get_volumeid")());
    }
    // SAFETY: all-zero is a valid `struct stat`, which glfs_h_lookupat fills.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `vol.fs` is live, a null parent means the volume's root, `cpath`
    // is NUL-terminated; follow = 1 resolves symlinks as QEMU's open does.
    let obj = unsafe { (api.lookupat)(vol.fs, std::ptr::null_mut(), cpath.as_ptr(), &mut st, 1) };
    if obj.is_null() {
        return Err(failed("looking up the file (glfs_h_lookupat)")());
    }
    let mut handle = [0u8; HANDLE_LEN];
    // SAFETY: `obj` is live until closed below; `handle` holds HANDLE_LEN bytes.
    let n = unsafe { (api.extract_handle)(obj, handle.as_mut_ptr(), HANDLE_LEN as c_int) };
    let err = failed("glfs_h_extract_handle");
    // SAFETY: `obj` came from glfs_h_lookupat and is closed once.
    unsafe { (api.h_close)(obj) };
    if n != HANDLE_LEN as isize {
        return Err(err());
    }
    Ok((proto::uuid::format(&id), proto::uuid::format(&handle)))
}
