//! The scaling curves as SVG charts: one chart per curve, drawn from
//! lb-bench's results (the JSON object it prints last) by key alone, so a
//! saved run can be drawn again without measuring.
//!
//! [`CURVES`] says which keys make which chart; [`extract`] turns a result
//! map into the points to draw and the points that cannot be drawn;
//! [`render`] draws one chart into a string; [`write_all`] writes the files.
//!
//! plotters runs with its SVG backend and without a font backend: text goes
//! into the SVG as `<text>` elements for the viewer to set, and plotters
//! sizes it with a built-in estimate, so nothing beyond Rust crates is needed
//! to build it.

use std::path::{Path, PathBuf};

use plotters::{
    coord::{
        Shift,
        ranged1d::{AsRangedCoord, ValueFormatter},
    },
    prelude::*,
    style::text_anchor::{HPos, Pos, VPos},
};
use serde_json::{Map, Value};

/// A chart's size in pixels.
const SIZE: (u32, u32) = (960, 600);
/// Header lines wrap at about this many characters: the width of the chart
/// in a 15 px sans-serif font.
const WRAP: usize = 120;

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("creating the plot directory {dir}: {source}")]
    CreateDir { dir: PathBuf, source: std::io::Error },
    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("drawing {file}: {message}")]
    Draw { file: &'static str, message: String },
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} has no line holding a JSON object (lb-bench --json prints one last)")]
    NoResults { path: PathBuf },
}

/// How an axis maps values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    Linear,
    Log,
}

/// What a series is, which decides how it looks: lb's own figures stand out
/// (solid, filled markers); what a user would otherwise run and the floor
/// are drawn dashed with open markers, so the eye finds lb first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    /// lb itself.
    Lb,
    /// The same work minus what lb adds: the least any forwarder could cost.
    Floor,
    /// What a user would otherwise use: the kernel's LRU map, a bridge, nftables.
    Alternative,
}

/// One point on the x axis: the suffix its keys carry, where it sits, and
/// its tick label.
#[derive(Debug, Clone, Copy)]
pub struct Point {
    pub key: &'static str,
    pub x: f64,
    pub label: &'static str,
}

/// One line on a chart: `key` holds `{x}` where the point's key suffix goes.
#[derive(Debug, Clone, Copy)]
pub struct Series {
    pub label: &'static str,
    pub key: &'static str,
    pub look: Look,
}

/// A figure shown as text under the title: a single key, or one value per
/// point when `key` holds `{x}`.
#[derive(Debug, Clone, Copy)]
pub struct Note {
    pub label: &'static str,
    pub key: &'static str,
    pub unit: &'static str,
}

/// One chart.
#[derive(Debug, Clone, Copy)]
pub struct Curve {
    /// The SVG's file name.
    pub file: &'static str,
    pub title: &'static str,
    pub x_label: &'static str,
    pub y_label: &'static str,
    pub x_scale: Scale,
    pub y_scale: Scale,
    pub points: &'static [Point],
    pub series: &'static [Series],
    pub notes: &'static [Note],
}

const fn point(key: &'static str, x: f64, label: &'static str) -> Point {
    Point { key, x, label }
}

const fn series(label: &'static str, key: &'static str, look: Look) -> Series {
    Series { label, key, look }
}

/// Active flows per CPU; the flow table is sized for each.
const FLOWS: &[Point] = &[
    point("1k", 1024.0, "1k"),
    point("64k", 65536.0, "64k"),
    point("1m", 1_048_576.0, "1M"),
    point("4m", 4_194_304.0, "4M"),
];
const VIPS: &[Point] = &[point("1", 1.0, "1"), point("100", 100.0, "100"), point("1000", 1000.0, "1000")];
/// Backends in one ring.
const BACKENDS: &[Point] = &[
    point("10", 10.0, "10"),
    point("100", 100.0, "100"),
    point("1000", 1000.0, "1000"),
    point("10000", 10000.0, "10000"),
];
/// Backends health-checked once a second.
const CHECKED: &[Point] =
    &[point("1000", 1000.0, "1000"), point("10000", 10000.0, "10000"), point("50000", 50000.0, "50000")];
const INSTANCES: &[Point] = &[point("1", 1.0, "1"), point("10", 10.0, "10"), point("100", 100.0, "100")];
const FRAME_BYTES: &[Point] = &[point("64", 64.0, "64"), point("512", 512.0, "512"), point("1500", 1500.0, "1500")];

