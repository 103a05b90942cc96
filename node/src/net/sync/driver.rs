//! The I/O half of fetching a release's chunks: connections, requests and the store, around a
//! [`Schedule`] that decides which chunks to ask which peer for.
//!
//! The driver runs one loop on an async thread: it takes in peers as the control plane sees them, asks each for
//! what it holds (once, for a holder of the whole release; as changes every [`HAVE_EVERY`] for a peer syncing
//! beside it), hands out the batches and deltas the schedule picks, and tells the schedule what came of them.
//! Store reads and writes, decompression and hashing run on the blocking pool (`fetch_batch`, `fetch_delta`,
//! commits). Chunks count when the schedule says they are new: a hedged batch's second copy does not.
//!
//! **Segment ownership.** Nodes syncing the same release at once split its segments among themselves by
//! rendezvous hashing (each segment goes to the node, of this one and the peers answering bitmaps, whose id
//! hashes highest with it). A segment another node owns is kept for that node's class in the schedule: this node
//! takes it from that node once it holds it, not from the seed — so the seed's link carries each chunk about
//! once per site. An owner that is gone, or has shown nothing new for [`STALL`], loses its segments to everyone.
//! A peer that answers [`SyncResponse::Starting`] (it syncs the release but has no chunk list yet) owns segments
//! from that answer on: nodes started together split the release from their first request to the seed, rather
//! than each taking a second's worth of it before the others show up.

use super::*;
use crate::net::schedule::{BatchId, Have, Schedule};
use ferry_protocol::sync::HaveMark;

/// A peer syncing beside this node is asked for its changes this often.
const HAVE_EVERY: Duration = Duration::from_millis(500);
/// A peer whose first answer about what it holds has not come by then is set aside.
const HAVE_DEADLINE: Duration = Duration::from_secs(10);
/// A peer set aside (it held nothing of the release, did not answer, or could not be reached) is tried again
/// after this.
const SET_ASIDE: Duration = Duration::from_secs(2);
/// A node owning segments that shows nothing new for this long loses them to everyone.
const STALL: Duration = Duration::from_secs(5);

/// One peer as the driver sees it: its connection and requests. What it holds and what it is asked for live
/// in the schedule.
struct Link {
    addr: SocketAddr,
    conn: Option<quinn::Connection>,
    connecting: bool,
    /// In the schedule (a peer set aside leaves it, and comes back after [`SET_ASIDE`]).
    scheduled: bool,
    /// Holds the whole release: never asked what it holds again.
    whole: bool,
    asking_have: bool,
    /// When its last answer about what it holds came.
    have_at: Option<Instant>,
    /// Where that answer left off.
    mark: Option<HaveMark>,
    /// Not connected to nor scheduled again before this.
    resting_until: Option<Instant>,
    /// Dropped for bad bytes: never asked again in this sync.
    dropped: bool,
    present: bool,
    deltas: usize,
    /// Syncing beside this node: how many chunks it has shown, and when that last grew.
    sibling: Option<Sibling>,
    /// The class it was given when it first synced beside this node (segments it owns are kept for it), kept
    /// while it is set aside.
    class: Option<u8>,
}

struct Sibling {
    shown: u64,
    grew: Instant,
    /// Its segments are open to everyone (it stalled).
    stalled: bool,
}

impl Link {
    fn usable(&self, now: Instant) -> bool {
        self.present
            && !self.dropped
            && self.scheduled
            && self.conn.is_some()
            && self.resting_until.is_none_or(|t| now >= t)
    }
}

pub(super) enum Event {
    Connected(PeerId, Result<quinn::Connection, WireError>),
    Have(PeerId, Result<SyncResponse, WireError>),
    Batch {
        peer: PeerId,
        id: BatchId,
        outcome: Result<Outcome, WireError>,
    },
    /// A batch of blobs was recorded (with the chunks stored before it: `committed`); these were still
    /// incomplete; the store holds these recipes now.
    Accepted(
        Result<Vec<BlobRef>, SyncError>,
        Duration,
        Vec<usize>,
        Vec<RecipeId>,
    ),
    /// A delta came back (or did not).
    Delta {
        peer: PeerId,
        run: usize,
        outcome: Result<DeltaOutcome, WireError>,
    },
}

