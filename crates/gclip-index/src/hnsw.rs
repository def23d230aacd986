//! A hierarchical navigable small world graph (Malkov & Yashunin) with concurrent insertion,
//! filtering inside the traversal, and a compact on-disk form.
//!
//! Layer-0 links live in one flat array of atomics so that searches read them without locks
//! while other threads insert; each node's list is written under that node's mutex. Upper
//! layers (about 1/M of the nodes) sit behind per-node read-write locks. Deleted nodes stay in
//! the graph as routing points: the caller's filter keeps them out of results.

use parking_lot::{Mutex, RwLock};
use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering as AO};

/// Distances between a query (or a node) and stored nodes; smaller is closer.
pub trait Space: Sync {
    /// Distance of node `i` to the query this space was made for.
    fn to_query(&self, i: u32) -> f32;
    /// Hints that node `i` will be read soon (graph walks are memory bound).
    fn prefetch(&self, _i: u32) {}
    /// Hints that all of node `i`'s data will be read next.
    fn prefetch_row(&self, i: u32) {
        self.prefetch(i)
    }
    /// Distances of four nodes; spaces override it with a kernel that overlaps the four
    /// rows' reads.
    fn to_query4(&self, ids: [u32; 4]) -> [f32; 4] {
        ids.map(|i| self.to_query(i))
    }
}

/// Distance between two stored nodes (used to build the graph).
pub trait NodeSpace: Sync {
    fn between(&self, a: u32, b: u32) -> f32;
    /// A space whose query is node `a`.
    fn of_node(&self, a: u32) -> impl Space + '_;
}

/// A node and its distance to the query.
#[derive(Clone, Copy, Debug)]
pub struct Cand {
    pub dist: f32,
    pub id: u32,
}
impl PartialEq for Cand {
    fn eq(&self, o: &Self) -> bool {
        self.dist.total_cmp(&o.dist) == Ordering::Equal && self.id == o.id
    }
}
impl Eq for Cand {}
impl PartialOrd for Cand {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Cand {
    fn cmp(&self, o: &Self) -> Ordering {
        self.dist.total_cmp(&o.dist).then(self.id.cmp(&o.id))
    }
}

/// Per-thread visited marks: 16-bit generation stamps (half the cache footprint of 32-bit
/// ones; 100k nodes take 200 KB, which stays in L2), cleared once every 65,535 searches.
struct Visited {
    marks: Vec<u16>,
    epoch: u16,
}

impl Visited {
    fn reset(&mut self, n: usize) {
        if self.marks.len() < n {
            self.marks.resize(n, 0);
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.marks.iter_mut().for_each(|m| *m = 0);
            self.epoch = 1;
        }
    }
    #[inline]
    fn insert(&mut self, i: u32) -> bool {
        let m = &mut self.marks[i as usize];
        if *m == self.epoch {
            false
        } else {
            *m = self.epoch;
            true
        }
    }
}

thread_local! {
    static VISITED: RefCell<Visited> = const { RefCell::new(Visited { marks: Vec::new(), epoch: 0 }) };
}

const NO_ENTRY: u64 = u64::MAX;
const FORMAT: u32 = 1;

pub struct Hnsw {
    m: usize,
    m0: usize,
    ef_construction: usize,
    level_mult: f64,
    seed: u64,
    /// Per node: `[count, links[m0]]`.
    links0: Vec<AtomicU32>,
    upper: Vec<RwLock<Vec<Vec<u32>>>>,
    locks: Vec<Mutex<()>>,
    levels: Vec<u8>,
    /// `(level << 32) | node`, or NO_ENTRY.
    entry: AtomicU64,
    entry_lock: Mutex<()>,
}

impl Hnsw {
    pub fn new(m: usize, ef_construction: usize, seed: u64) -> Self {
        let m = m.max(2);
        Self {
            m,
            m0: 2 * m,
            ef_construction: ef_construction.max(1),
            level_mult: 1.0 / (m as f64).ln(),
            seed,
            links0: Vec::new(),
            upper: Vec::new(),
            locks: Vec::new(),
            levels: Vec::new(),
            entry: AtomicU64::new(NO_ENTRY),
            entry_lock: Mutex::new(()),
        }
    }

    pub fn m(&self) -> usize {
        self.m
    }

    /// Nodes allocated (inserted or about to be).
    pub fn len(&self) -> usize {
        self.levels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }

