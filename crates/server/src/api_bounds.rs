//! The bounds of the API's inputs that the OpenAPI document states (`maximum`, `maxItems`,
//! `pattern`) and the handlers enforce: one definition for both, so `openapi` and `routes`
//! need not import each other.

/// Longest wait of an output read, in seconds.
pub(crate) const MAX_OUTPUT_WAIT: i64 = 60;

/// Longest `Idempotency-Key`.
pub(crate) const MAX_IDEMPOTENCY_KEY: usize = 255;

/// Longest long-poll.
pub(crate) const MAX_POLL_WAIT: u32 = 60;
/// Most jobs one poll claims.
pub(crate) const MAX_POLL_JOBS: u32 = 1000;
/// Most job ids one poll may list as active.
pub(crate) const MAX_POLL_IDS: usize = 10_000;

/// Longest wait of an event read.
pub(crate) const MAX_EVENT_WAIT: u64 = 60;

/// Most items on one page of a listing.
pub(crate) const MAX_PAGE: u32 = 1000;