pub(super) struct Fetch<'a> {
    net: &'a Network,
    id: &'a str,
    from: Option<PeerId>,
    list: ChunkList,
    sched: Schedule<PeerId>,
    links: BTreeMap<PeerId, Link>,
    running: &'a Running,
    events_tx: mpsc::UnboundedSender<Event>,
    events: mpsc::UnboundedReceiver<Event>,
    last_commit: Instant,
    /// Stored and not yet committed: shown to peers once committed.
    uncommitted: Vec<usize>,
    pub(super) accepting: Accepting,
    /// Runs to ask for as deltas.
    runs: Vec<DeltaRun>,
    /// Classes given to siblings so far, one per peer (class 0, everyone's, holds this node's own segments).
    classes: u8,
    /// Siblings came, went, stalled or resumed: the segments are to be shared again.
    owners_dirty: bool,
}

impl<'a> Fetch<'a> {
    /// `held[i]`: the store held chunk `i` of `list` when the sync began.
    pub(super) fn new(
        net: &'a Network,
        id: &'a str,
        from: Option<PeerId>,
        (list, held): (ChunkList, &[bool]),
        mut accepting: Accepting,
        runs: Vec<DeltaRun>,
        running: &'a Running,
    ) -> Self {
        let (mut chunks_total, mut bytes_total) = (0u64, 0u64);
        let mut needed = Vec::new();
        for (i, (_, len)) in list.iter().enumerate() {
            if held[i] {
                accepting.stored(i);
            } else {
                needed.push(i);
                chunks_total += 1;
                bytes_total += u64::from(*len);
            }
        }
        running.set(|p| {
            p.chunks_total = chunks_total;
            p.bytes_total = bytes_total;
            p.state = "fetching".into();
        });
        let seed = blake3::hash(&net.0.local.to_bytes());
        let seed = u64::from_le_bytes(seed.as_bytes()[..8].try_into().expect("8 bytes"));
        let mut sched = Schedule::new(list.iter().map(|(_, l)| *l).collect(), needed, seed);
        for run in &runs {
            sched.claim(&run.chunks);
        }
        let (events_tx, events) = mpsc::unbounded_channel();
        Fetch {
            net,
            id,
            from,
            list,
            sched,
            links: BTreeMap::new(),
            running,
            events_tx,
            events,
            last_commit: Instant::now(),
            uncommitted: Vec::new(),
            accepting,
            runs,
            classes: 0,
            owners_dirty: false,
        }
    }

    pub(super) async fn run(&mut self) -> Result<(), SyncError> {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        self.refresh_links();
        while self.sched.remaining() > 0 {
            let now = Instant::now();
            self.ask_haves(now);
            if std::mem::take(&mut self.owners_dirty) {
                self.share_segments();
            }
            self.schedule(now);
            tokio::select! {
                ev = self.events.recv() => {
                    let ev = ev.expect("the sender lives in self");
                    self.handle(ev).await?;
                }
                _ = tick.tick() => {
                    self.refresh_links();
                    self.on_tick().await?;
                }
                _ = self.net.0.peers_changed.notified() => self.refresh_links(),
            }
        }
        // Every chunk is stored, so no batch is in flight that counts; blobs being recorded may be.
        while self.accepting.busy {
            let ev = self.events.recv().await.expect("the sender lives in self");
            self.handle(ev).await?;
        }
        let store = self.net.0.store.clone();
        tokio::task::spawn_blocking(move || store.commit())
            .await
            .expect("commit panicked")?;
        Ok(())
    }

