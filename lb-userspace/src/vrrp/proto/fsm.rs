//! The VRRP state machine of one virtual router (RFC 5798 section 6, RFC
//! 3768 section 6), with the keepalived 2.2.7 behaviour its peers rely on.
//!
//! RFC 3768 section 6.4 is the same machine with the interval in seconds and
//! no interval adoption; where the versions differ, the handler says so.
//!
//! Sans-IO: [`Instance::handle`] takes an [`Event`] and returns the
//! [`Action`]s the caller must perform, in order. It never reads a clock and
//! never owns a timer: it asks for timers with durations, and the caller
//! feeds back the `*TimerFired` events. So the whole protocol runs under a
//! virtual clock in tests, and the runtime that adds sockets, timers and
//! netlink stays a thin loop.
//!
//! Timer contract for the caller: a `Start*Timer` replaces any pending timer
//! of the same kind, [`Action::CancelTimers`] cancels all of them, and a timer
//! that was replaced or cancelled must not fire. Fires that arrive in a state
//! where they mean nothing are ignored anyway, but a stale master-down fire in
//! Backup would promote the instance, so the contract matters.

use std::{net::IpAddr, time::Duration};

use super::packet::{
    Addresses, Advertisement, Auth, Centiseconds, MAX_V2_INTERVAL, MAX_V3_INTERVAL, PRIORITY_DEFAULT, PRIORITY_OWNER,
    PRIORITY_STOP, Version,
};

/// The states of RFC 5798 section 6.3 (its diagram, plus keepalived's FAULT).
///
/// ```text
///                    +---------------+
///         +--------->|               |<-------------+
///         |          |  Initialize   |              |
///         |   +------|               |----------+   |
///         |   |      +---------------+          |   |
///         |   |                                 |   |
///         |   V                                 V   |
/// +---------------+                       +---------------+
/// |               |---------------------->|               |
/// |    Master     |                       |    Backup     |
/// |               |<----------------------|               |
/// +---------------+                       +---------------+
///        \                                        /
///         +---------->  Fault (tracking)  <------+
///            leaving it: Backup, or Master if owner
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    /// Not running: before [`Event::Startup`] and after [`Event::Shutdown`]
    /// (RFC 5798 section 6.4.1). Named STOP, as in keepalived.
    Initialize,
    /// Monitoring the master, ready to take over (RFC 5798 section 6.4.2).
    Backup,
    /// Holding the VIPs and advertising (RFC 5798 section 6.4.3).
    Master,
    /// A tracked interface or script with weight 0 is down (keepalived): take
    /// no part until it recovers.
    Fault,
}

impl State {
    /// keepalived's word for the state, the one name it has everywhere: in
    /// notify scripts' arguments, the log and `lb status`. Initialize is
    /// keepalived's STOP.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Initialize => "STOP",
            Self::Backup => "BACKUP",
            Self::Master => "MASTER",
            Self::Fault => "FAULT",
        }
    }
}

/// Parameters per virtual router (RFC 5798 section 6.1) and the keepalived
/// options that change the state machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouterParams {
    /// Protocol version; v2 only over IPv4.
    pub version: Version,
    /// Virtual router ID, 1..=255.
    pub vrid: u8,
    /// Base priority: 255 for the address owner, else 1..=254 (default 100).
    pub priority: u8,
    /// Advertisement_Interval; whole seconds in v2, 1..=4095 cs in v3 (default 1 s).
    pub advert_interval: Centiseconds,
    /// Preempt_Mode (default true). keepalived's `nopreempt` sets it false.
    pub preempt: bool,
    /// keepalived's `preempt_delay`: after entering Backup, behave as if
    /// `preempt` were off for this long. Zero (the default) = no delay.
    pub preempt_delay: Duration,
    /// keepalived's `lower_prio_no_advert`: as master, do not answer a
    /// lower-priority advertisement at once.
    pub lower_prio_no_advert: bool,
    /// This router's primary address on the interface: the advert's IP source
    /// and the equal-priority tie-break (RFC 5798 section 6.4.3).
    pub primary_address: IpAddr,
    /// A member of a keepalived `vrrp_sync_group`: the master-down timer
    /// asks the group ([`Action::WantsMaster`]) instead of taking over, and
    /// the group moves the instance with the `Sync*` events.
    pub sync_group: bool,
}

