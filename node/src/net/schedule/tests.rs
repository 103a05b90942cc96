use super::*;
use ferry_protocol::sync::set_bit;

const K: u32 = 64 << 10;

fn ms(t: Instant, n: u64) -> Instant {
    t + Duration::from_millis(n)
}

/// Every batch `peer` can be given now.
fn drain(s: &mut Schedule<u32>, peer: u32, now: Instant) -> Vec<Batch> {
    std::iter::from_fn(|| s.pick(peer, now)).collect()
}

#[test]
fn one_peer_fetches_every_needed_chunk_once_in_walk_order() {
    let t0 = Instant::now();
    let n = 10 * SEGMENT + 5;
    let held = [3, 40, 41, n - 1];
    let needed: Vec<usize> = (0..n).filter(|i| !held.contains(i)).collect();
    let mut s = Schedule::new(vec![K; n], needed.iter().copied(), 7);
    s.add_peer(1, 0, ms(t0, 5000));
    assert!(s.pick(1, t0).is_none(), "nothing before its bitmap");
    assert!(s.set_have(1, Have::All));
    let mut got = Vec::new();
    let mut now = t0;
    while s.remaining() > 0 {
        let batches = drain(&mut s, 1, now);
        assert!(!batches.is_empty());
        now = ms(now, 100);
        for b in batches {
            let n = b.chunks.len() as u64;
            got.extend(s.done(b.id, &b.chunks, &[], n * u64::from(K), now));
        }
    }
    let expected: Vec<usize> = walk_order(n.div_ceil(SEGMENT), 7)
        .into_iter()
        .flat_map(|seg| seg * SEGMENT..((seg + 1) * SEGMENT).min(n))
        .filter(|i| !held.contains(i))
        .collect();
    assert_eq!(got, expected);
    assert!(s.pick(1, now).is_none());
    assert!((0..n).all(|i| s.is_done(i)));
}

#[test]
fn several_peers_share_the_list_and_a_failed_batch_goes_to_others() {
    let t0 = Instant::now();
    let n = 40 * SEGMENT;
    let mut s = Schedule::new(vec![K; n], 0..n, 1);
    for p in 1..=3 {
        s.add_peer(p, 0, t0);
        s.set_have(p, Have::All);
    }
    let mut count = vec![0u32; n];
    let mut now = t0;
    let mut failed_one = false;
    while s.remaining() > 0 {
        let mut batches = Vec::new();
        for p in 1..=3 {
            batches.extend(drain(&mut s, p, now));
        }
        let mut asked = HashSet::new();
        for b in &batches {
            assert!(!b.hedge);
            for &i in &b.chunks {
                assert!(asked.insert(i), "chunk {i} in two batches at once");
            }
        }
        now = ms(now, 50);
        for b in batches {
            if !failed_one {
                failed_one = true;
                s.failed(b.id, now);
                continue;
            }
            let bytes = b.bytes;
            for i in s.done(b.id, &b.chunks, &[], bytes, now) {
                count[i] += 1;
            }
        }
    }
    assert!(count.iter().all(|&c| c == 1));
}

#[test]
fn a_slow_peers_batch_is_hedged_to_a_fast_one_and_counted_once() {
    let t0 = Instant::now();
    let n = 4 * SEGMENT;
    let mut s = Schedule::new(vec![K; n], 0..n, 3);
    s.add_peer(1, 0, t0);
    s.add_peer(2, 0, t0);
    s.set_have(1, Have::All);
    s.set_have(2, Have::All);
    // The slow peer measured at 64 KiB/s, the fast one at 4 MiB/s.
    let a = s.pick(1, t0).unwrap();
    let b = s.pick(2, t0).unwrap();
    let now = ms(t0, 1000);
    let mut done = s.done(a.id, &a.chunks[..1], &[], u64::from(K), now);
    assert!(s.rate(2).is_none());
    done.extend(s.done(b.id, &b.chunks, &[], 4 << 20, now));
    assert!(s.rate(1).unwrap() < s.rate(2).unwrap());
    // The slow peer's next batch is late; the fast peer is given it again before anything new.
    let slow = s.pick(1, now).unwrap();
    assert!(s.pick(2, ms(now, 100)).is_some_and(|h| !h.hedge));
    let later = ms(now, 60_000);
    let hedge = s.pick(2, later).unwrap();
    assert!(hedge.hedge);
    assert_eq!(hedge.chunks, slow.chunks);
    done.extend(s.done(hedge.id, &hedge.chunks, &[], hedge.bytes, later));
    // The slow copy arrives too: nothing counts twice, and it is not hedged again.
    assert!(s
        .done(slow.id, &slow.chunks, &[], slow.bytes, ms(later, 10))
        .is_empty());
    let mut sorted = done.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), done.len(), "a chunk counted twice");
    assert_eq!(s.remaining() + done.len(), n);
}

