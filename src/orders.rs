//! Orders stage (SPEC §2): groups lines into orders per (customer, order_id) — time = earliest
//! line, value = sum of line amounts (refund lines net into their order at the order's time),
//! cost = sum of line costs — and lays them out per customer in time order (CSR layout), in
//! parallel over customer shards.

use rayon::prelude::*;

use crate::source::Lines;

/// One order of one customer. Money in minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
#[derive(Debug, Default)]
pub struct Orders {
    pub start: Vec<usize>,
    pub orders: Vec<Order>,
    /// Segment value ids of each order (those of its earliest line), `n_dims` per order.
    pub seg: Vec<u32>,
    pub n_dims: usize,
}

impl Orders {
    pub fn n_customers(&self) -> usize {
        self.start.len().saturating_sub(1)
    }

    /// Orders of customer `c`.
    pub fn of(&self, c: usize) -> &[Order] {
        &self.orders[self.start[c]..self.start[c + 1]]
    }

    /// Segment ids of customer `c`'s orders (`n_dims` per order).
    pub fn seg_of(&self, c: usize) -> &[u32] {
        &self.seg[self.start[c] * self.n_dims..self.start[c + 1] * self.n_dims]
    }
}

/// Customers per parallel shard.
const SHARD: usize = 4096;

/// Builds the orders of `n_customers` customers from their lines.
pub fn build(lines: &Lines, n_customers: usize, n_dims: usize) -> Orders {
    build_until(lines, n_customers, n_dims, i64::MAX)
}

/// Builds the orders as of a cutoff: lines at or after `cutoff` (local µs) are not seen, so an
/// order's value is the sum of its lines before the cutoff (SPEC §2: history as of an earlier
/// date cannot change). Customers without lines before the cutoff get no orders.
pub fn build_until(lines: &Lines, n_customers: usize, n_dims: usize, cutoff: i64) -> Orders {
    let seen = |i: usize| lines.ts_local[i] < cutoff;
    // Counting sort of line indexes by customer.
    let mut start = vec![0usize; n_customers + 1];
    for (i, &c) in lines.cust.iter().enumerate() {
        if seen(i) {
            start[c as usize + 1] += 1;
        }
    }
    for i in 0..n_customers {
        start[i + 1] += start[i];
    }
    let mut fill = start.clone();
    let mut perm = vec![0u32; start[n_customers]];
    for (i, &c) in lines.cust.iter().enumerate() {
        if seen(i) {
            perm[fill[c as usize]] = i as u32;
            fill[c as usize] += 1;
        }
    }
    let has_cost = !lines.cost.is_empty();

    let shards: Vec<(Vec<usize>, Vec<Order>, Vec<u32>)> = (0..n_customers.div_ceil(SHARD))
        .into_par_iter()
        .map(|s| {
            let c0 = s * SHARD;
            let c1 = ((s + 1) * SHARD).min(n_customers);
            let mut counts = Vec::with_capacity(c1 - c0);
            let mut orders = Vec::new();
            let mut segs = Vec::new();
            let mut idx: Vec<u32> = Vec::new();
            let mut keyed: Vec<(Order, u64, u32)> = Vec::new();
            for c in c0..c1 {
                idx.clear();
                idx.extend_from_slice(&perm[start[c]..start[c + 1]]);
                idx.sort_unstable_by_key(|&i| {
                    let i = i as usize;
                    (lines.order[i], lines.ts_local[i], i)
                });
                keyed.clear();
                let mut k = 0;
                while k < idx.len() {
                    let first = idx[k] as usize;
                    let key = lines.order[first];
                    let mut o = Order {
                        ts_local: lines.ts_local[first],
                        ts_utc: lines.ts_utc[first],
                        value: 0,
                        refunds: 0,
                        cost: 0,
                    };
                    while k < idx.len() && lines.order[idx[k] as usize] == key {
                        let i = idx[k] as usize;
                        let a = lines.amount[i];
                        o.value += a;
                        if a < 0 {
                            o.refunds -= a;
                        }
                        if has_cost {
                            o.cost += lines.cost[i];
                        }
                        k += 1;
                    }
                    keyed.push((o, key, first as u32));
                }
                keyed.sort_unstable_by_key(|(o, key, _)| (o.ts_local, *key));
                counts.push(keyed.len());
                for (o, _, first) in &keyed {
                    orders.push(*o);
                    let f = *first as usize;
                    segs.extend_from_slice(&lines.seg[f * n_dims..(f + 1) * n_dims]);
                }
            }
            (counts, orders, segs)
        })
        .collect();

    let total: usize = shards.iter().map(|s| s.1.len()).sum();
    let mut out = Orders {
        start: Vec::with_capacity(n_customers + 1),
        orders: Vec::with_capacity(total),
        seg: Vec::with_capacity(total * n_dims),
        n_dims,
    };
    out.start.push(0);
    for (counts, orders, segs) in shards {
        for n in counts {
            let last = *out.start.last().unwrap_or(&0);
            out.start.push(last + n);
        }
        out.orders.extend(orders);
        out.seg.extend(segs);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::ROW_ORDER_BASE;

    #[test]
    fn lines_group_into_orders_and_refunds_net() {
        // Customer 0: order 7 has two lines (10.00 at t=5, 2.50 at t=3) and a refund line of
        // −12.50 at t=9 → one order at t=3 of value 10.00 + 2.50 − 12.50 = 0, refunds 12.50.
        // Customer 0 also has a single line without order id at t=1 (3.00).
        // Customer 1: one line at t=2.
        let lines = Lines {
            cust: vec![0, 0, 1, 0, 0],
            file: vec![0; 5],
            order: vec![7, 7, ROW_ORDER_BASE + 2, 7, ROW_ORDER_BASE + 4],
            ts_utc: vec![5, 3, 2, 9, 1],
            ts_local: vec![5, 3, 2, 9, 1],
            amount: vec![1000, 250, 400, -1250, 300],
            cost: vec![],
            seg: vec![1, 2, 3, 4, 5],
        };
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
}