    /// Bytes of link memory per node (layer 0 plus the expected upper-layer share).
    pub fn bytes_per_node(&self) -> usize {
        4 * (self.m0 + 1) + 1 + 8 + 2 * 4 * self.m / self.m.max(2)
    }

    fn level_for(&self, i: u32) -> u8 {
        let mut z = self.seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let u = ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        ((-u.ln() * self.level_mult) as usize).min(16) as u8
    }

    /// Allocates slots up to `n` nodes (their links empty); call before inserting them.
    pub fn grow(&mut self, n: usize) {
        let old = self.len();
        if n <= old {
            return;
        }
        self.links0
            .resize_with(n * (self.m0 + 1), || AtomicU32::new(0));
        for i in old..n {
            let l = self.level_for(i as u32);
            self.levels.push(l);
            self.upper.push(RwLock::new(vec![Vec::new(); l as usize]));
            self.locks.push(Mutex::new(()));
        }
    }

    fn entry(&self) -> Option<(u32, usize)> {
        let e = self.entry.load(AO::Acquire);
        (e != NO_ENTRY).then_some((e as u32, (e >> 32) as usize))
    }

    #[inline]
    fn for_neighbors(&self, i: u32, layer: usize, mut f: impl FnMut(u32)) {
        if layer == 0 {
            let base = i as usize * (self.m0 + 1);
            // One bounds check for the whole list, not one per link.
            let list = &self.links0[base..base + 1 + self.m0];
            let n = (list[0].load(AO::Acquire) as usize).min(self.m0);
            for l in &list[1..1 + n] {
                f(l.load(AO::Relaxed));
            }
        } else {
            let g = self.upper[i as usize].read();
            if let Some(l) = g.get(layer - 1) {
                l.iter().copied().for_each(f);
            }
        }
    }

    /// Hints that node `i`'s layer-0 list will be read soon.
    #[inline]
    fn prefetch_links(&self, i: u32) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let at = i as usize * (self.m0 + 1);
            let p = self.links0.as_ptr().wrapping_add(at) as *const i8;
            // Prefetching is only a hint: it never faults, even past the end.
            for off in (0..4 * (self.m0 + 1)).step_by(64) {
                unsafe { _mm_prefetch(p.wrapping_add(off), _MM_HINT_T0) };
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = i;
    }

    fn neighbors(&self, i: u32, layer: usize) -> Vec<u32> {
        let mut v = Vec::with_capacity(self.m0);
        self.for_neighbors(i, layer, |n| v.push(n));
        v
    }

    fn set_neighbors(&self, i: u32, layer: usize, list: &[u32]) {
        if layer == 0 {
            let base = i as usize * (self.m0 + 1);
            let n = list.len().min(self.m0);
            for (k, &id) in list[..n].iter().enumerate() {
                self.links0[base + 1 + k].store(id, AO::Relaxed);
            }
            self.links0[base].store(n as u32, AO::Release);
        } else {
            let mut g = self.upper[i as usize].write();
            if let Some(l) = g.get_mut(layer - 1) {
                l.clear();
                l.extend_from_slice(list);
            }
        }
    }

    fn greedy<S: Space>(&self, space: &S, mut cur: u32, mut d: f32, layer: usize) -> (u32, f32) {
        loop {
            let mut changed = false;
            self.for_neighbors(cur, layer, |n| {
                let dn = space.to_query(n);
                if dn < d {
                    d = dn;
                    cur = n;
                    changed = true;
                }
            });
            if !changed {
                return (cur, d);
            }
        }
    }

