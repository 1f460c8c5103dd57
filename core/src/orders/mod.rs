//! Orders stage (SPEC §2): groups lines into orders per (customer, order_id) — time = earliest
//! line, value = sum of line amounts (refund lines net into their order at the order's time),
//! cost = sum of line costs — and lays them out per customer in time order (CSR layout), in
//! parallel over customer shards.

use std::borrow::Cow;

use rayon::prelude::*;

use crate::source::Lines;

mod group;

use group::Grouping;

/// One order of one customer. Money in minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, bytemuck::Zeroable)]
pub struct Order {
    pub ts_local: i64,
    pub ts_utc: i64,
    /// Net value: sum of its line amounts.
    pub value: i64,
    /// Sum of its negative line amounts, as a positive number.
    pub refunds: i64,
    pub cost: i64,
}

impl Order {
    /// A purchase is an order with value > 0 (SPEC §2).
    pub fn is_purchase(&self) -> bool {
        self.value > 0
    }
}

/// Orders of all customers: customer `c` owns `orders[start[c]..start[c + 1]]`, sorted by time.
///
/// The orders are built once for the latest cutoff; `at(cutoff)` then gives them as of any
/// earlier cutoff without rebuilding: an order exists at a cutoff when its first line is before
/// it, so a customer's orders at a cutoff are a prefix of their time-ordered orders, and only an
/// order whose lines have different times ("late lines", e.g. a refund netted into it later)
/// needs its value summed again from the lines before the cutoff.
///
/// Customers are laid out at positions: by default a customer's position is their id; built
/// with a layout, customers are laid out in customer_id text order, so the fold yields the
/// customers table's rows in its order and reads them back sequentially.
#[derive(Debug, Default)]
pub struct Orders {
    /// Customer id at each position; empty when positions are the ids.
    pub ids: Vec<u32>,
    pub start: Vec<usize>,
    pub orders: Vec<Order>,
    /// Segment value ids of each order (those of its earliest line), `n_dims` per order.
    pub seg: Vec<u32>,
    pub n_dims: usize,
    /// Per customer: the latest time of a late line of any of their orders (i64::MIN if none).
    pub late_max: Vec<i64>,
    /// Lines of every order that has late lines, by order index.
    pub late: rustc_hash::FxHashMap<usize, Box<[LateLine]>>,
    /// Local time of the earliest order.
    pub earliest: Option<i64>,
    /// Per position: local time of the customer's first order (`i64::MAX` without orders), so a
    /// date's fold passes over customers that do not exist yet without searching their orders.
    pub first: Vec<i64>,
}

/// One line of an order whose lines have different times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LateLine {
    pub ts_local: i64,
    pub amount: i64,
    pub cost: i64,
}

impl Orders {
    /// Number of positions (customers).
    pub fn n_customers(&self) -> usize {
        self.start.len().saturating_sub(1)
    }

    /// Customer id at position `c`.
    pub fn id(&self, c: usize) -> u32 {
        if self.ids.is_empty() {
            c as u32
        } else {
            self.ids[c]
        }
    }

    /// Orders of customer `c`.
    pub fn of(&self, c: usize) -> &[Order] {
        &self.orders[self.start[c]..self.start[c + 1]]
    }

    #[cfg(test)]
    /// Segment ids of customer `c`'s orders (`n_dims` per order).
    pub fn seg_of(&self, c: usize) -> &[u32] {
        &self.seg[self.start[c] * self.n_dims..self.start[c + 1] * self.n_dims]
    }

    /// The orders as of `cutoff` (local µs): only lines before it count. `cutoff` must be one
    /// of those the orders were built for (`build_at`), or later than every line.
    pub fn at(&self, cutoff: i64) -> AsOf<'_> {
        AsOf {
            orders: self,
            cutoff,
        }
    }
}

/// The orders as seen at a cutoff (see `Orders`).
#[derive(Debug, Clone, Copy)]
pub struct AsOf<'a> {
    pub orders: &'a Orders,
    pub cutoff: i64,
}

impl<'a> AsOf<'a> {
    pub fn n_customers(&self) -> usize {
        self.orders.n_customers()
    }

    /// Customer id at position `c`.
    pub fn id(&self, c: usize) -> u32 {
        self.orders.id(c)
    }

