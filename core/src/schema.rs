//! The output contract (SPEC §4–5): every table's columns, Arrow types and meanings. Table
//! builders take their Arrow schema from here, so `customer-value schema` cannot drift from what
//! is written.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// One documented column.
#[derive(Debug, Clone, Copy)]
pub struct Col {
    pub name: &'static str,
    pub dtype: Ty,
    pub nullable: bool,
    pub doc: &'static str,
}

/// Logical output types (SPEC §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Str,
    Int,
    Money,
    Rate,
    Float,
    Date,
    Instant,
    Bool,
}

impl Ty {
    pub fn arrow(self) -> DataType {
        match self {
            Ty::Str => DataType::Utf8,
            Ty::Int => DataType::Int64,
            Ty::Money | Ty::Rate | Ty::Float => DataType::Float64,
            Ty::Date => DataType::Date32,
            Ty::Instant => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Ty::Bool => DataType::Boolean,
        }
    }

    pub fn parquet_name(self) -> &'static str {
        match self {
            Ty::Str => "STRING",
            Ty::Int => "INT64",
            Ty::Money => "FLOAT64 (money)",
            Ty::Rate => "FLOAT64 (percent 0–100)",
            Ty::Float => "FLOAT64",
            Ty::Date => "DATE",
            Ty::Instant => "TIMESTAMP (µs, UTC)",
            Ty::Bool => "BOOLEAN",
        }
    }
}

const fn c(name: &'static str, dtype: Ty, nullable: bool, doc: &'static str) -> Col {
    Col {
        name,
        dtype,
        nullable,
        doc,
    }
}

const SEGMENT_BY: Col = c(
    "segment_by",
    Ty::Str,
    false,
    "Segment dimension: a configured segment column's name, `rfm_segment` (ltv only), or `all`.",
);
const SEGMENT: Col = c(
    "segment",
    Ty::Str,
    false,
    "Segment value; `__all__` when segment_by = `all`, `__unknown__` for a null value.",
);

/// Placeholder in the customers schema for the configured segment columns.
pub const SEGMENT_COLUMNS_PLACEHOLDER: &str = "<segment columns>";

pub const CUSTOMERS: &[Col] = &[
    c("customer_id", Ty::Str, false, "Customer id as in the input, trimmed."),
    c(SEGMENT_COLUMNS_PLACEHOLDER, Ty::Str, false, "One column per configured segment column, named like it: the customer's value by segment_assignment (`__unknown__` for null)."),
    c("cohort", Ty::Date, true, "Start of the period of the first purchase; null if the customer never purchased (refund or zero orders only)."),
    c("first_purchase_at", Ty::Instant, true, "Time of the first purchase (order with value > 0)."),
    c("last_purchase_at", Ty::Instant, true, "Time of the last purchase."),
    c("orders", Ty::Int, false, "Purchases: orders with net value > 0."),
    c("revenue", Ty::Money, false, "Net revenue of all orders (refunds included)."),
    c("refunds", Ty::Money, false, "Sum of the refund (negative) lines, as a positive amount."),
    c("cost", Ty::Money, true, "Sum of line costs; null without a cost column."),
    c("margin", Ty::Float, true, "Margin P: (revenue − cost) / revenue with a cost column (null when revenue = 0), else the configured margin."),
    c("avg_order_value", Ty::Money, true, "S = revenue / orders; null without purchases."),
    c("lifespan_months", Ty::Int, true, "Calendar months from the first to the last purchase month, inclusive (≥ 1)."),
    c("purchases_per_month", Ty::Float, true, "C = orders / lifespan_months."),
    c("ltv", Ty::Money, false, "S × C × P × t = revenue × P (with a cost column: revenue − cost)."),
    c("days_since_last_purchase", Ty::Int, true, "as_of − local date of the last purchase, in days."),
    c("status", Ty::Str, true, "`active` or `churned` at the end of as_of (last purchase within churn_window_days); null if never purchased."),
    c("churned_at", Ty::Instant, true, "Last purchase + churn window, when churned."),
    c("frequency", Ty::Int, true, "BTYD: distinct purchase days − 1."),
    c("recency", Ty::Int, true, "BTYD: days from the first to the last purchase day."),
    c("T", Ty::Int, true, "BTYD: days from the first purchase day to as_of."),
    c("monetary_value", Ty::Money, true, "BTYD: mean revenue per repeat purchase day (first day excluded); 0 when frequency = 0."),
    c("rfm_r", Ty::Int, true, "Recency score 1–5 (5 = fewest days since last purchase), 1 + floor(5 × worse / customers)."),
    c("rfm_f", Ty::Int, true, "Frequency score 1–5 on orders."),
    c("rfm_m", Ty::Int, true, "Monetary score 1–5 on revenue."),
    c("rfm_segment", Ty::Str, true, "champions, loyal, promising, at_risk, hibernating or needs_attention (first rule that matches)."),
    c("p_alive", Ty::Float, true, "Probability (0–1) that the customer is still alive at as_of, by the transaction model (predict.model) of their predict.fit_by group; null for the never-acquired or with predictions off."),
    c("expected_purchases", Ty::Float, true, "Expected repeat purchases (purchase days) in the predict.horizon_months after as_of."),
    c("expected_avg_value", Ty::Money, true, "Gamma-Gamma expected value of a purchase given the customer's repeat purchases (the population mean without any); null without a converged spend model."),
    c("predicted_clv", Ty::Money, true, "margin × Σ over the horizon's months of expected_avg_value × the month's expected purchases, discounted by predict.discount_rate_monthly; null without a converged spend model."),
];

