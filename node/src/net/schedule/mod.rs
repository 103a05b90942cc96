//! Which chunk to ask which peer for, and how much at once: the deciding half of a sync, with no I/O.
//!
//! The driver tells a [`Schedule`] what happened (a peer appeared, sent its bitmap, answered a batch, failed, went)
//! and asks it for the next [`Batch`] for a peer. Time comes in as an `Instant` argument; nothing here reads a
//! clock, opens a socket or touches the store, so it is tested with made-up peers and made-up times.
//!
//! - **Order.** The release's chunk list is cut into segments of [`SEGMENT`] chunks, walked in an order shuffled by
//!   a seed (the node's id), so nodes started together fetch different parts first.
//! - **Windows.** Each peer gets batches of about a quarter second of its measured throughput, and at most about a
//!   second of it in flight ([`WINDOW`]), clamped between [`MIN_BATCH`]/[`MAX_BATCH`] and up to [`MAX_WINDOW`].
//! - **Availability.** A peer holds everything ([`Have::All`]), what its bitmap says ([`Have::Bits`], sent again
//!   as it grows), or is not known yet: it gets nothing until its bitmap comes, and is dropped if that misses the
//!   deadline ([`Schedule::expire`]). A peer that says it holds nothing is dropped; chunks it answers absent are
//!   not asked of it again.
//! - **Hedging.** A batch much older than its peer's rate makes it expected ([`HEDGE_FACTOR`]) is handed, once, to
//!   a faster peer that holds its chunks — those of them the ownership below lets that peer be asked for. The first
//!   copy of a chunk to arrive counts; the other is ignored.
//! - **Ownership.** Segments may be owned by a class of peers ([`Schedule::set_owner`]); while a peer of that
//!   class is present, peers of other classes leave those segments alone.
//!
//! # Cost
//!
//! With `n` chunks, `s = n / SEGMENT` segments, `p` peers and `b` batches in flight (at most `p × IN_FLIGHT`):
//! - [`Schedule::pick`] is O(b + the segments it passes + the chunks it takes). Segments all done are jumped over
//!   (a union-find over the walk, near O(1) each), and each peer keeps a cursor before which it has nothing to
//!   take, so it passes each segment once — again only after a *rewind*: chunks coming back (a failed batch, a
//!   peer gone), new bits in its bitmap (back to the first), or an owner class leaving (everyone back to the
//!   start). A peer that holds everything passes only segments whose chunks are all in flight; one call of a
//!   bitmap peer that holds only the end of the list may pass many, but not the same ones twice without a rewind.
//!   Measured (`cost_per_chunk_of_picking`, five peers, one with a bitmap): about 15 ns per chunk for 10k
//!   chunks, 20 ns for 1M.
//! - [`Schedule::done`], [`Schedule::failed`] are O(batch + p) (throughput is a running sum over [`RATE_SPAN`]
//!   of bytes and of time with batches in flight).
//! - [`Schedule::set_have`] is O(n / 8) for a bitmap (compared with the one before, the cursor going back to the
//!   first segment with a new bit), O(1) otherwise.
//! - [`Schedule::gone`] and [`Schedule::expire`] are O(p + b + the chunks given back).
//!
//! Events carry `now` rather than an elapsed time: the schedule knows when it handed out each batch.
//!
//! The driver (`net/sync/driver.rs`) holds delta runs' chunks back with [`Schedule::claim`] and chooses owners
//! (rendezvous hashing over the nodes syncing the release). Not done: owned segments walked first by their
//! owners.