    /// Take in peers that appeared, set aside those gone, and connect.
    fn refresh_links(&mut self) {
        let now = Instant::now();
        let peers = self.net.peers();
        for l in self.links.values_mut() {
            l.present = false;
        }
        for (peer, info) in peers {
            if !info.connected || self.from.is_some_and(|f| f != peer) {
                continue;
            }
            let Some(addr) = info.data_addr() else {
                continue;
            };
            let l = self.links.entry(peer).or_insert_with(|| Link {
                addr,
                conn: None,
                connecting: false,
                scheduled: false,
                whole: false,
                asking_have: false,
                have_at: None,
                mark: None,
                resting_until: None,
                dropped: false,
                present: true,
                deltas: 0,
                sibling: None,
                class: None,
            });
            l.present = true;
            if l.addr != addr {
                l.addr = addr;
                l.conn = None;
            }
            if l.conn.as_ref().is_some_and(|c| c.close_reason().is_some()) {
                l.conn = None;
            }
            if l.dropped || l.resting_until.is_some_and(|t| now < t) {
                continue;
            }
            if !l.scheduled {
                l.scheduled = true;
                l.whole = false;
                l.mark = None;
                l.have_at = None;
                self.sched.add_peer(peer, 0, now + HAVE_DEADLINE);
            }
            if info.holds(self.id) && !l.whole {
                l.whole = true;
                self.sched.set_have(peer, Have::All);
            }
            if l.conn.is_none() && !l.connecting {
                l.connecting = true;
                let tx = self.events_tx.clone();
                let net = self.net.clone();
                tokio::spawn(async move {
                    let r = net.0.data.connect(peer, addr).await;
                    let _ = tx.send(Event::Connected(peer, r));
                });
            }
        }
        let gone: Vec<PeerId> = self
            .links
            .iter()
            .filter(|(_, l)| !l.present && l.scheduled)
            .map(|(p, _)| *p)
            .collect();
        for peer in gone {
            self.set_aside(peer, now, "left");
        }
    }

    /// Take `peer` out of the schedule (its batches go to others) until [`SET_ASIDE`] has passed.
    fn set_aside(&mut self, peer: PeerId, now: Instant, why: &str) {
        tracing::debug!(%peer, release = self.id, why, "peer set aside");
        self.sched.gone(peer);
        if let Some(l) = self.links.get_mut(&peer) {
            l.scheduled = false;
            l.resting_until = Some(now + SET_ASIDE);
            if l.sibling.take().is_some() {
                self.owners_dirty = true;
            }
        }
    }

    /// Ask each scheduled peer that may hold part of the release what it holds now.
    fn ask_haves(&mut self, now: Instant) {
        for (peer, l) in &mut self.links {
            if l.whole
                || l.asking_have
                || !l.usable(now)
                || l.have_at.is_some_and(|t| now < t + HAVE_EVERY)
            {
                continue;
            }
            l.asking_have = true;
            let conn = l.conn.clone().expect("usable has a connection");
            let tx = self.events_tx.clone();
            let req = SyncRequest::HaveChanges {
                id: self.id.to_string(),
                since: l.mark,
            };
            let peer = *peer;
            tokio::spawn(async move {
                let r = request(&conn, &req).await;
                let _ = tx.send(Event::Have(peer, r));
            });
        }
    }

    async fn on_tick(&mut self) -> Result<(), SyncError> {
        let now = Instant::now();
        for peer in self.sched.expire(now) {
            self.set_aside(peer, now, "did not say what it holds in time");
        }
        self.check_stalls(now);
        if self.last_commit.elapsed() >= COMMIT_EVERY && !self.accepting.busy {
            self.last_commit = Instant::now();
            let blobs = if self.accepting.not_before.is_some_and(|t| now < t) {
                Vec::new()
            } else {
                self.accepting.take_ready()
            };
            let store = self.net.0.store.clone();
            let committed = std::mem::take(&mut self.uncommitted);
            if blobs.is_empty() {
                tokio::task::spawn_blocking(move || store.commit())
                    .await
                    .expect("commit panicked")?;
                self.running.show_held(&committed);
            } else {
                // Commits the chunks too; runs beside the fetch.
                self.accepting.busy = true;
                let tx = self.events_tx.clone();
                let spool = self.running.recipes.clone();
                tokio::spawn(async move {
                    let started = Instant::now();
                    let n = blobs.len();
                    // `take_ready` gives only blobs whose chunks are all stored.
                    let r = accept_blobs_with(store, spool, blobs, true).await;
                    let took = started.elapsed();
                    tracing::debug!(blobs = n, ?took, "blobs recorded while fetching");
                    // The recipes of blobs recorded are the store's now: the copies kept for peers can go.
                    let (r, stored) = match r {
                        Ok((missing, stored)) => (Ok(missing), stored),
                        Err(e) => (Err(e), Vec::new()),
                    };
                    let _ = tx.send(Event::Accepted(r, took, committed, stored));
                });
            }
        }
        let in_flight =
            self.sched.in_flight() + self.links.values().map(|l| l.deltas).sum::<usize>();
        if in_flight == 0 {
            let remaining = self.sched.remaining();
            let usable = self.links.values().filter(|l| l.usable(now)).count();
            self.running.set(|p| {
                p.state = format!(
                    "waiting for peers that hold the {remaining} chunks left ({usable} peers usable)"
                )
            });
        } else {
            self.running.set(|p| p.state = "fetching".into());
        }
        Ok(())
    }

