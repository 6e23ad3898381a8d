//! The client crate's integration tests, in one binary: response limits and retries.

mod limits;
mod retry;