use ferry_protocol::sync::{bit, set_bit};
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// Chunks in one segment of the list (about 2 MiB); segments are walked in a per-node order.
pub const SEGMENT: usize = 32;
/// Most raw bytes asked for in one batch.
pub const MAX_BATCH: u64 = 8 << 20;
/// Fewest raw bytes asked for in one batch (unless fewer are left).
pub const MIN_BATCH: u64 = 256 << 10;
/// Most chunks in one batch.
pub const MAX_CHUNKS: usize = 1024;
/// A batch is about this much of its peer's throughput.
pub const BATCH_TIME: Duration = Duration::from_millis(250);
/// Bytes in flight to a peer are about this much of its throughput: enough to fill a long path, not so much that
/// nodes started together all ask the seed for the same bytes before they can share.
pub const WINDOW: Duration = Duration::from_millis(1000);
/// Most bytes in flight to one peer, however fast.
pub const MAX_WINDOW: u64 = 64 << 20;
/// Batch and window of a peer not measured yet.
pub const FIRST_BATCH: u64 = 1 << 20;
/// See [`FIRST_BATCH`].
pub const FIRST_WINDOW: u64 = 2 << 20;
/// Most batches in flight to one peer.
pub const IN_FLIGHT: usize = 8;
/// Throughput is measured over this much recent time.
pub const RATE_SPAN: Duration = Duration::from_secs(2);
/// A batch is hedged once it is this many times older than its peer's rate says it should be…
pub const HEDGE_FACTOR: u32 = 4;
/// …and older than this.
pub const HEDGE_MIN: Duration = Duration::from_secs(2);
/// A batch to a peer never measured is hedged after this long.
pub const HEDGE_UNMEASURED: Duration = Duration::from_secs(10);
/// A peer whose batch failed is not asked again before this.
pub const REST: Duration = Duration::from_secs(1);

/// What a peer holds of the release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Have {
    /// The whole release.
    All,
    /// A bitmap over the release's chunk list (`ferry_protocol::sync::bit`).
    Bits(Vec<u8>),
    /// Nothing of it: the peer is dropped.
    Nothing,
}

/// Names one batch handed out, for the events that answer it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BatchId(u64);

/// Chunks to ask one peer for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// Names it in [`Schedule::done`] and [`Schedule::failed`].
    pub id: BatchId,
    /// Positions in the release's chunk list, in the order to ask for them.
    pub chunks: Vec<usize>,
    /// Their raw bytes.
    pub bytes: u64,
    /// Whether these chunks are already asked of a slower peer.
    pub hedge: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Needed,
    /// In this many batches.
    Asked(u8),
    Done,
}

enum Avail {
    /// No bitmap yet; dropped if none comes by then.
    Unknown(Instant),
    All,
    Bits(Vec<u8>),
}

struct PeerState {
    class: u8,
    avail: Avail,
    /// Chunks it answered absent although it seemed to hold them.
    lacks: HashSet<usize>,
    /// Walk position before which it has nothing to take.
    cursor: usize,
    in_flight: usize,
    in_flight_bytes: u64,
    /// While batches are in flight: since when the peer has been busy and not yet accounted for.
    busy_since: Option<Instant>,
    /// Recent completions (when, raw bytes, busy time since the one before), for its throughput, and their sums.
    /// Only time with batches in flight counts: a peer asked little (a node sharing the release, asked for the
    /// few chunks it shows) is measured by how fast it answers, not by how rarely it is asked.
    recent: VecDeque<(Instant, u64, Duration)>,
    recent_bytes: u64,
    recent_busy: Duration,
    resting_until: Option<Instant>,
}

impl PeerState {
    fn holds(&self, i: usize) -> bool {
        !self.lacks.contains(&i)
            && match &self.avail {
                Avail::Unknown(_) => false,
                Avail::All => true,
                Avail::Bits(b) => bit(b, i),
            }
    }

    /// Raw bytes per second delivered lately while it had batches in flight; `None` before the first batch comes
    /// back. A batch it sits on does not lower it: that batch is hedged by what the rate says it should take.
    fn rate(&self) -> Option<f64> {
        if self.recent.is_empty() {
            return None;
        }
        let busy = self.recent_busy.as_secs_f64().max(0.05);
        Some(self.recent_bytes as f64 / busy)
    }

