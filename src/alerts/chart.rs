//! The small burn-down picture of a digest, as PNG: mail clients show inline PNG, not SVG. The
//! same series as the status page's SVG ([`crate::domain::burndown`]): consumed (line and
//! area) to the instant, the projection (dotted) to the period end, the forecast's 80 % band
//! (P10–P90, a light tint clipped at the top) and its median (dashed) from the instant to the
//! period end, expected (dashed), granted (steps at each adjustment), a line at the instant.
//! No text: the mail says the figures.
//!
//! A few shapes rasterised into an RGBA buffer (segments stamped as squares along their
//! length, areas filled column by column), encoded by the `png` crate with fixed settings: the
//! same burn-down gives the same bytes.

use crate::domain::burndown::{BandPoint, BurnDown};
use crate::domain::time::{day_number, day_start, utc_date};
use jiff::tz::TimeZone;

/// Width of a digest's picture, pixels.
pub(crate) const WIDTH: u32 = 480;
/// Height of a digest's picture, pixels.
pub(crate) const HEIGHT: u32 = 160;

/// An sRGB colour, opaque.
type Rgb = [u8; 3];

const BACKGROUND: Rgb = [0xff, 0xff, 0xff];
const GRID: Rgb = [0xea, 0xee, 0xf2];
const AXIS: Rgb = [0x8c, 0x95, 0x9f];
/// The status page's colours: consumed and its projection, expected, granted.
pub(crate) const CONSUMED: Rgb = [0x1f, 0x6f, 0xeb];
pub(crate) const EXPECTED: Rgb = [0x59, 0x63, 0x6e];
pub(crate) const GRANTED: Rgb = [0xbc, 0x4c, 0x00];
const EXHAUSTION: Rgb = [0xcf, 0x22, 0x2e];
/// The forecast's median (the status page's `band-median`).
pub(crate) const BAND_MEDIAN: Rgb = [0x82, 0x50, 0xdf];
/// The forecast's band (P10–P90): the median's colour at 18 % over the background.
pub(crate) const BAND: Rgb = mix(BAND_MEDIAN, BACKGROUND, 0.18);

/// The area under consumed: its colour at 18 % over the background.
pub(crate) const CONSUMED_AREA: Rgb = mix(CONSUMED, BACKGROUND, 0.18);

const fn mix(a: Rgb, b: Rgb, share_of_a: f64) -> Rgb {
    const fn channel(x: u8, y: u8, s: f64) -> u8 {
        (x as f64 * s + y as f64 * (1.0 - s) + 0.5) as u8
    }
    [channel(a[0], b[0], share_of_a), channel(a[1], b[1], share_of_a), channel(a[2], b[2], share_of_a)]
}

/// A dash pattern along a line, in pixels: drawn for `on`, then blank for `off`.
#[derive(Clone, Copy)]
struct Dash {
    on: f64,
    off: f64,
}

const SOLID: Option<Dash> = None;

/// An RGBA image being drawn.
pub(crate) struct Canvas {
    width: u32,
    height: u32,
    rgba: Vec<u8>,
}

impl Canvas {
    /// A canvas filled with `background`.
    fn new(width: u32, height: u32, background: Rgb) -> Canvas {
        let mut rgba = Vec::with_capacity(width as usize * height as usize * 4);
        for _ in 0..width as usize * height as usize {
            rgba.extend_from_slice(&[background[0], background[1], background[2], 0xff]);
        }
        Canvas { width, height, rgba }
    }

    /// The colour at a pixel (tests).
    #[cfg(test)]
    fn at(&self, x: u32, y: u32) -> Rgb {
        let i = (y as usize * self.width as usize + x as usize) * 4;
        [self.rgba[i], self.rgba[i + 1], self.rgba[i + 2]]
    }

    /// Paint one pixel; outside the canvas, nothing.
    fn set(&mut self, x: i64, y: i64, c: Rgb) {
        if x < 0 || y < 0 || x >= self.width as i64 || y >= self.height as i64 {
            return;
        }
        let i = (y as usize * self.width as usize + x as usize) * 4;
        self.rgba[i..i + 3].copy_from_slice(&c);
    }

    /// Fill the pixels whose centres lie in `[x0, x1) × [y0, y1)`.
    fn fill_rect(&mut self, x0: f64, y0: f64, x1: f64, y1: f64, c: Rgb) {
        for y in px(y0.min(y1))..px(y0.max(y1)) {
            for x in px(x0.min(x1))..px(x0.max(x1)) {
                self.set(x, y, c);
            }
        }
    }