pub const RETENTION: &[Col] = &[
    SEGMENT_BY,
    SEGMENT,
    c("period_start", Ty::Date, false, "First day of the period."),
    c(
        "period_end",
        Ty::Date,
        false,
        "Exclusive end: next period's start, or as_of + 1 for the partial last period.",
    ),
    c(
        "is_complete",
        Ty::Bool,
        false,
        "False for the period that contains as_of unless as_of is its last day.",
    ),
    c(
        "customers_start",
        Ty::Int,
        false,
        "S: customers active at period_start.",
    ),
    c(
        "customers_end",
        Ty::Int,
        false,
        "E: customers active at period_end.",
    ),
    c(
        "customers_new",
        Ty::Int,
        false,
        "N: customers whose first purchase is in the period.",
    ),
    c(
        "churned",
        Ty::Int,
        false,
        "Active at the start, not at the end.",
    ),
    c(
        "reactivated",
        Ty::Int,
        false,
        "Active at the end, not at the start, not new.",
    ),
    c(
        "crr",
        Ty::Rate,
        true,
        "Customer retention rate (E − N) / S × 100; null when S = 0.",
    ),
    c(
        "strict_retention",
        Ty::Rate,
        true,
        "(S − churned) / S × 100; null when S = 0.",
    ),
    c(
        "churn_rate",
        Ty::Rate,
        true,
        "churned / S × 100; null when S = 0.",
    ),
    c(
        "revenue",
        Ty::Money,
        false,
        "Net revenue of the orders placed in the period.",
    ),
    c(
        "purchases",
        Ty::Int,
        false,
        "Purchases (orders with value > 0) placed in the period.",
    ),
];