    async fn handle(&mut self, ev: Event) -> Result<(), SyncError> {
        match ev {
            Event::Connected(peer, r) => {
                let Some(l) = self.links.get_mut(&peer) else {
                    return Ok(());
                };
                l.connecting = false;
                match r {
                    Ok(c) => l.conn = Some(c),
                    Err(e) => {
                        tracing::info!(%peer, error = %e, "cannot reach a peer's data plane");
                        self.set_aside(peer, Instant::now(), "unreachable");
                    }
                }
            }
            Event::Have(peer, r) => self.on_have(peer, r),
            Event::Accepted(r, took, committed, stored) => {
                self.accepting.busy = false;
                self.accepting.not_before = Some(Instant::now() + 4 * took);
                let missing = r?;
                self.running.show_held(&committed);
                self.running.forget_recipes(&stored);
                self.accepting.give_back(&missing);
            }
            // This node's own store failing (a full disk) ends the sync: asking other peers cannot help.
            Event::Batch {
                outcome: Err(WireError::Local(e)),
                ..
            }
            | Event::Delta {
                outcome: Ok(DeltaOutcome::Local(e)),
                ..
            } => return Err(SyncError::Store(e)),
            Event::Batch { peer, id, outcome } => self.on_batch(peer, id, outcome),
            Event::Delta { peer, run, outcome } => self.on_delta(peer, run, outcome),
        }
        Ok(())
    }

    fn on_have(&mut self, peer: PeerId, r: Result<SyncResponse, WireError>) {
        let now = Instant::now();
        let n = self.list.len();
        let Some(l) = self.links.get_mut(&peer) else {
            return;
        };
        l.asking_have = false;
        if !l.scheduled {
            return;
        }
        l.have_at = Some(now);
        let shown = match r {
            Ok(SyncResponse::Whole) => {
                l.whole = true;
                self.sched.set_have(peer, Have::All);
                return;
            }
            Ok(SyncResponse::HaveChanges { mark, bits, added }) => {
                let fresh = l.mark.is_none_or(|m| m.epoch != mark.epoch);
                match bits {
                    Some(bits) if bits.len() == n.div_ceil(8) => {
                        self.sched.set_have(peer, Have::Bits(bits));
                    }
                    None if !fresh => {
                        let added: Vec<usize> = added.iter().map(|&i| i as usize).collect();
                        self.sched.add_have(peer, &added);
                    }
                    _ => {
                        tracing::info!(%peer, release = self.id, "a peer's bitmap does not fit the chunk list");
                        self.set_aside(peer, now, "its bitmap does not fit the chunk list");
                        return;
                    }
                }
                l.mark = Some(mark);
                mark.count
            }
            // It syncs the release too and will hold chunks soon: it shares the segments from now on (if it
            // does not start, it stalls and loses them), and is asked again.
            Ok(SyncResponse::Starting) => 0,
            Ok(SyncResponse::Refused(why)) => {
                self.set_aside(peer, now, &why);
                return;
            }
            Ok(other) => {
                tracing::debug!(%peer, ?other, "unexpected answer to a have request");
                return;
            }
            Err(e) => {
                tracing::debug!(%peer, error = %e, "have request failed");
                return;
            }
        };
        // It answers bitmaps: it syncs this release beside this node, and shares the segments.
        match &mut l.sibling {
            Some(s) if shown > s.shown => {
                s.shown = shown;
                s.grew = now;
                if s.stalled {
                    s.stalled = false;
                    self.owners_dirty = true;
                }
            }
            Some(_) => {}
            None => {
                // A peer set aside and back keeps the class it had: one that comes and goes (or answers
                // `Starting` and never starts) does not use up the 255 classes.
                let class = match l.class {
                    Some(c) => c,
                    None if self.classes < u8::MAX => {
                        self.classes += 1;
                        *l.class.insert(self.classes)
                    }
                    None => return,
                };
                l.sibling = Some(Sibling {
                    shown,
                    grew: now,
                    stalled: false,
                });
                self.sched.set_class(peer, class);
                self.owners_dirty = true;
            }
        }
    }

