//! Metrics: what the hot paths count, and how a process shows it as Prometheus text.
//!
//! Two halves. The **instruments** ([`Counter`], [`Gauge`], [`Histogram`], [`Keyed`]) are
//! updated by the send, pull, proposal and flush paths with relaxed atomic adds and no lock:
//! a per-topic or per-group instrument is found through an [`arc_swap`]-published map, so
//! looking one up is a pointer load, and only the first use of a new key takes a lock.
//! The **gathering** ([`Source`], [`Gather`], [`Hub`]) runs on a scrape: each component is a
//! `Source` that writes its instruments and the state it already keeps (a Raft term, a
//! queue's end, a disk's free space) into a `Gather`; the `Hub` holds a process's sources,
//! each with the labels that tell it apart (`rocketraft dev` runs three replicas and a
//! NameServer in one process), merges their samples into one family per metric name and
//! renders them with `prometheus-client`'s text encoder (Prometheus exposition format 0.0.4).
//!
//! Counter names are given without the `_total` suffix; the encoder adds it.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};

use arc_swap::ArcSwap;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

/// A count that only goes up.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Relaxed);
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn set(&self, v: i64) {
        self.0.store(v, Relaxed);
    }

    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Relaxed);
    }

    pub fn get(&self) -> i64 {
        self.0.load(Relaxed)
    }

    /// Sets the gauge to `v` if `v` is higher: a high-water mark.
    pub fn raise_to(&self, v: i64) {
        self.0.fetch_max(v, Relaxed);
    }
}

/// Bucket bounds for latencies, in microseconds (50 us to 10 s).
pub const LATENCY_US: &[u64] = &[
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// Bucket bounds for counts (records in a batch): powers of two up to 4,096.
pub const COUNT: &[u64] = &[1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1_024, 2_048, 4_096];

/// Bucket bounds for sizes in bytes: powers of four from 256 B to 16 MiB.
pub const BYTES: &[u64] =
    &[256, 1_024, 4_096, 16_384, 65_536, 262_144, 1_048_576, 4_194_304, 16_777_216];

/// A histogram over fixed bucket bounds, observed with relaxed atomic adds (one bucket and the
/// sum; the count is the buckets' total). Values are integers in the histogram's own unit;
/// shown divided by `per_shown` (1e6 for microseconds shown as seconds: a division, so a bound
/// of 100,000 us shows as `0.1`, not `0.09999999999999999`).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [u64],
    per_shown: f64,
    /// One per bound, then one for values above the last (`+Inf`).
    buckets: Box<[AtomicU64]>,
    sum: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [u64], per_shown: f64) -> Self {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]), "bounds must increase");
        let buckets = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Histogram { bounds, per_shown, buckets, sum: AtomicU64::new(0) }
    }

    /// Latencies: microseconds observed, seconds shown.
    pub fn latency() -> Self {
        Histogram::new(LATENCY_US, 1e6)
    }

    pub fn observe(&self, v: u64) {
        let at = self.bounds.partition_point(|&b| b < v);
        self.buckets[at].fetch_add(1, Relaxed);
        self.sum.fetch_add(v, Relaxed);
    }

    pub fn observe_duration(&self, d: std::time::Duration) {
        self.observe(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    /// The observations so far. Taken bucket by bucket while others may observe: the count is
    /// the buckets' sum, so the buckets always add up to it.
    pub fn snapshot(&self) -> HistogramValue {
        let mut buckets = Vec::with_capacity(self.buckets.len());
        let mut count = 0u64;
        for (i, b) in self.buckets.iter().enumerate() {
            let n = b.load(Relaxed);
            count += n;
            let upper = self.bounds.get(i).map_or(f64::INFINITY, |&u| u as f64 / self.per_shown);
            buckets.push((upper, n));
        }
        HistogramValue { sum: self.sum.load(Relaxed) as f64 / self.per_shown, count, buckets }
    }
}

/// A histogram's observations at one moment: per-bucket (not cumulative) counts.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramValue {
    pub sum: f64,
    pub count: u64,
    pub buckets: Vec<(f64, u64)>,
}

