//! A backtest's charts as one SVG, drawn with plotters: equity, drawdown,
//! and the first symbol's price with its buys and sells marked.

use plotters::prelude::*;

use super::curve::{Curve, Point};
use super::{FillRecord, ReportError};
use crate::bar::{Millis, format_time};
use crate::order::Side;

const WIDTH: u32 = 960;
const PANEL: u32 = 300;
/// Most fill markers drawn; more are thinned evenly, as the caption says.
const MARKERS: usize = 2_000;

fn chart_error(error: impl std::error::Error + Send + Sync + 'static) -> ReportError {
    ReportError::Chart(Box::new(error))
}

/// The three panels as an SVG document.
pub fn charts(curve: &Curve, fills: &[FillRecord]) -> Result<String, ReportError> {
    let points = curve.points();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, PANEL * 3)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_error)?;
        if let (Some(first), Some(last)) = (points.first(), points.last()) {
            let times = first.time..last.time.max(first.time + 1);
            draw(&root.split_evenly((3, 1)), curve, &points, times, fills)?;
        }
        root.present().map_err(chart_error)?;
    }
    Ok(svg)
}

/// Draws the three panels over `times`.
fn draw(
    panels: &[DrawingArea<SVGBackend<'_>, plotters::coord::Shift>],
    curve: &Curve,
    points: &[Point],
    times: std::ops::Range<Millis>,
    fills: &[FillRecord],
) -> Result<(), ReportError> {
    let day = |t: &Millis| format_time(*t).chars().take(10).collect::<String>();

    let equity: Vec<(Millis, f64)> = points.iter().map(|p| (p.time, p.equity)).collect();
    let (low, high) = bounds(equity.iter().map(|p| p.1));
    let mut chart = ChartBuilder::on(&panels[0])
        .caption("Equity", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(28)
        .y_label_area_size(80)
        .build_cartesian_2d(times.clone(), low..high)
        .map_err(chart_error)?;
    chart.configure_mesh().x_labels(6).x_label_formatter(&day).draw().map_err(chart_error)?;
    chart.draw_series(LineSeries::new(equity, &BLUE)).map_err(chart_error)?.label("equity");

    let drawdown = drawdowns(points);
    let (low, _) = bounds(drawdown.iter().map(|p| p.1));
    let mut chart = ChartBuilder::on(&panels[1])
        .caption("Drawdown (%)", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(28)
        .y_label_area_size(80)
        .build_cartesian_2d(times.clone(), low.min(-0.01)..0.0)
        .map_err(chart_error)?;
    chart.configure_mesh().x_labels(6).x_label_formatter(&day).draw().map_err(chart_error)?;
    chart
        .draw_series(AreaSeries::new(drawdown, 0.0, RED.mix(0.3)).border_style(RED))
        .map_err(chart_error)?
        .label("drawdown");

    let symbol = curve.symbol().unwrap_or_default();
    let prices: Vec<(Millis, f64)> = points.iter().filter_map(|p| Some((p.time, p.price?))).collect();
    let marks: Vec<(Millis, f64, Side)> = fills
        .iter()
        .filter(|f| f.symbol == symbol)
        .filter_map(|f| Some((fill_time(&f.time)?, rust_decimal::prelude::ToPrimitive::to_f64(&f.price)?, f.side)))
        .collect();
    let every = marks.len().div_ceil(MARKERS).max(1);
    let caption = match every {
        1 => format!("{} price, buys and sells", crate::runtime::bounded(symbol)),
        n => format!("{} price, every {n}th buy and sell", crate::runtime::bounded(symbol)),
    };
    let (low, high) = bounds(prices.iter().map(|p| p.1).chain(marks.iter().map(|m| m.1)));
    let mut chart = ChartBuilder::on(&panels[2])
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(28)
        .y_label_area_size(80)
        .build_cartesian_2d(times, low..high)
        .map_err(chart_error)?;
    chart.configure_mesh().x_labels(6).x_label_formatter(&day).draw().map_err(chart_error)?;
    chart.draw_series(LineSeries::new(prices, &BLACK)).map_err(chart_error)?.label("price");
    let shown = marks.iter().step_by(every);
    let buys = shown.clone().filter(|m| m.2 == Side::Buy);
    let sells = shown.filter(|m| m.2 == Side::Sell);
    chart
        .draw_series(buys.map(|&(t, p, _)| TriangleMarker::new((t, p), 6, GREEN.filled())))
        .map_err(chart_error)?
        .label("buy");
    chart
        .draw_series(sells.map(|&(t, p, _)| Cross::new((t, p), 5, RED.stroke_width(2))))
        .map_err(chart_error)?
        .label("sell");
    Ok(())
}

/// Each point's fall from the highest equity before it, in percent.
fn drawdowns(points: &[Point]) -> Vec<(Millis, f64)> {
    let mut peak = f64::MIN;
    points
        .iter()
        .map(|p| {
            peak = peak.max(p.equity);
            let fall = if peak > 0.0 { (p.equity / peak - 1.0) * 100.0 } else { 0.0 };
            (p.time, fall)
        })
        .collect()
}

/// The range of `values` with a little room, never empty.
fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (low, high) = values.filter(|v| v.is_finite()).fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(v), h.max(v)));
    if low > high {
        return (0.0, 1.0);
    }
    let room = ((high - low) * 0.05).max(high.abs() * 1e-6).max(1e-9);
    (low - room, high + room)
}

fn fill_time(text: &str) -> Option<Millis> {
    let time = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    Some((time.unix_timestamp_nanos() / 1_000_000) as Millis)
}
