//! A closed-loop HTTP/1.1 load generator over keep-alive connections, and latency stats.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpStream;

/// Latency and throughput of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub count: u64,
    pub errors: u64,
    pub seconds: f64,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Stats {
    pub fn from_micros(mut lat: Vec<u32>, errors: u64, seconds: f64) -> Self {
        lat.sort_unstable();
        let pct = |p: f64| -> f64 {
            if lat.is_empty() {
                return 0.0;
            }
            let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
            f64::from(lat[i]) / 1000.0
        };
        let count = lat.len() as u64;
        Self {
            count,
            errors,
            seconds,
            per_second: if seconds > 0.0 { count as f64 / seconds } else { 0.0 },
            p50_ms: pct(0.50),
            p90_ms: pct(0.90),
            p99_ms: pct(0.99),
            max_ms: lat.last().map_or(0.0, |m| f64::from(*m) / 1000.0),
        }
    }
}

/// What each request is: method, path, headers and body, built from a sequence number.
pub trait RequestSource: Send + Sync + 'static {
    fn build(&self, n: u64) -> Request<Full<Bytes>>;
}

impl<F> RequestSource for F
where
    F: Fn(u64) -> Request<Full<Bytes>> + Send + Sync + 'static,
{
    fn build(&self, n: u64) -> Request<Full<Bytes>> {
        self(n)
    }
}

/// Runs `connections` keep-alive connections against `addr` for `duration`, each sending
/// its next request as soon as the previous answer arrived. Non-2xx/3xx answers count as
/// errors.
pub async fn closed_loop(addr: SocketAddr, connections: usize, duration: Duration, source: Arc<dyn RequestSource>) -> anyhow::Result<Stats> {
    let seq = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (seq, errors, source) = (seq.clone(), errors.clone(), source.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(1 << 16);
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            while Instant::now() < deadline {
                let req = source.build(seq.fetch_add(1, Ordering::Relaxed));
                let t = Instant::now();
                match sender.send_request(req).await {
                    Ok(res) => {
                        let ok = res.status().is_success() || res.status().is_redirection();
                        let _ = res.into_body().collect().await;
                        if ok {
                            lat.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
                        } else {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
            anyhow::Ok(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let secs = started.elapsed().as_secs_f64();
    Ok(Stats::from_micros(all, errors.load(Ordering::Relaxed), secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_right_ranks() {
        let s = Stats::from_micros((1..=100).map(|v| v * 1000).collect(), 0, 2.0);
        assert_eq!((s.p50_ms, s.p90_ms, s.p99_ms, s.max_ms), (50.0, 90.0, 99.0, 100.0));
        assert_eq!(s.per_second, 50.0);
        let empty = Stats::from_micros(vec![], 3, 1.0);
        assert_eq!((empty.count, empty.errors, empty.p99_ms), (0, 3, 0.0));
    }
}
