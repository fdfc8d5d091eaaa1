// A small hand-written SVG bar chart: one (stacked) bar per bucket, axes with labels, a title and
// a description for screen readers, and a <title> tooltip on every bar. No chart library.

import type { Granularity } from '../types';
import { bucketLabel, formatCompact, formatCount, tickLabel } from '../usage';

export interface ChartSeries {
  /** Legend text, e.g. "Prompt tokens". */
  label: string;
  /** CSS class that colours the series (see styles.css, .series-*). */
  className: string;
}

export interface ChartBar {
  /** Bucket start, Unix ms. */
  start: number;
  /** One value per series, stacked bottom-up in series order. */
  values: number[];
  /** The tooltip's details after the bucket, e.g. "12 requests, 1 error". */
  detail: string;
}

interface Props {
  id: string;
  title: string;
  /** What the bars count, for the y axis: "Requests". */
  yLabel: string;
  granularity: Granularity;
  series: ChartSeries[];
  bars: ChartBar[];
  /** Shown instead of the chart when every bar is 0. */
  emptyText?: string;
}

// viewBox units: the chart scales to its card; at about this width, text is at its CSS size.
const WIDTH = 520;
const HEIGHT = 230;
const M = { top: 12, right: 10, bottom: 48, left: 58 };
const PLOT_W = WIDTH - M.left - M.right;
const PLOT_H = HEIGHT - M.top - M.bottom;

/** A round axis maximum at or above `max`: at most `ticks` steps of 1, 2, 2.5 or 5 × 10^k. */
export function niceScale(max: number, ticks = 5): { top: number; step: number } {
  if (max <= 0) return { top: ticks, step: 1 };
  const raw = max / ticks;
  const power = 10 ** Math.floor(Math.log10(raw));
  const factors = power >= 10 ? [1, 2, 2.5, 5, 10] : [1, 2, 5, 10];
  const step = factors.map((f) => f * power).find((s) => s >= raw) ?? 10 * power;
  const whole = Math.max(1, Math.ceil(step));
  return { top: whole * Math.ceil(max / whole), step: whole };
}

export function UsageChart({ id, title, yLabel, granularity, series, bars, emptyText = 'Nothing recorded in this range.' }: Props) {
  const totals = bars.map((b) => b.values.reduce((a, v) => a + v, 0));
  const max = Math.max(0, ...totals);
  const sum = totals.reduce((a, v) => a + v, 0);
  const unit = granularity === 'hour' ? 'hour' : 'day';

  if (bars.length === 0 || max === 0) {
    return (
      <figure className="chart card" aria-labelledby={`${id}-heading`}>
        <figcaption id={`${id}-heading`} className="chart-title">
          {title}
        </figcaption>
        <p className="chart-empty muted" data-testid={`${id}-empty`}>
          {emptyText}
        </p>
      </figure>
    );
  }

  const { top, step } = niceScale(max);
  const y = (v: number) => M.top + PLOT_H - (v / top) * PLOT_H;
  const band = PLOT_W / bars.length;
  const barWidth = Math.max(1, band * (bars.length > 96 ? 0.86 : 0.68));
  const yTicks: number[] = [];
  for (let v = 0; v <= top + step / 2; v += step) yTicks.push(v);
  // About 7 labels along the x axis whatever the number of bars; hourly labels fall on whole days
  // when there is room for one per day.
  let every = Math.max(1, Math.ceil(bars.length / 7));
  if (granularity === 'hour' && every > 1) every = [2, 3, 4, 6, 12, 24, 48, 72, 168].find((h) => h >= every) ?? every;
  const peakIndex = totals.indexOf(max);
  const description =
    `${title}, ${bars.length} ${unit}s (UTC) from ${bucketLabel(bars[0].start, granularity)} to ` +
    `${bucketLabel(bars[bars.length - 1].start, granularity)}: ${formatCount(sum)} in total, ` +
    `the most ${formatCount(max)} on ${bucketLabel(bars[peakIndex].start, granularity)}. ` +
    `Series: ${series.map((s) => s.label).join(', ')}.`;

  return (
    <figure className="chart card" aria-labelledby={`${id}-heading`}>
      <figcaption id={`${id}-heading`} className="chart-title">
        {title}
      </figcaption>
      {series.length > 1 ? (
        <ul className="chart-legend" aria-hidden="true">
          {series.map((s) => (
            <li key={s.label}>
              <span className={`legend-swatch ${s.className}`} /> {s.label}
            </li>
          ))}
        </ul>
      ) : null}
      <svg
        id={id}
        className="chart-svg"
        viewBox={`0 0 ${WIDTH} ${HEIGHT}`}
        role="img"
        aria-labelledby={`${id}-title ${id}-desc`}
        preserveAspectRatio="xMidYMid meet"
      >
        <title id={`${id}-title`}>{title}</title>
        <desc id={`${id}-desc`}>{description}</desc>
        <g className="chart-grid">
          {yTicks.map((v) => (
            <g key={v}>
              <line x1={M.left} x2={WIDTH - M.right} y1={y(v)} y2={y(v)} />
              <text x={M.left - 6} y={y(v)} dy="0.32em" textAnchor="end" className="chart-tick">
                {formatCompact(v)}
              </text>
            </g>
          ))}
        </g>
        <g className="chart-bars">
          {bars.map((b, i) => {
            const x = M.left + i * band + (band - barWidth) / 2;
            let base = 0;
            return (
              <g key={b.start} className="chart-bar" data-bucket={new Date(b.start).toISOString()} data-value={totals[i]}>
                <title>{`${bucketLabel(b.start, granularity)}: ${b.detail}`}</title>
                {/* The whole column takes the hover, so thin and empty bars have a tooltip too. */}
                <rect className="chart-hit" x={M.left + i * band} y={M.top} width={band} height={PLOT_H} />
                {b.values.map((v, s) => {
                  if (v <= 0) return null;
                  const y0 = y(base);
                  base += v;
                  const y1 = y(base);
                  return (
                    <rect
                      key={s}
                      className={`chart-segment ${series[s]?.className ?? ''}`}
                      x={x}
                      y={y1}
                      width={barWidth}
                      height={Math.max(0.5, y0 - y1)}
                    />
                  );
                })}
              </g>
            );
          })}
        </g>
        <g className="chart-axis">
          <line x1={M.left} x2={WIDTH - M.right} y1={M.top + PLOT_H} y2={M.top + PLOT_H} />
          <line x1={M.left} x2={M.left} y1={M.top} y2={M.top + PLOT_H} />
          {bars.map((b, i) => {
            if (i % every !== 0) return null;
            const newDay = i === 0 || new Date(b.start).getUTCHours() === 0;
            return (
              <text
                key={b.start}
                x={M.left + i * band + band / 2}
                y={M.top + PLOT_H + 16}
                textAnchor="middle"
                className="chart-tick"
              >
                {tickLabel(b.start, granularity, newDay)}
              </text>
            );
          })}
          <text x={M.left + PLOT_W / 2} y={HEIGHT - 8} textAnchor="middle" className="chart-axis-label">
            {granularity === 'hour' ? 'Hour (UTC)' : 'Day (UTC)'}
          </text>
          <text
            transform={`translate(14 ${M.top + PLOT_H / 2}) rotate(-90)`}
            textAnchor="middle"
            className="chart-axis-label"
          >
            {yLabel}
          </text>
        </g>
      </svg>
    </figure>
  );
}
