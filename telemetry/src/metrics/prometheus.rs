//! The metrics the SDK aggregated, in the Prometheus text exposition format (version 0.0.4), named
//! as the OpenTelemetry → Prometheus compatibility rules say: dots and other characters Prometheus
//! does not allow become `_`, the unit is appended (`s` → `_seconds`; annotations such as
//! `{token}` add nothing), monotonic sums are counters ending in `_total`, histograms have
//! `_bucket{le=…}`, `_sum` and `_count`, and the resource's attributes are the labels of one
//! `target_info` sample.
//!
//! It is a reader of the same SDK pipeline the OTLP exporter reads: one recording path, two
//! views. Written here because `opentelemetry-prometheus` brings the `prometheus` crate, and with
//! it a second metrics registry and a second protobuf stack.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Weak};
use std::time::Duration;

use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, Metric, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{InstrumentKind, ManualReader, Pipeline, Temporality};

/// A reader collected on demand (each scrape), with cumulative temporality. Clones share one
/// reader: give one to the meter provider and keep one to render.
#[derive(Debug, Clone)]
pub struct PrometheusReader {
    reader: Arc<ManualReader>,
}

impl Default for PrometheusReader {
    fn default() -> Self {
        Self {
            reader: Arc::new(
                ManualReader::builder()
                    .with_temporality(Temporality::Cumulative)
                    .build(),
            ),
        }
    }
}

impl PrometheusReader {
    /// Everything recorded so far, as Prometheus text; empty once the provider is shut down.
    pub fn render(&self) -> String {
        let mut collected = ResourceMetrics::default();
        match self.reader.collect(&mut collected) {
            Ok(()) => render(&collected),
            Err(_) => String::new(),
        }
    }
}

impl MetricReader for PrometheusReader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.reader.register_pipeline(pipeline);
    }

    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.reader.collect(rm)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.reader.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.reader.shutdown_with_timeout(timeout)
    }

    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.reader.temporality(kind)
    }
}

/// The content type of what [`render`] writes.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One metric family: its `# HELP`/`# TYPE` lines once, then its samples (several OTel metrics
/// may land on one Prometheus name; their samples are merged).
struct Family {
    name: String,
    kind: &'static str,
    help: String,
    samples: String,
}

/// Renders collected metrics as Prometheus text. Delta sums and histograms (never made by this
/// crate's readers) and exponential histograms are left out: Prometheus has no form for them.
pub fn render(collected: &ResourceMetrics) -> String {
    let mut families: Vec<Family> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for scope in collected.scope_metrics() {
        for metric in scope.metrics() {
            let Some((kind, name)) = family_of(metric) else {
                continue;
            };
            let at = match index.get(&name) {
                Some(&at) if families[at].kind == kind => at,
                // The same name with another type would make the exposition invalid.
                Some(_) => continue,
                None => {
                    index.insert(name.clone(), families.len());
                    families.push(Family {
                        name: name.clone(),
                        kind,
                        help: metric.description().to_string(),
                        samples: String::new(),
                    });
                    families.len() - 1
                }
            };
            write_samples(&mut families[at].samples, &name, metric.data());
        }
    }
    let mut out = String::new();
    for family in families.iter().filter(|f| !f.samples.is_empty()) {
        if !family.help.is_empty() {
            let _ = writeln!(out, "# HELP {} {}", family.name, escape_help(&family.help));
        }
        let _ = writeln!(out, "# TYPE {} {}", family.name, family.kind);
        out.push_str(&family.samples);
    }
    write_target_info(&mut out, collected.resource());
    out
}

/// The Prometheus type and family name of a metric; `None` for what Prometheus cannot show.
fn family_of(metric: &Metric) -> Option<(&'static str, String)> {
    let base = metric_name(metric.name());
    let (kind, gauge_like) = match metric.data() {
        AggregatedMetrics::F64(data) => kind_of(data)?,
        AggregatedMetrics::U64(data) => kind_of(data)?,
        AggregatedMetrics::I64(data) => kind_of(data)?,
    };
    let mut name = with_unit(base, metric.unit(), gauge_like);
    if kind == "counter" && !name.ends_with("_total") {
        name.push_str("_total");
    }
    Some((kind, name))
}

/// (Prometheus type, whether it is gauge-like) of one aggregation.
fn kind_of<T>(data: &MetricData<T>) -> Option<(&'static str, bool)> {
    match data {
        MetricData::Gauge(_) => Some(("gauge", true)),
        MetricData::Sum(sum) if sum.temporality() != Temporality::Cumulative => None,
        MetricData::Sum(sum) if sum.is_monotonic() => Some(("counter", false)),
        MetricData::Sum(_) => Some(("gauge", true)),
        MetricData::Histogram(h) if h.temporality() == Temporality::Cumulative => {
            Some(("histogram", false))
        }
        MetricData::Histogram(_) | MetricData::ExponentialHistogram(_) => None,
    }
}

fn write_samples(out: &mut String, name: &str, data: &AggregatedMetrics) {
    match data {
        AggregatedMetrics::F64(data) => write_data(out, name, data, |v| f64_text(*v)),
        AggregatedMetrics::U64(data) => write_data(out, name, data, u64::to_string),
        AggregatedMetrics::I64(data) => write_data(out, name, data, i64::to_string),
    }
}