pub const COHORTS: &[Col] = &[
    SEGMENT_BY,
    SEGMENT,
    c("cohort", Ty::Date, false, "Acquisition period start."),
    c("period_offset", Ty::Int, false, "k: periods since the cohort period (0 = acquisition period)."),
    c("period_start", Ty::Date, false, "Start of period k."),
    c("period_end", Ty::Date, false, "Exclusive end of period k (as_of + 1 for the partial last period)."),
    c("is_complete", Ty::Bool, false, "False for the period that contains as_of unless as_of is its last day."),
    c("cohort_size", Ty::Int, false, "Customers acquired in the cohort period."),
    c("active_customers", Ty::Int, false, "Customers of the cohort with a purchase in period k."),
    c("retention_rate", Ty::Rate, false, "active_customers / cohort_size × 100."),
    c("churned_customers", Ty::Int, false, "Customers of the cohort not active at the end of period k (churn window rule); a reactivated customer leaves this count."),
    c("active_rate", Ty::Rate, false, "(1 − churned_customers / cohort_size) × 100: share of the cohort active at the end of period k."),
    c("ever_churned_customers", Ty::Int, false, "Customers of the cohort not active at the end of at least one of the periods 0..=k (never decreases)."),
    c("survival_rate", Ty::Rate, false, "(1 − ever_churned_customers / cohort_size) × 100: share of the cohort that has not lapsed yet (never increases)."),
    c("revenue", Ty::Money, false, "Net revenue of the cohort's orders in period k."),
    c("purchases", Ty::Int, false, "Purchases of the cohort in period k."),
    c("cumulative_revenue", Ty::Money, false, "Revenue of periods 0..=k."),
    c("ltv_to_date", Ty::Money, false, "cumulative_revenue × P / cohort_size (with a cost column: cumulative (revenue − cost) / cohort_size)."),
];

pub const LTV: &[Col] = &[
    SEGMENT_BY,
    SEGMENT,
    c("cohort", Ty::Date, true, "Acquisition period start for segment × cohort rows; null on the row that covers all cohorts of the segment."),
    c("customers", Ty::Int, false, "Acquired customers (at least one purchase)."),
    c("revenue", Ty::Money, false, "Their net revenue."),
    c("purchases", Ty::Int, false, "Their purchases."),
    c("avg_order_value", Ty::Money, true, "S = revenue / purchases (average check)."),
    c("purchases_per_month", Ty::Float, true, "C = purchases / Σ lifespan_months (purchases per customer-month)."),
    c("margin", Ty::Float, true, "P: configured margin, or (revenue − cost) / revenue with a cost column (null when revenue = 0)."),
    c("lifespan_months", Ty::Float, true, "t = mean lifespan_months."),
    c("ltv", Ty::Money, true, "S × C × P × t = revenue × P / customers."),
    c("clv", Ty::Money, true, "S × C × P: value per active customer-month."),
    c("avg_revenue_per_customer", Ty::Money, true, "revenue / customers."),
    c("cac", Ty::Money, true, "Acquisition cost per new customer: spend / customers, from the [spend] file; null without spend for this segment (and cohort)."),
    c("ltv_to_cac", Ty::Float, true, "ltv / cac."),
    c("payback_months", Ty::Float, true, "cac / clv: customer-months of margin that pay back the acquisition cost."),
    c("expected_alive_customers", Ty::Float, true, "Σ p_alive of the customers; null with predictions off."),
    c("expected_purchases", Ty::Float, true, "Σ expected_purchases of the customers over the horizon."),
    c("predicted_clv", Ty::Money, true, "Mean predicted_clv of the customers that have one."),
];