/// Every chart `--plot` draws, with the keys lb-bench's parts write.
pub const CURVES: &[Curve] = &[
    Curve {
        file: "flows_hit.svg",
        title: "A packet of a known flow: cost per packet as active flows grow",
        x_label: "active flows per CPU (log scale; the flow table sized for them, visited in random order)",
        y_label: "ns per packet (BPF_PROG_TEST_RUN)",
        x_scale: Scale::Log,
        y_scale: Scale::Linear,
        points: FLOWS,
        series: &[
            series("lb: flow table hit", "fastpath_hit_ns_{x}", Look::Lb),
            series("kernel LRU_PERCPU_HASH map: hit", "lrumap_hit_ns_{x}", Look::Alternative),
            series("floor: the flow selection alone", "flows_floor_ns_{x}", Look::Floor),
        ],
        notes: &[
            Note { label: "memory per flow and CPU: lb", key: "flow_bytes_per_flow", unit: " B" },
            Note { label: "kernel LRU map", key: "lrumap_bytes_per_flow", unit: " B" },
        ],
    },
    Curve {
        file: "flows_miss.svg",
        title: "A packet of a new flow: cost per packet as active flows grow (table full, so each insert replaces)",
        x_label: "active flows per CPU (log scale)",
        y_label: "ns per packet (BPF_PROG_TEST_RUN)",
        x_scale: Scale::Log,
        y_scale: Scale::Linear,
        points: FLOWS,
        series: &[
            series("lb: new flow", "fastpath_miss_ns_{x}", Look::Lb),
            series("kernel LRU_PERCPU_HASH map: miss + insert", "lrumap_miss_ns_{x}", Look::Alternative),
        ],
        notes: &[],
    },
    Curve {
        file: "vips.svg",
        title: "A flow table hit as VIPs grow",
        x_label: "VIPs (log scale)",
        y_label: "ns per packet (BPF_PROG_TEST_RUN)",
        x_scale: Scale::Log,
        y_scale: Scale::Linear,
        points: VIPS,
        series: &[series("lb: flow table hit", "fastpath_hit_ns_vips_{x}", Look::Lb)],
        notes: &[
            Note {
                label: "mean probe length of the VIP table (1 / 100 / 1000 VIPs)",
                key: "vip_probe_len_{x}",
                unit: "",
            },
            Note { label: "agent memory with 1000 VIPs of 100 backends", key: "agent_rss_mb_1000x100", unit: " MB" },
        ],
    },
    Curve {
        file: "ring_build.svg",
        title: "Building a Maglev ring and installing it, as backends grow",
        x_label: "backends (log scale)",
        y_label: "ms, build + install (log scale)",
        x_scale: Scale::Log,
        y_scale: Scale::Log,
        points: BACKENDS,
        series: &[
            series("lb: ring of 65537 slots", "ring_build_ms_{x}", Look::Lb),
            series("lb: ring of 655373 slots", "ring_build_ms_{x}_655373", Look::Lb),
        ],
        notes: &[],
    },
    Curve {
        file: "ring_failover.svg",
        title: "A backend fails its check: time until the ring without it is published",
        x_label: "backends (log scale)",
        y_label: "µs from the failed check to the ring published (log scale)",
        x_scale: Scale::Log,
        y_scale: Scale::Log,
        points: BACKENDS,
        series: &[series("lb: ring of 65537 slots", "backend_down_to_ring_us_{x}", Look::Lb)],
        notes: &[],
    },
    Curve {
        file: "healthcheck.svg",
        title: "Health-checking every backend once a second: the agent's CPU",
        x_label: "backends (log scale)",
        y_label: "agent CPU, % of one core",
        x_scale: Scale::Log,
        y_scale: Scale::Linear,
        points: CHECKED,
        series: &[
            series("lb: half-open checks (tcp-half-open)", "healthcheck_cpu_pct_{x}", Look::Lb),
            series("lb: connect checks (tcp)", "healthcheck_connect_cpu_pct_{x}", Look::Lb),
        ],
        notes: &[],
    },
    Curve {
        file: "healthcheck_per_check.svg",
        title: "Health checks: the agent's CPU per check (flat means linear in backends)",
        x_label: "backends checked once a second (log scale)",
        y_label: "agent CPU µs per check",
        x_scale: Scale::Log,
        y_scale: Scale::Linear,
        points: CHECKED,
        series: &[
            series("lb: half-open checks (tcp-half-open)", "healthcheck_us_per_check_{x}", Look::Lb),
            series("lb: connect checks (tcp)", "healthcheck_connect_us_per_check_{x}", Look::Lb),
        ],
        notes: &[],
    },
    Curve {
        file: "vrrp.svg",
        title: "VRRP instances advertising every 100 ms: the agent's CPU",
        x_label: "VRRP instances (log scale)",
        y_label: "agent CPU, % of one core",
        x_scale: Scale::Log,
        y_scale: Scale::Linear,
        points: INSTANCES,
        series: &[series("lb: VRRP, 100 ms adverts", "vrrp_cpu_pct_{x}", Look::Lb)],
        notes: &[],
    },
    Curve {
        file: "frames.svg",
        title: "Forwarding rate on the veth testbed by frame size (the director's receive on one queue)",
        x_label: "frame bytes",
        y_label: "million frames per second (median)",
        x_scale: Scale::Linear,
        y_scale: Scale::Linear,
        points: FRAME_BYTES,
        series: &[
            series("lb", "veth_mpps_lb_{x}", Look::Lb),
            series("floor: bare XDP redirect", "veth_mpps_floor_{x}", Look::Floor),
            series("Linux bridge", "veth_mpps_bridge_{x}", Look::Alternative),
            series("nftables netdev rule", "veth_mpps_nft_{x}", Look::Alternative),
        ],
        notes: &[],
    },
    Curve {
        file: "frames_mq.svg",
        title: "Forwarding rate on the veth testbed by frame size (the director's receive spread over both CPUs)",
        x_label: "frame bytes",
        y_label: "million frames per second (median)",
        x_scale: Scale::Linear,
        y_scale: Scale::Linear,
        points: FRAME_BYTES,
        series: &[
            series("lb", "veth_mpps_lb_mq_{x}", Look::Lb),
            series("floor: bare XDP redirect", "veth_mpps_floor_mq_{x}", Look::Floor),
            series("Linux bridge", "veth_mpps_bridge_mq_{x}", Look::Alternative),
            series("nftables netdev rule", "veth_mpps_nft_mq_{x}", Look::Alternative),
        ],
        notes: &[],
    },
];