    /// Best-first search of one layer. Only nodes passing `accept` enter the results, but every
    /// node is walked through, so a filter never disconnects the graph.
    fn search_layer<S: Space>(
        &self,
        space: &S,
        entry: &[Cand],
        ef: usize,
        layer: usize,
        accept: Option<&(dyn Fn(u32) -> bool + Sync)>,
    ) -> Vec<Cand> {
        VISITED.with(|v| {
            let mut visited = v.borrow_mut();
            visited.reset(self.len());
            let mut cands: BinaryHeap<Reverse<Cand>> = BinaryHeap::with_capacity(ef * 4);
            let mut results: BinaryHeap<Cand> = BinaryHeap::with_capacity(ef + 1);
            let ok = |i: u32| accept.is_none_or(|f| f(i));
            for &c in entry {
                if visited.insert(c.id) {
                    cands.push(Reverse(c));
                    if ok(c.id) {
                        results.push(c);
                    }
                }
            }
            while results.len() > ef {
                results.pop();
            }
            let mut fresh = [0u32; 256];
            while let Some(Reverse(c)) = cands.pop() {
                if results.len() >= ef && results.peek().is_some_and(|w| c.dist > w.dist) {
                    break;
                }
                // The next candidate's list loads while this one's neighbours are scored
                // (the top may still change; a wasted hint costs little).
                if layer == 0 {
                    if let Some(Reverse(next)) = cands.peek() {
                        self.prefetch_links(next.id);
                    }
                }
                let mut nf = 0;
                self.for_neighbors(c.id, layer, |n| {
                    if nf < fresh.len() && visited.insert(n) {
                        space.prefetch(n);
                        fresh[nf] = n;
                        nf += 1;
                    }
                });
                let mut consider = |n: u32, d: f32| {
                    let full = results.len() >= ef;
                    if !full || results.peek().is_some_and(|w| d < w.dist) {
                        cands.push(Reverse(Cand { dist: d, id: n }));
                        if ok(n) {
                            results.push(Cand { dist: d, id: n });
                            if results.len() > ef {
                                results.pop();
                            }
                        }
                    }
                };
                // Whole rows of the next group load while the current one is scored.
                for &n in &fresh[..nf.min(4)] {
                    space.prefetch_row(n);
                }
                let mut at = 0;
                while at + 4 <= nf {
                    for &n in &fresh[at + 4..nf.min(at + 8)] {
                        space.prefetch_row(n);
                    }
                    let ids = [fresh[at], fresh[at + 1], fresh[at + 2], fresh[at + 3]];
                    let d = space.to_query4(ids);
                    for k in 0..4 {
                        consider(ids[k], d[k]);
                    }
                    at += 4;
                }
                for &n in &fresh[at..nf] {
                    consider(n, space.to_query(n));
                }
            }
            let mut out = results.into_vec();
            out.sort_unstable();
            out
        })
    }

    /// The `k` nearest accepted nodes to the query of `space`, searching with beam `ef`.
    pub fn search<S: Space>(
        &self,
        space: &S,
        k: usize,
        ef: usize,
        accept: Option<&(dyn Fn(u32) -> bool + Sync)>,
    ) -> Vec<Cand> {
        let Some((ep, top)) = self.entry() else {
            return Vec::new();
        };
        let mut cur = ep;
        let mut d = space.to_query(ep);
        for layer in (1..=top).rev() {
            (cur, d) = self.greedy(space, cur, d, layer);
        }
        let mut r = self.search_layer(space, &[Cand { dist: d, id: cur }], ef.max(k), 0, accept);
        r.truncate(k);
        r
    }

    /// Keeps at most `m` of `cands` (sorted by distance to the base node), preferring ones
    /// not closer to an already kept neighbour than to the base (the paper's heuristic).
    fn select<N: NodeSpace>(&self, ns: &N, cands: &[Cand], m: usize) -> Vec<u32> {
        let mut kept: Vec<Cand> = Vec::with_capacity(m);
        for &c in cands {
            if kept.len() >= m {
                break;
            }
            if kept.iter().all(|k| ns.between(c.id, k.id) > c.dist) {
                kept.push(c);
            }
        }
        kept.into_iter().map(|c| c.id).collect()
    }

    /// Links node `i` (allocated by [`Hnsw::grow`], its vector readable through `ns`) into the
    /// graph. Safe to call from several threads for different nodes.
    pub fn insert<N: NodeSpace>(&self, ns: &N, i: u32) {
        let level = self.levels[i as usize] as usize;
        let Some((ep, top)) = self.entry() else {
            let g = self.entry_lock.lock();
            if self.entry().is_none() {
                self.entry
                    .store(((level as u64) << 32) | i as u64, AO::Release);
                return;
            }
            drop(g);
            return self.insert(ns, i);
        };
        let space = ns.of_node(i);
        let mut cur = ep;
        let mut d = space.to_query(ep);
        for layer in (level + 1..=top).rev() {
            (cur, d) = self.greedy(&space, cur, d, layer);
        }
        let mut eps = vec![Cand { dist: d, id: cur }];
        for layer in (0..=level.min(top)).rev() {
            let w = self.search_layer(&space, &eps, self.ef_construction, layer, None);
            let w: Vec<Cand> = w.into_iter().filter(|c| c.id != i).collect();
            let cap = if layer == 0 { self.m0 } else { self.m };
            // A new node keeps M links (its neighbours' reverse links fill layer 0 up to 2M);
            // taking 2M at once measured lower recall at the same beam on clustered data.
            let chosen = self.select(ns, &w, self.m);
            {
                // One lock at a time (never two), so concurrent inserts cannot deadlock.
                let _own = self.locks[i as usize].lock();
                self.set_neighbors(i, layer, &chosen);
            }
            for &n in &chosen {
                if n == i {
                    continue;
                }
                let _g = self.locks[n as usize].lock();
                let mut list = self.neighbors(n, layer);
                if list.contains(&i) {
                    continue;
                }
                if list.len() < cap {
                    list.push(i);
                } else {
                    let mut c: Vec<Cand> = list
                        .iter()
                        .chain(std::iter::once(&i))
                        .map(|&x| Cand {
                            dist: ns.between(n, x),
                            id: x,
                        })
                        .collect();
                    c.sort_unstable();
                    list = self.select(ns, &c, cap);
                }
                self.set_neighbors(n, layer, &list);
            }
            if !w.is_empty() {
                eps = w;
            }
        }
        if level > top {
            let _g = self.entry_lock.lock();
            if self.entry().is_none_or(|(_, t)| level > t) {
                self.entry
                    .store(((level as u64) << 32) | i as u64, AO::Release);
            }
        }
    }

