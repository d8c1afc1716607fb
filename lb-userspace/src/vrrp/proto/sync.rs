//! keepalived's `vrrp_sync_group`: instances that change state together,
//! so that, say, the outside and the inside VIP of a director never sit on
//! two different machines.
//!
//! The rules, from keepalived's `vrrp_sync.c`:
//!
//! - FAULT (`vrrp_sync_fault`): while one member's own tracking is down,
//!   every other member is in FAULT too (a master resigns with priority 0
//!   first); they leave together when it recovers.
//! - MASTER (`vrrp_sync_can_goto_master`, `vrrp_sync_master`): "only sync
//!   to master if everyone wants to, i.e. prefer backup state to avoid
//!   thrashing". A member whose master-down timer ran out asks; the group
//!   lets it take over when every other member wants to as well, or one is
//!   master already. A member that becomes master takes the others along.
//! - BACKUP (`vrrp_sync_backup`): a master that steps down takes the
//!   others' mastership with it (priority 0, then Backup).
//!
//! So a priority drop from a tracking weight on one member does not move a
//! group: the peer's other members still hear a healthy master and do not
//! want to take over. keepalived behaves the same; track with weight 0 (or
//! the same weight on every member) to move a group.
//!
//! Sans-IO like [`super::fsm`]: [`SyncGroup::handle`] takes what a member
//! reported and returns the events to deliver to members, plus the group's
//! own state changes for its notify scripts (`GROUP name STATE 0`).

use super::fsm::{Event, State};

/// What a member tells its group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// The member entered `state` (its [`super::fsm::Action::Notify`]).
    State {
        /// Index of the member in the group.
        member: usize,
        /// The state entered.
        state: State,
    },
    /// The member's [`super::fsm::Action::WantsMaster`].
    WantsMaster {
        /// Index of the member in the group.
        member: usize,
        /// Whether it wants to become master.
        wants: bool,
    },
    /// The member's own tracking (interfaces, scripts, fast path with
    /// weight 0) went down (`faulty`) or came back.
    Tracking {
        /// Index of the member in the group.
        member: usize,
        /// Whether its own tracking is down.
        faulty: bool,
    },
}

/// What the group does about it, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// Feed `event` to the member's state machine.
    Deliver {
        /// Index of the member in the group.
        member: usize,
        /// One of the `Sync*` events.
        event: Event,
    },
    /// The group as a whole entered this state: run its notify scripts.
    Notify(State),
}

#[derive(Clone, Copy, Debug)]
struct Member {
    state: State,
    wants_master: bool,
    /// Its own tracking is down.
    faulty: bool,
    /// What it was last told with [`Event::SyncFault`].
    told_fault: bool,
}

/// One sync group's view of its members.
#[derive(Clone, Debug)]
pub struct SyncGroup {
    members: Vec<Member>,
    /// The group state last notified.
    state: State,
}

impl SyncGroup {
    /// A group of `members` instances, all in Initialize.
    pub fn new(members: usize) -> Self {
        let member = Member { state: State::Initialize, wants_master: false, faulty: false, told_fault: false };
        Self { members: vec![member; members], state: State::Initialize }
    }

    /// The group's state: FAULT when any member is, else MASTER when any
    /// member is, else BACKUP when any is, else STOP.
    pub fn state(&self) -> State {
        let any = |s: State| self.members.iter().any(|m| m.state == s);
        [State::Fault, State::Master, State::Backup].into_iter().find(|&s| any(s)).unwrap_or(State::Initialize)
    }

    /// Takes in what a member reported; returns what to do.
    pub fn handle(&mut self, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        match input {
            Input::Tracking { member, faulty } => {
                if let Some(m) = self.members.get_mut(member) {
                    m.faulty = faulty;
                }
                self.spread_fault(&mut out);
            }
            Input::WantsMaster { member, wants } => {
                if let Some(m) = self.members.get_mut(member) {
                    m.wants_master = wants;
                }
                if wants && self.can_go_master(member) {
                    out.push(Output::Deliver { member, event: Event::SyncMaster });
                }
            }
            Input::State { member, state } => {
                let Some(m) = self.members.get_mut(member) else { return out };
                let from = m.state;
                m.state = state;
                m.wants_master = false;
                let others = (0..self.members.len()).filter(|&j| j != member);
                match (from, state) {
                    (_, State::Master) => {
                        let backups = others.filter(|&j| self.members[j].state == State::Backup);
                        out.extend(backups.map(|j| Output::Deliver { member: j, event: Event::SyncMaster }));
                    }
                    (State::Master, State::Backup) => {
                        let masters = others.filter(|&j| self.members[j].state == State::Master);
                        out.extend(masters.map(|j| Output::Deliver { member: j, event: Event::SyncBackup }));
                    }
                    _ => {}
                }
            }
        }
        let state = self.state();
        if state != self.state {
            self.state = state;
            out.push(Output::Notify(state));
        }
        out
    }

    /// Each member is in group fault while any other member's own tracking is down.
    fn spread_fault(&mut self, out: &mut Vec<Output>) {
        for j in 0..self.members.len() {
            let on = self.members.iter().enumerate().any(|(k, m)| k != j && m.faulty);
            if on != self.members[j].told_fault {
                self.members[j].told_fault = on;
                out.push(Output::Deliver { member: j, event: Event::SyncFault { on } });
            }
        }
    }

    /// keepalived `vrrp_sync_can_goto_master`: yes when a member is master
    /// already, or every other member wants to be.
    fn can_go_master(&self, member: usize) -> bool {
        if self.members.get(member).is_none_or(|m| m.state != State::Backup) {
            return false;
        }
        if self.members.iter().any(|m| m.state == State::Master) {
            return true;
        }
        (self.members.iter().enumerate())
            .filter(|&(j, _)| j != member)
            .all(|(_, m)| m.state == State::Backup && m.wants_master)
    }
}

#[cfg(test)]
mod tests;