/// Why a point is not on its chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Why {
    /// The key is null: its part ran without measuring it, or did not run.
    NotMeasured,
    /// The results have no such key.
    Absent,
    /// The key holds something other than a number.
    NotANumber,
    /// Zero or negative, which a log axis cannot show.
    NotPositive,
}

impl Why {
    fn text(self) -> &'static str {
        match self {
            Self::NotMeasured => "not measured",
            Self::Absent => "absent from the results",
            Self::NotANumber => "not a number",
            Self::NotPositive => "zero or less, off the log axis",
        }
    }
}

/// A figure a chart could not show.
#[derive(Debug, Clone, PartialEq)]
pub struct Missing {
    /// The series or note it belongs to.
    pub what: &'static str,
    /// The x point's label; empty for a note's single key.
    pub at: &'static str,
    pub key: String,
    pub why: Why,
}

/// A chart's data, read from a result map.
#[derive(Debug, Clone, PartialEq)]
pub struct Extracted {
    /// Per series of the curve, in order: the (x, y) points present.
    pub series: Vec<Vec<(f64, f64)>>,
    /// Per note of the curve, in order: the text to show.
    pub notes: Vec<String>,
    pub missing: Vec<Missing>,
}

impl Extracted {
    /// Whether there is nothing to draw.
    pub fn is_empty(&self) -> bool {
        self.series.iter().all(Vec::is_empty)
    }
}

/// The key of `pattern` at `point`.
fn key_at(pattern: &str, point: &Point) -> String {
    pattern.replace("{x}", point.key)
}

/// The number under `key`, or why there is none.
fn number(results: &Map<String, Value>, key: &str) -> Result<f64, Why> {
    match results.get(key) {
        None => Err(Why::Absent),
        Some(Value::Null) => Err(Why::NotMeasured),
        Some(v) => v.as_f64().filter(|x| x.is_finite()).ok_or(Why::NotANumber),
    }
}

/// Every key the charts read.
pub fn keys() -> Vec<String> {
    let mut keys = Vec::new();
    for c in CURVES {
        let patterns = c.series.iter().map(|s| s.key).chain(c.notes.iter().map(|n| n.key));
        for p in patterns {
            if p.contains("{x}") {
                keys.extend(c.points.iter().map(|pt| key_at(p, pt)));
            } else {
                keys.push(p.to_owned());
            }
        }
    }
    keys
}

/// What `curve` can show from `results`, and what it cannot.
pub fn extract(curve: &Curve, results: &Map<String, Value>) -> Extracted {
    let mut missing = Vec::new();
    let series = curve
        .series
        .iter()
        .map(|s| {
            let mut points = Vec::new();
            for pt in curve.points {
                let key = key_at(s.key, pt);
                match number(results, &key) {
                    Ok(y) if curve.y_scale == Scale::Log && y <= 0.0 => {
                        missing.push(Missing { what: s.label, at: pt.label, key, why: Why::NotPositive });
                    }
                    Ok(y) => points.push((pt.x, y)),
                    Err(why) => missing.push(Missing { what: s.label, at: pt.label, key, why }),
                }
            }
            points
        })
        .collect();
    let notes = curve
        .notes
        .iter()
        .map(|n| {
            let points: &[Point] =
                if n.key.contains("{x}") { curve.points } else { &[Point { key: "", x: 0.0, label: "" }] };
            let values: Vec<String> = points
                .iter()
                .map(|pt| {
                    let key = key_at(n.key, pt);
                    match number(results, &key) {
                        Ok(v) => format!("{}{}", figure(v), n.unit),
                        Err(why) => {
                            missing.push(Missing { what: n.label, at: pt.label, key, why });
                            "?".to_owned()
                        }
                    }
                })
                .collect();
            format!("{}: {}", n.label, values.join(" / "))
        })
        .collect();
    Extracted { series, notes, missing }
}