    /// Batch traffic with it settled at `now` (one came back or failed): the busy time since the last mark is
    /// returned, and the next stretch starts now if batches are still in flight.
    fn settle(&mut self, now: Instant) -> Duration {
        let busy = self
            .busy_since
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        self.busy_since = (self.in_flight > 0).then_some(now);
        busy
    }

    /// (batch, window) in bytes.
    fn sizes(&self) -> (u64, u64) {
        match self.rate() {
            None => (FIRST_BATCH, FIRST_WINDOW),
            Some(r) => {
                let batch = ((r * BATCH_TIME.as_secs_f64()) as u64).clamp(MIN_BATCH, MAX_BATCH);
                let window = ((r * WINDOW.as_secs_f64()) as u64).clamp(2 * batch, MAX_WINDOW);
                (batch, window)
            }
        }
    }
}

struct Outstanding<P> {
    peer: P,
    chunks: Vec<usize>,
    bytes: u64,
    sent: Instant,
    /// Bytes in flight to its peer when it was sent, itself included: what the peer had to deliver first.
    ahead: u64,
    /// Hedged already, or a hedge itself: never hedged (again).
    hedged: bool,
}

/// The chunk-fetch plan of one sync. `P` names a peer (the driver's `PeerId`, or an index).
pub struct Schedule<P> {
    /// Raw size of each chunk of the list.
    size: Vec<u32>,
    slot: Vec<Slot>,
    /// Segments in walk order, and each segment's walk position.
    walk: Vec<usize>,
    walk_pos: Vec<usize>,
    /// Per segment: chunks needed and not asked, and chunks not done.
    open: Vec<u16>,
    left: Vec<u16>,
    /// Union-find over walk positions: `next[w]` leads to the first position at or after `w` whose segment is not
    /// all done (`walk.len()` when none is).
    next: Vec<usize>,
    /// Per segment, the class of peers it is kept for (0: anyone).
    owner: Vec<u8>,
    /// Peers present per class.
    class_peers: [u32; 256],
    peers: BTreeMap<P, PeerState>,
    batches: BTreeMap<BatchId, Outstanding<P>>,
    next_batch: u64,
    remaining: usize,
}

impl<P: Copy + Ord> Schedule<P> {
    /// A schedule for a list of `sizes.len()` chunks (raw sizes), of which those at `needed` are to be fetched;
    /// `seed` shuffles the walk.
    pub fn new(sizes: Vec<u32>, needed: impl IntoIterator<Item = usize>, seed: u64) -> Self {
        let n = sizes.len();
        let segments = n.div_ceil(SEGMENT);
        let mut slot = vec![Slot::Done; n];
        let mut open = vec![0u16; segments];
        let mut remaining = 0;
        for i in needed {
            if slot[i] == Slot::Done {
                slot[i] = Slot::Needed;
                open[i / SEGMENT] += 1;
                remaining += 1;
            }
        }
        let walk = walk_order(segments, seed);
        let mut walk_pos = vec![0; segments];
        for (w, &s) in walk.iter().enumerate() {
            walk_pos[s] = w;
        }
        let mut next: Vec<usize> = (0..=segments).collect();
        for (w, &s) in walk.iter().enumerate() {
            if open[s] == 0 {
                next[w] = w + 1;
            }
        }
        Schedule {
            size: sizes,
            slot,
            walk,
            walk_pos,
            left: open.clone(),
            open,
            next,
            owner: vec![0; segments],
            class_peers: [0; 256],
            peers: BTreeMap::new(),
            batches: BTreeMap::new(),
            next_batch: 0,
            remaining,
        }
    }

    /// Chunks not done yet.
    pub fn remaining(&self) -> usize {
        self.remaining
    }

    /// Whether chunk `i` of the list is done (held, or never needed).
    pub fn is_done(&self, i: usize) -> bool {
        self.slot[i] == Slot::Done
    }

