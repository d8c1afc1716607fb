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
    /// (RFC 5798 section 6.4.1). Notified as keepalived's STOP.
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
    /// The word keepalived's `notify` scripts get.
    pub const fn keepalived_name(self) -> &'static str {
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
pub struct Config {
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

impl Config {
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
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.vrid == 0 {
            return Err(ConfigError::ZeroVrid);
        }
        // 0 means "master resigning" on the wire; it is never a configured priority.
        if self.priority == PRIORITY_STOP {
            return Err(ConfigError::ZeroPriority);
        }
        let (min, max) = match self.version {
            Version::V2 => (Centiseconds::from_secs(1), MAX_V2_INTERVAL),
            Version::V3 => (Centiseconds(1), MAX_V3_INTERVAL),
        };
        let interval = self.advert_interval;
        if !(min..=max).contains(&interval) {
            return Err(ConfigError::IntervalOutOfRange { version: self.version, interval, min, max });
        }
        if self.version == Version::V2 {
            if interval.whole_secs().is_none() {
                return Err(ConfigError::IntervalNotWholeSeconds { interval });
            }
            if self.primary_address.is_ipv6() {
                return Err(ConfigError::V2NeedsIpv4 { primary: self.primary_address });
            }
        }
        Ok(())
    }
}

/// Why a [`Config`] cannot run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
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
    /// Stop taking part; a master resigns with priority 0.
    Shutdown,
    /// A valid advertisement for this VRID: it passed
    /// [`Advertisement::decode`] and the per-instance checks, and came with
    /// TTL 255. See [`Event::advert`].
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
    config: Config,
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
    pub fn new(config: Config) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            priority: config.priority,
            master_adver_interval: config.advert_interval,
            config,
            state: State::Initialize,
            fault: false,
            preempt_delay_pending: false,
            group_fault: false,
            wants_master: false,
            counters: Counters::default(),
        })
    }

    /// The configuration it runs with.
    pub const fn config(&self) -> &Config {
        &self.config
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
        let nanos = match self.config.version {
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
        let auth = if self.config.version == Version::V2 { auth } else { Auth::None };
        Advertisement {
            version: self.config.version,
            vrid: self.config.vrid,
            priority,
            interval: self.config.advert_interval,
            auth,
            addresses,
        }
    }

    /// Feeds one event; returns what to do, in order.
    pub fn handle(&mut self, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Startup => self.startup(&mut out),
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
    /// state machine (the packet-level ones happened in
    /// [`Advertisement::decode`]), then the per-state handling.
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
        } else if from == self.config.primary_address {
            Some(DiscardReason::OwnAdvert)
        } else if self.config.version == Version::V2 && interval != self.config.advert_interval {
            Some(DiscardReason::IntervalMismatch { ours: self.config.advert_interval, theirs: interval })
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
            if self.config.version == Version::V3 {
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
    fn master_advert(&mut self, from: IpAddr, priority: u8, interval: Centiseconds, out: &mut Vec<Action>) {
        if priority == PRIORITY_STOP {
            self.send_advert(self.priority, out);
            out.push(Action::StartAdverTimer(self.config.advert_interval.as_duration()));
        } else if priority > self.priority || (priority == self.priority && from > self.config.primary_address) {
            if self.config.version == Version::V3 {
                self.master_adver_interval = interval;
            }
            self.change_state(State::Backup, out);
        } else if !self.config.lower_prio_no_advert {
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
        if !self.config.sync_group {
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
            out.push(Action::StartAdverTimer(self.config.advert_interval.as_duration()));
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
            self.master_adver_interval = self.config.advert_interval;
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
        if !self.config.is_owner() {
            self.priority = effective.clamp(1, PRIORITY_OWNER - 1);
        }
    }

    fn enter_backup_or_owner_master(&mut self, out: &mut Vec<Action>) {
        if self.config.is_owner() {
            self.change_state(State::Master, out);
        } else {
            self.master_adver_interval = self.config.advert_interval;
            self.change_state(State::Backup, out);
        }
    }

    fn preempting(&self) -> bool {
        self.config.preempt && !self.preempt_delay_pending
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
                if !self.config.preempt_delay.is_zero() {
                    self.preempt_delay_pending = true;
                    out.push(Action::StartPreemptDelayTimer(self.config.preempt_delay));
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
                out.push(Action::StartAdverTimer(self.config.advert_interval.as_duration()));
            }
        }
        out.push(Action::Notify(to));
    }
}

#[cfg(test)]
mod tests {
    use std::{
        collections::{BTreeMap, VecDeque},
        net::Ipv4Addr,
    };

    use super::*;

    fn addr(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    fn cfg(version: Version, priority: u8, last: u8) -> Config {
        Config { priority, ..Config::new(version, 51, addr(last)) }
    }

    fn v3(priority: u8, last: u8, interval_cs: u16) -> Config {
        Config { advert_interval: Centiseconds(interval_cs), ..cfg(Version::V3, priority, last) }
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn nanos(n: u64) -> Duration {
        Duration::from_nanos(n)
    }

    fn advert(from: u8, priority: u8, cs: u16) -> Event {
        Event::AdvertReceived { from: addr(from), priority, max_adver_int: Centiseconds(cs) }
    }

    /// v2 at priority 100: 3 s + 156/256 s.
    const MD_V2_100: Duration = Duration::from_nanos(3_609_375_000);
    /// v2 at priority 150: 3 s + 106/256 s.
    const MD_V2_150: Duration = Duration::from_nanos(3_414_062_500);
    /// v2 skew at priority 100: 156/256 s; measured 0.610 s from keepalived.
    const SKEW_V2_100: Duration = Duration::from_nanos(609_375_000);
    const ONE_S: Duration = Duration::from_secs(1);

    fn become_master(priority: u8) -> Vec<Action> {
        vec![
            Action::CancelTimers,
            Action::SendAdvert { priority },
            Action::AddVips,
            Action::Announce,
            Action::StartAdverTimer(ONE_S),
            Action::Notify(State::Master),
        ]
    }

    #[test]
    fn timer_formulas() {
        let inst = Instance::new(cfg(Version::V2, 100, 1)).unwrap();
        assert_eq!(inst.skew_time(), SKEW_V2_100);
        assert_eq!(inst.master_down_interval(), MD_V2_100);
        // v3 at 0.1 s: skew = 156 * 10 cs / 256 = 6.09375 cs; master-down 30 + 6.09375 cs.
        let inst = Instance::new(v3(100, 1, 10)).unwrap();
        assert_eq!(inst.skew_time(), nanos(60_937_500));
        assert_eq!(inst.master_down_interval(), nanos(360_937_500));
        let owner = Instance::new(cfg(Version::V2, 255, 1)).unwrap();
        assert_eq!(owner.skew_time(), nanos(3_906_250));
    }

    #[test]
    fn config_validation() {
        let ok = cfg(Version::V2, 100, 1);
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(Config { vrid: 0, ..ok.clone() }.validate(), Err(ConfigError::ZeroVrid));
        assert_eq!(Config { priority: 0, ..ok.clone() }.validate(), Err(ConfigError::ZeroPriority));
        assert_eq!(
            Config { advert_interval: Centiseconds(150), ..ok.clone() }.validate(),
            Err(ConfigError::IntervalNotWholeSeconds { interval: Centiseconds(150) })
        );
        assert!(matches!(
            Config { advert_interval: Centiseconds(10), ..ok.clone() }.validate(),
            Err(ConfigError::IntervalOutOfRange { .. })
        ));
        assert!(matches!(v3(100, 1, 4096).validate(), Err(ConfigError::IntervalOutOfRange { .. })));
        assert!(matches!(v3(100, 1, 0).validate(), Err(ConfigError::IntervalOutOfRange { .. })));
        assert_eq!(v3(100, 1, 1).validate(), Ok(()));
        let v6 = IpAddr::V6(std::net::Ipv6Addr::LOCALHOST);
        assert_eq!(
            Config { primary_address: v6, ..ok.clone() }.validate(),
            Err(ConfigError::V2NeedsIpv4 { primary: v6 })
        );
        assert!(Instance::new(Config { vrid: 0, ..ok }).is_err());
    }

    /// One transition: from the state `before` leads to, `event` must give
    /// exactly `actions` and end in `state`.
    struct Case {
        name: &'static str,
        config: Config,
        before: Vec<Event>,
        event: Event,
        actions: Vec<Action>,
        state: State,
    }

    fn cases() -> Vec<Case> {
        use Action::*;
        use Event::*;
        let v2 = |p| cfg(Version::V2, p, 5);
        let synced = |p| Config { sync_group: true, ..cfg(Version::V2, p, 5) };
        let backup = || vec![Startup];
        let master = || vec![Startup, MasterDownTimerFired];
        let discard = |reason| vec![Discarded(reason)];
        vec![
            Case {
                name: "6.4.1 startup: non-owner waits a master-down interval in Backup",
                config: v2(100),
                before: vec![],
                event: Startup,
                actions: vec![CancelTimers, StartMasterDownTimer(MD_V2_100), Notify(State::Backup)],
                state: State::Backup,
            },
            Case {
                name: "6.4.1 startup v3 0.1 s: master-down 0.3 s + 6.09 cs",
                config: v3(100, 5, 10),
                before: vec![],
                event: Startup,
                actions: vec![CancelTimers, StartMasterDownTimer(nanos(360_937_500)), Notify(State::Backup)],
                state: State::Backup,
            },
            Case {
                name: "6.4.1 startup: owner is master at once",
                config: v2(255),
                before: vec![],
                event: Startup,
                actions: become_master(255),
                state: State::Master,
            },
            Case {
                name: "startup while a tracked object is down goes to Fault",
                config: v2(100),
                before: vec![FaultDetected],
                event: Startup,
                actions: vec![CancelTimers, Notify(State::Fault)],
                state: State::Fault,
            },
            Case {
                name: "startup twice is ignored",
                config: v2(100),
                before: backup(),
                event: Startup,
                actions: vec![],
                state: State::Backup,
            },
            Case {
                name: "6.4.2 master-down timer fires: Backup -> Master",
                config: v2(100),
                before: backup(),
                event: MasterDownTimerFired,
                actions: become_master(100),
                state: State::Master,
            },
            Case {
                name: "6.4.2 priority 0 received: master-down := skew time",
                config: v2(100),
                before: backup(),
                event: advert(9, 0, 100),
                actions: vec![StartMasterDownTimer(SKEW_V2_100)],
                state: State::Backup,
            },
            Case {
                name: "6.4.2 higher priority: reset master-down",
                config: v2(100),
                before: backup(),
                event: advert(9, 150, 100),
                actions: vec![StartMasterDownTimer(MD_V2_100)],
                state: State::Backup,
            },
            Case {
                name: "6.4.2 equal priority, lower address: still accepted in Backup",
                config: v2(100),
                before: backup(),
                event: advert(1, 100, 100),
                actions: vec![StartMasterDownTimer(MD_V2_100)],
                state: State::Backup,
            },
            Case {
                name: "6.4.2 lower priority with preempt: ignored, so the timer preempts",
                config: v2(150),
                before: backup(),
                event: advert(9, 100, 100),
                actions: vec![],
                state: State::Backup,
            },
            Case {
                name: "6.4.2 lower priority with nopreempt: accepted",
                config: Config { preempt: false, ..v2(150) },
                before: backup(),
                event: advert(9, 100, 100),
                actions: vec![StartMasterDownTimer(MD_V2_150)],
                state: State::Backup,
            },
            Case {
                name: "preempt_delay: lower priority accepted while the delay runs",
                config: Config { preempt_delay: secs(30.0), ..v2(150) },
                before: backup(),
                event: advert(9, 100, 100),
                actions: vec![StartMasterDownTimer(MD_V2_150)],
                state: State::Backup,
            },
            Case {
                name: "preempt_delay: lower priority ignored once the delay is over",
                config: Config { preempt_delay: secs(30.0), ..v2(150) },
                before: vec![Startup, PreemptDelayTimerFired],
                event: advert(9, 100, 100),
                actions: vec![],
                state: State::Backup,
            },
            Case {
                name: "preempt_delay: entering Backup starts the delay timer",
                config: Config { preempt_delay: secs(30.0), ..v2(150) },
                before: vec![],
                event: Startup,
                actions: vec![
                    CancelTimers,
                    StartMasterDownTimer(MD_V2_150),
                    StartPreemptDelayTimer(secs(30.0)),
                    Notify(State::Backup),
                ],
                state: State::Backup,
            },
            Case {
                name: "v2 (RFC 3768 7.1, keepalived): interval mismatch discarded in Backup",
                config: v2(100),
                before: backup(),
                event: advert(9, 150, 200),
                actions: discard(DiscardReason::IntervalMismatch {
                    ours: Centiseconds(100),
                    theirs: Centiseconds(200),
                }),
                state: State::Backup,
            },
            Case {
                name: "v2: interval mismatch discarded in Master too",
                config: v2(100),
                before: master(),
                event: advert(9, 150, 300),
                actions: discard(DiscardReason::IntervalMismatch {
                    ours: Centiseconds(100),
                    theirs: Centiseconds(300),
                }),
                state: State::Master,
            },
            Case {
                name: "v3 6.4.2: Backup adopts the master's interval",
                config: v3(100, 5, 100),
                before: backup(),
                // 3 * 50 cs + 156 * 50 / 256 cs = 150 + 30.46875 cs
                event: advert(9, 150, 50),
                actions: vec![StartMasterDownTimer(nanos(1_804_687_500))],
                state: State::Backup,
            },
            Case {
                name: "own advert (looped back) is discarded",
                config: v2(100),
                before: backup(),
                event: advert(5, 150, 100),
                actions: discard(DiscardReason::OwnAdvert),
                state: State::Backup,
            },
            Case {
                name: "adverts before startup are discarded",
                config: v2(100),
                before: vec![],
                event: advert(9, 150, 100),
                actions: discard(DiscardReason::NotParticipating { state: State::Initialize }),
                state: State::Initialize,
            },
            Case {
                name: "6.4.3 adver timer fires: advertise and restart",
                config: v2(100),
                before: master(),
                event: AdverTimerFired,
                actions: vec![SendAdvert { priority: 100 }, StartAdverTimer(ONE_S)],
                state: State::Master,
            },
            Case {
                name: "6.4.3 priority 0 received: advertise at once, reset the timer",
                config: v2(100),
                before: master(),
                event: advert(9, 0, 100),
                actions: vec![SendAdvert { priority: 100 }, StartAdverTimer(ONE_S)],
                state: State::Master,
            },
            Case {
                name: "6.4.3 higher priority: Master -> Backup, VIPs go",
                config: v2(100),
                before: master(),
                event: advert(9, 150, 100),
                actions: vec![CancelTimers, RemoveVips, StartMasterDownTimer(MD_V2_100), Notify(State::Backup)],
                state: State::Backup,
            },
            Case {
                name: "6.4.3 v3 higher priority: the new master's interval is adopted",
                config: v3(100, 5, 100),
                before: master(),
                event: advert(9, 150, 50),
                actions: vec![
                    CancelTimers,
                    RemoveVips,
                    StartMasterDownTimer(nanos(1_804_687_500)),
                    Notify(State::Backup),
                ],
                state: State::Backup,
            },
            Case {
                name: "6.4.3 equal priority, higher address: Master -> Backup",
                config: v2(100),
                before: master(),
                event: advert(9, 100, 100),
                actions: vec![CancelTimers, RemoveVips, StartMasterDownTimer(MD_V2_100), Notify(State::Backup)],
                state: State::Backup,
            },
            Case {
                name: "6.4.3 equal priority, lower address: keepalived answers",
                config: v2(100),
                before: master(),
                event: advert(1, 100, 100),
                actions: vec![SendAdvert { priority: 100 }, Announce],
                state: State::Master,
            },
            Case {
                name: "keepalived: lower priority is answered with an advert and GARP",
                config: v2(150),
                before: master(),
                event: advert(9, 100, 100),
                actions: vec![SendAdvert { priority: 150 }, Announce],
                state: State::Master,
            },
            Case {
                name: "keepalived lower_prio_no_advert: lower priority ignored",
                config: Config { lower_prio_no_advert: true, ..v2(150) },
                before: master(),
                event: advert(9, 100, 100),
                actions: vec![],
                state: State::Master,
            },
            Case {
                name: "6.4.3 shutdown: Master resigns with priority 0",
                config: v2(100),
                before: master(),
                event: Shutdown,
                actions: vec![SendAdvert { priority: 0 }, CancelTimers, RemoveVips, Notify(State::Initialize)],
                state: State::Initialize,
            },
            Case {
                name: "6.4.2 shutdown: Backup just stops",
                config: v2(100),
                before: backup(),
                event: Shutdown,
                actions: vec![CancelTimers, Notify(State::Initialize)],
                state: State::Initialize,
            },
            Case {
                name: "fault in Master: resign with priority 0, then drop the VIPs",
                config: v2(100),
                before: master(),
                event: FaultDetected,
                actions: vec![SendAdvert { priority: 0 }, CancelTimers, RemoveVips, Notify(State::Fault)],
                state: State::Fault,
            },
            Case {
                name: "fault in Backup",
                config: v2(100),
                before: backup(),
                event: FaultDetected,
                actions: vec![CancelTimers, Notify(State::Fault)],
                state: State::Fault,
            },
            Case {
                name: "fault cleared: Backup",
                config: v2(100),
                before: vec![Startup, FaultDetected],
                event: FaultCleared,
                actions: vec![CancelTimers, StartMasterDownTimer(MD_V2_100), Notify(State::Backup)],
                state: State::Backup,
            },
            Case {
                name: "fault cleared: owner goes straight to Master",
                config: v2(255),
                before: vec![Startup, FaultDetected],
                event: FaultCleared,
                actions: become_master(255),
                state: State::Master,
            },
            Case {
                name: "Fault ignores adverts",
                config: v2(100),
                before: vec![Startup, FaultDetected],
                event: advert(9, 0, 100),
                actions: discard(DiscardReason::NotParticipating { state: State::Fault }),
                state: State::Fault,
            },
            Case {
                name: "Fault ignores timers",
                config: v2(100),
                before: vec![Startup, FaultDetected],
                event: MasterDownTimerFired,
                actions: vec![],
                state: State::Fault,
            },
            Case {
                name: "shutdown from Fault",
                config: v2(100),
                before: vec![Startup, FaultDetected],
                event: Shutdown,
                actions: vec![CancelTimers, Notify(State::Initialize)],
                state: State::Initialize,
            },
            Case {
                name: "stale master-down fire in Master is ignored",
                config: v2(100),
                before: master(),
                event: MasterDownTimerFired,
                actions: vec![],
                state: State::Master,
            },
            Case {
                name: "stale adver timer fire in Backup is ignored",
                config: v2(100),
                before: backup(),
                event: AdverTimerFired,
                actions: vec![],
                state: State::Backup,
            },
            Case {
                name: "priority change goes out with the next advert",
                config: v2(150),
                before: vec![Startup, MasterDownTimerFired, PriorityChanged { effective: 130 }],
                event: AdverTimerFired,
                actions: vec![SendAdvert { priority: 130 }, StartAdverTimer(ONE_S)],
                state: State::Master,
            },
            Case {
                name: "effective priority is clamped to 1..=254",
                config: v2(150),
                before: vec![Startup, MasterDownTimerFired, PriorityChanged { effective: 0 }],
                event: AdverTimerFired,
                actions: vec![SendAdvert { priority: 1 }, StartAdverTimer(ONE_S)],
                state: State::Master,
            },
            Case {
                name: "an owner's priority never changes",
                config: v2(255),
                before: vec![Startup, PriorityChanged { effective: 100 }],
                event: AdverTimerFired,
                actions: vec![SendAdvert { priority: 255 }, StartAdverTimer(ONE_S)],
                state: State::Master,
            },
            Case {
                name: "sync group: master-down asks the group, re-arms, stays Backup",
                config: synced(100),
                before: backup(),
                event: MasterDownTimerFired,
                actions: vec![StartMasterDownTimer(MD_V2_100), WantsMaster(true)],
                state: State::Backup,
            },
            Case {
                name: "sync group: asking again does not repeat the wish",
                config: synced(100),
                before: vec![Startup, MasterDownTimerFired],
                event: MasterDownTimerFired,
                actions: vec![StartMasterDownTimer(MD_V2_100)],
                state: State::Backup,
            },
            Case {
                name: "sync group: a master heard again withdraws the wish",
                config: synced(100),
                before: vec![Startup, MasterDownTimerFired],
                event: advert(9, 150, 100),
                actions: vec![StartMasterDownTimer(MD_V2_100), WantsMaster(false)],
                state: State::Backup,
            },
            Case {
                name: "sync group: a resignation shortens the wait but asks the group too",
                config: synced(100),
                before: vec![Startup, advert(9, 0, 100)],
                event: MasterDownTimerFired,
                actions: vec![StartMasterDownTimer(MD_V2_100), WantsMaster(true)],
                state: State::Backup,
            },
            Case {
                name: "vrrp_sync_master: Backup -> Master at once",
                config: synced(100),
                before: vec![Startup, MasterDownTimerFired],
                event: SyncMaster,
                actions: become_master(100),
                state: State::Master,
            },
            Case {
                name: "vrrp_sync_master in Fault is ignored",
                config: synced(100),
                before: vec![Startup, FaultDetected],
                event: SyncMaster,
                actions: vec![],
                state: State::Fault,
            },
            Case {
                name: "vrrp_sync_backup: Master resigns with priority 0 and becomes Backup",
                config: synced(100),
                before: vec![Startup, MasterDownTimerFired, SyncMaster],
                event: SyncBackup,
                actions: vec![
                    SendAdvert { priority: 0 },
                    CancelTimers,
                    RemoveVips,
                    StartMasterDownTimer(MD_V2_100),
                    Notify(State::Backup),
                ],
                state: State::Backup,
            },
            Case {
                name: "vrrp_sync_backup in Backup is ignored",
                config: synced(100),
                before: backup(),
                event: SyncBackup,
                actions: vec![],
                state: State::Backup,
            },
            Case {
                name: "vrrp_sync_fault in Master: resign, then Fault",
                config: synced(100),
                before: vec![Startup, MasterDownTimerFired, SyncMaster],
                event: SyncFault { on: true },
                actions: vec![SendAdvert { priority: 0 }, CancelTimers, RemoveVips, Notify(State::Fault)],
                state: State::Fault,
            },
            Case {
                name: "group fault cleared: Backup",
                config: synced(100),
                before: vec![Startup, SyncFault { on: true }],
                event: SyncFault { on: false },
                actions: vec![CancelTimers, StartMasterDownTimer(MD_V2_100), Notify(State::Backup)],
                state: State::Backup,
            },
            Case {
                name: "group fault cleared while the own tracking is down: stays Fault",
                config: synced(100),
                before: vec![Startup, FaultDetected, SyncFault { on: true }],
                event: SyncFault { on: false },
                actions: vec![],
                state: State::Fault,
            },
            Case {
                name: "own fault cleared while the group is in fault: stays Fault",
                config: synced(100),
                before: vec![Startup, SyncFault { on: true }, FaultDetected],
                event: FaultCleared,
                actions: vec![],
                state: State::Fault,
            },
            Case {
                name: "startup during a group fault goes to Fault",
                config: synced(100),
                before: vec![SyncFault { on: true }],
                event: Startup,
                actions: vec![CancelTimers, Notify(State::Fault)],
                state: State::Fault,
            },
            Case {
                name: "a backup's skew follows its effective priority",
                config: v2(100),
                before: vec![Startup, PriorityChanged { effective: 200 }],
                event: advert(9, 0, 100),
                actions: vec![StartMasterDownTimer(nanos(218_750_000))],
                state: State::Backup,
            },
        ]
    }

    #[test]
    fn transitions() {
        for case in cases() {
            let mut inst = Instance::new(case.config).unwrap();
            for ev in case.before {
                inst.handle(ev);
            }
            assert_eq!(inst.handle(case.event), case.actions, "{}", case.name);
            assert_eq!(inst.state(), case.state, "{}", case.name);
        }
    }

    #[test]
    fn notify_names() {
        let names = [State::Initialize, State::Backup, State::Master, State::Fault].map(State::keepalived_name);
        assert_eq!(names, ["STOP", "BACKUP", "MASTER", "FAULT"]);
    }

    #[test]
    fn counters() {
        let mut inst = Instance::new(cfg(Version::V2, 100, 5)).unwrap();
        inst.handle(advert(9, 150, 100));
        inst.handle(Event::Startup);
        inst.handle(advert(9, 150, 200));
        inst.handle(advert(5, 150, 100));
        inst.handle(advert(9, 0, 100));
        inst.handle(Event::MasterDownTimerFired);
        inst.handle(Event::Shutdown);
        assert_eq!(
            *inst.counters(),
            Counters {
                adverts_received: 4,
                adverts_sent: 2,
                priority_zero_received: 1,
                priority_zero_sent: 1,
                became_master: 1,
                discarded_not_participating: 1,
                discarded_own_advert: 1,
                discarded_interval_mismatch: 1,
            }
        );
    }

    #[test]
    fn advertisement_for_sending() {
        let inst = Instance::new(v3(100, 5, 10)).unwrap();
        let vips = Addresses::V4(vec![Ipv4Addr::new(10, 0, 0, 100)]);
        let adv = inst.advertisement(0, Auth::pass("ignored"), vips.clone());
        assert_eq!(
            adv,
            Advertisement {
                version: Version::V3,
                vrid: 51,
                priority: 0,
                interval: Centiseconds(10),
                auth: Auth::None,
                addresses: vips
            }
        );
        let from = addr(9);
        assert_eq!(
            Event::advert(from, &adv),
            Event::AdvertReceived { from, priority: 0, max_adver_int: Centiseconds(10) }
        );
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
    enum Timer {
        Adver,
        MasterDown,
        PreemptDelay,
    }

    impl Timer {
        const fn fired(self) -> Event {
            match self {
                Self::Adver => Event::AdverTimerFired,
                Self::MasterDown => Event::MasterDownTimerFired,
                Self::PreemptDelay => Event::PreemptDelayTimerFired,
            }
        }
    }

    struct Node {
        inst: Instance,
        /// Deadlines of the pending timers.
        timers: BTreeMap<Timer, Duration>,
        /// SIGSTOPped: neither timers nor packets reach it.
        frozen: bool,
        vips: bool,
    }

    /// What a node did, and when.
    #[derive(Clone, Copy, Debug)]
    struct Record {
        at: Duration,
        node: usize,
        action: Action,
    }

    /// Routers on one segment under a virtual clock. Adverts arrive without
    /// delay, but after the sender's current batch of actions; timers due at
    /// the same instant fire in node order, then timer order, so every run is
    /// the same.
    struct Sim {
        now: Duration,
        nodes: Vec<Node>,
        queue: VecDeque<(usize, Event)>,
        log: Vec<Record>,
        /// Multicast filtered: adverts are lost, the classic split brain.
        partitioned: bool,
    }

    impl Sim {
        fn new(configs: Vec<Config>) -> Self {
            let nodes = configs
                .into_iter()
                .map(|c| Node { inst: Instance::new(c).unwrap(), timers: BTreeMap::new(), frozen: false, vips: false })
                .collect();
            Self { now: Duration::ZERO, nodes, queue: VecDeque::new(), log: vec![], partitioned: false }
        }

        /// Starts all nodes now.
        fn started(configs: Vec<Config>) -> Self {
            let mut sim = Self::new(configs);
            for i in 0..sim.nodes.len() {
                sim.event(i, Event::Startup);
            }
            sim
        }

        fn event(&mut self, node: usize, event: Event) {
            self.queue.push_back((node, event));
            while let Some((i, ev)) = self.queue.pop_front() {
                if self.nodes[i].frozen {
                    continue;
                }
                for action in self.nodes[i].inst.handle(ev) {
                    self.apply(i, action);
                }
            }
        }

        fn apply(&mut self, i: usize, action: Action) {
            self.log.push(Record { at: self.now, node: i, action });
            let node = &mut self.nodes[i];
            match action {
                Action::StartAdverTimer(d) => _ = node.timers.insert(Timer::Adver, self.now + d),
                Action::StartMasterDownTimer(d) => _ = node.timers.insert(Timer::MasterDown, self.now + d),
                Action::StartPreemptDelayTimer(d) => _ = node.timers.insert(Timer::PreemptDelay, self.now + d),
                Action::CancelTimers => node.timers.clear(),
                Action::AddVips => node.vips = true,
                Action::RemoveVips => node.vips = false,
                Action::SendAdvert { priority } => {
                    let from = node.inst.config().primary_address;
                    let max_adver_int = node.inst.config().advert_interval;
                    if !self.partitioned {
                        for j in (0..self.nodes.len()).filter(|&j| j != i) {
                            self.queue.push_back((j, Event::AdvertReceived { from, priority, max_adver_int }));
                        }
                    }
                }
                Action::Announce | Action::Notify(_) | Action::Discarded(_) | Action::WantsMaster(_) => {}
            }
        }

        /// Runs the clock forward by `d`, firing timers as they come due.
        fn advance(&mut self, d: Duration) {
            let end = self.now + d;
            loop {
                let next = (self.nodes.iter().enumerate())
                    .filter(|(_, n)| !n.frozen)
                    .flat_map(|(i, n)| n.timers.iter().map(move |(&t, &at)| (at, i, t)))
                    .min();
                match next {
                    Some((at, i, timer)) if at <= end => {
                        self.now = at;
                        self.nodes[i].timers.remove(&timer);
                        self.event(i, timer.fired());
                    }
                    _ => break,
                }
            }
            self.now = end;
        }

        fn advance_secs(&mut self, s: f64) {
            self.advance(secs(s));
        }

        fn state(&self, i: usize) -> State {
            self.nodes[i].inst.state()
        }

        /// When node `i` last entered `state`.
        fn entered(&self, i: usize, state: State) -> Option<Duration> {
            self.log
                .iter()
                .rev()
                .find(|r| r.node == i && matches!(r.action, Action::Notify(s) if s == state))
                .map(|r| r.at)
        }

        /// When node `i` last sent an advert.
        fn last_advert(&self, i: usize) -> Option<Duration> {
            self.log.iter().rev().find(|r| r.node == i && matches!(r.action, Action::SendAdvert { .. })).map(|r| r.at)
        }

        /// Every state change of node `i`, with its time.
        fn history(&self, i: usize) -> Vec<(Duration, State)> {
            (self.log.iter())
                .filter(|r| r.node == i)
                .filter_map(|r| match r.action {
                    Action::Notify(s) => Some((r.at, s)),
                    _ => None,
                })
                .collect()
        }

        /// The nodes holding the VIPs; more than one is split brain.
        fn holders(&self) -> Vec<usize> {
            (0..self.nodes.len()).filter(|&i| self.nodes[i].vips).collect()
        }
    }

    #[test]
    fn cold_start_waits_the_master_down_interval() {
        let mut sim = Sim::started(vec![cfg(Version::V2, 100, 1)]);
        sim.advance_secs(10.0);
        assert_eq!(sim.history(0), vec![(Duration::ZERO, State::Backup), (MD_V2_100, State::Master)]);
        assert_eq!(sim.holders(), vec![0]);
        // Advertising every second from then on.
        let sent = sim.log.iter().filter(|r| matches!(r.action, Action::SendAdvert { priority: 100 })).count();
        assert_eq!(sent, 7, "at 3.61, 4.61, ..., 9.61 s");
    }

    #[test]
    fn cold_start_v3_fast_interval() {
        let mut sim = Sim::started(vec![v3(100, 1, 10)]);
        sim.advance_secs(1.0);
        assert_eq!(sim.entered(0, State::Master), Some(nanos(360_937_500)));
    }

    #[test]
    fn owner_is_master_at_once_and_takes_over() {
        // A priority-100 router has been master alone; the owner starts.
        let mut sim = Sim::started(vec![cfg(Version::V2, 100, 1), cfg(Version::V2, 255, 2)]);
        sim.event(1, Event::Shutdown);
        sim.advance_secs(5.0);
        assert_eq!(sim.state(0), State::Master);
        sim.event(1, Event::Startup);
        assert_eq!(sim.entered(1, State::Master), Some(secs(5.0)));
        assert_eq!(sim.entered(0, State::Backup), Some(secs(5.0)), "stepped down on the owner's first advert");
        assert_eq!(sim.holders(), vec![1]);
        sim.advance_secs(30.0);
        assert_eq!((sim.state(0), sim.state(1)), (State::Backup, State::Master));
    }

    /// Starts A (priority 150) and B (priority 100) together, v2 1 s, and
    /// returns once A is master.
    fn pair(a: Config, b: Config) -> Sim {
        let mut sim = Sim::started(vec![a, b]);
        sim.advance_secs(5.0);
        assert_eq!((sim.state(0), sim.state(1)), (State::Master, State::Backup));
        sim
    }

    #[test]
    fn frozen_master_is_replaced_after_the_master_down_interval() {
        let mut sim = pair(cfg(Version::V2, 150, 1), cfg(Version::V2, 100, 2));
        assert_eq!(sim.entered(0, State::Master), Some(MD_V2_150));
        sim.nodes[0].frozen = true;
        let last = sim.last_advert(0).unwrap();
        sim.advance_secs(10.0);
        // keepalived measured 3.610 s after the last advert.
        assert_eq!(sim.entered(1, State::Master), Some(last + MD_V2_100));
        assert_eq!(sim.holders(), vec![0, 1], "the frozen one still has them: the reason for fencing");
    }

    #[test]
    fn clean_stop_hands_over_after_skew_time() {
        let mut sim = pair(cfg(Version::V2, 150, 1), cfg(Version::V2, 100, 2));
        sim.advance_secs(0.3);
        let stop = sim.now;
        sim.event(0, Event::Shutdown);
        sim.advance_secs(5.0);
        assert_eq!(sim.entered(1, State::Master), Some(stop + SKEW_V2_100), "keepalived: 0.610 s");
        assert_eq!(sim.holders(), vec![1]);
        assert_eq!(sim.state(0), State::Initialize);
    }

    #[test]
    fn clean_stop_v3() {
        let mut sim = pair(v3(150, 1, 10), v3(100, 2, 10));
        let stop = sim.now;
        sim.event(0, Event::Shutdown);
        sim.advance_secs(1.0);
        // 156 * 10 cs / 256 = 60.9 ms; keepalived measured 64 ms.
        assert_eq!(sim.entered(1, State::Master), Some(stop + nanos(60_937_500)));
    }

    #[test]
    fn higher_priority_backup_preempts() {
        let mut sim = Sim::started(vec![cfg(Version::V2, 100, 1)]);
        sim.nodes.push(Node {
            inst: Instance::new(cfg(Version::V2, 150, 2)).unwrap(),
            timers: BTreeMap::new(),
            frozen: false,
            vips: false,
        });
        sim.advance_secs(10.0);
        sim.event(1, Event::Startup);
        sim.advance_secs(10.0);
        // B ignores A's lower-priority adverts, so its timer runs out.
        let takeover = secs(10.0) + MD_V2_150;
        assert_eq!(sim.entered(1, State::Master), Some(takeover));
        assert_eq!(sim.entered(0, State::Backup), Some(takeover), "A steps down on B's first advert");
        assert_eq!(sim.holders(), vec![1]);
    }

    fn late_joiner(b: Config, run: f64) -> Sim {
        let mut sim = Sim::new(vec![cfg(Version::V2, 100, 1), b]);
        sim.event(0, Event::Startup);
        sim.advance_secs(10.0);
        sim.event(1, Event::Startup);
        sim.advance_secs(run);
        sim
    }

    #[test]
    fn nopreempt_keeps_the_lower_priority_master() {
        let sim = late_joiner(Config { preempt: false, ..cfg(Version::V2, 150, 2) }, 100.0);
        assert_eq!((sim.state(0), sim.state(1)), (State::Master, State::Backup));
        assert_eq!(sim.holders(), vec![0]);
    }

    #[test]
    fn preempt_delay_postpones_preemption() {
        let delay = secs(10.0);
        let sim = late_joiner(Config { preempt_delay: delay, ..cfg(Version::V2, 150, 2) }, 30.0);
        // A advertises at 3.609375 + k s. B (started at 10 s) accepts them
        // until its delay ends at 20 s; the last it accepts is at 19.609375 s.
        let last_accepted = MD_V2_100 + 16 * ONE_S;
        assert_eq!(sim.entered(1, State::Master), Some(last_accepted + MD_V2_150));
        assert!(last_accepted + MD_V2_150 > secs(10.0) + delay);
        assert_eq!((sim.state(0), sim.state(1)), (State::Backup, State::Master));
    }

    #[test]
    fn preempt_delay_restarts_on_entering_backup() {
        let mut inst = Instance::new(Config { preempt_delay: secs(5.0), ..cfg(Version::V2, 150, 5) }).unwrap();
        inst.handle(Event::Startup);
        inst.handle(Event::PreemptDelayTimerFired);
        inst.handle(Event::MasterDownTimerFired);
        let actions = inst.handle(advert(9, 200, 100));
        assert!(actions.contains(&Action::StartPreemptDelayTimer(secs(5.0))), "{actions:?}");
        assert_eq!(inst.handle(advert(9, 100, 100)), vec![Action::StartMasterDownTimer(MD_V2_150)]);
    }

    #[test]
    fn equal_priority_split_brain_heals_to_the_higher_address() {
        let mut sim = Sim::new(vec![cfg(Version::V2, 100, 1), cfg(Version::V2, 100, 2)]);
        sim.partitioned = true;
        sim.event(0, Event::Startup);
        sim.event(1, Event::Startup);
        sim.advance_secs(5.0);
        assert_eq!((sim.state(0), sim.state(1)), (State::Master, State::Master));
        assert_eq!(sim.holders(), vec![0, 1]);
        sim.partitioned = false;
        sim.advance_secs(5.0);
        // Both advertise at 5.609375 s; 10.0.0.2 wins the tie-break.
        let heal = MD_V2_100 + 2 * ONE_S;
        assert_eq!(sim.entered(0, State::Backup), Some(heal));
        assert_eq!((sim.state(0), sim.state(1)), (State::Backup, State::Master));
        assert_eq!(sim.holders(), vec![1]);
        // The winner answered the loser's advert at once (keepalived).
        let answered = sim.log.iter().any(|r| r.node == 1 && r.at == heal && r.action == Action::Announce);
        assert!(answered);
    }

    #[test]
    fn equal_priority_start_together_settles_without_a_tie_break() {
        let mut sim = Sim::started(vec![cfg(Version::V2, 100, 1), cfg(Version::V2, 100, 2)]);
        sim.advance_secs(20.0);
        // Both timers expire together; the first to advertise is master and the
        // other, in Backup, accepts an equal priority.
        assert_eq!((sim.state(0), sim.state(1)), (State::Master, State::Backup));
        assert_eq!(sim.holders(), vec![0]);
    }

    #[test]
    fn v3_backup_adopts_the_masters_interval() {
        let mut sim = pair(v3(200, 1, 50), v3(100, 2, 100));
        assert_eq!(sim.nodes[1].inst.master_adver_interval(), Centiseconds(50));
        sim.nodes[0].frozen = true;
        let last = sim.last_advert(0).unwrap();
        sim.advance_secs(5.0);
        // 3 * 0.5 s + 156 * 50 / 256 cs, not the 3.61 s its own 1 s would give.
        assert_eq!(sim.entered(1, State::Master), Some(last + nanos(1_804_687_500)));
        // As master it advertises its own interval again.
        sim.advance_secs(1.0);
        assert!(sim.log.iter().any(|r| r.node == 1 && r.action == Action::StartAdverTimer(ONE_S)));
    }

    #[test]
    fn v2_interval_mismatch_is_split_brain_like_keepalived() {
        let a = Config { advert_interval: Centiseconds::from_secs(2), ..cfg(Version::V2, 150, 1) };
        let mut sim = Sim::started(vec![a, cfg(Version::V2, 100, 2)]);
        sim.advance_secs(20.0);
        assert_eq!((sim.state(0), sim.state(1)), (State::Master, State::Master));
        assert!(sim.nodes[1].inst.counters().discarded_interval_mismatch > 0);
        assert!(sim.nodes[0].inst.counters().discarded_interval_mismatch > 0);
    }

    #[test]
    fn fault_in_and_out() {
        let mut sim = pair(cfg(Version::V2, 150, 1), cfg(Version::V2, 100, 2));
        let fault = sim.now;
        sim.event(0, Event::FaultDetected);
        sim.advance_secs(10.0);
        assert_eq!(sim.state(0), State::Fault);
        assert_eq!(sim.entered(1, State::Master), Some(fault + SKEW_V2_100), "A resigned with priority 0");
        assert_eq!(sim.holders(), vec![1]);

        let clear = sim.now;
        sim.event(0, Event::FaultCleared);
        sim.advance_secs(10.0);
        // Back to Backup, then A preempts B's lower priority on its own timer.
        assert_eq!(sim.entered(0, State::Backup), Some(clear));
        assert_eq!(sim.entered(0, State::Master), Some(clear + MD_V2_150));
        assert_eq!((sim.state(0), sim.state(1)), (State::Master, State::Backup));
        assert_eq!(sim.holders(), vec![0]);
    }

    #[test]
    fn weight_smaller_than_the_gap_never_fails_over() {
        let mut sim = pair(cfg(Version::V2, 150, 1), cfg(Version::V2, 100, 2));
        // `weight -20` on a failing script: 130 is still above 100.
        sim.event(0, Event::PriorityChanged { effective: 130 });
        sim.advance_secs(60.0);
        assert_eq!((sim.state(0), sim.state(1)), (State::Master, State::Backup));
        // `weight -60`: 90 is below 100, so B stops accepting A's adverts and preempts.
        let change = sim.now;
        sim.event(0, Event::PriorityChanged { effective: 90 });
        sim.advance_secs(10.0);
        let takeover = sim.entered(1, State::Master).unwrap();
        assert!(takeover > change && takeover <= change + MD_V2_100, "{takeover:?}");
        assert_eq!((sim.state(0), sim.state(1)), (State::Backup, State::Master));
        assert_eq!(sim.holders(), vec![1]);
    }

    /// A long random schedule of events on three routers never breaks the
    /// invariants: VIPs held exactly in Master, no timers outside Backup and
    /// Master, and only one master once the network is whole and quiet.
    #[test]
    fn random_schedules_converge() {
        let mut seed: u64 = 0x0112_5798;
        let mut rand = move |n: u64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        for _ in 0..50 {
            let configs = vec![
                Config { preempt: rand(3) != 0, ..cfg(Version::V2, 100 + rand(60) as u8, 1) },
                Config { preempt_delay: secs(rand(3) as f64), ..cfg(Version::V2, 100 + rand(60) as u8, 2) },
                cfg(Version::V2, if rand(4) == 0 { 255 } else { 50 }, 3),
            ];
            let mut sim = Sim::started(configs);
            for _ in 0..40 {
                let node = rand(3) as usize;
                let event = match rand(8) {
                    0 => Event::Shutdown,
                    1 => Event::Startup,
                    2 => Event::FaultDetected,
                    3 => Event::FaultCleared,
                    4 => Event::PriorityChanged { effective: rand(256) as u8 },
                    5 => {
                        sim.partitioned = !sim.partitioned;
                        continue;
                    }
                    _ => {
                        sim.advance(Duration::from_millis(rand(5000)));
                        continue;
                    }
                };
                sim.event(node, event);
                for n in &sim.nodes {
                    assert_eq!(n.vips, n.inst.state() == State::Master);
                    if matches!(n.inst.state(), State::Initialize | State::Fault) {
                        assert!(n.timers.is_empty());
                    }
                }
            }
            sim.partitioned = false;
            for i in 0..3 {
                sim.event(i, Event::FaultCleared);
                sim.event(i, Event::Startup);
            }
            sim.advance_secs(30.0);
            assert_eq!(sim.holders().len(), 1, "{:?}", (0..3).map(|i| sim.history(i)).collect::<Vec<_>>());
        }
    }
}