/// A figure with three significant digits, without trailing zeros.
fn figure(v: f64) -> String {
    let decimals = if v == 0.0 { 0 } else { (2 - v.abs().log10().floor() as i32).clamp(0, 6) as usize };
    let s = format!("{v:.decimals$}");
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_owned() } else { s }
}

/// The missing figures in a sentence per reason: "not measured: lb at 4M;
/// kernel LRU map at 1M, 4M".
pub fn describe_missing(missing: &[Missing]) -> Vec<String> {
    let mut whys: Vec<Why> = missing.iter().map(|m| m.why).collect();
    whys.sort();
    whys.dedup();
    whys.into_iter()
        .map(|why| {
            let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
            for m in missing.iter().filter(|m| m.why == why) {
                match groups.iter_mut().find(|(what, _)| *what == m.what) {
                    Some((_, ats)) => ats.push(m.at),
                    None => groups.push((m.what, vec![m.at])),
                }
            }
            let parts: Vec<String> = groups
                .into_iter()
                .map(|(what, ats)| {
                    let ats: Vec<&str> = ats.into_iter().filter(|a| !a.is_empty()).collect();
                    if ats.is_empty() { what.to_owned() } else { format!("{what} at {}", ats.join(", ")) }
                })
                .collect();
            format!("{}: {}", why.text(), parts.join("; "))
        })
        .collect()
}

/// `text` broken at spaces into lines of at most `width` characters (a
/// longer word stands alone). Written out rather than taken from a wrapping
/// crate: a few header lines of plain words need nothing more.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// A tick label: the point's own label where there is one, else the value.
fn tick(points: &[Point], v: f64) -> String {
    points.iter().find(|p| (p.x - v).abs() <= v.abs() * 1e-9).map_or_else(|| figure(v), |p| p.label.to_owned())
}

/// lb's series in strong colours, the alternatives in muted ones, the floor
/// in grey.
fn colour(look: Look, nth: usize) -> RGBColor {
    const LB: [RGBColor; 3] = [RGBColor(0x1f, 0x5f, 0xbf), RGBColor(0xd6, 0x27, 0x28), RGBColor(0x7b, 0x3f, 0xa0)];
    const ALTERNATIVE: [RGBColor; 2] = [RGBColor(0x2c, 0x9c, 0x4a), RGBColor(0xc0, 0x7a, 0x12)];
    match look {
        Look::Lb => LB[nth % LB.len()],
        Look::Alternative => ALTERNATIVE[nth % ALTERNATIVE.len()],
        Look::Floor => RGBColor(0x60, 0x60, 0x60),
    }
}

/// The curve's chart as an SVG document. `data` is [`extract`]'s answer for
/// the same curve and must not be empty.
pub fn render(curve: &Curve, data: &Extracted) -> Result<String, PlotError> {
    let err = |e: &dyn std::fmt::Display| PlotError::Draw { file: curve.file, message: e.to_string() };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut header: Vec<(String, RGBColor)> = Vec::new();
        // The notes on one line where they fit, else a line (or more) each.
        let joined = data.notes.join("; ");
        let notes = if joined.chars().count() <= WRAP { vec![joined] } else { data.notes.clone() };
        for n in notes.iter().filter(|n| !n.is_empty()) {
            header.extend(wrap(n, WRAP).into_iter().map(|l| (l, RGBColor(0x30, 0x30, 0x30))));
        }
        for m in describe_missing(&data.missing) {
            header.extend(wrap(&m, WRAP).into_iter().map(|l| (l, RGBColor(0xa0, 0x10, 0x10))));
        }
        let header_px = 44 + 18 * header.len() as u32;
        let (top, body) = root.split_vertically(header_px);
        let centre = Pos::new(HPos::Center, VPos::Top);
        let title = TextStyle::from(("sans-serif", 22).into_font().style(FontStyle::Bold)).pos(centre);
        top.draw_text(curve.title, &title, (SIZE.0 as i32 / 2, 12)).map_err(|e| err(&e))?;
        for (i, (line, c)) in header.iter().enumerate() {
            let style = TextStyle::from(("sans-serif", 15).into_font()).color(c).pos(centre);
            top.draw_text(line, &style, (SIZE.0 as i32 / 2, 44 + 18 * i as i32)).map_err(|e| err(&e))?;
        }
        let xs: Vec<f64> = curve.points.iter().map(|p| p.x).collect();
        let (x_lo, x_hi) = xs.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        let ys = data.series.iter().flatten().map(|&(_, y)| y);
        let (y_lo, y_hi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), y| (lo.min(y), hi.max(y)));
        // Room above the highest point for the legend.
        match (curve.x_scale, curve.y_scale) {
            (Scale::Log, Scale::Log) => {
                draw(&body, curve, data, (x_lo / 1.6..x_hi * 1.6).log_scale().with_key_points(xs), log_y(y_lo, y_hi))
            }
            (Scale::Log, Scale::Linear) => draw(
                &body,
                curve,
                data,
                (x_lo / 1.6..x_hi * 1.6).log_scale().with_key_points(xs),
                0.0..linear_top(y_hi),
            ),
            (Scale::Linear, Scale::Log) => draw(&body, curve, data, 0.0..x_hi * 1.08, log_y(y_lo, y_hi)),
            (Scale::Linear, Scale::Linear) => draw(&body, curve, data, 0.0..x_hi * 1.08, 0.0..linear_top(y_hi)),
        }?;
        root.present().map_err(|e| err(&e))?;
    }
    Ok(svg)
}

