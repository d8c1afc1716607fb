//! Fast-path backend ids. A flow table entry names its backend by id, so an
//! id freed by a reload is handed out again as late as possible: the oldest
//! freed id first, and only once the never-used ones run out.

use std::collections::VecDeque;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ids {
    next: u32,
    max: u32,
    freed: VecDeque<u32>,
}

impl Ids {
    /// Ids `1..max` (0 marks an empty ring slot).
    pub fn new(max: u32) -> Self {
        Self { next: 1, max, freed: VecDeque::new() }
    }

    pub fn take(&mut self) -> Option<u32> {
        if self.next < self.max {
            self.next += 1;
            return Some(self.next - 1);
        }
        self.freed.pop_front()
    }

    pub fn give_back(&mut self, id: u32) {
        self.freed.push_back(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_late_and_oldest_first() {
        let mut ids = Ids::new(4);
        assert_eq!((ids.take(), ids.take()), (Some(1), Some(2)));
        ids.give_back(2);
        ids.give_back(1);
        assert_eq!(ids.take(), Some(3), "never-used ids first");
        assert_eq!((ids.take(), ids.take(), ids.take()), (Some(2), Some(1), None));
    }
}