#[test]
fn a_late_batch_of_a_segment_kept_for_another_node_is_not_hedged_to_the_seed() {
    // Peer 1 is a node sharing the release (class 1) that holds segments 0 and 1; peer 2 the seed. This node owns
    // segments 0 and 2, peer 1 segment 1. Chunks of 16 KiB: every batch fits a first window.
    let t0 = Instant::now();
    let n = 3 * SEGMENT;
    let mut s = Schedule::new(vec![16 << 10; n], 0..n, 3);
    s.add_peer(1, 1, t0);
    s.add_peer(2, 0, t0);
    s.set_owners([(0, 0), (1, 1), (2, 0)]);
    let mut bits = vec![0u8; n.div_ceil(8)];
    for i in 0..2 * SEGMENT {
        set_bit(&mut bits, i);
    }
    s.set_have(1, Have::Bits(bits));
    s.set_have(2, Have::All);
    // The sibling is given what it holds; the seed the rest, which comes back at once and measures it.
    let slow: Vec<usize> = drain(&mut s, 1, t0)
        .into_iter()
        .flat_map(|b| b.chunks)
        .collect();
    assert_eq!(slow.len(), 2 * SEGMENT);
    for b in drain(&mut s, 2, t0) {
        assert!(b.chunks.iter().all(|&i| i >= 2 * SEGMENT));
        s.done(b.id, &b.chunks, &[], b.bytes, ms(t0, 100));
    }
    assert!(s.rate(2).is_some());
    // A minute on, the sibling's batches are long overdue: the seed is given this node's own chunks again, not
    // those of the segment the sibling owns.
    let hedges = drain(&mut s, 2, ms(t0, 60_000));
    assert!(!hedges.is_empty() && hedges.iter().all(|b| b.hedge));
    let mut hedged: Vec<usize> = hedges.into_iter().flat_map(|b| b.chunks).collect();
    hedged.sort_unstable();
    assert_eq!(hedged, (0..SEGMENT).collect::<Vec<_>>());
}

#[test]
fn an_unmeasured_peers_batch_is_hedged_after_a_while() {
    let t0 = Instant::now();
    let mut s = Schedule::new(vec![K; 64], 0..64, 3);
    s.add_peer(1, 0, t0);
    s.add_peer(2, 0, t0);
    s.set_have(1, Have::All);
    s.set_have(2, Have::All);
    let stuck = s.pick(1, t0).unwrap();
    let b = s.pick(2, t0).unwrap();
    s.done(b.id, &b.chunks, &[], b.bytes, ms(t0, 200));
    let h = drain(&mut s, 2, ms(t0, 200));
    assert!(h.iter().all(|b| !b.hedge), "not yet");
    for b in h {
        s.done(b.id, &b.chunks, &[], b.bytes, ms(t0, 300));
    }
    let late = t0 + HEDGE_UNMEASURED + Duration::from_secs(1);
    let h = s.pick(2, late).unwrap();
    assert!(h.hedge);
    assert_eq!(h.chunks, stuck.chunks);
}