/// A log y axis from the decade below the lowest point to well above the
/// highest (room for the legend), ticked at 1, 2 and 5 of each decade: with
/// ticks at decades alone, a curve within one decade would have none.
fn log_y(
    y_lo: f64,
    y_hi: f64,
) -> impl AsRangedCoord<Value = f64, CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>> {
    let (lo, hi) = (10f64.powf(y_lo.log10().floor()), y_hi * 6.0);
    let mut ticks = Vec::new();
    let mut decade = lo;
    while decade <= hi {
        ticks.extend([1.0, 2.0, 5.0].iter().map(|m| m * decade).filter(|t| *t <= hi));
        decade *= 10.0;
    }
    (lo..hi).log_scale().with_key_points(ticks)
}

/// The top of a linear y axis starting at zero: room above the highest
/// point for the legend.
fn linear_top(y_hi: f64) -> f64 {
    if y_hi > 0.0 { y_hi * 1.45 } else { 1.0 }
}

fn draw<X, Y>(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    curve: &Curve,
    data: &Extracted,
    x: X,
    y: Y,
) -> Result<(), PlotError>
where
    X: AsRangedCoord<Value = f64>,
    X::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let err = |e: &dyn std::fmt::Display| PlotError::Draw { file: curve.file, message: e.to_string() };
    let mut chart = ChartBuilder::on(area)
        .margin_left(16)
        .margin_right(28)
        .margin_bottom(12)
        .x_label_area_size(56)
        .y_label_area_size(78)
        .build_cartesian_2d(x, y)
        .map_err(|e| err(&e))?;
    let x_fmt = |v: &f64| tick(curve.points, *v);
    let y_fmt = |v: &f64| figure(*v);
    chart
        .configure_mesh()
        .x_desc(curve.x_label)
        .y_desc(curve.y_label)
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .axis_desc_style(("sans-serif", 16))
        .label_style(("sans-serif", 14))
        .max_light_lines(1)
        .light_line_style(RGBColor(0xf2, 0xf2, 0xf2))
        .bold_line_style(RGBColor(0xd8, 0xd8, 0xd8))
        .draw()
        .map_err(|e| err(&e))?;
    let mut nth = [0usize; 3];
    for (s, points) in curve.series.iter().zip(&data.series) {
        let look_index = s.look as usize;
        let c = colour(s.look, nth[look_index]);
        nth[look_index] += 1;
        let label = if points.is_empty() { format!("{} (not measured)", s.label) } else { s.label.to_owned() };
        let style = Style::of(s.look);
        let line = ShapeStyle::from(c).stroke_width(style.width);
        for run in runs(curve.points, points) {
            match style.dash {
                None => chart.draw_series(LineSeries::new(run, line)),
                Some((dash, gap)) => chart.draw_series(DashedLineSeries::new(run, dash, gap, line)),
            }
            .map_err(|e| err(&e))?;
        }
        let markers = points.iter().map(|&p| {
            EmptyElement::at(p)
                + Circle::new((0, 0), style.dot, c.filled())
                + PathElement::new(style.outline.clone(), line)
        });
        chart.draw_series(markers).map_err(|e| err(&e))?.label(label).legend(move |(x, y)| {
            // A stretch of the line (two pieces, so a dashed one shows its
            // gap) with the marker in the middle.
            let line = ShapeStyle::from(c).stroke_width(style.width);
            let outline: Vec<(i32, i32)> = style.outline.iter().map(|&(dx, dy)| (12 + dx, dy)).collect();
            EmptyElement::at((x, y))
                + PathElement::new(vec![(0, 0), (style.legend_gap.0, 0)], line)
                + PathElement::new(vec![(style.legend_gap.1, 0), (24, 0)], line)
                + Circle::new((12, 0), style.dot, c.filled())
                + PathElement::new(outline, line)
        });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(RGBColor(0xaa, 0xaa, 0xaa))
        .label_font(("sans-serif", 15))
        .draw()
        .map_err(|e| err(&e))?;
    Ok(())
}