    /// Node ids `from..to` in insertion order: highest level first (as faiss adds them), so
    /// the upper layers form before the bulk of layer 0 routes through them.
    pub fn insertion_order(&self, from: u32, to: u32) -> Vec<u32> {
        let mut ids: Vec<u32> = (from..to.min(self.len() as u32)).collect();
        ids.sort_by_key(|&i| std::cmp::Reverse(self.levels[i as usize]));
        ids
    }

    /// Inserts `ids` in their order on the current rayon pool's threads: each thread takes the
    /// next id from a shared counter, so the graph grows in that order (a split of the range
    /// into per-thread halves would build two interleaved graphs). `done` is called every
    /// 1024 nodes.
    pub fn insert_all<N: NodeSpace>(&self, ns: &N, ids: &[u32], done: &(dyn Fn(usize) + Sync)) {
        let next = std::sync::atomic::AtomicUsize::new(0);
        let threads = rayon::current_num_threads().max(1);
        rayon::scope(|s| {
            for _ in 0..threads {
                s.spawn(|_| loop {
                    let k = next.fetch_add(1, AO::Relaxed);
                    let Some(&i) = ids.get(k) else { break };
                    self.insert(ns, i);
                    if k % 1024 == 1023 {
                        done(1024);
                    }
                });
            }
        });
    }

    /// Takes the nodes `dead` says are deleted out of the graph: every live node that links to
    /// a dead one gets its list chosen again (the same heuristic as insertion) from its live
    /// neighbours and the live neighbours of its dead ones; dead nodes lose all their links,
    /// and the entry point moves to a live node of the highest level. Searches may run
    /// meanwhile (lists are swapped one at a time); inserts must not. Returns how many link
    /// lists were repaired.
    pub fn unlink<N: NodeSpace>(&self, ns: &N, dead: &(dyn Fn(u32) -> bool + Sync)) -> usize {
        use rayon::prelude::*;
        let n = self.len() as u32;
        let top = self.levels.iter().copied().max().unwrap_or(0) as usize;
        let mut repaired = 0;
        for layer in 0..=top {
            let cap = if layer == 0 { self.m0 } else { self.m };
            // Read every affected list before writing any, so repairs see the old graph.
            let lists: Vec<(u32, Vec<u32>)> = (0..n)
                .into_par_iter()
                .filter(|&i| self.levels[i as usize] as usize >= layer && !dead(i))
                .filter_map(|i| {
                    let own = self.neighbors(i, layer);
                    if !own.iter().any(|&x| dead(x)) {
                        return None;
                    }
                    let mut pool: Vec<u32> = Vec::with_capacity(4 * cap);
                    for &x in &own {
                        if dead(x) {
                            self.for_neighbors(x, layer, |y| {
                                if y != i && !dead(y) {
                                    pool.push(y);
                                }
                            });
                        } else {
                            pool.push(x);
                        }
                    }
                    pool.sort_unstable();
                    pool.dedup();
                    let mut c: Vec<Cand> = pool
                        .into_iter()
                        .map(|x| Cand {
                            dist: ns.between(i, x),
                            id: x,
                        })
                        .collect();
                    c.sort_unstable();
                    Some((i, self.select(ns, &c, cap)))
                })
                .collect();
            repaired += lists.len();
            for (i, list) in lists {
                let _g = self.locks[i as usize].lock();
                self.set_neighbors(i, layer, &list);
            }
            for i in (0..n).filter(|&i| dead(i) && self.levels[i as usize] as usize >= layer) {
                let _g = self.locks[i as usize].lock();
                self.set_neighbors(i, layer, &[]);
            }
        }
        if self.entry().is_some_and(|(e, _)| dead(e)) {
            let _g = self.entry_lock.lock();
            let best = (0..n)
                .filter(|&i| !dead(i))
                .max_by_key(|&i| (self.levels[i as usize], std::cmp::Reverse(i)));
            let e = best.map_or(NO_ENTRY, |i| {
                ((self.levels[i as usize] as u64) << 32) | i as u64
            });
            self.entry.store(e, AO::Release);
        }
        repaired
    }