    /// A peer to fetch from, of `class` (0 for none, see [`Schedule::set_owner`]); it gets nothing until its
    /// [`Have`] comes, and is dropped by [`Schedule::expire`] if that has not come by `have_deadline`.
    pub fn add_peer(&mut self, peer: P, class: u8, have_deadline: Instant) {
        if self.peers.contains_key(&peer) {
            return;
        }
        self.class_peers[class as usize] += 1;
        self.peers.insert(
            peer,
            PeerState {
                class,
                avail: Avail::Unknown(have_deadline),
                lacks: HashSet::new(),
                cursor: 0,
                in_flight: 0,
                in_flight_bytes: 0,
                busy_since: None,
                recent: VecDeque::new(),
                recent_bytes: 0,
                recent_busy: Duration::ZERO,
                resting_until: None,
            },
        );
    }

    /// What `peer` holds; a bitmap may be sent again as it grows (a peer syncing beside this node starts empty:
    /// it is kept, and given what its bitmap shows). Returns false if the peer was dropped (it holds nothing of
    /// the release), or is not known.
    pub fn set_have(&mut self, peer: P, have: Have) -> bool {
        let avail = match have {
            Have::All => Avail::All,
            Have::Bits(b) => Avail::Bits(b),
            Have::Nothing => {
                self.gone(peer);
                return false;
            }
        };
        let Some(s) = self.peers.get_mut(&peer) else {
            return false;
        };
        // Back to the first segment of the walk where it holds something new.
        s.cursor = match (&s.avail, &avail) {
            (Avail::Bits(old), Avail::Bits(new)) => new
                .iter()
                .enumerate()
                .filter(|&(k, b)| b & !old.get(k).copied().unwrap_or(0) != 0)
                .filter_map(|(k, _)| self.walk_pos.get(k * 8 / SEGMENT).copied())
                .fold(s.cursor, usize::min),
            (Avail::All, Avail::All) => s.cursor,
            _ => 0,
        };
        s.avail = avail;
        true
    }

    /// `peer` came to hold chunks `added` of the list besides what it showed before (positions past the list are
    /// ignored). O(added): the bitmap is not compared. A peer that held everything, or whose bitmap has not come,
    /// is left as it is. Returns false if the peer is not known.
    pub fn add_have(&mut self, peer: P, added: &[usize]) -> bool {
        let n = self.size.len();
        let Some(s) = self.peers.get_mut(&peer) else {
            return false;
        };
        if let Avail::Bits(bits) = &mut s.avail {
            for &i in added.iter().filter(|&&i| i < n) {
                set_bit(bits, i);
                s.cursor = s.cursor.min(self.walk_pos[i / SEGMENT]);
            }
        }
        true
    }

    /// Put `peer` in `class` (see [`Schedule::set_owner`]).
    pub fn set_class(&mut self, peer: P, class: u8) {
        let Some(s) = self.peers.get_mut(&peer) else {
            return;
        };
        let old = std::mem::replace(&mut s.class, class) as usize;
        if old == class as usize {
            return;
        }
        self.class_peers[old] -= 1;
        self.class_peers[class as usize] += 1;
        // Segments kept for its old class may be open now, and its new class's are open to it.
        for s in self.peers.values_mut() {
            s.cursor = 0;
        }
    }

    /// Keep segment `segment` (chunks `segment * SEGMENT..`) for peers of `class` while one is present.
    pub fn set_owner(&mut self, segment: usize, class: u8) {
        self.set_owners([(segment, class)]);
    }

    /// [`Schedule::set_owner`] for many segments at once: O(segments + p).
    pub fn set_owners(&mut self, owners: impl IntoIterator<Item = (usize, u8)>) {
        for (segment, class) in owners {
            self.owner[segment] = class;
        }
        for s in self.peers.values_mut() {
            s.cursor = 0;
        }
    }

    /// Segments in the list.
    pub fn segments(&self) -> usize {
        self.walk.len()
    }

