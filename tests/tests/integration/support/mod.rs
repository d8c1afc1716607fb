//! What the modules of this binary share.

pub mod vrrp_lab;

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use lb_tests::privileges::{Privilege, privileged};

/// The module whose tests are running, and how many of them.
static TURN: Mutex<Option<(&'static str, usize)>> = Mutex::new(None);
static TURN_ENDED: Condvar = Condvar::new();

/// Held by a running test of a module (see [`start`]).
#[derive(Debug)]
#[must_use = "the module's turn ends when this is dropped"]
pub struct Turn;

/// The start of every test that builds namespaces: `None` (the test returns
/// at once) without the capabilities in `needs`, see [`privileged`]; else
/// the turn of `module` (the caller's `module_path!()`), held as long as the
/// test runs.
///
/// Tests of one module run side by side as libtest schedules them, as they
/// did as binaries of their own, but never beside another module's: labs
/// count the namespaces of this process as theirs, find NAPI threads by
/// interface name, and time failovers that a second lab would slow on a
/// small machine.
pub fn start(module: &'static str, needs: &[Privilege]) -> Option<Turn> {
    if !privileged(needs) {
        return None;
    }
    let mut turn = lock();
    loop {
        match &mut *turn {
            None => {
                *turn = Some((module, 1));
                return Some(Turn);
            }
            Some((running, count)) if *running == module => {
                *count += 1;
                return Some(Turn);
            }
            // Not bounded in time: every test that holds a turn is.
            Some(_) => turn = TURN_ENDED.wait(turn).unwrap_or_else(PoisonError::into_inner),
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut turn = lock();
        if let Some((_, count)) = &mut *turn {
            *count -= 1;
            if *count == 0 {
                *turn = None;
                TURN_ENDED.notify_all();
            }
        }
    }
}

/// A test that panics while holding the lock poisons it; the count is
/// still right, since a [`Turn`] is dropped while unwinding.
fn lock() -> MutexGuard<'static, Option<(&'static str, usize)>> {
    TURN.lock().unwrap_or_else(PoisonError::into_inner)
}