#[test]
fn a_peer_with_nothing_or_no_bitmap_in_time_is_dropped() {
    let t0 = Instant::now();
    let mut s = Schedule::new(vec![K; 100], 0..100, 0);
    s.add_peer(1, 0, ms(t0, 5000));
    s.add_peer(2, 0, ms(t0, 5000));
    s.add_peer(3, 0, ms(t0, 9000));
    assert!(!s.set_have(1, Have::Nothing));
    assert!(s.pick(1, t0).is_none());
    assert!(s.expire(ms(t0, 1000)).is_empty());
    assert_eq!(s.expire(ms(t0, 6000)), vec![2]);
    assert!(!s.set_have(2, Have::All), "a dropped peer stays dropped");
    assert!(s.set_have(3, Have::All));
    assert!(s.pick(3, ms(t0, 6000)).is_some());
}

#[test]
fn a_peer_that_goes_gives_its_chunks_to_others() {
    let t0 = Instant::now();
    let mut s = Schedule::new(vec![K; 64], 0..64, 0);
    for p in [1, 2] {
        s.add_peer(p, 0, t0);
        s.set_have(p, Have::All);
    }
    let a = drain(&mut s, 1, t0);
    let b = drain(&mut s, 2, t0);
    s.gone(1);
    assert!(s.pick(1, t0).is_none());
    for x in b {
        s.done(x.id, &x.chunks, &[], x.bytes, ms(t0, 100));
    }
    let again: Vec<usize> = drain(&mut s, 2, ms(t0, 100))
        .into_iter()
        .flat_map(|b| b.chunks)
        .collect();
    assert_eq!(
        again,
        a.into_iter().flat_map(|b| b.chunks).collect::<Vec<_>>()
    );
}

#[test]
fn bitmap_peers_are_given_only_chunks_they_hold() {
    let t0 = Instant::now();
    let n = 6 * SEGMENT;
    let mut s = Schedule::new(vec![K; n], 0..n, 5);
    let mut bits = vec![0u8; n.div_ceil(8)];
    for i in (0..n).filter(|i| i % 3 == 0) {
        set_bit(&mut bits, i);
    }
    s.add_peer(1, 0, t0);
    assert!(s.set_have(1, Have::Bits(bits.clone())));
    let mut now = t0;
    let mut got = Vec::new();
    loop {
        let batches = drain(&mut s, 1, now);
        if batches.is_empty() {
            break;
        }
        now = ms(now, 100);
        for b in batches {
            assert!(b.chunks.iter().all(|i| i % 3 == 0), "{:?}", b.chunks);
            // It answers one chunk absent after all: that one is not asked of it again.
            let (absent, stored) = b.chunks.split_at(1);
            got.extend(s.done(b.id, stored, absent, b.bytes, now));
            got.extend(absent);
        }
    }
    got.sort_unstable();
    assert_eq!(got, (0..n).filter(|i| i % 3 == 0).collect::<Vec<_>>());
    // Its bitmap grows: it is given the new chunks.
    set_bit(&mut bits, 1);
    s.set_have(1, Have::Bits(bits));
    assert_eq!(s.pick(1, now).unwrap().chunks, vec![1]);
}

#[test]
fn windows_grow_with_measured_rate_and_are_clamped() {
    let t0 = Instant::now();
    let mut s = Schedule::new(vec![1 << 20; 1000], 0..1000, 0);
    for p in 1..=3 {
        s.add_peer(p, 0, t0);
        s.set_have(p, Have::All);
    }
    assert_eq!(s.window(1), Some(FIRST_WINDOW));
    let now = ms(t0, 1000);
    // 10 KiB/s, 8 MiB/s, 1 GiB/s over the first second.
    for (p, bytes) in [(1, 10 << 10), (2, 8 << 20), (3, 1 << 30)] {
        let b = s.pick(p, t0).unwrap();
        s.done(b.id, &b.chunks, &[], bytes, now);
    }
    let w: Vec<u64> = (1..=3).map(|p| s.window(p).unwrap()).collect();
    assert_eq!(w[0], 2 * MIN_BATCH);
    assert_eq!(w[1], 8 << 20);
    assert_eq!(w[2], MAX_WINDOW);
    // What is in flight follows the window (chunks of 1 MiB: at most one chunk over it).
    for (p, w) in (1..=3).zip(w) {
        let batches = drain(&mut s, p, now);
        let bytes: u64 = batches.iter().map(|b| b.bytes).sum();
        assert!(
            bytes >= w.min(8 << 20) && bytes < w + (1 << 20),
            "{p}: {bytes}"
        );
        assert!(batches.len() <= IN_FLIGHT);
        assert!(batches.iter().all(|b| b.bytes <= MAX_BATCH));
    }
}

