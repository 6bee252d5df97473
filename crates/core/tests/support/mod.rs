//! Shared set-up for the integration tests (each test file compiles what it uses).
#![allow(dead_code)]

pub mod moto;
pub mod pg;