pub const MODELS: &[Col] = &[
    SEGMENT_BY,
    SEGMENT,
    c("model", Ty::Str, false, "`bg_nbd`, `mbg_nbd` or `pareto_nbd` (the transaction model), or `gamma_gamma` (the spend model)."),
    c("customers", Ty::Int, false, "Acquired customers of the group (the transaction model's fit)."),
    c("repeaters", Ty::Int, false, "Customers with repeat purchases of positive value (the spend model's fit)."),
    c("fitted", Ty::Bool, false, "False: the group has fewer than predict.min_customers customers (or no repeaters) and its customers use the `all` fit."),
    c("converged", Ty::Bool, true, "The fit reached a maximum with every parameter identified; false: its customers use the `all` fit. Null when not fitted."),
    c("iterations", Ty::Int, true, "Optimizer iterations."),
    c("log_likelihood", Ty::Float, true, "Σ ln L at the estimate (without the penalty)."),
    c("r", Ty::Float, true, "Purchase rate λ ~ Gamma(r, α): shape (transaction models)."),
    c("alpha", Ty::Float, true, "Purchase rate λ ~ Gamma(r, α): rate, in the model's time unit."),
    c("a", Ty::Float, true, "Dropout probability p ~ Beta(a, b) (BG/NBD, MBG/NBD)."),
    c("b", Ty::Float, true, "Dropout probability p ~ Beta(a, b)."),
    c("s", Ty::Float, true, "Dropout rate μ ~ Gamma(s, β): shape (Pareto/NBD)."),
    c("beta", Ty::Float, true, "Dropout rate μ ~ Gamma(s, β): rate, in the model's time unit (Pareto/NBD)."),
    c("p", Ty::Float, true, "Gamma-Gamma: shape of a purchase's value around the customer's mean."),
    c("q", Ty::Float, true, "Gamma-Gamma: shape of the customers' spend scale ν ~ Gamma(q, v)."),
    c("v", Ty::Float, true, "Gamma-Gamma: rate of ν ~ Gamma(q, v), in currency units."),
    c("time_unit_days", Ty::Float, false, "The models' time unit in days (predict.time_unit_days)."),
    c("holdout_customers", Ty::Int, true, "Holdout backtest (predict.holdout_days = h > 0; transaction model rows): customers acquired by as_of − h, the calibration end."),
    c("holdout_predicted_purchases", Ty::Float, true, "Holdout backtest: repeat purchases (purchase days) of those customers in the h days after the calibration end, expected by the model fitted on the data up to it (the group's own fit, else all's); null when no calibration fit converged."),
    c("holdout_actual_purchases", Ty::Int, true, "Holdout backtest: their actual purchase days in those h days (orders as known at as_of).")
];

pub const REJECTS: &[Col] = &[
    c(
        "source_file",
        Ty::Str,
        false,
        "Input file the row came from.",
    ),
    c(
        "source_row",
        Ty::Int,
        false,
        "1-based data row in that file (header excluded).",
    ),
    c(
        "reason",
        Ty::Str,
        false,
        "Why the row could not be used, e.g. `amount: not a number`.",
    ),
    c("customer_id", Ty::Str, true, "Raw customer_id value."),
    c("ts", Ty::Str, true, "Raw ts value."),
    c("amount", Ty::Str, true, "Raw amount value."),
];

/// An output table: its name, grain, columns and sort keys in one place, for the builders, the
/// sink, the manifest, `--tables` and `customer-value schema`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Customers,
    Retention,
    Cohorts,
    Ltv,
    Rejects,
    Models,
}

/// The Hive partition column of every table's folders (`as_of=YYYY-MM-DD`).
pub const PARTITION_COLUMN: &str = "as_of";

impl Table {
    /// Every table, in publishing order.
    pub const ALL: [Table; 6] = [
        Table::Customers,
        Table::Retention,
        Table::Cohorts,
        Table::Ltv,
        Table::Rejects,
        Table::Models,
    ];