    /// Owners that showed nothing new for [`STALL`] while owning segments lose them.
    fn check_stalls(&mut self, now: Instant) {
        // A sibling that holds the whole release shows nothing new because it has nothing left to show: it
        // keeps its segments (it can serve every one of them).
        for (peer, l) in self.links.iter_mut().filter(|(_, l)| !l.whole) {
            if let Some(s) = &mut l.sibling {
                if !s.stalled && now.saturating_duration_since(s.grew) > STALL {
                    tracing::debug!(
                        %peer,
                        release = self.id,
                        shown = s.shown,
                        "a node sharing the release stalled; its segments are open to everyone"
                    );
                    s.stalled = true;
                    self.owners_dirty = true;
                }
            }
        }
    }

    /// Split the segments among this node and its siblings that are not stalled: each to the one whose id
    /// hashes highest with it. This node's own go to everyone (class 0).
    fn share_segments(&mut self) {
        let local = self.net.0.local;
        let mut owners: Vec<(u64, u8)> = vec![(node_key(&local), 0)];
        for (peer, l) in &self.links {
            let sharing = l.sibling.as_ref().is_some_and(|s| !s.stalled);
            if let Some(class) = l.class.filter(|_| sharing) {
                owners.push((node_key(peer), class));
            }
        }
        let segments = self.sched.segments();
        self.sched.set_owners((0..segments).map(|seg| {
            let (_, class) = owners
                .iter()
                .max_by_key(|(key, _)| rendezvous(*key, seg as u64))
                .expect("this node is an owner");
            (seg, *class)
        }));
        tracing::debug!(
            release = self.id,
            nodes = owners.len(),
            segments,
            "segments shared"
        );
    }

    fn on_delta(&mut self, peer: PeerId, r: usize, outcome: Result<DeltaOutcome, WireError>) {
        if let Some(l) = self.links.get_mut(&peer) {
            l.deltas -= 1;
        }
        let run = &mut self.runs[r];
        run.state = RunState::Done;
        let chunks = std::mem::take(&mut run.chunks);
        match outcome {
            Ok(DeltaOutcome::Stored { wire, saved }) => {
                let newly = self.sched.stored(&chunks);
                let n = self.count_stored(peer, &newly, wire);
                self.running.set(|p| {
                    p.delta_chunks += n;
                    p.delta_saved_bytes += saved;
                });
            }
            Ok(DeltaOutcome::Refused(why)) => {
                tracing::debug!(%peer, why, chunks = chunks.len(), "delta refused; fetching the chunks whole");
            }
            Ok(DeltaOutcome::Bad(why)) => self.drop_peer(peer, why),
            Ok(DeltaOutcome::Local(_)) => unreachable!("a local failure ends the sync in handle"),
            Err(e) => {
                tracing::info!(%peer, error = %e, "delta request failed; fetching the chunks whole");
                if let Some(l) = self.links.get_mut(&peer) {
                    l.conn = None;
                }
            }
        }
        self.sched.unclaim(&chunks);
    }

