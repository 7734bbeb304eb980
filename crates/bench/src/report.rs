//! The results table: each measurement beside its same-run baseline, goals, and what each
//! service cost.

use serde::Serialize;

use crate::load::Stats;

#[derive(Debug, Serialize)]
pub struct Report {
    pub mode: &'static str,
    pub machine: String,
    pub date: String,
    pub rows: Vec<Row>,
    pub services: Vec<ServiceRow>,
    pub notes: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Row {
    pub scenario: &'static str,
    pub what: String,
    pub stats: Stats,
    pub baseline: Option<(String, Stats)>,
    /// Throughput divided by the baseline's throughput.
    pub ratio: Option<f64>,
    pub goal: &'static str,
}

#[derive(Debug, Serialize)]
pub struct ServiceRow {
    pub scenario: &'static str,
    pub service: String,
    pub cpu_seconds: f64,
    /// `None` where the scenario started the service with work already queued.
    pub rss_idle_mib: Option<f64>,
    pub rss_peak_mib: f64,
}

impl Row {
    pub fn new(scenario: &'static str, what: impl Into<String>, stats: Stats, goal: &'static str) -> Self {
        Self { scenario, what: what.into(), stats, baseline: None, ratio: None, goal }
    }

    pub fn against(mut self, name: impl Into<String>, baseline: Stats) -> Self {
        if baseline.per_second > 0.0 {
            self.ratio = Some(self.stats.per_second / baseline.per_second);
        }
        self.baseline = Some((name.into(), baseline));
        self
    }
}

impl Report {
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!("Mode: **{}** · {} · {}\n\n", self.mode, self.date, self.machine));
        s.push_str("| scenario | measured | count | per second | p50 ms | p90 ms | p99 ms | max ms | errors | baseline (same run) | baseline per second | ratio | goal |\n");
        s.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|\n");
        for r in &self.rows {
            let st = &r.stats;
            let (bname, brate) = match &r.baseline {
                Some((n, b)) => (n.clone(), format!("{:.0}", b.per_second)),
                None => ("–".into(), "–".into()),
            };
            let ratio = r.ratio.map_or("–".into(), |x| format!("{x:.2}×"));
            s.push_str(&format!(
                "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} | {} |\n",
                r.scenario, r.what, st.count, st.per_second, st.p50_ms, st.p90_ms, st.p99_ms, st.max_ms, st.errors, bname, brate, ratio, r.goal
            ));
        }
        s.push_str("\n| scenario | service | CPU s | RSS idle MiB | RSS peak MiB |\n|---|---|---:|---:|---:|\n");
        for r in &self.services {
            let idle = r.rss_idle_mib.map_or("–".to_owned(), |m| format!("{m:.1}"));
            s.push_str(&format!("| {} | {} | {:.2} | {idle} | {:.1} |\n", r.scenario, r.service, r.cpu_seconds, r.rss_peak_mib));
        }
        if !self.notes.is_empty() {
            s.push('\n');
            for n in &self.notes {
                s.push_str(&format!("- {n}\n"));
            }
        }
        s
    }
}

/// A one-line description of this machine.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned()))
        .unwrap_or_else(|| "unknown cpu".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse::<f64>().ok()))
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    format!("{cores} cores ({cpu}), {mem:.0} GiB RAM")
}
