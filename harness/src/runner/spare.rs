//! Guest slots of a run that no worker is using, lent to a test that can
//! use more than one guest at a time (fault injection's points).
//!
//! `-j N` promises at most N guests at once. Workers hold one slot each
//! while they run tests; a worker with no test left gives its slot here,
//! and so do the slots of workers never started (fewer tests than N). A
//! test that borrows a slot returns it when done, so the run never has
//! more than N guests, and the tail of a run that ends with one long
//! fault-injection test still uses every slot.

use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct Spare(Mutex<usize>);

impl Spare {
    pub fn new(slots: usize) -> Spare {
        Spare(Mutex::new(slots))
    }

    pub fn give(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) += 1;
    }

    /// Takes a slot if one is free.
    pub fn try_take(&self) -> bool {
        let mut free = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if *free == 0 {
            return false;
        }
        *free -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_lent_and_returned() {
        let s = Spare::new(1);
        assert!(s.try_take());
        assert!(!s.try_take());
        s.give();
        assert!(s.try_take());
    }
}