    /// Whether customer `c` has an order before the cutoff (`of(c)` is not empty).
    pub fn exists(&self, c: usize) -> bool {
        self.orders.first[c] < self.cutoff
    }

    /// Customer `c`'s orders before the cutoff (values as of the cutoff) and their segment ids.
    /// Empty when the customer has no line before the cutoff.
    pub fn of(&self, c: usize) -> (Cow<'a, [Order]>, &'a [u32]) {
        let o = self.orders;
        let all = o.of(c);
        let n = all.partition_point(|x| x.ts_local < self.cutoff);
        let seg = &o.seg[o.start[c] * o.n_dims..(o.start[c] + n) * o.n_dims];
        if o.late_max[c] < self.cutoff {
            return (Cow::Borrowed(&all[..n]), seg);
        }
        let mut own = all[..n].to_vec();
        for (k, order) in own.iter_mut().enumerate() {
            if let Some(lines) = o.late.get(&(o.start[c] + k)) {
                *order = Order {
                    value: 0,
                    refunds: 0,
                    cost: 0,
                    ..*order
                };
                for l in lines.iter().filter(|l| l.ts_local < self.cutoff) {
                    order.value += l.amount;
                    if l.amount < 0 {
                        order.refunds -= l.amount;
                    }
                    order.cost += l.cost;
                }
            }
        }
        (Cow::Owned(own), seg)
    }

    #[cfg(test)]
    /// Local time of the earliest order before the cutoff (the earliest of all, if before it).
    pub fn earliest(&self) -> Option<i64> {
        self.orders.earliest.filter(|&t| t < self.cutoff)
    }

    #[cfg(test)]
    /// Number of orders before the cutoff.
    pub fn count(&self) -> usize {
        (0..self.n_customers())
            .map(|c| {
                self.orders
                    .of(c)
                    .partition_point(|x| x.ts_local < self.cutoff)
            })
            .sum()
    }
}

/// Customers per parallel shard.
const SHARD: usize = 4096;

#[cfg(test)]
/// Builds the orders of `n_customers` customers from their lines.
pub fn build(lines: &Lines, n_customers: usize, n_dims: usize) -> Orders {
    build_for(lines, n_customers, n_dims, &[], i64::MAX, &[], None)
}

/// Builds the orders from every line, ready to be viewed `at` each of `cutoffs` (ascending):
/// the lines of an order are kept only when one of these cutoffs falls between its first and
/// its last line, which is rare (most multi-line orders span seconds), so the extra memory is
/// small. With a `layout` (the customer ids in the order to lay them out), customers are laid
/// out in that order; it is computed while the lines are sorted by customer.
pub fn build_at<'l>(
    lines: &Lines,
    n_customers: usize,
    n_dims: usize,
    seg_rank: &[Vec<u32>],
    cutoffs: &[i64],
    layout: Option<&(dyn Fn() -> &'l [u32] + Sync)>,
) -> Orders {
    build_for(
        lines,
        n_customers,
        n_dims,
        seg_rank,
        i64::MAX,
        cutoffs,
        layout,
    )
}

/// Builds the orders as of the last of `cutoffs` (ascending), ready to be viewed `at` each of
/// them: lines at or after the last cutoff (local µs) are not seen, so an order's value is the
/// sum of its lines before it (SPEC §2: history as of an earlier date cannot change), and
/// customers without lines before it get no orders.
pub fn build_until(
    lines: &Lines,
    n_customers: usize,
    n_dims: usize,
    seg_rank: &[Vec<u32>],
    cutoffs: &[i64],
) -> Orders {
    let last = *cutoffs.last().expect("at least one cutoff");
    build_for(lines, n_customers, n_dims, seg_rank, last, cutoffs, None)
}