/// Instruments by name (a topic, a group), found without a lock. The map is published through
/// an `ArcSwap`: a lookup loads it; adding a name copies it under a mutex (names are few and
/// added once). At most `max` names: further ones share the entry named [`Keyed::OVERFLOW`],
/// so names that come from the network cannot grow it without bound.
pub struct Keyed<V> {
    map: ArcSwap<HashMap<String, Arc<V>>>,
    adding: Mutex<()>,
    max: usize,
}

impl<V: Default> Keyed<V> {
    /// The entry that counts for every name past the limit.
    pub const OVERFLOW: &'static str = "_other";

    pub fn new(max: usize) -> Self {
        Keyed { map: ArcSwap::from_pointee(HashMap::new()), adding: Mutex::new(()), max }
    }

    /// Runs `f` on the instruments of `name` (made on first use). The usual case, a name seen
    /// before, is a load of the published map and no reference count touched.
    pub fn with<R>(&self, name: &str, f: impl FnOnce(&V) -> R) -> R {
        {
            let map = self.map.load();
            let found =
                map.get(name).or_else(|| map.get(Self::OVERFLOW).filter(|_| map.len() >= self.max));
            if let Some(v) = found {
                return f(v);
            }
        }
        f(&self.get(name))
    }

    /// The instruments of `name`, made on first use.
    pub fn get(&self, name: &str) -> Arc<V> {
        {
            let map = self.map.load();
            // A name past the limit finds `_other` here too, without the lock (the same test
            // as below: a full map, `_other` in it).
            let found =
                map.get(name).or_else(|| map.get(Self::OVERFLOW).filter(|_| map.len() >= self.max));
            if let Some(v) = found {
                return v.clone();
            }
        }
        let _adding = self.adding.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.map.load_full();
        if let Some(v) = current.get(name) {
            return v.clone();
        }
        let key = if current.len() >= self.max { Self::OVERFLOW } else { name };
        if let Some(v) = current.get(key) {
            return v.clone();
        }
        let mut next = HashMap::clone(&current);
        let v = Arc::new(V::default());
        next.insert(key.to_owned(), v.clone());
        self.map.store(Arc::new(next));
        v
    }

    /// Every name and its instruments, sorted by name.
    pub fn entries(&self) -> Vec<(String, Arc<V>)> {
        let mut all: Vec<_> = self.map.load().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Drops the names `keep` refuses (a deleted topic), so their series end.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        let _adding = self.adding.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.map.load_full();
        if current.keys().all(|k| k == Self::OVERFLOW || keep(k)) {
            return;
        }
        let next = current
            .iter()
            .filter(|(k, _)| *k == Self::OVERFLOW || keep(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        self.map.store(Arc::new(next));
    }

    pub fn len(&self) -> usize {
        self.map.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<V> std::fmt::Debug for Keyed<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyed").field("names", &self.map.load().len()).finish()
    }
}

/// Labels of one sample: names are ours (static), values may come from anywhere.
pub type Labels = Vec<(&'static str, String)>;

/// What a sample is.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Counter(u64),
    Gauge(f64),
    Histogram(HistogramValue),
}

impl Value {
    fn metric_type(&self) -> MetricType {
        match self {
            Value::Counter(_) => MetricType::Counter,
            Value::Gauge(_) => MetricType::Gauge,
            Value::Histogram(_) => MetricType::Histogram,
        }
    }
}

#[derive(Debug)]
struct Family {
    help: &'static str,
    samples: Vec<(Labels, Value)>,
}

/// The samples of one scrape, by metric name. Sources add to it; the base labels of the
/// source being gathered (its node, its group) come first in every sample it adds.
#[derive(Debug, Default)]
pub struct Gather {
    base: Labels,
    families: BTreeMap<&'static str, Family>,
}

impl Gather {
    pub fn counter(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &str)],
        v: u64,
    ) {
        self.add(name, help, labels, Value::Counter(v));
    }