impl RouterParams {
    /// keepalived's defaults: priority 100, 1 s, preemption on, no delay.
    pub const fn new(version: Version, vrid: u8, primary_address: IpAddr) -> Self {
        Self {
            version,
            vrid,
            priority: PRIORITY_DEFAULT,
            advert_interval: Centiseconds::DEFAULT_INTERVAL,
            preempt: true,
            preempt_delay: Duration::ZERO,
            lower_prio_no_advert: false,
            primary_address,
            sync_group: false,
        }
    }

    /// Whether this router owns the virtual addresses (priority 255).
    pub const fn is_owner(&self) -> bool {
        self.priority == PRIORITY_OWNER
    }

    /// Rejects what the wire or the protocol cannot express.
    pub fn validate(&self) -> Result<(), ParamsError> {
        if self.vrid == 0 {
            return Err(ParamsError::ZeroVrid);
        }
        // 0 means "master resigning" on the wire; it is never a configured priority.
        if self.priority == PRIORITY_STOP {
            return Err(ParamsError::ZeroPriority);
        }
        let (min, max) = match self.version {
            Version::V2 => (Centiseconds::from_secs(1), MAX_V2_INTERVAL),
            Version::V3 => (Centiseconds(1), MAX_V3_INTERVAL),
        };
        let interval = self.advert_interval;
        if !(min..=max).contains(&interval) {
            return Err(ParamsError::IntervalOutOfRange { version: self.version, interval, min, max });
        }
        if self.version == Version::V2 {
            if interval.whole_secs().is_none() {
                return Err(ParamsError::IntervalNotWholeSeconds { interval });
            }
            if self.primary_address.is_ipv6() {
                return Err(ParamsError::V2NeedsIpv4 { primary: self.primary_address });
            }
        }
        Ok(())
    }
}

/// Why a [`RouterParams`] cannot run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    #[error("virtual router ID 0 is invalid (1-255)")]
    ZeroVrid,
    #[error("priority 0 is reserved for a resigning master (1-255)")]
    ZeroPriority,
    #[error("{version} advertisement interval {interval} is out of range {min}..={max}")]
    IntervalOutOfRange { version: Version, interval: Centiseconds, min: Centiseconds, max: Centiseconds },
    #[error("VRRPv2 advertisement interval {interval} is not a whole number of seconds")]
    IntervalNotWholeSeconds { interval: Centiseconds },
    #[error("VRRPv2 is IPv4 only, but the primary address is {primary}")]
    V2NeedsIpv4 { primary: IpAddr },
}

/// What happens to an instance. Socket input, timers and tracking reach the
/// state machine only as these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Start taking part (RFC 5798 section 6.4.1).
    Startup,
    /// Start taking part as the master this router was a moment ago: the
    /// agent adopted a fast path pinned by the agent before it (a handover
    /// or a crash, not a cold start) and found every VIP of the instance
    /// still on its interface. Not in the RFC nor in keepalived: the
    /// instance enters Master at once instead of waiting in Backup.
    Resume,
    /// Stop taking part; a master resigns with priority 0.
    Shutdown,
    /// A valid advertisement for this VRID: it passed the receive checks
    /// ([`super::receive::accept`]). See [`Event::advert`].
    AdvertReceived {
        /// The sender's primary address (the IP source).
        from: IpAddr,
        /// The advertised priority; 0 = the master resigns.
        priority: u8,
        /// The advertised interval (v2: whole seconds, in centiseconds).
        max_adver_int: Centiseconds,
    },
    /// The Master_Down_Timer expired.
    MasterDownTimerFired,
    /// The Adver_Timer expired.
    AdverTimerFired,
    /// The `preempt_delay` after entering Backup is over.
    PreemptDelayTimerFired,
    /// A tracked interface or script with weight 0 failed. The caller
    /// aggregates: one event when the first tracked object fails.
    FaultDetected,
    /// All tracked objects are healthy again.
    FaultCleared,
    /// Tracking weights changed the effective priority. Clamped to 1..=254;
    /// ignored for an owner, whose 255 never changes (keepalived).
    PriorityChanged {
        /// The new effective priority.
        effective: u8,
    },
    /// Sync group: every member wants to be master (keepalived
    /// `vrrp_sync_master`), or another member became master. In Backup: take
    /// over now.
    SyncMaster,
    /// Sync group: another member left Master for Backup (keepalived
    /// `vrrp_sync_backup`). In Master: resign with priority 0 and follow.
    SyncBackup,
    /// Sync group: another member is in FAULT (`on`), or none is any more
    /// (keepalived `vrrp_sync_fault`). Kept apart from the instance's own
    /// tracking: Fault is left only when both are clear.
    SyncFault {
        /// Whether some other member is faulty.
        on: bool,
    },
}