#[allow(clippy::too_many_arguments)]
fn build_for<'l>(
    lines: &Lines,
    n_ids: usize,
    n_dims: usize,
    seg_rank: &[Vec<u32>],
    cutoff: i64,
    cutoffs: &[i64],
    layout: Option<&(dyn Fn() -> &'l [u32] + Sync)>,
) -> Orders {
    debug_assert!(cutoffs.is_sorted());
    // Lines by customer (one thread), while the other computes the layout (a sort of the
    // customer ids' texts).
    let ((start, perm), layout) = rayon::join(
        || lines_by_customer(lines, n_ids, cutoff),
        || layout.map(|f| f()),
    );
    // Customers by position: the layout's order, or their ids.
    let n_customers = layout.map_or(n_ids, |ids| ids.len());
    let id_at = |p: usize| layout.map_or(p, |ids| ids[p] as usize);
    let lines_of = |c: usize| &perm[start[c] as usize..start[c + 1] as usize];

    // Each shard writes its orders straight into its own part of one array, sized by the
    // shard's lines (an order has at least one line); the parts are then closed up in place.
    // Collecting per-shard vectors and joining them copied every order twice into fresh memory,
    // and the kernel's zeroing of those pages was a third of the stage at 100M lines.
    let n_shards = n_customers.div_ceil(SHARD);
    let shard_customers = |s: usize| s * SHARD..((s + 1) * SHARD).min(n_customers);
    let mut bound: Vec<usize> = std::iter::once(0)
        .chain(
            (0..n_shards)
                .into_par_iter()
                .map(|s| {
                    shard_customers(s)
                        .map(|p| lines_of(id_at(p)).len())
                        .sum::<usize>()
                })
                .collect::<Vec<_>>(),
        )
        .collect();
    for s in 0..n_shards {
        bound[s + 1] += bound[s];
    }
    let mut all_orders: Vec<Order> = bytemuck::zeroed_vec(bound[n_shards]);
    let mut all_segs: Vec<u32> = vec![0; bound[n_shards] * n_dims];
    let mut parts: Vec<(&mut [Order], &mut [u32])> = Vec::with_capacity(n_shards);
    let (mut o_rest, mut s_rest) = (&mut all_orders[..], &mut all_segs[..]);
    for s in 0..n_shards {
        let n = bound[s + 1] - bound[s];
        let (o, o_more) = o_rest.split_at_mut(n);
        let (g, g_more) = s_rest.split_at_mut(n * n_dims);
        parts.push((o, g));
        (o_rest, s_rest) = (o_more, g_more);
    }

    let grouping = Grouping {
        lines,
        n_dims,
        seg_rank,
        cutoffs,
        has_cost: !lines.cost.is_empty(),
    };
    let shards: Vec<Shard> = parts
        .into_par_iter()
        .enumerate()
        .map(|(s, (orders, segs))| {
            let customers = shard_customers(s);
            let mut shard = Shard {
                counts: Vec::with_capacity(customers.len()),
                written: 0,
                late_max: Vec::with_capacity(customers.len()),
                late: Vec::new(),
            };
            let mut sorted = Vec::new();
            let mut keyed = Vec::new();
            for p in customers {
                let late_max = grouping.customer(lines_of(id_at(p)), &mut sorted, &mut keyed);
                shard.counts.push(keyed.len());
                shard.late_max.push(late_max);
                for (o, first, own_lines) in keyed.drain(..) {
                    let w = shard.written;
                    if let Some(l) = own_lines {
                        shard.late.push((w, l));
                    }
                    orders[w] = o;
                    let f = first as usize;
                    segs[w * n_dims..(w + 1) * n_dims]
                        .copy_from_slice(&lines.seg[f * n_dims..(f + 1) * n_dims]);
                    shard.written += 1;
                }
            }
            shard
        })
        .collect();
    close_up(
        shards,
        &bound,
        all_orders,
        all_segs,
        n_dims,
        layout.map(<[u32]>::to_vec).unwrap_or_default(),
    )
}

/// The indexes of the lines before `cutoff`, grouped by customer (a counting sort): customer
/// `c`'s are `perm[start[c]..start[c + 1]]`, in line order.
fn lines_by_customer(lines: &Lines, n_ids: usize, cutoff: i64) -> (Vec<u32>, Vec<u32>) {
    let seen = |i: usize| lines.ts_local[i] < cutoff;
    // 32-bit offsets (line numbers are 32-bit in `perm` too): the counters are updated in
    // random customer order, and half the bytes keep twice as many of them in cache (1M
    // customers: 4 MB, within this machine's 8 MB L3).
    let mut start = vec![0u32; n_ids + 1];
    for (i, &c) in lines.cust.iter().enumerate() {
        if seen(i) {
            start[c as usize + 1] += 1;
        }
    }
    for i in 0..n_ids {
        start[i + 1] += start[i];
    }
    let mut fill = start.clone();
    let mut perm = vec![0u32; start[n_ids] as usize];
    for (i, &c) in lines.cust.iter().enumerate() {
        if seen(i) {
            perm[fill[c as usize] as usize] = i as u32;
            fill[c as usize] += 1;
        }
    }
    (start, perm)
}