    /// Nodes without any layer-0 link (deleted ones taken out by [`Hnsw::unlink`], or not
    /// inserted yet), the entry point excepted.
    pub fn unlinked_nodes(&self) -> usize {
        let entry = self.entry().map(|(e, _)| e);
        (0..self.len())
            .filter(|&i| {
                Some(i as u32) != entry && self.links0[i * (self.m0 + 1)].load(AO::Relaxed) == 0
            })
            .count()
    }

    /// Writes the graph (not the vectors).
    pub fn write_to(&self, w: &mut impl Write) -> std::io::Result<()> {
        let n = self.len();
        for x in [FORMAT, self.m as u32, self.ef_construction as u32, n as u32] {
            w.write_all(&x.to_le_bytes())?;
        }
        w.write_all(&self.seed.to_le_bytes())?;
        w.write_all(&self.entry.load(AO::Acquire).to_le_bytes())?;
        w.write_all(&self.levels)?;
        let mut buf = Vec::with_capacity(self.links0.len() * 4);
        for a in &self.links0 {
            buf.extend_from_slice(&a.load(AO::Relaxed).to_le_bytes());
        }
        w.write_all(&buf)?;
        for u in &self.upper {
            let g = u.read();
            for l in g.iter() {
                w.write_all(&(l.len() as u32).to_le_bytes())?;
                for &x in l {
                    w.write_all(&x.to_le_bytes())?;
                }
            }
        }
        Ok(())
    }