#[test]
fn a_peer_asked_little_is_measured_by_how_fast_it_answers_not_by_how_rarely_it_is_asked() {
    let t0 = Instant::now();
    let n = 64 * SEGMENT;
    let mut s = Schedule::new(vec![K; n], 0..n, 0);
    s.add_peer(1, 0, t0);
    s.set_have(1, Have::All);
    // Asked one batch every 500 ms, each back 50 ms later: busy 150 ms of the 1,050.
    let mut bytes = 0;
    for k in 0..3 {
        let asked = ms(t0, 500 * k);
        let b = s.pick(1, asked).unwrap();
        bytes += b.bytes;
        s.done(b.id, &b.chunks, &[], b.bytes, ms(asked, 50));
    }
    let answered = ms(t0, 1050);
    let rate = s.rate(1).unwrap();
    let busy_rate = bytes as f64 / 0.150;
    assert!(
        (rate - busy_rate).abs() < busy_rate * 0.01,
        "{rate} against {busy_rate}"
    );
    // Idle time does not lower it; a slow answer does.
    assert_eq!(s.rate(1), Some(rate));
    let late = s.pick(1, ms(answered, 400)).unwrap();
    s.done(late.id, &late.chunks, &[], late.bytes, ms(answered, 1400));
    let slower = (bytes + late.bytes) as f64 / 1.150;
    let now = s.rate(1).unwrap();
    assert!(
        (now - slower).abs() < slower * 0.01,
        "{now} against {slower}"
    );
}

#[test]
fn owned_segments_are_left_to_their_class_while_it_is_present() {
    let t0 = Instant::now();
    let n = 4 * SEGMENT;
    let mut s = Schedule::new(vec![1024; n], 0..n, 9);
    s.set_owner(2, 1);
    s.add_peer(10, 0, t0);
    s.add_peer(11, 1, t0);
    s.set_have(10, Have::All);
    s.set_have(11, Have::All);
    let seg2 = |b: &Batch| b.chunks.iter().any(|i| i / SEGMENT == 2);
    let others = drain(&mut s, 10, t0);
    assert!(!others.is_empty() && !others.iter().any(seg2));
    s.gone(11);
    assert!(drain(&mut s, 10, t0).iter().any(seg2));
}

#[test]
fn changes_to_a_bitmap_are_taken_in_without_the_whole_map() {
    let t0 = Instant::now();
    let n = 8 * SEGMENT;
    let mut s = Schedule::new(vec![K; n], 0..n, 3);
    s.add_peer(1, 0, t0);
    assert!(s.add_have(1, &[0]), "known, though its bitmap has not come");
    assert!(s.pick(1, t0).is_none(), "nothing before its bitmap");
    s.set_have(1, Have::Bits(vec![0; n.div_ceil(8)]));
    assert!(s.pick(1, t0).is_none(), "it holds nothing yet");
    assert!(s.add_have(1, &[5, 7 * SEGMENT + 1, n + 40]));
    let got: Vec<usize> = drain(&mut s, 1, t0)
        .into_iter()
        .flat_map(|b| b.chunks)
        .collect();
    let mut sorted = got.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        vec![5, 7 * SEGMENT + 1],
        "the chunks it came to hold, past the list ignored"
    );
    assert!(!s.add_have(2, &[1]), "an unknown peer");
}

