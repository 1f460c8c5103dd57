//! Grouping one customer's lines into orders (SPEC §2), with every tie broken by content so
//! the orders do not depend on input order.

use std::cmp::Ordering;

use super::{LateLine, Order};
use crate::source::Lines;

/// An order, the index of its first line, and its lines when a view cutoff splits them.
pub(super) type Keyed = (Order, u32, Option<Box<[LateLine]>>);

/// The rules that group one customer's lines into orders (SPEC §2).
pub(super) struct Grouping<'a> {
    pub(super) lines: &'a Lines,
    pub(super) n_dims: usize,
    pub(super) seg_rank: &'a [Vec<u32>],
    pub(super) cutoffs: &'a [i64],
    pub(super) has_cost: bool,
}

impl Grouping<'_> {
    /// Groups a customer's lines (`idx`) into `keyed` (cleared first), in time order with ties
    /// by content; returns the latest time of a late line (i64::MIN if none). `sorted` is
    /// scratch space.
    pub(super) fn customer(
        &self,
        idx: &[u32],
        sorted: &mut Vec<(u64, i64, u32)>,
        keyed: &mut Vec<Keyed>,
    ) -> i64 {
        let collision = self.sort_lines(idx, sorted);
        keyed.clear();
        let late_max = self.group(sorted, collision, keyed);
        self.order_ties(keyed);
        late_max
    }

    /// Sorts a customer's lines so that the lines of an order are adjacent and in time order:
    /// by (key, time, line), as plain tuples copied out of the lines once. Keys are hashes of
    /// the order_id text, so within a key the texts are nearly always equal and that order
    /// equals (key, text, time, line); one linear pass checks it, and on a collision (two
    /// texts, one key) the lines are sorted by text too. Returns whether there was one.
    fn sort_lines(&self, idx: &[u32], sorted: &mut Vec<(u64, i64, u32)>) -> bool {
        let lines = self.lines;
        sorted.clear();
        sorted.extend(idx.iter().map(|&i| {
            let i = i as usize;
            (lines.order[i], lines.ts_local[i], i as u32)
        }));
        sorted.sort_unstable();
        let text_of = |t: &(u64, i64, u32)| lines.order_id(t.2 as usize);
        let collision = sorted
            .windows(2)
            .any(|w| w[0].0 == w[1].0 && text_of(&w[0]) != text_of(&w[1]));
        if collision {
            sorted.sort_unstable_by(|a, b| {
                a.0.cmp(&b.0)
                    .then_with(|| text_of(a).cmp(text_of(b)))
                    .then_with(|| (a.1, a.2).cmp(&(b.1, b.2)))
            });
        }
        collision
    }

    /// One order per run of equal (key, text) in `sorted`: time = its earliest line's, value =
    /// the sum of its amounts (refunds net in), cost = the sum of its costs; its UTC instant
    /// and segment values those of its first line by content among the lines at its earliest
    /// time. Keeps an order's lines when a view cutoff falls between its first and last line.
    fn group(&self, sorted: &[(u64, i64, u32)], collision: bool, keyed: &mut Vec<Keyed>) -> i64 {
        let lines = self.lines;
        let text_of = |t: &(u64, i64, u32)| lines.order_id(t.2 as usize);
        let mut late_max = i64::MIN;
        let mut k = 0;
        while k < sorted.len() {
            let (key, ts_local, first) = sorted[k];
            let mut first = first as usize;
            let text = lines.order_id(first);
            let k0 = k;
            let mut o = Order {
                ts_local,
                ts_utc: 0,
                value: 0,
                refunds: 0,
                cost: 0,
            };
            // Without a collision, equal keys already mean equal texts.
            while k < sorted.len()
                && sorted[k].0 == key
                && (!collision || text_of(&sorted[k]) == text)
            {
                let i = sorted[k].2 as usize;
                let a = lines.amount[i];
                o.value += a;
                if a < 0 {
                    o.refunds -= a;
                }
                if self.has_cost {
                    o.cost += lines.cost[i];
                }
                k += 1;
            }
            // The first line among those at the earliest time, by content (not input order).
            for t in &sorted[k0 + 1..k] {
                if t.1 != ts_local {
                    break;
                }
                let i = t.2 as usize;
                if line_content(lines, self.n_dims, self.seg_rank, i, first).is_lt() {
                    first = i;
                }
            }
            o.ts_utc = lines.utc(first);
            // Lines sorted by time within the order: the last one is the latest.
            let last_ts = sorted[k - 1].1;
            // Does a view cutoff fall in (first line, last line]?
            let next_cutoff = self.cutoffs.partition_point(|&c| c <= o.ts_local);
            let spans = self.cutoffs.get(next_cutoff).is_some_and(|&c| c <= last_ts);
            let own_lines = spans.then(|| {
                late_max = late_max.max(last_ts);
                sorted[k0..k]
                    .iter()
                    .map(|&(_, ts_local, i)| {
                        let i = i as usize;
                        LateLine {
                            ts_local,
                            amount: lines.amount[i],
                            cost: if self.has_cost { lines.cost[i] } else { 0 },
                        }
                    })
                    .collect()
            });
            keyed.push((o, first as u32, own_lines));
        }
        late_max
    }

    /// Sorts a customer's orders by time; orders at the same time by content: order_id, then
    /// their first lines' content, then value, refunds and cost. Ties are rare, so orders are
    /// sorted by time first and only runs of equal times again.
    fn order_ties(&self, keyed: &mut [Keyed]) {
        let lines = self.lines;
        keyed.sort_unstable_by_key(|(o, first, _)| (o.ts_local, *first));
        let mut r = 0;
        while r + 1 < keyed.len() {
            let t = keyed[r].0.ts_local;
            let mut end = r + 1;
            while end < keyed.len() && keyed[end].0.ts_local == t {
                end += 1;
            }
            if end - r > 1 {
                keyed[r..end].sort_by(|(a, fa, _), (b, fb, _)| {
                    let (fa, fb) = (*fa as usize, *fb as usize);
                    lines
                        .order_id(fa)
                        .cmp(lines.order_id(fb))
                        .then_with(|| line_content(lines, self.n_dims, self.seg_rank, fa, fb))
                        .then_with(|| {
                            (a.value, a.refunds, a.cost).cmp(&(b.value, b.refunds, b.cost))
                        })
                });
            }
            r = end;
        }
    }
}

/// Compares two lines by content, for ties in time (the result must not depend on input
/// order): segment values in text order (`seg_rank[d][id]`; ids as they are when `seg_rank` is
/// empty), then the UTC instant, amount and cost.
fn line_content(
    lines: &Lines,
    n_dims: usize,
    seg_rank: &[Vec<u32>],
    a: usize,
    b: usize,
) -> Ordering {
    for d in 0..n_dims {
        let (x, y) = (lines.seg[a * n_dims + d], lines.seg[b * n_dims + d]);
        let (x, y) = match seg_rank.get(d) {
            Some(rank) => (rank[x as usize], rank[y as usize]),
            None => (x, y),
        };
        if x != y {
            return x.cmp(&y);
        }
    }
    let cost = |i: usize| lines.cost.get(i).copied().unwrap_or(0);
    (lines.utc(a), lines.amount[a], cost(a)).cmp(&(lines.utc(b), lines.amount[b], cost(b)))
}