    /// Reads a graph written by [`Hnsw::write_to`]; `None` when it is not in this format.
    pub fn read_from(r: &mut impl Read) -> std::io::Result<Option<Self>> {
        let mut u32buf = [0u8; 4];
        let mut rd = |r: &mut dyn Read| -> std::io::Result<u32> {
            r.read_exact(&mut u32buf)?;
            Ok(u32::from_le_bytes(u32buf))
        };
        if rd(r)? != FORMAT {
            return Ok(None);
        }
        let m = rd(r)? as usize;
        let efc = rd(r)? as usize;
        let n = rd(r)? as usize;
        let mut b8 = [0u8; 8];
        r.read_exact(&mut b8)?;
        let seed = u64::from_le_bytes(b8);
        r.read_exact(&mut b8)?;
        let entry = u64::from_le_bytes(b8);
        let mut h = Hnsw::new(m, efc, seed);
        let mut levels = vec![0u8; n];
        r.read_exact(&mut levels)?;
        let mut raw = vec![0u8; n * (h.m0 + 1) * 4];
        r.read_exact(&mut raw)?;
        h.links0 = raw
            .chunks_exact(4)
            .map(|c| AtomicU32::new(u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect();
        for &l in &levels {
            let mut lists = Vec::with_capacity(l as usize);
            for _ in 0..l {
                let k = rd(r)? as usize;
                if k > 4 * m {
                    return Ok(None);
                }
                let mut list = Vec::with_capacity(k);
                for _ in 0..k {
                    let x = rd(r)?;
                    if x as usize >= n {
                        return Ok(None);
                    }
                    list.push(x);
                }
                lists.push(list);
            }
            h.upper.push(RwLock::new(lists));
            h.locks.push(Mutex::new(()));
        }
        if h.links0.chunks(h.m0 + 1).any(|c| {
            c[0].load(AO::Relaxed) as usize > h.m0
                || c[1..]
                    .iter()
                    .any(|x| x.load(AO::Relaxed) as usize >= n.max(1))
        }) {
            return Ok(None);
        }
        h.levels = levels;
        h.entry = AtomicU64::new(entry);
        Ok(Some(h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    struct Rows {
        dim: usize,
        data: Vec<f32>,
    }
    struct Q<'a> {
        rows: &'a Rows,
        q: Vec<f32>,
    }
    impl Rows {
        fn row(&self, i: u32) -> &[f32] {
            &self.data[i as usize * self.dim..(i as usize + 1) * self.dim]
        }
    }
    impl Space for Q<'_> {
        fn to_query(&self, i: u32) -> f32 {
            crate::simd::l2_f32(&self.q, self.rows.row(i))
        }
    }
    impl NodeSpace for Rows {
        fn between(&self, a: u32, b: u32) -> f32 {
            crate::simd::l2_f32(self.row(a), self.row(b))
        }
        fn of_node(&self, a: u32) -> impl Space + '_ {
            Q {
                rows: self,
                q: self.row(a).to_vec(),
            }
        }
    }

    fn data(n: usize, dim: usize) -> Rows {
        let mut s = 12345u64;
        let data = (0..n * dim)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect();
        Rows { dim, data }
    }

    #[test]
    fn parallel_build_recall_filter_and_roundtrip() {
        let rows = data(3000, 16);
        let mut h = Hnsw::new(12, 80, 7);
        h.grow(3000);
        (0..3000u32)
            .into_par_iter()
            .for_each(|i| h.insert(&rows, i));
        let mut hit = 0;
        let queries = 50;
        for qi in 0..queries {
            let q = Q {
                rows: &rows,
                q: rows.row(qi * 7).iter().map(|x| x + 0.01).collect(),
            };
            let mut exact: Vec<Cand> = (0..3000u32)
                .map(|i| Cand {
                    dist: q.to_query(i),
                    id: i,
                })
                .collect();
            exact.sort_unstable();
            let got = h.search(&q, 10, 64, None);
            hit += got
                .iter()
                .filter(|g| exact[..10].iter().any(|e| e.id == g.id))
                .count();
            // Filter: only even ids; results must all be even and 10 of them.
            let even = |i: u32| i.is_multiple_of(2);
            let f = h.search(&q, 10, 64, Some(&even));
            assert_eq!(f.len(), 10);
            assert!(f.iter().all(|c| c.id % 2 == 0));
        }
        let recall = hit as f64 / (10 * queries) as f64;
        assert!(recall > 0.9, "recall {recall}");
        let mut buf = Vec::new();
        h.write_to(&mut buf).unwrap();
        let h2 = Hnsw::read_from(&mut buf.as_slice()).unwrap().unwrap();
        let q = Q {
            rows: &rows,
            q: rows.row(5).to_vec(),
        };
        assert_eq!(
            h.search(&q, 10, 32, None)
                .iter()
                .map(|c| c.id)
                .collect::<Vec<_>>(),
            h2.search(&q, 10, 32, None)
                .iter()
                .map(|c| c.id)
                .collect::<Vec<_>>()
        );
        buf[0] = 99;
        assert!(Hnsw::read_from(&mut buf.as_slice()).unwrap().is_none());

        // Delete 30% (the entry point among them): no live node links to a dead one after
        // the repair, unfiltered searches never return one, and recall holds.
        let (entry, _) = h.entry().unwrap();
        let dead = move |i: u32| i % 10 < 3 || i == entry;
        let repaired = h.unlink(&rows, &dead);
        assert!(repaired > 1000, "{repaired}");
        assert!(!dead(h.entry().unwrap().0));
        for i in 0..3000u32 {
            for layer in 0..=h.levels[i as usize] as usize {
                let nb = h.neighbors(i, layer);
                if dead(i) {
                    assert!(nb.is_empty());
                } else {
                    assert!(nb.iter().all(|&x| !dead(x)), "{i} links a dead node");
                }
            }
        }
        assert!(h.unlinked_nodes() >= 900);
        let mut hit = 0;
        for qi in 0..queries {
            let q = Q {
                rows: &rows,
                q: rows.row(qi * 7 + 1).iter().map(|x| x + 0.01).collect(),
            };
            let mut exact: Vec<Cand> = (0..3000u32)
                .filter(|&i| !dead(i))
                .map(|i| Cand {
                    dist: q.to_query(i),
                    id: i,
                })
                .collect();
            exact.sort_unstable();
            let got = h.search(&q, 10, 64, None);
            assert!(got.iter().all(|c| !dead(c.id)));
            hit += got
                .iter()
                .filter(|g| exact[..10].iter().any(|e| e.id == g.id))
                .count();
        }
        let recall = hit as f64 / (10 * queries) as f64;
        assert!(recall > 0.9, "recall after unlink {recall}");
    }
}