impl Event {
    /// The event for a received advertisement from `from` (the IP source).
    pub fn advert(from: IpAddr, advert: &Advertisement) -> Self {
        Self::AdvertReceived { from, priority: advert.priority, max_adver_int: advert.interval }
    }
}

/// What the caller must do, in the order given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send an advertisement with this priority (0 = resigning) as RFC 5798
    /// section 7.2 says: from the primary address, TTL 255, to the group or
    /// the unicast peers. See [`Instance::advertisement`] for its contents.
    SendAdvert {
        /// The priority to advertise.
        priority: u8,
    },
    /// Add the VIPs to the interface (keepalived; the RFC leaves it implicit in "accept").
    AddVips,
    /// Remove the VIPs from the interface.
    RemoveVips,
    /// Gratuitous ARP for each IPv4 VIP, unsolicited NA for each IPv6 one, so
    /// switches and hosts learn the new owner (RFC 5798 sections 6.4 and 8).
    /// The caller applies `garp_master_delay` / `_repeat` / `_refresh`.
    Announce,
    /// (Re)start the Adver_Timer (RFC 5798 section 6.2).
    StartAdverTimer(Duration),
    /// (Re)start the Master_Down_Timer (RFC 5798 section 6.2).
    StartMasterDownTimer(Duration),
    /// (Re)start the `preempt_delay` timer.
    StartPreemptDelayTimer(Duration),
    /// Cancel every pending timer.
    CancelTimers,
    /// The instance entered this state: run the notify scripts (with
    /// [`Instance::priority`]) and log it.
    Notify(State),
    /// An advertisement was dropped; the caller logs it, the instance counted it.
    Discarded(DiscardReason),
    /// Sync group members only: the master-down timer ran out in Backup
    /// (`true`), or a master was heard again (`false`). The group answers
    /// with [`Event::SyncMaster`] once every member wants it.
    WantsMaster(bool),
}

/// Why [`Event::AdvertReceived`] was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiscardReason {
    /// Initialize or Fault: the instance takes no part.
    NotParticipating {
        /// The state it was in.
        state: State,
    },
    /// It carries our own primary address: a looped-back copy of our own
    /// advert, or a duplicate address. Accepting one in Backup would hold off
    /// the takeover for a master that no longer exists.
    OwnAdvert,
    /// v2 only: "MUST verify that the Adver Interval in the packet is the same
    /// as the locally configured" (RFC 3768 section 7.1), which keepalived
    /// enforces in every state.
    IntervalMismatch {
        /// Our configured interval.
        ours: Centiseconds,
        /// The advertised one.
        theirs: Centiseconds,
    },
}

/// What an instance has seen and done, for `lb status` and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Every [`Event::AdvertReceived`], discarded or not.
    pub adverts_received: u64,
    /// Every [`Action::SendAdvert`], including priority 0.
    pub adverts_sent: u64,
    /// Advertisements with priority 0 that were acted upon.
    pub priority_zero_received: u64,
    /// Resignations sent (shutdown, fault).
    pub priority_zero_sent: u64,
    /// Transitions to Master.
    pub became_master: u64,
    /// Transitions out of Master (keepalived's `release_master`).
    pub released_master: u64,
    /// [`DiscardReason::NotParticipating`].
    pub discarded_not_participating: u64,
    /// [`DiscardReason::OwnAdvert`].
    pub discarded_own_advert: u64,
    /// [`DiscardReason::IntervalMismatch`].
    pub discarded_interval_mismatch: u64,
}