    /// Drop the peers whose [`Have`] did not come by their deadline; returns them.
    pub fn expire(&mut self, now: Instant) -> Vec<P> {
        let late: Vec<P> = self
            .peers
            .iter()
            .filter(|(_, s)| matches!(s.avail, Avail::Unknown(t) if now >= t))
            .map(|(p, _)| *p)
            .collect();
        for &p in &late {
            self.gone(p);
        }
        late
    }

    /// `peer` went (or was dropped): the chunks of its batches are asked of others. A batch of it that still
    /// comes back may be given to [`Schedule::done`]; its chunks count if they are not done by then.
    pub fn gone(&mut self, peer: P) {
        let Some(s) = self.peers.remove(&peer) else {
            return;
        };
        let class = s.class as usize;
        self.class_peers[class] -= 1;
        if class != 0 && self.class_peers[class] == 0 {
            // Its segments are open to everyone now.
            for s in self.peers.values_mut() {
                s.cursor = 0;
            }
        }
        let ids: Vec<BatchId> = self
            .batches
            .iter()
            .filter(|(_, b)| b.peer == peer)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let b = self.batches.remove(&id).expect("listed");
            self.give_back(&b.chunks);
        }
    }

    /// Whether `peer` holds chunk `i`, as far as this schedule knows.
    pub fn holds(&self, peer: P, i: usize) -> bool {
        self.peers.get(&peer).is_some_and(|s| s.holds(i))
    }

    /// Batches handed out and not answered.
    pub fn in_flight(&self) -> usize {
        self.batches.len()
    }

    /// Bytes per second `peer` delivered lately while it had batches in flight, once measured.
    pub fn rate(&self, peer: P) -> Option<f64> {
        self.peers.get(&peer)?.rate()
    }

    /// Most bytes to have in flight to `peer` now.
    pub fn window(&self, peer: P) -> Option<u64> {
        Some(self.peers.get(&peer)?.sizes().1)
    }

    /// The next batch to ask `peer` for, if it has room and holds something needed: first an overdue batch of a
    /// slower peer (a hedge), then the next chunks of the walk it holds. Call again until `None`.
    pub fn pick(&mut self, peer: P, now: Instant) -> Option<Batch> {
        let s = self.peers.get(&peer)?;
        if matches!(s.avail, Avail::Unknown(_))
            || s.resting_until.is_some_and(|t| now < t)
            || s.in_flight >= IN_FLIGHT
        {
            return None;
        }
        let (batch, window) = s.sizes();
        if s.in_flight_bytes >= window {
            return None;
        }
        let budget = batch.min(window - s.in_flight_bytes);
        if let Some(b) = self.hedge(peer, now) {
            return Some(b);
        }
        let chunks = self.walk_from(peer, budget);
        (!chunks.is_empty()).then(|| self.send(peer, chunks, now, false))
    }

    /// A hedge of the oldest overdue batch whose chunks `peer` holds, if `peer` is measured and faster than the
    /// batch's peer.
    fn hedge(&mut self, peer: P, now: Instant) -> Option<Batch> {
        let s = &self.peers[&peer];
        let rate = s.rate()?;
        // Batches go in the order they were sent, and none younger than HEDGE_MIN is overdue: the scan stops at
        // the first of those, so a pick costs the few late batches, not every batch in flight.
        let mut overdue = self
            .batches
            .iter()
            .take_while(|(_, b)| now.saturating_duration_since(b.sent) > HEDGE_MIN);
        let (id, chunks) = overdue.find_map(|(id, b)| {
            if b.hedged || b.peer == peer {
                return None;
            }
            let slow = self.peers[&b.peer].rate();
            let expected = match slow {
                Some(r) if r >= rate => return None,
                Some(r) => {
                    Duration::from_secs_f64(b.ahead as f64 / r).mul_f64(f64::from(HEDGE_FACTOR))
                }
                None => HEDGE_UNMEASURED,
            };
            if now.saturating_duration_since(b.sent) <= expected.max(HEDGE_MIN) {
                return None;
            }
            // Ownership holds for hedges too: a chunk kept for another class is not asked of this peer, however
            // late its copy is (else a seed would send again what a node sharing the release is bringing).
            let chunks: Vec<usize> = b
                .chunks
                .iter()
                .copied()
                .filter(|&i| {
                    self.slot[i] != Slot::Done && s.holds(i) && !self.kept_from(s, i / SEGMENT)
                })
                .collect();
            (!chunks.is_empty()).then_some((*id, chunks))
        })?;
        self.batches.get_mut(&id).expect("found").hedged = true;
        Some(self.send(peer, chunks, now, true))
    }

    /// Up to `budget` bytes of needed chunks `peer` holds, from its cursor on; moves the cursor.
    fn walk_from(&mut self, peer: P, budget: u64) -> Vec<usize> {
        let s = &self.peers[&peer];
        let mut w = find(&mut self.next, s.cursor);
        let mut chunks = Vec::new();
        let mut bytes = 0u64;
        while w < self.walk.len() {
            let seg = self.walk[w];
            if self.open[seg] > 0 && !self.kept_from(s, seg) {
                let end = ((seg + 1) * SEGMENT).min(self.size.len());
                for i in seg * SEGMENT..end {
                    if self.slot[i] != Slot::Needed || !s.holds(i) {
                        continue;
                    }
                    chunks.push(i);
                    bytes += u64::from(self.size[i]);
                    if bytes >= budget || chunks.len() >= MAX_CHUNKS {
                        // This segment may hold more for it: the cursor stays here.
                        self.peers.get_mut(&peer).expect("known").cursor = w;
                        return chunks;
                    }
                }
            }
            w = find(&mut self.next, w + 1);
        }
        self.peers.get_mut(&peer).expect("known").cursor = w;
        chunks
    }

    /// Whether segment `seg` is kept for a class other than peer `s`'s, one with a peer present.
    fn kept_from(&self, s: &PeerState, seg: usize) -> bool {
        let owner = self.owner[seg];
        owner != 0 && owner != s.class && self.class_peers[owner as usize] > 0
    }

    fn send(&mut self, peer: P, chunks: Vec<usize>, now: Instant, hedge: bool) -> Batch {
        let mut bytes = 0;
        for &i in &chunks {
            bytes += u64::from(self.size[i]);
            self.slot[i] = match self.slot[i] {
                Slot::Needed => {
                    self.open[i / SEGMENT] -= 1;
                    Slot::Asked(1)
                }
                Slot::Asked(k) => Slot::Asked(k + 1),
                Slot::Done => unreachable!("a done chunk is not asked for"),
            };
        }
        let s = self.peers.get_mut(&peer).expect("known");
        if s.in_flight == 0 {
            s.busy_since = Some(now);
        }
        s.in_flight += 1;
        s.in_flight_bytes += bytes;
        let id = BatchId(self.next_batch);
        self.next_batch += 1;
        self.batches.insert(
            id,
            Outstanding {
                peer,
                chunks: chunks.clone(),
                bytes,
                sent: now,
                ahead: s.in_flight_bytes,
                hedged: hedge,
            },
        );
        Batch {
            id,
            chunks,
            bytes,
            hedge,
        }
    }

    /// Batch `id` came back at `now`: `stored` were verified and stored, `absent` the peer did not have, `bytes`
    /// raw bytes arrived. Returns the chunks done by it — not those another copy of the batch brought first.
    pub fn done(
        &mut self,
        id: BatchId,
        stored: &[usize],
        absent: &[usize],
        bytes: u64,
        now: Instant,
    ) -> Vec<usize> {
        let newly = self.stored(stored);
        let Some(b) = self.batches.remove(&id) else {
            return newly;
        };
        if let Some(s) = self.peers.get_mut(&b.peer) {
            s.in_flight -= 1;
            s.in_flight_bytes -= b.bytes;
            s.lacks.extend(absent.iter().copied());
            let busy = s.settle(now);
            if bytes > 0 {
                s.recent.push_back((now, bytes, busy));
                s.recent_bytes += bytes;
                s.recent_busy += busy;
                while let Some(&(t, b, d)) = s.recent.front() {
                    if now.saturating_duration_since(t) <= RATE_SPAN {
                        break;
                    }
                    s.recent.pop_front();
                    s.recent_bytes -= b;
                    s.recent_busy -= d;
                }
            }
        }
        self.give_back(&b.chunks);
        newly
    }

    /// Batch `id` failed (the stream broke, or timed out): its chunks are asked of others, and its peer rests for
    /// [`REST`].
    pub fn failed(&mut self, id: BatchId, now: Instant) {
        let Some(b) = self.batches.remove(&id) else {
            return;
        };
        if let Some(s) = self.peers.get_mut(&b.peer) {
            s.in_flight -= 1;
            s.in_flight_bytes -= b.bytes;
            s.settle(now);
            s.resting_until = Some(now + REST);
        }
        self.give_back(&b.chunks);
    }

    /// `chunks` are stored, by whatever means; returns those not done before.
    pub fn stored(&mut self, chunks: &[usize]) -> Vec<usize> {
        let mut newly = Vec::new();
        for &i in chunks {
            if self.slot[i] == Slot::Done {
                continue;
            }
            let seg = i / SEGMENT;
            if self.slot[i] == Slot::Needed {
                self.open[seg] -= 1;
            }
            self.slot[i] = Slot::Done;
            self.left[seg] -= 1;
            if self.left[seg] == 0 {
                let w = self.walk_pos[seg];
                self.next[w] = w + 1;
            }
            self.remaining -= 1;
            newly.push(i);
        }
        newly
    }

    /// Take `chunks` out of the walk: something else fetches them (a delta run). Settle them with
    /// [`Schedule::stored`], then [`Schedule::unclaim`] (which puts back those not stored).
    pub fn claim(&mut self, chunks: &[usize]) {
        for &i in chunks {
            if self.slot[i] == Slot::Needed {
                self.open[i / SEGMENT] -= 1;
                self.slot[i] = Slot::Asked(1);
            } else if let Slot::Asked(k) = self.slot[i] {
                self.slot[i] = Slot::Asked(k + 1);
            }
        }
    }

    /// Put claimed `chunks` that are not done back into the walk.
    pub fn unclaim(&mut self, chunks: &[usize]) {
        self.give_back(chunks);
    }

    /// One batch holding `chunks` is over: those no other batch holds and not done are needed again, and cursors
    /// past them come back to them.
    fn give_back(&mut self, chunks: &[usize]) {
        let mut back = usize::MAX;
        for &i in chunks {
            if let Slot::Asked(k) = self.slot[i] {
                if k > 1 {
                    self.slot[i] = Slot::Asked(k - 1);
                } else {
                    self.slot[i] = Slot::Needed;
                    self.open[i / SEGMENT] += 1;
                    back = back.min(self.walk_pos[i / SEGMENT]);
                }
            }
        }
        if back != usize::MAX {
            for s in self.peers.values_mut() {
                s.cursor = s.cursor.min(back);
            }
        }
    }
}

/// The first walk position at or after `w` whose segment is not all done (path halving).
fn find(next: &mut [usize], mut w: usize) -> usize {
    while next[w] != w {
        next[w] = next[next[w]];
        w = next[w];
    }
    w
}

/// Segments `0..segments` shuffled by a generator seeded with `seed`.
fn walk_order(segments: usize, seed: u64) -> Vec<usize> {
    let mut seg: Vec<usize> = (0..segments).collect();
    let mut state = seed | 1;
    for i in (1..segments).rev() {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let r = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
        seg.swap(i, (r % (i as u64 + 1)) as usize);
    }
    seg
}

#[cfg(test)]
mod tests;