/// A series' points in stretches without a missing point, so that its line
/// is broken where a point is missing rather than drawn across the gap.
fn runs(all: &[Point], present: &[(f64, f64)]) -> Vec<Vec<(f64, f64)>> {
    let mut runs = vec![Vec::new()];
    for pt in all {
        match present.iter().find(|(x, _)| *x == pt.x) {
            Some(&p) => runs.last_mut().expect("never empty").push(p),
            None => runs.push(Vec::new()),
        }
    }
    runs.retain(|r| !r.is_empty());
    runs
}

/// How a series is drawn. Every look is the same few shapes (a filled dot,
/// an open outline, plain or dashed lines) so that one element type serves
/// them all: plotters' boxed elements would need a `'static` backend, and
/// the SVG backend borrows the string it writes into.
struct Style {
    width: u32,
    /// Dash and gap lengths; none for a solid line.
    dash: Option<(u32, u32)>,
    /// The radius of a filled dot at each point; 0 for none.
    dot: i32,
    /// An open marker around each point, in pixels from it.
    outline: Vec<(i32, i32)>,
    /// The legend's stretch of line runs from 0 to 24 px, broken from
    /// here to there so a dashed line shows its gap around the marker.
    legend_gap: (i32, i32),
}

impl Style {
    fn of(look: Look) -> Self {
        match look {
            Look::Lb => Self { width: 3, dash: None, dot: 5, outline: vec![], legend_gap: (12, 12) },
            // An open triangle.
            Look::Alternative => Self {
                width: 2,
                dash: Some((10, 6)),
                dot: 0,
                outline: vec![(0, -7), (6, 4), (-6, 4), (0, -7)],
                legend_gap: (5, 19),
            },
            // An x, drawn in one stroke through its centre.
            Look::Floor => Self {
                width: 2,
                dash: Some((3, 5)),
                dot: 0,
                outline: vec![(-5, -5), (5, 5), (0, 0), (5, -5), (-5, 5)],
                legend_gap: (3, 21),
            },
        }
    }
}

/// What became of one chart.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Written, leaving out `missing`.
    Written { path: PathBuf, missing: Vec<Missing> },
    /// Not one point of it could be drawn, for the reasons in `missing`.
    Skipped { file: &'static str, missing: Vec<Missing> },
}

impl Outcome {
    /// One line for the bench's output.
    pub fn describe(&self) -> String {
        match self {
            Self::Written { path, missing } if missing.is_empty() => format!("  wrote {}", path.display()),
            Self::Written { path, missing } => {
                format!("  wrote {}, leaving out: {}", path.display(), describe_missing(missing).join("; "))
            }
            Self::Skipped { file, missing } => {
                format!("  skipped {file}, not one point to draw: {}", describe_missing(missing).join("; "))
            }
        }
    }
}

/// Writes one SVG per curve with data into `dir` (created if need be).
pub fn write_all(results: &Map<String, Value>, dir: &Path) -> Result<Vec<Outcome>, PlotError> {
    std::fs::create_dir_all(dir).map_err(|source| PlotError::CreateDir { dir: dir.to_owned(), source })?;
    let mut outcomes = Vec::new();
    for curve in CURVES {
        let data = extract(curve, results);
        if data.is_empty() {
            outcomes.push(Outcome::Skipped { file: curve.file, missing: data.missing });
            continue;
        }
        let svg = render(curve, &data)?;
        let path = dir.join(curve.file);
        std::fs::write(&path, svg).map_err(|source| PlotError::Write { path: path.clone(), source })?;
        outcomes.push(Outcome::Written { path, missing: data.missing });
    }
    Ok(outcomes)
}

/// Draws the charts into `dir`, saying what became of each.
pub fn plot(results: &Map<String, Value>, dir: &Path, say: &mut impl FnMut(String)) -> Result<(), PlotError> {
    say(format!("== plots of the scaling curves into {}", dir.display()));
    for outcome in write_all(results, dir)? {
        say(outcome.describe());
    }
    Ok(())
}

/// The results in `text`: its last line that is a JSON object, so the whole
/// of lb-bench's output will do as well as the JSON line alone.
pub fn last_json_object(text: &str) -> Option<Map<String, Value>> {
    text.lines().rev().find_map(|line| match serde_json::from_str::<Value>(line.trim()) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    })
}