    /// Chunks `newly` were stored (each once) from `peer`, which sent `wire` bytes for them (and any it sent
    /// twice): the blobs waiting for them, what to show peers, the counters. Returns how many.
    fn count_stored(&mut self, peer: PeerId, newly: &[usize], wire: u64) -> u64 {
        let mut bytes = 0u64;
        for &i in newly {
            self.accepting.stored(i);
            bytes += u64::from(self.list[i].1);
        }
        self.uncommitted.extend_from_slice(newly);
        let n = newly.len() as u64;
        self.net.count_peer(peer, |p| {
            p.received_bytes += bytes;
            p.received_chunks += n;
        });
        self.running.set(|p| {
            p.chunks_done += n;
            p.bytes_done += bytes;
            *p.wire_bytes.entry(peer.to_string()).or_default() += wire;
        });
        n
    }

    /// Drop `peer` for the rest of the sync: it sent bytes that failed verification.
    fn drop_peer(&mut self, peer: PeerId, why: String) {
        tracing::warn!(%peer, release = self.id, why, "dropping a peer that sent bad bytes");
        self.sched.gone(peer);
        if let Some(l) = self.links.get_mut(&peer) {
            l.dropped = true;
            l.scheduled = false;
            l.conn = None;
            if l.sibling.take().is_some() {
                self.owners_dirty = true;
            }
        }
        self.net
            .0
            .data
            .disconnect(&peer, "sent bytes that failed verification");
        let note = format!("{peer}: {why}");
        self.net
            .update_peer(peer, |p| p.dropped = Some(why.clone()));
        self.running.set(|p| p.dropped.push(note));
    }