    /// The table's name: its folder and its key in the manifest.
    pub fn name(self) -> &'static str {
        match self {
            Table::Customers => "customers",
            Table::Retention => "retention",
            Table::Cohorts => "cohorts",
            Table::Ltv => "ltv",
            Table::Rejects => "rejects",
            Table::Models => "models",
        }
    }

    /// The table called `name`, if any.
    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }

    /// What one row stands for.
    pub fn grain(self) -> &'static str {
        match self {
            Table::Customers => "customer × as_of",
            Table::Retention => "segment × period",
            Table::Cohorts => "segment × cohort × period_offset",
            Table::Ltv => "segment (cohort null) and segment × cohort",
            Table::Rejects => "rejected input row",
            Table::Models => "segment × model (predictions on)",
        }
    }

    /// The documented columns (customers: the segment columns at the placeholder).
    pub fn columns(self) -> &'static [Col] {
        match self {
            Table::Customers => CUSTOMERS,
            Table::Retention => RETENTION,
            Table::Cohorts => COHORTS,
            Table::Ltv => LTV,
            Table::Rejects => REJECTS,
            Table::Models => MODELS,
        }
    }

    /// The grain key the rows are sorted by (Parquet `sorting_columns`).
    pub fn sort_keys(self) -> &'static [&'static str] {
        match self {
            Table::Customers => &["customer_id"],
            Table::Retention => &["segment_by", "segment", "period_start"],
            Table::Cohorts => &["segment_by", "segment", "cohort", "period_offset"],
            Table::Ltv => &["segment_by", "segment", "cohort"],
            Table::Rejects => &["source_file", "source_row"],
            Table::Models => &["segment_by", "segment", "model"],
        }
    }

    /// The Arrow schema, with these segment columns (customers only).
    pub fn schema(self, segments: &[String]) -> SchemaRef {
        arrow_schema(self.columns(), segments)
    }

    /// A batch of this table from named columns, which must be the schema's, in its order:
    /// a builder that drifts from the documented schema fails here (and in its tests).
    pub fn batch(
        self,
        segments: &[String],
        columns: Vec<(&str, arrow::array::ArrayRef)>,
    ) -> arrow::array::RecordBatch {
        let schema = self.schema(segments);
        let names: Vec<&str> = columns.iter().map(|c| c.0).collect();
        let want: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, want, "{} columns against the schema", self.name());
        arrow::array::RecordBatch::try_new(schema, columns.into_iter().map(|c| c.1).collect())
            .unwrap_or_else(|e| panic!("{} columns against the schema: {e}", self.name()))
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Names a segment column may not take: the customers table's own columns (where segment
/// columns go), the columns the other tables put segment values in, and the partition column.
pub fn reserved_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = CUSTOMERS
        .iter()
        .map(|c| c.name)
        .filter(|&n| n != SEGMENT_COLUMNS_PLACEHOLDER)
        .chain(Table::Retention.sort_keys()[..2].iter().copied())
        .chain([PARTITION_COLUMN])
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// Arrow schema of a table; `segments` replaces the customers placeholder.
pub fn arrow_schema(cols: &[Col], segments: &[String]) -> SchemaRef {
    let mut fields = Vec::new();
    for col in cols {
        if col.name == SEGMENT_COLUMNS_PLACEHOLDER {
            fields.extend(
                segments
                    .iter()
                    .map(|s| Field::new(s.as_str(), DataType::Utf8, false)),
            );
        } else {
            let mut f = Field::new(col.name, col.dtype.arrow(), col.nullable);
            f.set_metadata(
                [("description".to_string(), col.doc.to_string())]
                    .into_iter()
                    .collect(),
            );
            fields.push(f);
        }
    }
    Arc::new(Schema::new(fields))
}

/// Markdown description of every table.
pub fn markdown() -> String {
    let mut out = String::from("# customer-value output tables\n\nLayout: `{output}/{table}/as_of=YYYY-MM-DD/*.parquet`; manifest at `{output}/_manifests/as_of=YYYY-MM-DD.json`.\n");
    for t in Table::ALL {
        let (name, grain, cols) = (t.name(), t.grain(), t.columns());
        out.push_str(&format!("\n## {name}\nGrain: {grain}.\n\n| column | type | null | meaning |\n|---|---|---|---|\n"));
        for col in cols {
            out.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                col.name,
                col.dtype.parquet_name(),
                if col.nullable { "yes" } else { "no" },
                col.doc
            ));
        }
    }
    out
}

/// JSON description of every table.
pub fn json() -> serde_json::Value {
    serde_json::Value::Array(
        Table::ALL
            .iter()
            .map(|t| {
                serde_json::json!({
                    "table": t.name(),
                    "grain": t.grain(),
                    "columns": t.columns().iter().map(|c| serde_json::json!({
                        "name": c.name,
                        "type": c.dtype.parquet_name(),
                        "nullable": c.nullable,
                        "description": c.doc,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}