/// The results saved in the file at `path` (see [`last_json_object`]).
pub fn read_results(path: &Path) -> Result<Map<String, Value>, PlotError> {
    let text = std::fs::read_to_string(path).map_err(|source| PlotError::Read { path: path.to_owned(), source })?;
    last_json_object(&text).ok_or_else(|| PlotError::NoResults { path: path.to_owned() })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// `pattern` with `{a,b}` groups expanded, as curve-keys lists them.
    fn expand(pattern: &str) -> Vec<String> {
        let Some(open) = pattern.find('{') else { return vec![pattern.to_owned()] };
        let close = open + pattern[open..].find('}').expect("closing brace");
        pattern[open + 1..close]
            .split(',')
            .flat_map(|alt| expand(&format!("{}{alt}{}", &pattern[..open], &pattern[close + 1..])))
            .collect()
    }

    /// The keys the bench parts write for the curves, in the words of their
    /// specification.
    fn specified_keys() -> BTreeSet<String> {
        [
            "flows_floor_ns_{1k,64k,1m,4m}",
            "fastpath_hit_ns_{1k,64k,1m,4m}",
            "fastpath_miss_ns_{1k,64k,1m,4m}",
            "lrumap_hit_ns_{1k,64k,1m,4m}",
            "lrumap_miss_ns_{1k,64k,1m,4m}",
            "flow_bytes_per_flow",
            "lrumap_bytes_per_flow",
            "fastpath_hit_ns_vips_{1,100,1000}",
            "vip_probe_len_{1,100,1000}",
            "agent_rss_mb_1000x100",
            "ring_build_ms_{10,100,1000,10000}",
            "ring_build_ms_{10,100,1000,10000}_655373",
            "backend_down_to_ring_us_{10,100,1000,10000}",
            "healthcheck_cpu_pct_{1000,10000,50000}",
            "healthcheck_connect_cpu_pct_{1000,10000,50000}",
            "healthcheck_us_per_check_{1000,10000,50000}",
            "healthcheck_connect_us_per_check_{1000,10000,50000}",
            "vrrp_cpu_pct_{1,10,100}",
            "veth_mpps_{floor,lb,bridge,nft}_{64,512,1500}",
            "veth_mpps_{floor,lb,bridge,nft}_mq_{64,512,1500}",
        ]
        .iter()
        .flat_map(|p| expand(p))
        .collect()
    }

    /// Every key with a positive value that differs from key to key.
    fn full_results() -> Map<String, Value> {
        keys().into_iter().enumerate().map(|(i, k)| (k, Value::from(1.5 + i as f64 * 0.75))).collect()
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("lb-plot-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    /// Removes the directory when the test ends, passing or not.
    struct Cleanup(PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn the_charts_read_exactly_the_specified_keys() {
        let read: BTreeSet<String> = keys().into_iter().collect();
        assert_eq!(read, specified_keys());
        assert_eq!(read.len(), keys().len(), "no key on two charts");
    }

    #[test]
    fn file_names_are_the_specified_ones() {
        let files: Vec<&str> = CURVES.iter().map(|c| c.file).collect();
        assert_eq!(
            files,
            [
                "flows_hit.svg",
                "flows_miss.svg",
                "vips.svg",
                "ring_build.svg",
                "ring_failover.svg",
                "healthcheck.svg",
                "healthcheck_per_check.svg",
                "vrrp.svg",
                "frames.svg",
                "frames_mq.svg"
            ]
        );
    }

    #[test]
    fn every_chart_is_written_from_full_results() {
        let dir = temp_dir("full");
        let _cleanup = Cleanup(dir.clone());
        let outcomes = write_all(&full_results(), &dir).unwrap();
        assert_eq!(outcomes.len(), CURVES.len());
        for (curve, outcome) in CURVES.iter().zip(&outcomes) {
            let Outcome::Written { path, missing } = outcome else { panic!("{} skipped", curve.file) };
            assert!(missing.is_empty(), "{}: {missing:?}", curve.file);
            let svg = std::fs::read_to_string(path).unwrap();
            assert!(svg.starts_with("<svg"), "{}", curve.file);
            assert!(svg.trim_end().ends_with("</svg>"), "{}", curve.file);
            assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
            let escaped =
                |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('\'', "&apos;");
            assert!(svg.contains(&escaped(curve.title)), "{} lacks its title", curve.file);
            assert!(svg.contains(&escaped(curve.x_label)), "{} lacks its x label", curve.file);
            assert!(svg.contains(&escaped(curve.y_label)), "{} lacks its y label", curve.file);
            for s in curve.series {
                assert!(svg.contains(&escaped(s.label)), "{} lacks the legend entry {}", curve.file, s.label);
            }
            assert!(!svg.contains("not measured"), "{}", curve.file);
        }
        let flows = std::fs::read_to_string(dir.join("flows_hit.svg")).unwrap();
        assert!(flows.contains(">\n4M\n<") || flows.contains(">4M<"), "the x ticks carry the points' labels");
    }

    #[test]
    fn missing_figures_are_left_out_and_said() {
        let mut results = full_results();
        results.insert("lrumap_hit_ns_4m".into(), Value::Null);
        results.insert("lrumap_hit_ns_1m".into(), Value::Null);
        results.remove("fastpath_hit_ns_64k");
        results.insert("ring_build_ms_10_655373".into(), Value::from(0.0));
        results.insert("veth_mpps_nft_64".into(), Value::from("fast"));
        results.insert("flow_bytes_per_flow".into(), Value::Null);
        // Nothing at all for VRRP.
        for k in ["vrrp_cpu_pct_1", "vrrp_cpu_pct_10", "vrrp_cpu_pct_100"] {
            results.insert(k.into(), Value::Null);
        }
        let dir = temp_dir("missing");
        let _cleanup = Cleanup(dir.clone());
        let outcomes = write_all(&results, &dir).unwrap();
        let by_file = |f: &str| outcomes.iter().zip(CURVES).find(|(_, c)| c.file == f).unwrap().0.clone();

        let Outcome::Written { path, missing } = by_file("flows_hit.svg") else { panic!("flows_hit skipped") };
        let keys: Vec<(&str, Why)> = missing.iter().map(|m| (m.key.as_str(), m.why)).collect();
        assert_eq!(
            keys,
            [
                ("fastpath_hit_ns_64k", Why::Absent),
                ("lrumap_hit_ns_1m", Why::NotMeasured),
                ("lrumap_hit_ns_4m", Why::NotMeasured),
                ("flow_bytes_per_flow", Why::NotMeasured)
            ]
        );
        let svg = std::fs::read_to_string(path).unwrap();
        assert!(svg.contains("not measured: kernel LRU_PERCPU_HASH map: hit at 1M, 4M; memory per flow and CPU: lb"));
        assert!(svg.contains("absent from the results: lb: flow table hit at 64k"));

        let Outcome::Written { missing, .. } = by_file("ring_build.svg") else { panic!("ring_build skipped") };
        assert_eq!(missing[0].why, Why::NotPositive);
        let Outcome::Written { missing, .. } = by_file("frames.svg") else { panic!("frames skipped") };
        assert_eq!(missing[0].why, Why::NotANumber);

        assert!(matches!(by_file("vrrp.svg"), Outcome::Skipped { .. }));
        assert!(!dir.join("vrrp.svg").exists());
        assert!(by_file("vrrp.svg").describe().contains("skipped vrrp.svg"));
        assert!(by_file("frames.svg").describe().contains("not a number: nftables netdev rule at 64"));
    }

    #[test]
    fn a_series_without_points_stays_in_the_legend() {
        let mut results = full_results();
        for k in ["lrumap_miss_ns_1k", "lrumap_miss_ns_64k", "lrumap_miss_ns_1m", "lrumap_miss_ns_4m"] {
            results.insert(k.into(), Value::Null);
        }
        let curve = CURVES.iter().find(|c| c.file == "flows_miss.svg").unwrap();
        let svg = render(curve, &extract(curve, &results)).unwrap();
        assert!(svg.contains("kernel LRU_PERCPU_HASH map: miss + insert (not measured)"));
    }

    #[test]
    fn results_are_the_last_json_object_of_the_output() {
        let out = "== veth\n  lb 3.1 Mpps\n{\"a\": 1}\n{\"vrrp_cpu_pct_1\": 0.5}\nsome targets missed\n[1, 2]\n";
        let map = last_json_object(out).unwrap();
        assert_eq!(map.get("vrrp_cpu_pct_1"), Some(&Value::from(0.5)));
        assert!(last_json_object("no json here\n[1]\n").is_none());
    }

    #[test]
    fn figures_keep_three_significant_digits() {
        assert_eq!(figure(0.0), "0");
        assert_eq!(figure(12.345), "12.3");
        assert_eq!(figure(0.012345), "0.0123");
        assert_eq!(figure(1500.0), "1500");
        assert_eq!(figure(2.0), "2");
    }

    #[test]
    fn a_line_breaks_where_a_point_is_missing() {
        let present = [(1024.0, 1.0), (1_048_576.0, 3.0), (4_194_304.0, 4.0)];
        assert_eq!(runs(FLOWS, &present), [vec![(1024.0, 1.0)], vec![(1_048_576.0, 3.0), (4_194_304.0, 4.0)]]);
        assert!(runs(FLOWS, &[]).is_empty());
    }

    #[test]
    fn long_header_lines_wrap_at_spaces() {
        let lines = wrap("aaa bbb ccc ddd", 7);
        assert_eq!(lines, ["aaa bbb", "ccc ddd"]);
    }
}