#[test]
fn a_peer_moved_to_an_owner_class_takes_its_segments_and_others_leave_them() {
    let t0 = Instant::now();
    let n = 4 * SEGMENT;
    let two_whole_peers = || {
        let mut s = Schedule::new(vec![1024; n], 0..n, 9);
        for p in [10, 11] {
            s.add_peer(p, 0, t0);
            s.set_have(p, Have::All);
        }
        s.set_owners([(1, 2), (3, 2)]);
        s
    };
    let owned = |b: &Batch| b.chunks.iter().any(|i| [1, 3].contains(&(i / SEGMENT)));
    let mut s = two_whole_peers();
    assert!(
        drain(&mut s, 10, t0).iter().any(owned),
        "nobody of class 2 yet"
    );
    let mut s = two_whole_peers();
    s.set_class(11, 2);
    assert!(!drain(&mut s, 10, t0).iter().any(owned));
    assert!(drain(&mut s, 11, t0).iter().any(owned));
    s.set_class(11, 0);
    assert_eq!(s.segments(), 4);
}

#[test]
fn claimed_chunks_wait_for_their_delta_and_come_back_if_it_fails() {
    let t0 = Instant::now();
    let mut s = Schedule::new(vec![K; 8], 0..8, 0);
    s.add_peer(1, 0, t0);
    s.set_have(1, Have::All);
    s.claim(&[0, 1, 2, 3]);
    let b = s.pick(1, t0).unwrap();
    assert_eq!(b.chunks, vec![4, 5, 6, 7]);
    assert!(s.pick(1, t0).is_none(), "the rest are claimed");
    assert_eq!(s.stored(&[0, 1]), vec![0, 1]);
    s.unclaim(&[0, 1, 2, 3]);
    s.done(b.id, &b.chunks, &[], b.bytes, ms(t0, 100));
    assert_eq!(s.pick(1, ms(t0, 100)).unwrap().chunks, vec![2, 3]);
    assert_eq!(s.remaining(), 2);
}

/// The bookkeeping agrees with the slots and batches, and no peer has something to take behind its cursor.
fn check(s: &Schedule<u32>) {
    let segments = s.walk.len();
    for seg in 0..segments {
        let r = seg * SEGMENT..((seg + 1) * SEGMENT).min(s.size.len());
        let open = r.clone().filter(|&i| s.slot[i] == Slot::Needed).count();
        let left = r.clone().filter(|&i| s.slot[i] != Slot::Done).count();
        assert_eq!(s.open[seg] as usize, open, "open of {seg}");
        assert_eq!(s.left[seg] as usize, left, "left of {seg}");
    }
    for (i, slot) in s.slot.iter().enumerate() {
        let asked = s.batches.values().filter(|b| b.chunks.contains(&i)).count();
        match slot {
            Slot::Asked(k) => assert_eq!(*k as usize, asked, "chunk {i}"),
            Slot::Needed => assert_eq!(asked, 0, "chunk {i}"),
            Slot::Done => {}
        }
    }
    assert_eq!(
        s.remaining,
        s.slot.iter().filter(|&&x| x != Slot::Done).count()
    );
    for (p, st) in &s.peers {
        for &seg in &s.walk[..st.cursor.min(segments)] {
            let o = s.owner[seg];
            if o != 0 && o != st.class && s.class_peers[o as usize] > 0 {
                continue;
            }
            for i in seg * SEGMENT..((seg + 1) * SEGMENT).min(s.size.len()) {
                assert!(
                    s.slot[i] != Slot::Needed || !st.holds(i),
                    "peer {p} passed chunk {i}"
                );
            }
        }
    }
}

