//! Secret byte types: zeroized on drop (and on every reallocation), `Debug` that prints only a
//! length, and no `Clone`, so a copy of plaintext can only be made on purpose. The pages one
//! occupies are locked in RAM and kept out of core dumps where the OS allows it (see `memlock`).

use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A growable byte buffer for plaintext. Unlike `Vec<u8>`, growing it never leaves an unwiped
/// copy behind: the old allocation is zeroized before it is freed.
#[derive(Default)]
pub struct SecretBuf {
    bytes: Vec<u8>,
}

impl SecretBuf {
    pub fn with_capacity(capacity: usize) -> Self {
        SecretBuf::from_vec(Vec::with_capacity(capacity))
    }

    /// Takes ownership of `bytes` (no copy is made).
    pub fn from_vec(bytes: Vec<u8>) -> Self {
        crate::memlock::protect(bytes.as_ptr(), bytes.capacity());
        SecretBuf { bytes }
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.bytes
    }

    /// Makes room for `additional` more bytes, moving the contents to a new allocation and wiping
    /// the old one if it has to grow.
    pub fn reserve(&mut self, additional: usize) {
        let needed = self.bytes.len().saturating_add(additional);
        if needed <= self.bytes.capacity() {
            return;
        }
        let new_cap = needed.max(self.bytes.capacity().saturating_mul(2)).max(64);
        let mut grown: Vec<u8> = Vec::with_capacity(new_cap);
        crate::memlock::protect(grown.as_ptr(), grown.capacity());
        grown.extend_from_slice(&self.bytes);
        self.bytes.zeroize();
        self.bytes = grown;
    }

    pub fn extend_from_slice(&mut self, data: &[u8]) {
        self.reserve(data.len());
        self.bytes.extend_from_slice(data);
    }

    pub fn push(&mut self, byte: u8) {
        self.reserve(1);
        self.bytes.push(byte);
    }

    /// Appends `len` zero bytes and returns them for the caller to fill in place (used by the
    /// binding to let N-API write a string straight into the buffer).
    pub fn append_uninit(&mut self, len: usize) -> &mut [u8] {
        self.reserve(len);
        let start = self.bytes.len();
        self.bytes.resize(start + len, 0);
        &mut self.bytes[start..]
    }

    /// Shortens the buffer, wiping the bytes that are cut off.
    pub fn truncate(&mut self, len: usize) {
        if len < self.bytes.len() {
            self.bytes[len..].zeroize();
            self.bytes.truncate(len);
        }
    }

    /// Gives the vector to AEAD code that encrypts or decrypts in place.
    pub(crate) fn as_mut_vec(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }
}

impl Drop for SecretBuf {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl ZeroizeOnDrop for SecretBuf {}

impl fmt::Debug for SecretBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBuf([REDACTED; {} bytes])", self.bytes.len())
    }
}

/// A 256-bit data-encryption key in plaintext. Zeroized on drop; never printed.
pub struct DataKey {
    bytes: Box<[u8; 32]>,
}

/// A zeroed key allocation, protected (`memlock`) before any key byte is written into it.
fn key_box() -> Box<[u8; 32]> {
    let boxed = Box::new([0u8; 32]);
    crate::memlock::protect(boxed.as_ptr(), 32);
    boxed
}

impl DataKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let mut boxed = key_box();
        let mut src = bytes;
        boxed.copy_from_slice(&src);
        src.zeroize();
        DataKey { bytes: boxed }
    }

    /// Copies a 32-byte slice into a new key; `None` when the length is wrong.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != 32 {
            return None;
        }
        let mut boxed = key_box();
        boxed.copy_from_slice(bytes);
        Some(DataKey { bytes: boxed })
    }

    /// A fresh key from the operating system's CSPRNG.
    pub fn generate() -> Self {
        use aes_gcm::aead::rand_core::RngCore;
        let mut boxed = key_box();
        aes_gcm::aead::OsRng.fill_bytes(&mut boxed[..]);
        DataKey { bytes: boxed }
    }

    pub fn expose(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// A deliberate copy (for the data-key cache). Named, not `Clone`, so it is never implicit.
    pub fn duplicate(&self) -> Self {
        let mut boxed = key_box();
        boxed.copy_from_slice(&self.bytes[..]);
        DataKey { bytes: boxed }
    }
}

impl Drop for DataKey {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl ZeroizeOnDrop for DataKey {}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey([REDACTED])")
    }
}

/// How much stack [`scrubbing_stack`] zeroes below its caller's frame: well past the deepest
/// frames of AES-GCM key setup and use (a few KiB), measured by the memory-scan tests.
const STACK_SCRUB_BYTES: usize = 32 * 1024;

/// Runs `f` (which uses a key), then zeroes the stack `f` and its callees used. A cipher's key
/// schedule starts with the raw key, and building one moves it through stack frames that
/// `ZeroizeOnDrop` never sees; without this, copies of a closed vault's key-encryption key
/// survived in idle runtime threads' stacks (found by `__test__/shredding.test.ts`). Written by
/// hand because no maintained crate does it; it is the `clear_stack_on_return` technique.
pub fn scrubbing_stack<T>(f: impl FnOnce() -> T) -> T {
    let out = run_outlined(f);
    scrub_stack();
    out
}

#[inline(never)]
fn run_outlined<T>(f: impl FnOnce() -> T) -> T {
    f()
}

#[inline(never)]
fn scrub_stack() {
    // Words, not bytes: `zeroize` writes element by element with volatile stores (which are
    // never optimized away although `buf` is never read), and 8-byte stores make it 8 times
    // fewer of them; byte stores made this the hottest function of a PostgreSQL hydrate.
    let mut buf = [0u64; STACK_SCRUB_BYTES / 8];
    buf.zeroize();
    std::hint::black_box(&mut buf);
}
