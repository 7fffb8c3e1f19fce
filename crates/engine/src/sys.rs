//! What the engine asks of the operating system beyond storage I/O.

/// 16 random bytes (getrandom): lockspace UUIDs, incarnation nonces, ballots.
pub fn random_bytes() -> [u8; 16] {
    let mut b = [0u8; 16];
    // SAFETY: getrandom writes at most `b.len()` bytes into `b`.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    assert_eq!(n, b.len() as isize, "getrandom failed");
    b
}