#[test]
fn random_events_keep_the_books_and_count_each_chunk_once() {
    let (mut hedges, mut early) = (0, 0);
    for seed in 1..=20u64 {
        let mut rng = seed;
        let mut rand = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let t0 = Instant::now();
        let n = 20 * SEGMENT + 3;
        let sizes: Vec<u32> = (0..n).map(|_| 1024 + rand(200_000) as u32).collect();
        let needed: Vec<usize> = (0..n).filter(|_| rand(10) != 0).collect();
        let mut s = Schedule::new(sizes, needed.iter().copied(), seed);
        for seg in 0..4 {
            s.set_owner(rand(21) as usize, 1 + seg as u8 % 2);
        }
        let mut bits: Vec<Vec<u8>> = vec![vec![0u8; n.div_ceil(8)]; 6];
        let mut count = vec![0u32; n];
        let mut out: Vec<Batch> = Vec::new();
        let mut now = t0;
        for _ in 0..3000 {
            now = ms(now, rand(300));
            let p = rand(6) as u32;
            match rand(12) {
                0 => s.add_peer(p, rand(3) as u8, ms(now, 2000)),
                1 if rand(4) == 0 => s.gone(p),
                2 => {
                    let have = match rand(5) {
                        0 => Have::All,
                        1 if rand(10) == 0 => Have::Nothing,
                        _ => {
                            let added: Vec<usize> =
                                (0..20).map(|_| rand(n as u64 + 3) as usize).collect();
                            for &i in added.iter().filter(|&&i| i < n) {
                                set_bit(&mut bits[p as usize], i);
                            }
                            if rand(2) == 0 {
                                // As changes (positions past the list are ignored).
                                s.add_have(p, &added);
                                check(&s);
                                continue;
                            }
                            Have::Bits(bits[p as usize].clone())
                        }
                    };
                    s.set_have(p, have);
                }
                3 => {
                    s.expire(now);
                    if rand(3) == 0 {
                        s.set_class(p, rand(3) as u8);
                    }
                }
                4..=7 => {
                    if let Some(b) = s.pick(p, now) {
                        hedges += usize::from(b.hedge);
                        out.push(b);
                    }
                }
                _ if !out.is_empty() && rand(3) == 0 => {
                    let b = out.swap_remove(rand(out.len() as u64) as usize);
                    if rand(5) == 0 {
                        s.failed(b.id, now);
                    } else {
                        let k = rand(b.chunks.len() as u64 + 1) as usize;
                        let (stored, absent) = b.chunks.split_at(k);
                        for i in s.done(b.id, stored, absent, b.bytes, now) {
                            count[i] += 1;
                        }
                    }
                }
                _ => {}
            }
            check(&s);
        }
        early += count.iter().filter(|&&c| c > 0).count();
        // The others go (owners among them: their segments open up); a peer holding everything finishes.
        s.add_peer(99, 0, now);
        s.set_have(99, Have::All);
        for p in 0..6 {
            s.gone(p);
            check(&s);
        }
        while s.remaining() > 0 {
            now = ms(now, 100);
            let b = s.pick(99, now).expect("the whole peer has room");
            for i in s.done(b.id, &b.chunks, &[], b.bytes, now) {
                count[i] += 1;
            }
            check(&s);
        }
        for (i, &c) in count.iter().enumerate() {
            assert_eq!(c, u32::from(needed.contains(&i)), "seed {seed} chunk {i}");
        }
    }
    assert!(
        hedges > 0 && early > 0,
        "{hedges} hedges, {early} chunks before the end: the walk exercised too little"
    );
}

/// `cargo test -p ferry-node --lib -- net::schedule --ignored --nocapture`
#[test]
#[ignore = "a measurement, not a check"]
fn cost_per_chunk_of_picking() {
    for n in [10_000, 1_000_000] {
        let t0 = Instant::now();
        let mut s = Schedule::new(vec![K; n], 0..n, 42);
        let mut bits = vec![0u8; n.div_ceil(8)];
        for i in n / 2..n {
            set_bit(&mut bits, i);
        }
        for p in 0..4u32 {
            s.add_peer(p, 0, t0);
            s.set_have(p, Have::All);
        }
        s.add_peer(4, 0, t0);
        s.set_have(4, Have::Bits(bits));
        let start = Instant::now();
        let mut now = t0;
        let mut events = 0u64;
        // Each peer in turn is given a batch and answers it a millisecond later.
        while s.remaining() > 0 {
            now = ms(now, 1);
            for p in 0..5 {
                if let Some(b) = s.pick(p, now) {
                    s.done(b.id, &b.chunks, &[], b.bytes, ms(now, 1));
                    events += 1;
                }
            }
        }
        let took = start.elapsed();
        println!(
            "{n} chunks: {events} batches in {took:?}, {:.0} ns per chunk, {:.1} µs per batch",
            took.as_nanos() as f64 / n as f64,
            took.as_secs_f64() * 1e6 / events as f64
        );
    }
}
