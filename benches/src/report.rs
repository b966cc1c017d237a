//! Printing comparisons as a markdown table and as JSON lines.

use crate::stats::Summary;

/// One measured quantity for Fluxon and its peer.
#[derive(Clone, Debug)]
pub struct Metric {
    pub unit: String,
    pub fluxon: Summary,
    pub peer: Summary,
    /// Fluxon relative to the peer, oriented so that above 1.0 means Fluxon is better.
    pub ratio: f64,
}

impl Metric {
    pub fn higher_is_better(unit: &str, fluxon: Summary, peer: Summary) -> Self {
        Self {
            unit: unit.to_owned(),
            ratio: safe_div(fluxon.median, peer.median),
            fluxon,
            peer,
        }
    }

    pub fn lower_is_better(unit: &str, fluxon: Summary, peer: Summary) -> Self {
        Self {
            unit: unit.to_owned(),
            ratio: safe_div(peer.median, fluxon.median),
            fluxon,
            peer,
        }
    }
}

fn safe_div(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        0.0
    } else {
        a / b
    }
}

/// Fluxon against one peer on one benchmark.
#[derive(Clone, Debug)]
pub struct Comparison {
    pub bench: String,
    pub peer: String,
    pub metrics: Vec<Metric>,
}

pub fn markdown(rows: &[Comparison]) -> String {
    let mut out = String::from(
        "| bench | peer | metric | fluxon (median ± spread) | peer (median ± spread) | ratio (>1 = fluxon better) |\n|---|---|---|---|---|---|\n",
    );
    for c in rows {
        for m in &c.metrics {
            out.push_str(&format!(
                "| {} | {} | {} | {} ± {:.1}% | {} ± {:.1}% | {:.2} |\n",
                c.bench,
                c.peer,
                m.unit,
                value(m.fluxon.median),
                m.fluxon.spread_pct(),
                value(m.peer.median),
                m.peer.spread_pct(),
                m.ratio
            ));
        }
    }
    out
}

/// About three significant digits: 46213, 180, 12.5, 0.62.
fn value(v: f64) -> String {
    match v.abs() {
        a if a >= 100.0 => format!("{v:.0}"),
        a if a >= 10.0 => format!("{v:.1}"),
        _ => format!("{v:.2}"),
    }
}

pub fn json_lines(rows: &[Comparison]) -> String {
    let mut out = String::new();
    for c in rows {
        for m in &c.metrics {
            out.push_str(&format!(
                "{{\"bench\":{:?},\"peer\":{:?},\"unit\":{:?},\"fluxon\":{:.3},\"peer_value\":{:.3},\"ratio\":{:.4},\"fluxon_spread_pct\":{:.2},\"peer_spread_pct\":{:.2}}}\n",
                c.bench,
                c.peer,
                m.unit,
                m.fluxon.median,
                m.peer.median,
                m.ratio,
                m.fluxon.spread_pct(),
                m.peer.spread_pct()
            ));
        }
    }
    out
}