/// One virtual router: a VRID on an interface.
#[derive(Clone, Debug)]
pub struct Instance {
    params: RouterParams,
    state: State,
    /// Effective priority: the base priority moved by tracking weights.
    priority: u8,
    /// Master_Adver_Interval (RFC 5798 section 6.1); follows the master in v3 only.
    master_adver_interval: Centiseconds,
    /// Tracking says down; kept apart from `state` so that a fault seen
    /// before startup sends the instance to Fault on startup.
    fault: bool,
    /// In Backup, inside `preempt_delay`.
    preempt_delay_pending: bool,
    /// Another member of the sync group is in FAULT.
    group_fault: bool,
    /// Sync group member in Backup whose master-down timer ran out.
    wants_master: bool,
    counters: Counters,
}

impl Instance {
    /// A new instance, in Initialize.
    pub fn new(params: RouterParams) -> Result<Self, ParamsError> {
        params.validate()?;
        Ok(Self {
            priority: params.priority,
            master_adver_interval: params.advert_interval,
            params,
            state: State::Initialize,
            fault: false,
            preempt_delay_pending: false,
            group_fault: false,
            wants_master: false,
            counters: Counters::default(),
        })
    }

    /// The parameters it runs with.
    pub const fn params(&self) -> &RouterParams {
        &self.params
    }

    /// The current state.
    pub const fn state(&self) -> State {
        self.state
    }

    /// The effective priority.
    pub const fn priority(&self) -> u8 {
        self.priority
    }

    /// Master_Adver_Interval: the master's interval in v3, our own in v2.
    pub const fn master_adver_interval(&self) -> Centiseconds {
        self.master_adver_interval
    }

    /// What has been counted so far.
    pub const fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Skew_Time (RFC 5798 section 6.1, RFC 3768 section 6.1), from the
    /// effective priority: v2 `(256 - Priority) / 256` s; v3
    /// `((256 - Priority) * Master_Adver_Interval) / 256` cs. Kept exact (to
    /// the nanosecond) rather than rounded to centiseconds: keepalived counts
    /// in microseconds, and measured takeovers match the exact value.
    pub fn skew_time(&self) -> Duration {
        let weight = u64::from(256 - u16::from(self.priority));
        let nanos = match self.params.version {
            Version::V2 => weight * 1_000_000_000 / 256,
            Version::V3 => weight * u64::from(self.master_adver_interval.0) * 10_000_000 / 256,
        };
        Duration::from_nanos(nanos)
    }

    /// Master_Down_Interval: `3 * Master_Adver_Interval + Skew_Time` (RFC 5798
    /// section 6.1), the Master_Down_Timer's period (section 6.2); in v2
    /// Master_Adver_Interval is always our own interval.
    pub fn master_down_interval(&self) -> Duration {
        3 * self.master_adver_interval.as_duration() + self.skew_time()
    }

    /// The advertisement that [`Action::SendAdvert`] asks for.
    pub fn advertisement(&self, priority: u8, auth: Auth, addresses: Addresses) -> Advertisement {
        let auth = if self.params.version == Version::V2 { auth } else { Auth::None };
        Advertisement {
            version: self.params.version,
            vrid: self.params.vrid,
            priority,
            interval: self.params.advert_interval,
            auth,
            addresses,
        }
    }

