//! Helpers more than one module of the agent's tests use.

use hpcsera_agent::batch::BatchState;

/// Asserts that a batch job ended `Failed` with exit code `code`; the message is the state.
#[track_caller]
pub fn assert_failed_with(st: &BatchState, code: i32) {
    assert!(
        matches!(st, BatchState::Failed { exit_code: Some(c), .. } if *c == code),
        "{st:?}"
    );
}