    /// A segment `width` pixels thick (a square stamped every quarter pixel along it), dashed
    /// or solid; `phase` is the length already drawn of the same dashed path, returned updated
    /// so that a dashed polyline keeps its rhythm across its corners.
    fn segment(&mut self, a: (f64, f64), b: (f64, f64), width: f64, c: Rgb, dash: Option<Dash>, phase: f64) -> f64 {
        let (dx, dy) = (b.0 - a.0, b.1 - a.1);
        let len = (dx * dx + dy * dy).sqrt();
        let steps = (len * 4.0).ceil().max(1.0) as i64;
        let half = width / 2.0;
        for i in 0..=steps {
            let f = i as f64 / steps as f64;
            if let Some(d) = dash {
                if (phase + f * len).rem_euclid(d.on + d.off) >= d.on {
                    continue;
                }
            }
            let (x, y) = (a.0 + f * dx, a.1 + f * dy);
            self.fill_rect(x - half, y - half, x + half, y + half, c);
        }
        phase + len
    }

    /// A polyline through `points`.
    fn polyline(&mut self, points: &[(f64, f64)], width: f64, c: Rgb, dash: Option<Dash>) {
        let mut phase = 0.0;
        for w in points.windows(2) {
            phase = self.segment(w[0], w[1], width, c, dash, phase);
        }
    }

    /// The area between the polyline `points` (x increasing) and the horizontal line `base`:
    /// every pixel column whose centre lies within the polyline's span, from the line to `base`.
    fn area_under(&mut self, points: &[(f64, f64)], base: f64, c: Rgb) {
        for w in points.windows(2) {
            let ((x0, y0), (x1, y1)) = (w[0], w[1]);
            if x1 <= x0 {
                continue;
            }
            for x in px(x0)..px(x1) {
                let cx = x as f64 + 0.5;
                let y = y0 + (y1 - y0) * (cx - x0) / (x1 - x0);
                for yy in px(y)..px(base) {
                    self.set(x, yy, c);
                }
            }
        }
    }

    /// The area between the polylines `upper` and `lower` (the same x, increasing; y down, so
    /// `upper` has the smaller y), cut to the rows `[top, bottom]`: every pixel column whose
    /// centre lies within their span, from one line to the other.
    fn area_between(&mut self, upper: &[(f64, f64)], lower: &[(f64, f64)], (top, bottom): (f64, f64), c: Rgb) {
        for (u, l) in upper.windows(2).zip(lower.windows(2)) {
            let ((x0, u0), (x1, u1), (l0, l1)) = (u[0], u[1], (l[0].1, l[1].1));
            if x1 <= x0 {
                continue;
            }
            for x in px(x0)..px(x1) {
                let f = (x as f64 + 0.5 - x0) / (x1 - x0);
                let (a, b) = ((u0 + (u1 - u0) * f).clamp(top, bottom), (l0 + (l1 - l0) * f).clamp(top, bottom));
                for yy in px(a)..px(b) {
                    self.set(x, yy, c);
                }
            }
        }
    }

    /// A filled disc.
    fn disc(&mut self, centre: (f64, f64), r: f64, c: Rgb) {
        for y in px(centre.1 - r)..px(centre.1 + r) {
            for x in px(centre.0 - r)..px(centre.0 + r) {
                let (dx, dy) = (x as f64 + 0.5 - centre.0, y as f64 + 0.5 - centre.1);
                if dx * dx + dy * dy <= r * r {
                    self.set(x, y, c);
                }
            }
        }
    }

    /// The image as PNG (8-bit RGBA, fixed compression and filter: same pixels, same bytes).
    fn png(&self) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, self.width, self.height);
            enc.set_color(png::ColorType::Rgba);
            enc.set_depth(png::BitDepth::Eight);
            enc.set_compression(png::Compression::Balanced);
            enc.set_filter(png::Filter::Paeth);
            // Writing into memory fails only on a wrong buffer length, which `new` rules out.
            let mut w = enc.write_header().expect("PNG header into memory");
            w.write_image_data(&self.rgba).expect("PNG data into memory");
        }
        out
    }
}

/// The first pixel whose centre is at or after `v` (pixel `i` covers `[i, i + 1)`).
fn px(v: f64) -> i64 {
    (v - 0.5).ceil() as i64
}

/// Where the plot sits in the picture: `[x0, x1] × [y0, y1]`, y down.
struct Frame {
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
}