/// What one shard of customers built, in its part of the orders array.
struct Shard {
    /// Orders per customer.
    counts: Vec<usize>,
    /// Orders written.
    written: usize,
    /// Per customer: the latest time of a late line (i64::MIN if none).
    late_max: Vec<i64>,
    /// Lines of the orders that have late lines, by order index within the shard.
    late: Vec<(usize, Box<[LateLine]>)>,
}

/// Joins the shards' parts of the orders array (each starting at its `bound`) into one
/// `Orders`: each part moves down to where the previous one ended (never up).
fn close_up(
    shards: Vec<Shard>,
    bound: &[usize],
    mut all_orders: Vec<Order>,
    mut all_segs: Vec<u32>,
    n_dims: usize,
    ids: Vec<u32>,
) -> Orders {
    let n_customers: usize = shards.iter().map(|s| s.counts.len()).sum();
    let mut out = Orders {
        ids,
        start: Vec::with_capacity(n_customers + 1),
        orders: Vec::new(),
        seg: Vec::new(),
        n_dims,
        late_max: Vec::with_capacity(n_customers),
        late: Default::default(),
        earliest: None,
        first: Vec::new(),
    };
    out.start.push(0);
    let mut total = 0;
    for (s, shard) in shards.into_iter().enumerate() {
        for n in shard.counts {
            let last = *out.start.last().unwrap_or(&0);
            out.start.push(last + n);
        }
        let (from, written) = (bound[s], shard.written);
        if from != total {
            all_orders.copy_within(from..from + written, total);
            all_segs.copy_within(from * n_dims..(from + written) * n_dims, total * n_dims);
        }
        out.late
            .extend(shard.late.into_iter().map(|(i, l)| (total + i, l)));
        out.late_max.extend(shard.late_max);
        total += written;
    }
    all_orders.truncate(total);
    all_orders.shrink_to_fit();
    all_segs.truncate(total * n_dims);
    all_segs.shrink_to_fit();
    out.orders = all_orders;
    out.seg = all_segs;
    out.first = (0..n_customers)
        .map(|c| out.of(c).first().map_or(i64::MAX, |o| o.ts_local))
        .collect();
    out.earliest = out.first.iter().copied().filter(|&t| t < i64::MAX).min();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::ROW_ORDER_BASE;

    /// Customer 0: order 7 with lines at t=5 (10.00), t=3 (2.50) and t=9 (−12.50), and a line
    /// without order id at t=1 (3.00); customer 1: one line without order id at t=2 (4.00).
    fn five_lines() -> Lines {
        Lines {
            cust: vec![0, 0, 1, 0, 0],
            order: vec![7, 7, ROW_ORDER_BASE + 2, 7, ROW_ORDER_BASE + 4],
            ts_utc: vec![5, 3, 2, 9, 1],
            ts_local: vec![5, 3, 2, 9, 1],
            amount: vec![1000, 250, 400, -1250, 300],
            cost: vec![],
            seg: vec![1, 2, 3, 4, 5],
            ..Default::default()
        }
    }

    #[test]
    fn lines_group_into_orders_and_refunds_net() {
        // Customer 0: order 7 has two lines (10.00 at t=5, 2.50 at t=3) and a refund line of
        // −12.50 at t=9 → one order at t=3 of value 10.00 + 2.50 − 12.50 = 0, refunds 12.50.
        // Customer 0 also has a single line without order id at t=1 (3.00).
        // Customer 1: one line at t=2.
        let lines = five_lines();
        let o = build(&lines, 2, 1);
        assert_eq!(o.n_customers(), 2);
        let c0 = o.of(0);
        assert_eq!(c0.len(), 2);
        assert_eq!((c0[0].ts_local, c0[0].value), (1, 300));
        assert_eq!((c0[1].ts_local, c0[1].value, c0[1].refunds), (3, 0, 1250));
        assert!(!c0[1].is_purchase());
        // Segment of the order = that of its earliest line (t=3 → seg 2).
        assert_eq!(o.seg_of(0), &[5, 2]);
        assert_eq!(o.of(1)[0].value, 400);
    }

    #[test]
    fn a_layout_puts_customers_at_their_positions() {
        // Same lines; customer 1 at position 0 and customer 0 at position 1.
        // Position 0 then holds customer 1's one order (4.00 at t=2), position 1 customer 0's
        // two orders, with their segments, exactly as built without a layout.
        let lines = five_lines();
        let ids = [1u32, 0];
        let layout = || &ids[..];
        let o = build_at(&lines, 2, 1, &[], &[], Some(&layout));
        let plain = build(&lines, 2, 1);
        assert_eq!(o.n_customers(), 2);
        assert_eq!((o.id(0), o.id(1)), (1, 0));
        assert_eq!(o.of(0), plain.of(1));
        assert_eq!(o.of(1), plain.of(0));
        assert_eq!(o.seg_of(1), &[5, 2]);
        assert_eq!(o.at(i64::MAX).of(0).0[0].value, 400);
        assert_eq!(o.earliest, Some(1));
        assert_eq!(plain.id(1), 1);
        // First orders: customer 1's at t=2 (position 0), customer 0's at t=1 (position 1).
        assert_eq!(o.first, vec![2, 1]);
        assert!(o.at(2).exists(1) && !o.at(2).exists(0) && o.at(3).exists(0));
    }

    #[test]
    fn equal_keys_with_different_order_ids_are_different_orders() {
        // Keys are hashes of the order_id text; force a collision: lines 0 and 1 ("A", 10.00
        // and 5.00) and line 2 ("B", 7.00) of customer 0 all have key 42. "A" and "B" must
        // stay two orders: A = 15.00 at t=1, B = 7.00 at t=2 (tie order: time, then first line).
        let mut lines = Lines {
            cust: vec![0, 0, 0],
            order: vec![42, 42, 42],
            ts_local: vec![1, 3, 2],
            amount: vec![1000, 500, 700],
            seg: vec![0, 0, 0],
            ..Default::default()
        };
        for id in ["A", "A", "B"] {
            lines.order_ids.push(id);
        }
        let o = build(&lines, 1, 1);
        let got: Vec<(i64, i64)> = o.of(0).iter().map(|x| (x.ts_local, x.value)).collect();
        assert_eq!(got, vec![(1, 1500), (2, 700)]);
    }

    #[test]
    fn orders_at_a_cutoff_equal_orders_built_until_it() {
        // Same lines as above. Order 7 of customer 0 has lines at t=3 (2.50), t=5 (10.00) and
        // t=9 (−12.50), so it has late lines. As of cutoff 6 it is 2.50 + 10.00 = 12.50 (a
        // purchase, no refund yet); as of 4 it is 2.50; as of 10 it is 0 with refunds 12.50;
        // as of 3 it does not exist yet and customer 0 has only the 3.00 order at t=1.
        let lines = five_lines();
        let cutoffs: Vec<i64> = (0..=10).collect();
        let all = build_at(&lines, 2, 1, &[], &cutoffs, None);
        assert_eq!(all.late_max, vec![9, i64::MIN]);
        // Built for one late cutoff only, no order spans it: no lines are kept.
        assert!(build_at(&lines, 2, 1, &[], &[100], None).late.is_empty());
        assert!(build(&lines, 2, 1).late.is_empty());
        let value_of_7 = |cutoff: i64| {
            let (o, _) = all.at(cutoff).of(0);
            o.iter()
                .find(|x| x.ts_local == 3)
                .map(|x| (x.value, x.refunds))
        };
        assert_eq!(value_of_7(6), Some((1250, 0)));
        assert_eq!(value_of_7(4), Some((250, 0)));
        assert_eq!(value_of_7(10), Some((0, 1250)));
        assert_eq!(value_of_7(3), None);
        assert_eq!(all.at(3).count(), 2);
        assert_eq!(all.at(2).earliest(), Some(1));
        for cutoff in 0..=10 {
            let until = build_until(&lines, 2, 1, &[], &[cutoff]);
            let at = all.at(cutoff);
            for c in 0..2 {
                let (o, seg) = at.of(c);
                assert_eq!(&*o, until.of(c), "cutoff {cutoff} customer {c}");
                assert_eq!(seg, until.seg_of(c), "cutoff {cutoff} customer {c}");
            }
            assert_eq!(at.count(), until.orders.len());
        }
    }
}