    fn on_batch(&mut self, peer: PeerId, id: BatchId, outcome: Result<Outcome, WireError>) {
        let now = Instant::now();
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                tracing::info!(%peer, error = %e, "batch failed; asking others");
                self.sched.failed(id, now);
                if let Some(l) = self.links.get_mut(&peer) {
                    l.conn = None;
                }
                return;
            }
        };
        let arrived: u64 = outcome
            .stored
            .iter()
            .map(|&i| u64::from(self.list[i].1))
            .sum();
        let newly = self
            .sched
            .done(id, &outcome.stored, &outcome.absent, arrived, now);
        self.count_stored(peer, &newly, outcome.wire_bytes);
        if let Some(why) = outcome.bad {
            self.drop_peer(peer, why);
        }
    }

    /// Peers usable now, fastest first (one not measured yet counts as fastest, so it gets tried).
    fn ranked(&self, now: Instant) -> Vec<PeerId> {
        let mut ranked: Vec<(PeerId, f64)> = self
            .links
            .iter()
            .filter(|(_, l)| l.usable(now))
            .map(|(p, _)| (*p, self.sched.rate(*p).unwrap_or(f64::INFINITY)))
            .collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        ranked.into_iter().map(|(p, _)| p).collect()
    }

    /// Deltas first, then give every usable peer the batches the schedule picks for it.
    fn schedule(&mut self, now: Instant) {
        let ranked = self.ranked(now);
        self.schedule_deltas(&ranked);
        for &peer in &ranked {
            while let Some(batch) = self.sched.pick(peer, now) {
                if batch.hedge {
                    tracing::debug!(
                        %peer,
                        release = self.id,
                        chunks = batch.chunks.len(),
                        "hedging an overdue batch"
                    );
                }
                self.send_batch(peer, batch.id, batch.chunks);
            }
        }
    }

    /// Ask for pending runs as deltas, fastest holders first. A run no usable peer holds whole while some holds
    /// part of it is given up on: its chunks are fetched whole.
    fn schedule_deltas(&mut self, ranked: &[PeerId]) {
        for r in 0..self.runs.len() {
            if self.runs[r].state != RunState::Pending {
                continue;
            }
            let run = &self.runs[r];
            if run.chunks.iter().all(|&i| self.sched.is_done(i)) {
                self.runs[r].state = RunState::Done;
                continue;
            }
            let holder = ranked
                .iter()
                .find(|&&p| run.chunks.iter().all(|&i| self.sched.holds(p, i)))
                .copied();
            let Some(peer) = holder else {
                let partly = ranked
                    .iter()
                    .any(|&p| run.chunks.iter().any(|&i| self.sched.holds(p, i)));
                if partly {
                    self.runs[r].state = RunState::Done;
                    let chunks = std::mem::take(&mut self.runs[r].chunks);
                    self.sched.unclaim(&chunks);
                }
                continue;
            };
            if self.links[&peer].deltas >= DELTAS_IN_FLIGHT {
                continue;
            }
            self.send_delta(peer, r);
        }
    }

    fn send_delta(&mut self, peer: PeerId, r: usize) {
        let run = &mut self.runs[r];
        run.state = RunState::InFlight;
        run.chunks.retain(|&i| !self.sched.is_done(i));
        let wanted: Vec<(ChunkId, u32)> = run.chunks.iter().map(|&i| self.list[i]).collect();
        let reference = run.reference.clone();
        let level = run.level;
        let l = self.links.get_mut(&peer).expect("scheduled peer");
        l.deltas += 1;
        let conn = l.conn.clone().expect("usable peer has a connection");
        let tx = self.events_tx.clone();
        let store = self.net.0.store.clone();
        tokio::spawn(async move {
            let outcome = match tokio::time::timeout(
                DELTA_TIMEOUT,
                fetch_delta(&conn, &store, wanted, reference, level),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => Err(WireError::Stream(format!(
                    "no delta within {} s",
                    DELTA_TIMEOUT.as_secs()
                ))),
            };
            let _ = tx.send(Event::Delta {
                peer,
                run: r,
                outcome,
            });
        });
    }

    fn send_batch(&mut self, peer: PeerId, id: BatchId, batch: Vec<usize>) {
        let conn = self.links[&peer]
            .conn
            .clone()
            .expect("usable peer has a connection");
        let tx = self.events_tx.clone();
        let store = self.net.0.store.clone();
        let wanted: Vec<(ChunkId, u32)> = batch.iter().map(|&i| self.list[i]).collect();
        tokio::spawn(async move {
            let outcome = match tokio::time::timeout(
                BATCH_TIMEOUT,
                fetch_batch(&conn, &store, &wanted),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => Err(WireError::Stream(format!(
                    "no answer within {} s",
                    BATCH_TIMEOUT.as_secs()
                ))),
            };
            // Map positions in the batch back to positions in the list.
            let outcome = outcome.map(|o| Outcome {
                stored: o.stored.iter().map(|&k| batch[k]).collect(),
                absent: o.absent.iter().map(|&k| batch[k]).collect(),
                ..o
            });
            let _ = tx.send(Event::Batch { peer, id, outcome });
        });
    }
}

/// A node's key for rendezvous hashing.
fn node_key(peer: &PeerId) -> u64 {
    let h = blake3::hash(&peer.to_bytes());
    u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"))
}

/// The weight of node `key` for segment `seg` (a 64-bit mix: every node computes the same).
fn rendezvous(key: u64, seg: u64) -> u64 {
    let mut x = key ^ seg.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 30;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendezvous_splits_segments_about_evenly_and_moves_few_when_a_node_joins() {
        let keys: Vec<u64> = (0..4).map(|_| node_key(&PeerId::random())).collect();
        let owner = |keys: &[u64], seg: u64| {
            keys.iter()
                .enumerate()
                .max_by_key(|(_, k)| rendezvous(**k, seg))
                .map(|(i, _)| i)
                .expect("some node")
        };
        let segments = 4000u64;
        let mut count = [0usize; 4];
        let mut moved = 0;
        for seg in 0..segments {
            let with_three = owner(&keys[..3], seg);
            let with_four = owner(&keys, seg);
            count[with_four] += 1;
            if with_three != with_four {
                assert_eq!(with_four, 3, "a segment moves only to the node that joined");
                moved += 1;
            }
        }
        for c in count {
            assert!((800..1200).contains(&c), "shares {count:?}");
        }
        assert!((800..1200).contains(&moved), "{moved} segments moved");
    }
}