    pub fn gauge(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &str)],
        v: f64,
    ) {
        self.add(name, help, labels, Value::Gauge(v));
    }

    pub fn histogram(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &str)],
        h: &Histogram,
    ) {
        self.add(name, help, labels, Value::Histogram(h.snapshot()));
    }

    pub fn add(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &str)],
        v: Value,
    ) {
        let family =
            self.families.entry(name).or_insert_with(|| Family { help, samples: Vec::new() });
        if let Some((_, first)) = family.samples.first() {
            // One name, one type: a second type under a name is a bug in a source, and the
            // scrape must still parse, so the sample is left out.
            debug_assert_eq!(first.metric_type(), v.metric_type(), "metric {name} changes type");
            if first.metric_type() != v.metric_type() {
                return;
            }
        }
        let mut all = self.base.clone();
        all.extend(labels.iter().map(|(k, v)| (*k, (*v).to_owned())));
        // Prometheus refuses a sample that names a label twice (a source's label must not
        // repeat one of its base labels).
        debug_assert!(
            all.iter().enumerate().all(|(i, (k, _))| all[..i].iter().all(|(seen, _)| seen != k)),
            "metric {name} repeats a label: {all:?}"
        );
        family.samples.push((all, v));
    }

    /// The samples gathered under `name`, for tests.
    pub fn samples(&self, name: &str) -> &[(Labels, Value)] {
        self.families.get(name).map_or(&[], |f| &f.samples)
    }

    /// The exposition text of everything gathered.
    pub fn render(self) -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(Families(self.families)));
        let mut out = String::new();
        // Writing into a String cannot fail, and the encoder fails only when its writer does.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
        out
    }
}

#[derive(Debug)]
struct Families(BTreeMap<&'static str, Family>);

impl prometheus_client::collector::Collector for Families {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (name, family) in &self.0 {
            let Some((_, first)) = family.samples.first() else { continue };
            let mut metric =
                encoder.encode_descriptor(name, family.help, None, first.metric_type())?;
            for (labels, value) in &family.samples {
                let mut sample = metric.encode_family(labels)?;
                match value {
                    Value::Counter(v) => sample.encode_counter::<NoLabelSet, _, f64>(v, None)?,
                    Value::Gauge(v) => sample.encode_gauge(v)?,
                    Value::Histogram(h) => {
                        sample.encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets, None)?
                    }
                }
            }
        }
        Ok(())
    }
}

/// A component that shows its metrics: called on every scrape, it adds its samples.
pub trait Source: Send + Sync {
    fn gather(&self, out: &mut Gather);
}

/// A process's sources, each with its labels. Holds them weakly: a component that stops (a
/// replica restarted in `rocketraft dev`) leaves the scrape with it.
#[derive(Default)]
pub struct Hub {
    sources: Mutex<Vec<(Labels, Weak<dyn Source>)>>,
}

impl Hub {
    pub fn new() -> Arc<Hub> {
        Arc::new(Hub::default())
    }

    /// Adds `source`, its samples labelled with `labels` (first, in this order).
    pub fn add(&self, labels: Labels, source: &Arc<dyn Source>) {
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        sources.retain(|(_, s)| s.strong_count() > 0);
        sources.push((labels, Arc::downgrade(source)));
    }

    /// Everything the live sources show now, as exposition text.
    pub fn render(&self) -> String {
        self.gather().render()
    }

    /// Everything the live sources show now.
    pub fn gather(&self) -> Gather {
        let live: Vec<(Labels, Arc<dyn Source>)> = {
            let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
            sources.retain(|(_, s)| s.strong_count() > 0);
            sources.iter().filter_map(|(l, s)| Some((l.clone(), s.upgrade()?))).collect()
        };
        let mut out = Gather::default();
        for (labels, source) in live {
            out.base = labels;
            source.gather(&mut out);
        }
        out.base = Labels::new();
        out
    }
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.sources.lock().map(|s| s.len()).unwrap_or(0);
        f.debug_struct("Hub").field("sources", &n).finish()
    }
}