fn write_data<T>(out: &mut String, name: &str, data: &MetricData<T>, text: impl Fn(&T) -> String)
where
    T: Copy,
{
    match data {
        // A gauge's and a sum's points are one sample each.
        MetricData::Gauge(gauge) => gauge
            .data_points()
            .for_each(|p| write_value(out, name, p.attributes(), &text(&p.value()))),
        MetricData::Sum(sum) => sum
            .data_points()
            .for_each(|p| write_value(out, name, p.attributes(), &text(&p.value()))),
        MetricData::Histogram(histogram) => {
            for point in histogram.data_points() {
                let mut cumulative = 0u64;
                for (bound, count) in point.bounds().zip(point.bucket_counts()) {
                    cumulative += count;
                    let le = f64_text(bound);
                    let value = cumulative.to_string();
                    write_sample(out, name, "_bucket", point.attributes(), Some(&le), &value);
                }
                let count = point.count().to_string();
                write_sample(
                    out,
                    name,
                    "_bucket",
                    point.attributes(),
                    Some("+Inf"),
                    &count,
                );
                let sum = text(&point.sum());
                write_sample(out, name, "_sum", point.attributes(), None, &sum);
                write_sample(out, name, "_count", point.attributes(), None, &count);
            }
        }
        MetricData::ExponentialHistogram(_) => {}
    }
}

/// One plain sample (a gauge's or a sum's point).
fn write_value<'a>(
    out: &mut String,
    name: &str,
    attributes: impl Iterator<Item = &'a KeyValue>,
    value: &str,
) {
    write_sample(out, name, "", attributes, None, value);
}

fn write_sample<'a>(
    out: &mut String,
    name: &str,
    suffix: &str,
    attributes: impl Iterator<Item = &'a KeyValue>,
    le: Option<&str>,
    value: &str,
) {
    out.push_str(name);
    out.push_str(suffix);
    let mut labels = attributes
        .map(|kv| (label_name(kv.key.as_str()), label_value(&kv.value)))
        .collect::<Vec<_>>();
    // Sorted, so a series always reads the same; `le` last, as Prometheus clients write it.
    labels.sort();
    if let Some(le) = le {
        labels.push(("le".to_string(), le.to_string()));
    }
    write_labels(out, &labels);
    out.push(' ');
    out.push_str(value);
    out.push('\n');
}

fn write_labels(out: &mut String, labels: &[(String, String)]) {
    if labels.is_empty() {
        return;
    }
    out.push('{');
    for (i, (name, value)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(name);
        out.push_str("=\"");
        escape_label_value(out, value);
        out.push('"');
    }
    out.push('}');
}

/// `target_info`: the resource (service name, SDK, `OTEL_RESOURCE_ATTRIBUTES`) as labels.
fn write_target_info(out: &mut String, resource: &Resource) {
    if resource.is_empty() {
        return;
    }
    let mut labels: Vec<(String, String)> = resource
        .iter()
        .map(|(key, value)| (label_name(key.as_str()), label_value(value)))
        .collect();
    labels.sort();
    out.push_str("# HELP target_info Target metadata\n# TYPE target_info gauge\ntarget_info");
    write_labels(out, &labels);
    out.push_str(" 1\n");
}

/// A metric name Prometheus accepts: `[a-zA-Z_:][a-zA-Z0-9_:]*`, every other character (the
/// dots of OpenTelemetry names) replaced by `_`, runs of `_` made one.
pub fn metric_name(name: &str) -> String {
    sanitize(name, true)
}

/// A label name Prometheus accepts: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn label_name(name: &str) -> String {
    sanitize(name, false)
}

fn sanitize(name: &str, colons: bool) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        out.push('_');
    }
    for c in name.chars() {
        let allowed = c.is_ascii_alphanumeric() || c == '_' || (colons && c == ':');
        let c = if allowed { c } else { '_' };
        if c == '_' && out.ends_with('_') {
            continue;
        }
        out.push(c);
    }
    out
}

/// The name with its unit's suffix, unless it already ends with it. `{…}` annotations carry no
/// unit; `1` on a gauge is a ratio.
fn with_unit(mut name: String, unit: &str, gauge_like: bool) -> String {
    let suffix = match unit_suffix(unit) {
        Some(suffix) => suffix,
        None if unit == "1" && gauge_like => "ratio".to_string(),
        None => return name,
    };
    if !name.ends_with(&format!("_{suffix}")) {
        name.push('_');
        name.push_str(&suffix);
    }
    name
}

fn unit_suffix(unit: &str) -> Option<String> {
    // Annotations (`{token}`) are dropped, whatever surrounds them.
    let mut bare = String::new();
    let mut depth = 0;
    for c in unit.chars() {
        match c {
            '{' => depth += 1,
            '}' if depth > 0 => depth -= 1,
            _ if depth == 0 => bare.push(c),
            _ => {}
        }
    }
    let bare = bare.trim();
    if bare.is_empty() || bare == "1" {
        return None;
    }
    let (per, over) = match bare.split_once('/') {
        Some((per, over)) => (per, Some(over)),
        None => (bare, None),
    };
    let mut suffix = unit_word(per).to_string();
    if let Some(over) = over {
        suffix.push_str("_per_");
        suffix.push_str(per_unit_word(over));
    }
    Some(metric_name(&suffix).trim_matches('_').to_string()).filter(|s| !s.is_empty())
}

fn unit_word(unit: &str) -> &str {
    match unit {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "%" => "percent",
        other => other,
    }
}

fn per_unit_word(unit: &str) -> &str {
    match unit {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        other => other,
    }
}

fn label_value(value: &Value) -> String {
    value.as_str().into_owned()
}

fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A float as Prometheus writes it (`+Inf`, `-Inf`, `NaN`, else the shortest exact decimal).
fn f64_text(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v == f64::INFINITY {
        "+Inf".to_string()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        v.to_string()
    }
}
