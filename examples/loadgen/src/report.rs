//! Counting, the JSON report, the live progress bar and the SVG plot.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::setup::Plan;
use crate::{Args, Stats};

/// The counters at one instant.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub sent: u64,
    pub acked: u64,
    pub failed: u64,
    pub expected: u64,
    pub delivered: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
}

impl Snapshot {
    pub fn take(s: &Stats) -> Snapshot {
        Snapshot {
            sent: s.sent.load(Ordering::Relaxed),
            acked: s.acked.load(Ordering::Relaxed),
            failed: s.failed.load(Ordering::Relaxed),
            expected: s.expected.load(Ordering::Relaxed),
            delivered: s.delivered.load(Ordering::Relaxed),
            duplicated: s.duplicated.load(Ordering::Relaxed),
            out_of_order: s.out_of_order.load(Ordering::Relaxed),
        }
    }
}

/// The live progress bar (none with --quiet or no terminal).
pub fn progress(args: &Args, measure: Duration) -> Option<ProgressBar> {
    if args.quiet {
        return None;
    }
    let bar = ProgressBar::new(measure.as_secs().max(1));
    bar.set_style(
        ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {pos}/{len}s {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    Some(bar)
}

fn pct(h: &Histogram<u64>) -> serde_json::Value {
    let ms = |v: u64| v as f64 / 1000.0;
    json!({
        "p50": ms(h.value_at_quantile(0.50)),
        "p90": ms(h.value_at_quantile(0.90)),
        "p99": ms(h.value_at_quantile(0.99)),
        "p999": ms(h.value_at_quantile(0.999)),
        "max": ms(h.max()),
        "count": h.len(),
    })
}

/// The outcome of a run.
pub struct Report {
    pub value: serde_json::Value,
    pub lost: u64,
    pub series: Vec<u64>,
}

impl Report {
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        args: &Args,
        plan: &Plan,
        base: &Snapshot,
        total: &Snapshot,
        elapsed: Duration,
        send_ack: &Histogram<u64>,
        send_deliver: &Histogram<u64>,
        series: Vec<u64>,
        db_rows: Option<u64>,
        _started: Instant,
    ) -> Report {
        let secs = elapsed.as_secs_f64().max(0.001);
        let lost = total.expected.saturating_sub(total.delivered);
        let value = json!({
            "mode": format!("{:?}", args.mode),
            "run_id": plan.run_id,
            "users": plan.users.len(),
            "group_size": if plan.recipients > 1 { Some(plan.recipients + 1) } else { None },
            "rate": args.rate,
            "window": if args.rate.is_some() { None } else { Some(args.window.unwrap_or(16)) },
            "ws_urls": plan.ws_urls,
            "duration_s": secs,
            "sent": total.sent,
            "acked": total.acked,
            "failed": total.failed,
            "expected_deliveries": total.expected,
            "delivered": total.delivered,
            "lost": lost,
            "duplicated": total.duplicated,
            "out_of_order": total.out_of_order,
            "measured": {
                "sent": total.sent - base.sent,
                "acked": total.acked - base.acked,
                "delivered": total.delivered - base.delivered,
            },
            "sent_per_sec": (total.sent - base.sent) as f64 / secs,
            "acked_per_sec": (total.acked - base.acked) as f64 / secs,
            "delivered_per_sec": (total.delivered - base.delivered) as f64 / secs,
            "latency_ms": pct(send_deliver),
            "ack_latency_ms": pct(send_ack),
            "persisted_rows": db_rows,
            "delivered_per_sec_series": series,
        });
        Report {
            value,
            lost,
            series,
        }
    }

    /// Adds keys to the report (existing keys are kept as they are).
    pub fn extend(&mut self, extra: serde_json::Map<String, serde_json::Value>) {
        if let Some(obj) = self.value.as_object_mut() {
            for (k, v) in extra {
                obj.entry(k).or_insert(v);
            }
        }
    }

    pub fn json(&self) -> String {
        serde_json::to_string_pretty(&self.value).unwrap_or_default()
    }

    pub fn print(&self) {
        let v = &self.value;
        println!(
            "sent {} acked {} delivered {} lost {} duplicated {} out-of-order {} failed {}{}",
            v["sent"],
            v["acked"],
            v["delivered"],
            v["lost"],
            v["duplicated"],
            v["out_of_order"],
            v["failed"],
            crate::cpu::summary_suffix(v)
        );
        if let Some(line) = crate::cpu::detail_line(v) {
            println!("{line}");
        }
        println!(
            "throughput: sent {:.0}/s acked {:.0}/s delivered {:.0}/s over {:.1} s",
            v["sent_per_sec"].as_f64().unwrap_or(0.0),
            v["acked_per_sec"].as_f64().unwrap_or(0.0),
            v["delivered_per_sec"].as_f64().unwrap_or(0.0),
            v["duration_s"].as_f64().unwrap_or(0.0)
        );
        for (name, key) in [
            ("send->deliver", "latency_ms"),
            ("send->ack", "ack_latency_ms"),
        ] {
            let l = &v[key];
            println!(
                "{name} ms: p50 {} p90 {} p99 {} p99.9 {} max {}",
                l["p50"], l["p90"], l["p99"], l["p999"], l["max"]
            );
        }
        if !v["persisted_rows"].is_null() {
            println!("persisted rows: {}", v["persisted_rows"]);
        }
    }
}

/// Writes an SVG with delivered/s and p99 latency per second.
pub fn plot(path: &str, r: &Report, stats: &Stats) -> Result<(), String> {
    use plotters::prelude::*;
    let p99: Vec<f64> = stats
        .timeline
        .lock()
        .iter()
        .map(|h| {
            if h.is_empty() {
                0.0
            } else {
                h.value_at_quantile(0.99) as f64 / 1000.0
            }
        })
        .collect();
    let n = r.series.len().max(1) as u32;
    let max_rate = r.series.iter().copied().max().unwrap_or(1).max(1) as f64 * 1.1;
    let max_lat = p99.iter().copied().fold(1.0f64, f64::max) * 1.1;
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (top, bottom) = root.split_vertically(280);
    let mut c1 = ChartBuilder::on(&top)
        .caption("delivered messages per second", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0u32..n, 0f64..max_rate)
        .map_err(|e| e.to_string())?;
    c1.configure_mesh()
        .x_desc("second")
        .draw()
        .map_err(|e| e.to_string())?;
    c1.draw_series(LineSeries::new(
        r.series
            .iter()
            .enumerate()
            .map(|(i, v)| (i as u32, *v as f64)),
        &BLUE,
    ))
    .map_err(|e| e.to_string())?;
    let mut c2 = ChartBuilder::on(&bottom)
        .caption("p99 send→deliver latency (ms, sampled)", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0u32..n, 0f64..max_lat)
        .map_err(|e| e.to_string())?;
    c2.configure_mesh()
        .x_desc("second")
        .draw()
        .map_err(|e| e.to_string())?;
    c2.draw_series(LineSeries::new(
        p99.iter().enumerate().map(|(i, v)| (i as u32, *v)),
        &RED,
    ))
    .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}