/// The content type of [`Hub::render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_counts_each_value_in_the_first_bucket_that_holds_it() {
        let h = Histogram::new(&[10, 100], 1.0);
        for v in [0, 10, 11, 100, 101, 5_000] {
            h.observe(v);
        }
        let s = h.snapshot();
        assert_eq!(s.buckets, vec![(10.0, 2), (100.0, 2), (f64::INFINITY, 2)]);
        assert_eq!((s.count, s.sum), (6, 5_222.0));
        let lat = Histogram::latency();
        lat.observe_duration(std::time::Duration::from_millis(3));
        let s = lat.snapshot();
        assert_eq!(s.sum, 0.003);
        assert_eq!(s.buckets.iter().find(|b| b.1 == 1).map(|b| b.0), Some(0.005));
    }

    #[test]
    fn keyed_names_are_bounded_and_can_be_dropped() {
        let k: Keyed<Counter> = Keyed::new(2);
        k.get("a").inc();
        k.get("a").inc();
        k.get("b").inc();
        k.get("c").inc();
        k.get("d").add(5);
        let e: Vec<_> = k.entries().into_iter().map(|(n, c)| (n, c.get())).collect();
        assert_eq!(e, vec![("_other".into(), 6), ("a".into(), 2), ("b".into(), 1)]);
        k.retain(|n| n != "a");
        let names: Vec<_> = k.entries().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, vec!["_other", "b"]);
        assert!(Arc::ptr_eq(&k.get("b"), &k.get("b")));
        k.with("b", |c| c.add(10));
        k.with("zz", |c| c.add(1));
        assert_eq!((k.get("b").get(), k.get("_other").get()), (11, 7));
    }

    struct Node(u64, Counter);

    impl Source for Node {
        fn gather(&self, out: &mut Gather) {
            out.gauge("rr_term", "the term", &[], self.0 as f64);
            out.counter("rr_sends", "sends", &[("topic", "T\"x")], self.1.get());
        }
    }

    #[test]
    fn a_hub_merges_its_sources_into_one_family_per_name_and_forgets_dropped_ones() {
        let hub = Hub::new();
        let a: Arc<dyn Source> = Arc::new(Node(3, Counter::default()));
        let b: Arc<dyn Source> = Arc::new(Node(4, Counter::default()));
        hub.add(vec![("node", "1".into())], &a);
        hub.add(vec![("node", "2".into())], &b);
        let text = hub.render();
        assert_eq!(text.matches("# TYPE rr_term gauge").count(), 1, "{text}");
        assert!(text.contains("rr_term{node=\"1\"} 3"), "{text}");
        assert!(text.contains("rr_term{node=\"2\"} 4"), "{text}");
        assert!(text.contains("rr_sends_total{node=\"2\",topic=\"T\\\"x\"} 0"), "{text}");
        drop(b);
        let text = hub.render();
        assert!(!text.contains("node=\"2\""), "{text}");
        assert!(text.contains("rr_term{node=\"1\"} 3"), "{text}");
    }

    #[test]
    fn histograms_render_cumulative_buckets() {
        let mut g = Gather::default();
        let h = Histogram::new(&[1, 2], 1.0);
        h.observe(1);
        h.observe(2);
        h.observe(9);
        g.histogram("rr_batch", "records", &[], &h);
        g.histogram("rr_latency_seconds", "latency", &[], &Histogram::latency());
        let text = g.render();
        assert!(text.contains("rr_latency_seconds_bucket{le=\"0.1\"} 0"), "{text}");
        assert!(text.contains("rr_latency_seconds_bucket{le=\"5e-05\"} 0"), "{text}");
        for line in [
            "rr_batch_bucket{le=\"1\"} 1",
            "rr_batch_bucket{le=\"2\"} 2",
            "rr_batch_bucket{le=\"+Inf\"} 3",
            "rr_batch_sum 12.0",
            "rr_batch_count 3",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
}