/// Draw an allocation's burn-down on a `width × height` canvas.
pub(crate) fn draw(b: &BurnDown, width: u32, height: u32) -> Canvas {
    let mut c = Canvas::new(width, height, BACKGROUND);
    let f = Frame { x0: 6.0, x1: width as f64 - 6.0, y0: 8.0, y1: height as f64 - 6.0 };
    let (t0, t1) = (b.start_s as f64, b.end_s.max(b.start_s + 1) as f64);
    let mut ymax: f64 = 1.0;
    for p in &b.curve {
        ymax = ymax.max(p.granted_hours).max(p.expected_hours);
    }
    for d in &b.daily {
        ymax = ymax.max(d.cumulative_hours);
    }
    for p in &b.projection {
        ymax = ymax.max(p.hours);
    }
    // The forecast's median is in range, its band clipped at the top (as the status page).
    for p in &b.band {
        ymax = ymax.max(p.p50_hours);
    }
    let top = ymax * 1.08;
    let x = |t: f64| f.x0 + (t.clamp(t0, t1) - t0) / (t1 - t0) * (f.x1 - f.x0);
    let y = |v: f64| f.y1 - v.clamp(0.0, top) / top * (f.y1 - f.y0);
    // Grid: quarters of the largest figure.
    for q in 1..=4 {
        let yy = y(top * q as f64 / 4.0 / 1.08);
        c.segment((f.x0, yy), (f.x1, yy), 1.0, GRID, SOLID, 0.0);
    }
    // The forecast's band, under every line; its hours unclamped, the area cut to the frame.
    if b.band.len() >= 2 {
        let y_free = |v: f64| f.y1 - v.max(0.0) / top * (f.y1 - f.y0);
        let edge = |v: fn(&BandPoint) -> f64| b.band.iter().map(|p| (x(p.t as f64), y_free(v(p)))).collect::<Vec<_>>();
        c.area_between(&edge(|p| p.p90_hours), &edge(|p| p.p10_hours), (f.y0, f.y1), BAND);
    }
    // Consumed: area, then the line over it.
    if !b.daily.is_empty() {
        let mut line = vec![(x(t0), y(0.0))];
        line.extend(b.daily.iter().map(|d| (x(d.end_s as f64), y(d.cumulative_hours))));
        c.area_under(&line, f.y1, CONSUMED_AREA);
        c.polyline(&line, 2.0, CONSUMED, SOLID);
    }
    // The instant.
    if (b.start_s..=b.end_s).contains(&b.at_s) {
        let xx = x(b.at_s as f64);
        c.segment((xx, f.y0), (xx, f.y1), 1.0, AXIS, Some(Dash { on: 2.0, off: 2.0 }), 0.0);
    }
    let expected: Vec<(f64, f64)> = b.curve.iter().map(|p| (x(p.t as f64), y(p.expected_hours))).collect();
    c.polyline(&expected, 1.5, EXPECTED, Some(Dash { on: 6.0, off: 4.0 }));
    // Granted: a step at each adjustment.
    let mut granted = Vec::new();
    for (i, p) in b.curve.iter().enumerate() {
        if i > 0 {
            granted.push((x(p.t as f64), y(b.curve[i - 1].granted_hours)));
        }
        granted.push((x(p.t as f64), y(p.granted_hours)));
    }
    c.polyline(&granted, 2.0, GRANTED, SOLID);
    if b.band.len() >= 2 {
        let median: Vec<(f64, f64)> = b.band.iter().map(|p| (x(p.t as f64), y(p.p50_hours))).collect();
        c.polyline(&median, 2.0, BAND_MEDIAN, Some(Dash { on: 6.0, off: 3.0 }));
    }
    if let [p0, p1] = b.projection.as_slice() {
        c.polyline(&[(x(p0.t as f64), y(p0.hours)), (x(p1.t as f64), y(p1.hours))], 2.0, CONSUMED, Some(Dash { on: 2.0, off: 3.0 }));
    }
    if let Some(days) = b.allocation.projected_exhaustion_days {
        let t = b.at_s as f64 + days * 86400.0;
        if t <= t1 {
            c.disc((x(t), y(b.allocation.granted_hours.value())), 4.0, EXHAUSTION);
        }
    }
    // Axes last, over the areas, with a tick at each first of the month (UTC, as the page).
    c.segment((f.x0, f.y1), (f.x1, f.y1), 1.0, AXIS, SOLID, 0.0);
    c.segment((f.x0, f.y0), (f.x0, f.y1), 1.0, AXIS, SOLID, 0.0);
    let mut month = utc_date(b.start_s).first_of_month();
    loop {
        let t = day_start(day_number(month), &TimeZone::UTC);
        if t > b.end_s {
            break;
        }
        if t >= b.start_s {
            c.segment((x(t as f64), f.y1), (x(t as f64), f.y1 + 4.0), 1.0, AXIS, SOLID, 0.0);
        }
        match month.checked_add(jiff::Span::new().months(1)) {
            Ok(next) => month = next,
            Err(_) => break,
        }
    }
    c
}