    /// Feeds one event; returns what to do, in order.
    pub fn handle(&mut self, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Startup => self.startup(&mut out),
            Event::Resume => self.resume(&mut out),
            Event::Shutdown => self.shutdown(&mut out),
            Event::AdvertReceived { from, priority, max_adver_int } => {
                self.advert_received(from, priority, max_adver_int, &mut out);
            }
            Event::MasterDownTimerFired => self.master_down_timer_fired(&mut out),
            Event::AdverTimerFired => self.adver_timer_fired(&mut out),
            Event::PreemptDelayTimerFired => self.preempt_delay_over(),
            Event::FaultDetected => self.fault_detected(&mut out),
            Event::FaultCleared => self.fault_cleared(&mut out),
            Event::PriorityChanged { effective } => self.priority_changed(effective),
            Event::SyncMaster => self.sync_master(&mut out),
            Event::SyncBackup => self.sync_backup(&mut out),
            Event::SyncFault { on } => self.sync_fault(on, &mut out),
        }
        out
    }

    /// RFC 5798 section 6.4.1: the owner becomes master at once; everyone
    /// else waits a full Master_Down_Interval as backup, even with keepalived's
    /// `state MASTER` (measured: 3.61 s at priority 100), so a restarted
    /// router never preempts before it has heard the current master.
    fn startup(&mut self, out: &mut Vec<Action>) {
        if self.state != State::Initialize {
            return;
        }
        if self.fault || self.group_fault {
            self.change_state(State::Fault, out);
        } else {
            self.enter_backup_or_owner_master(out);
        }
    }

    /// After a handover the peers still see this router as master: its last
    /// advert left moments ago and the VIPs never left the interface. A
    /// fresh start in Backup would let a lower-priority peer's master-down
    /// timer run out first, so the VIP would move there and back (two
    /// changes of master, two rounds of gratuitous ARP). Taking Master at once
    /// sends an advert before that timer runs out, and the gratuitous ARP of
    /// entering Master corrects a peer that took over in the meantime. A
    /// higher-priority peer is not overridden: its next advert makes this
    /// router step down as usual (RFC 5798 section 6.4.3).
    fn resume(&mut self, out: &mut Vec<Action>) {
        if self.state != State::Initialize {
            return;
        }
        if self.fault || self.group_fault {
            self.change_state(State::Fault, out);
        } else {
            self.change_state(State::Master, out);
        }
    }

    /// RFC 5798 sections 6.4.2 and 6.4.3 (Shutdown): a master resigns with
    /// priority 0 so that a backup takes over after its skew time instead of
    /// the whole master-down interval.
    fn shutdown(&mut self, out: &mut Vec<Action>) {
        match self.state {
            State::Initialize => {}
            State::Master => {
                self.send_advert(PRIORITY_STOP, out);
                self.change_state(State::Initialize, out);
            }
            State::Backup | State::Fault => self.change_state(State::Initialize, out),
        }
    }

    /// RFC 5798 section 7.1 / RFC 3768 section 7.1, the checks that need the
    /// state machine (the others happened in [`super::receive::accept`]),
    /// then the per-state handling.
    ///
    /// Deliberately not done: RFC 5798 section 7.1 has the address owner
    /// discard every advert for its VRID. Handling them like any master does
    /// makes an owner answer a lower-priority master at once (so it steps down
    /// within one round trip) and settles two misconfigured owners by address
    /// instead of leaving both masters.
    fn advert_received(&mut self, from: IpAddr, priority: u8, interval: Centiseconds, out: &mut Vec<Action>) {
        self.counters.adverts_received += 1;
        let reason = if matches!(self.state, State::Initialize | State::Fault) {
            Some(DiscardReason::NotParticipating { state: self.state })
        } else if from == self.params.primary_address {
            Some(DiscardReason::OwnAdvert)
        } else if self.params.version == Version::V2 && interval != self.params.advert_interval {
            Some(DiscardReason::IntervalMismatch { ours: self.params.advert_interval, theirs: interval })
        } else {
            None
        };
        if let Some(reason) = reason {
            self.discard(reason, out);
            return;
        }
        if priority == PRIORITY_STOP {
            self.counters.priority_zero_received += 1;
        }
        match self.state {
            State::Backup => self.backup_advert(priority, interval, out),
            State::Master => self.master_advert(from, priority, interval, out),
            State::Initialize | State::Fault => unreachable!("discarded above"),
        }
    }

    /// RFC 5798 section 6.4.2 (Backup, ADVERTISEMENT received):
    ///
    /// - priority 0: the master resigns; take over after Skew_Time.
    /// - preemption off, or priority >= ours: this is our master. v3 adopts its
    ///   interval (Master_Adver_Interval), then the Master_Down_Timer restarts.
    /// - else a lower-priority master: ignore it, so the Master_Down_Timer
    ///   runs out and we preempt. That is the whole preemption mechanism.
    ///
    /// Equal priority is accepted whatever the addresses: the address
    /// tie-break only settles two masters (RFC 5798 section 6.4.3).
    fn backup_advert(&mut self, priority: u8, interval: Centiseconds, out: &mut Vec<Action>) {
        if priority == PRIORITY_STOP {
            out.push(Action::StartMasterDownTimer(self.skew_time()));
        } else if !self.preempting() || priority >= self.priority {
            if self.params.version == Version::V3 {
                self.master_adver_interval = interval;
            }
            out.push(Action::StartMasterDownTimer(self.master_down_interval()));
            if self.wants_master {
                self.wants_master = false;
                out.push(Action::WantsMaster(false));
            }
        }
    }

    /// RFC 5798 section 6.4.3 (Master, ADVERTISEMENT received):
    ///
    /// - priority 0: another master resigns; advertise at once so backups
    ///   hear a master before their skew time runs out.
    /// - higher priority, or equal priority and a higher primary address: that
    ///   router is master; adopt its interval (v3) and become Backup.
    /// - otherwise the RFC ignores it, but keepalived answers at once with its
    ///   own advert and a new round of gratuitous ARPs, so that the other
    ///   router steps down and stale ARP caches are fixed without waiting a
    ///   full interval (off with `lower_prio_no_advert`).
    ///
    /// Stepping down, this router first sends one advert of its own (not in
    /// the RFC). Two masters mean the link was split, and hosts may have
    /// followed this router's gratuitous ARPs; if the winner's advert
    /// crossed first, the winner would never hear a lower priority, never
    /// announce again, and hosts would keep the loser's MAC for as long as
    /// their ARP caches hold it. The extra advert is the lower-priority
    /// advert that makes the winner answer with gratuitous ARPs; a backup
    /// that hears it treats it as any advert of this priority.
    fn master_advert(&mut self, from: IpAddr, priority: u8, interval: Centiseconds, out: &mut Vec<Action>) {
        if priority == PRIORITY_STOP {
            self.send_advert(self.priority, out);
            out.push(Action::StartAdverTimer(self.params.advert_interval.as_duration()));
        } else if priority > self.priority || (priority == self.priority && from > self.params.primary_address) {
            self.send_advert(self.priority, out);
            if self.params.version == Version::V3 {
                self.master_adver_interval = interval;
            }
            self.change_state(State::Backup, out);
        } else if !self.params.lower_prio_no_advert {
            self.send_advert(self.priority, out);
            out.push(Action::Announce);
        }
    }

    /// RFC 5798 section 6.4.2: no master was heard for Master_Down_Interval
    /// (or Skew_Time after a resignation): take over.
    ///
    /// In a sync group, keepalived's `vrrp_sync_can_goto_master`: "only sync
    /// to master if everyone wants to, i.e. prefer backup state to avoid
    /// thrashing". So the instance only says it wants to, and re-arms the
    /// timer as keepalived does while it waits for the others.
    fn master_down_timer_fired(&mut self, out: &mut Vec<Action>) {
        if self.state != State::Backup {
            return;
        }
        if !self.params.sync_group {
            self.change_state(State::Master, out);
            return;
        }
        out.push(Action::StartMasterDownTimer(self.master_down_interval()));
        if !self.wants_master {
            self.wants_master = true;
            out.push(Action::WantsMaster(true));
        }
    }

    /// RFC 5798 section 6.4.3: advertise and restart the timer.
    fn adver_timer_fired(&mut self, out: &mut Vec<Action>) {
        if self.state == State::Master {
            self.send_advert(self.priority, out);
            out.push(Action::StartAdverTimer(self.params.advert_interval.as_duration()));
        }
    }

    /// keepalived `preempt_delay`: from now on a lower-priority master is preempted.
    fn preempt_delay_over(&mut self) {
        if self.state == State::Backup {
            self.preempt_delay_pending = false;
        }
    }

    /// keepalived tracking with weight 0. A master resigns first (priority 0),
    /// as keepalived does, so the backup takes over after its skew time.
    fn fault_detected(&mut self, out: &mut Vec<Action>) {
        self.fault = true;
        self.enter_fault(out);
    }

    fn enter_fault(&mut self, out: &mut Vec<Action>) {
        match self.state {
            State::Initialize | State::Fault => {}
            State::Master => {
                self.send_advert(PRIORITY_STOP, out);
                self.change_state(State::Fault, out);
            }
            State::Backup => self.change_state(State::Fault, out),
        }
    }

    /// Leaving Fault is a fresh start (RFC 5798 section 6.4.1): Backup, or
    /// Master at once for the owner.
    fn fault_cleared(&mut self, out: &mut Vec<Action>) {
        self.fault = false;
        if self.state == State::Fault && !self.group_fault {
            self.enter_backup_or_owner_master(out);
        }
    }

    /// keepalived `vrrp_sync_master`: the group decided (every member wants
    /// master, or one already is), so a Backup takes over as if its own
    /// master-down timer had fired (RFC 5798 section 6.4.2).
    fn sync_master(&mut self, out: &mut Vec<Action>) {
        if self.state == State::Backup {
            self.change_state(State::Master, out);
        }
    }

    /// keepalived `vrrp_sync_backup` calls `vrrp_state_leave_master` with
    /// its advert flag set: the master resigns with priority 0, so that the
    /// peer's member takes over after its skew time, not the whole
    /// master-down interval.
    fn sync_backup(&mut self, out: &mut Vec<Action>) {
        if self.state == State::Master {
            self.send_advert(PRIORITY_STOP, out);
            self.master_adver_interval = self.params.advert_interval;
            self.change_state(State::Backup, out);
        }
    }

    /// keepalived `vrrp_sync_fault`: a Master goes to FAULT through
    /// resigning (priority 0), a Backup at once. Leaving it is a fresh start
    /// like [`Self::fault_cleared`], once the instance's own tracking is clear too.
    fn sync_fault(&mut self, on: bool, out: &mut Vec<Action>) {
        self.group_fault = on;
        if on {
            self.enter_fault(out);
        } else if self.state == State::Fault && !self.fault {
            self.enter_backup_or_owner_master(out);
        }
    }

    /// Tracking weights. The new priority goes out with the next advert, and
    /// the next received advert is judged against it; no transition happens
    /// here. A master whose priority drops below a backup's is preempted by
    /// that backup's timer, as in RFC 5798 section 6.4.2.
    fn priority_changed(&mut self, effective: u8) {
        if !self.params.is_owner() {
            self.priority = effective.clamp(1, PRIORITY_OWNER - 1);
        }
    }

    fn enter_backup_or_owner_master(&mut self, out: &mut Vec<Action>) {
        if self.params.is_owner() {
            self.change_state(State::Master, out);
        } else {
            self.master_adver_interval = self.params.advert_interval;
            self.change_state(State::Backup, out);
        }
    }

    fn preempting(&self) -> bool {
        self.params.preempt && !self.preempt_delay_pending
    }

    fn send_advert(&mut self, priority: u8, out: &mut Vec<Action>) {
        self.counters.adverts_sent += 1;
        if priority == PRIORITY_STOP {
            self.counters.priority_zero_sent += 1;
        }
        out.push(Action::SendAdvert { priority });
    }

    fn discard(&mut self, reason: DiscardReason, out: &mut Vec<Action>) {
        let counter = match reason {
            DiscardReason::NotParticipating { .. } => &mut self.counters.discarded_not_participating,
            DiscardReason::OwnAdvert => &mut self.counters.discarded_own_advert,
            DiscardReason::IntervalMismatch { .. } => &mut self.counters.discarded_interval_mismatch,
        };
        *counter += 1;
        out.push(Action::Discarded(reason));
    }

    /// The one place states change. Leaving any state cancels its timers, and
    /// leaving Master gives up the VIPs; entering a state performs its entry
    /// actions from RFC 5798 section 6.4. Whatever must happen before leaving
    /// (a resignation advert) is the caller's job, so it goes out first.
    fn change_state(&mut self, to: State, out: &mut Vec<Action>) {
        debug_assert_ne!(self.state, to, "change_state is for changes");
        out.push(Action::CancelTimers);
        if self.state == State::Master {
            self.counters.released_master += 1;
            out.push(Action::RemoveVips);
        }
        self.state = to;
        self.preempt_delay_pending = false;
        // The group forgets a member's wish when its state changes.
        self.wants_master = false;
        match to {
            State::Initialize | State::Fault => {}
            // Master_Adver_Interval was set by the caller: our own on a fresh
            // start, the new master's when stepping down (v3).
            State::Backup => {
                out.push(Action::StartMasterDownTimer(self.master_down_interval()));
                if !self.params.preempt_delay.is_zero() {
                    self.preempt_delay_pending = true;
                    out.push(Action::StartPreemptDelayTimer(self.params.preempt_delay));
                }
            }
            // RFC 5798 section 6.4.2, Master_Down_Timer fired: advertise first so
            // other backups stop their timers, then take the addresses and tell
            // the switches.
            State::Master => {
                self.counters.became_master += 1;
                self.send_advert(self.priority, out);
                out.push(Action::AddVips);
                out.push(Action::Announce);
                out.push(Action::StartAdverTimer(self.params.advert_interval.as_duration()));
            }
        }
        out.push(Action::Notify(to));
    }
}

#[cfg(test)]
mod tests;