/// An allocation's burn-down as a [`WIDTH`] × [`HEIGHT`] PNG.
pub(crate) fn burndown_png(b: &BurnDown) -> Vec<u8> {
    draw(b, WIDTH, HEIGHT).png()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::burndown::build;
    use crate::domain::forecast::{FanPoint, Forecast, Quantiles, LEVELS};
    use crate::domain::reconcile::{Profile, Status};
    use crate::domain::reconciliation::AllocationReport;
    use crate::domain::time::DayNumber;
    use std::collections::BTreeMap;

    /// 2026-01-01..2026-01-11 (10 days), 100 h granted, 15 h a day for 4 days: at the instant
    /// (the 5th, 00:00) 60 h consumed, 40 h expected; projected to 150 h at the end.
    fn burndown() -> BurnDown {
        burndown_with(None)
    }

    /// The same with a forecast whose fan has one point, the period end: P0 60 h and 7.5 h more
    /// a level, so P10 75 h, P50 135 h, P90 195 h.
    fn with_band() -> BurnDown {
        let end = Quantiles(std::array::from_fn(|l| 60.0 + 7.5 * l as f64));
        let at = crate::domain::time::day_start(day_number("2026-01-05".parse().unwrap()), &TimeZone::UTC);
        let t_end = crate::domain::time::day_start(day_number("2026-01-11".parse().unwrap()), &TimeZone::UTC);
        let fan = vec![FanPoint { t: t_end, consumed: end }];
        burndown_with(Some(Forecast { at, history_days: 4, history_weight: 1.0, exhaustion: Quantiles([f64::INFINITY; LEVELS]), end_consumed: end, fan }))
    }

    fn burndown_with(forecast: Option<Forecast>) -> BurnDown {
        let d = |s: &str| s.parse::<jiff::civil::Date>().unwrap();
        let report = AllocationReport { burn_rate_hours_per_day: 15.0, forecast, ..AllocationReport::example(100.0, 60.0, Status::OverPace) };
        let daily: BTreeMap<DayNumber, f64> = (0..4).map(|i| (day_number(d("2026-01-01")) + i, 15.0)).collect();
        let at = crate::domain::time::day_start(day_number(d("2026-01-05")), &TimeZone::UTC);
        build(&report, |_| 100.0, &Profile::linear(), &TimeZone::UTC, &daily, 0.0, at, (d("2026-01-01"), d("2026-01-11")))
    }

    #[test]
    fn the_picture_is_a_png_of_the_announced_size_and_the_same_bytes_every_time() {
        let bytes = burndown_png(&burndown());
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        let mut reader = png::Decoder::new(std::io::Cursor::new(&bytes)).read_info().unwrap();
        let info = reader.info();
        assert_eq!((info.width, info.height, info.color_type, info.bit_depth), (WIDTH, HEIGHT, png::ColorType::Rgba, png::BitDepth::Eight));
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        reader.next_frame(&mut buf).unwrap();
        assert_eq!(buf, draw(&burndown(), WIDTH, HEIGHT).rgba, "decodes to the pixels drawn");
        assert_eq!(bytes, burndown_png(&burndown()));
        assert!(bytes.len() < 16_000, "{} bytes", bytes.len());
    }

    #[test]
    fn lines_and_areas_land_where_the_figures_put_them() {
        let c = draw(&burndown(), WIDTH, HEIGHT);
        // The frame: x 6..474 over 10 days, y 154 (0 h) up to 8 (the projection's 150 h × 1.08).
        let x = |day: f64| 6.0 + day / 10.0 * 468.0;
        let y = |h: f64| 154.0 - h / (150.0 * 1.08) * 146.0;
        let at = |xf: f64, yf: f64| c.at(xf.floor() as u32, yf.floor() as u32);
        // Granted, flat at 100 h across the period.
        assert_eq!(at(x(8.0), y(100.0)), GRANTED);
        assert_eq!(at(x(1.5), y(100.0)), GRANTED);
        // Under consumed, before the instant: the area; on its line: the line.
        assert_eq!(at(x(2.5), y(10.0)), CONSUMED_AREA);
        assert_eq!(at(x(2.0), y(30.0)), CONSUMED);
        // Above the consumed line before the instant, below granted: background.
        assert_eq!(at(x(2.0), y(70.0)), BACKGROUND);
        // After the instant no area: the projection is a dotted line, not filled.
        assert_eq!(at(x(8.0), y(20.0)), BACKGROUND);
        // Expected (dashed) passes through 80 h on day 8, the projection through 120 h: some
        // pixel of each spot is drawn in its colour.
        let near = |day: f64, h: f64| -> Vec<Rgb> { (-2..=2).flat_map(|dx| (-2..=2).map(move |dy| (dx, dy))).map(|(dx, dy)| at(x(day) + dx as f64, y(h) + dy as f64)).collect() };
        assert!(near(8.0, 80.0).contains(&EXPECTED));
        assert!(near(8.0, 120.0).contains(&CONSUMED));
        // The bottom axis, on the pixel row just above y = 154, and the tick of the period's
        // first of the month below it (none mid-period: this one has no other).
        assert_eq!(at(x(5.5), 153.0), AXIS);
        assert_eq!((c.at(5, 156), at(x(5.5), 156.0)), (AXIS, BACKGROUND));

        // With a forecast to the period end of P10 75 h, P50 135 h, P90 195 h (over the top):
        // the band from the instant (60 h) widens linearly, under the lines, cut at the frame.
        let c = draw(&with_band(), WIDTH, HEIGHT);
        let at = |xf: f64, yf: f64| c.at(xf.floor() as u32, yf.floor() as u32);
        let near = |day: f64, h: f64| -> Vec<Rgb> { (-2..=2).flat_map(|dx| (-2..=2).map(move |dy| (dx, dy))).map(|(dx, dy)| at(x(day) + dx as f64, y(h) + dy as f64)).collect() };
        // Day 7.5: P10 68.75 h, P90 138.75 h; 88 h is inside, clear of expected and granted.
        assert_eq!(at(x(7.5), y(88.0)), BAND);
        assert_ne!(BAND, CONSUMED_AREA);
        // Below P10 after the instant: background, still.
        assert_eq!(at(x(8.0), y(50.0)), BACKGROUND);
        // Granted and expected drawn over the band.
        assert_eq!(at(x(8.0), y(100.0)), GRANTED);
        assert!(near(8.0, 80.0).contains(&EXPECTED));
        // Day 9.5: P90 183.75 h is over the top: the band fills up to the frame's first row, not
        // above it.
        assert_eq!((c.at(x(9.5) as u32, 8), c.at(x(9.5) as u32, 7)), (BAND, BACKGROUND));
        // The median (dashed) through 85 h on day 6.
        assert!(near(6.0, 85.0).contains(&BAND_MEDIAN));
        // Before the instant, nothing of it.
        assert!(!(0..HEIGHT).any(|yy| c.at(x(3.0) as u32, yy) == BAND || c.at(x(3.0) as u32, yy) == BAND_MEDIAN));
    }

    #[test]
    fn segments_are_as_thick_as_asked_and_dashes_leave_gaps() {
        let mut c = Canvas::new(60, 30, BACKGROUND);
        c.segment((10.0, 10.0), (50.0, 10.0), 2.0, GRANTED, SOLID, 0.0);
        assert_eq!((c.at(30, 9), c.at(30, 10)), (GRANTED, GRANTED));
        assert_eq!((c.at(30, 8), c.at(30, 11), c.at(30, 20)), (BACKGROUND, BACKGROUND, BACKGROUND));
        c.segment((10.0, 20.0), (50.0, 20.0), 2.0, EXPECTED, Some(Dash { on: 4.0, off: 4.0 }), 0.0);
        let row: Vec<bool> = (10..50).map(|x| c.at(x, 20) == EXPECTED).collect();
        assert!(row[1] && !row[6] && row[9], "{row:?}");
        let mut a = Canvas::new(20, 20, BACKGROUND);
        a.area_under(&[(0.0, 10.0), (20.0, 10.0)], 20.0, CONSUMED_AREA);
        assert_eq!((a.at(5, 9), a.at(5, 10), a.at(5, 19)), (BACKGROUND, CONSUMED_AREA, CONSUMED_AREA));
    }
}
