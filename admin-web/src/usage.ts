// Usage reports: UTC date ranges, the buckets of a range, sums of the API's rows, and number
// formats. The control plane stores hourly aggregates per (event, attendee, resource, hour) and
// answers them through GET /usage; everything here only arranges what it answers.

import type { Granularity, UsageCounts, UsageRow } from './types';

export const HOUR_MS = 3_600_000;
export const DAY_MS = 24 * HOUR_MS;
const DATE_RE = /^(\d{4})-(\d{2})-(\d{2})$/;

/** The longest range each granularity shows (hourly bars beyond a month are unreadable). */
export const MAX_DAYS: Record<Granularity, number> = { hour: 31, day: 366 };

export const ZERO: UsageCounts = {
  requests: 0,
  errors: 0,
  prompt_tokens: 0,
  completion_tokens: 0,
  total_tokens: 0,
  cached_tokens: 0,
};

const COUNT_KEYS = Object.keys(ZERO) as (keyof UsageCounts)[];

/** `YYYY-MM-DD` of `when` in UTC. */
export function utcDate(when: Date = new Date()): string {
  return when.toISOString().slice(0, 10);
}

/** Milliseconds of 00:00 UTC on `date` (`YYYY-MM-DD`), or NaN when it is not a real date. */
export function dateMs(date: string): number {
  const m = DATE_RE.exec(date);
  if (!m) return NaN;
  const ms = Date.UTC(+m[1], +m[2] - 1, +m[3]);
  return utcDate(new Date(ms)) === date ? ms : NaN;
}

export function isDate(date: string): boolean {
  return !Number.isNaN(dateMs(date));
}

export function addDays(date: string, days: number): string {
  return utcDate(new Date(dateMs(date) + days * DAY_MS));
}

/** RFC 3339 for 00:00 UTC on `date`. */
export function startOfDay(date: string): string {
  return `${date}T00:00:00Z`;
}

/** A report's range: whole UTC days, both ends included (as the date inputs show them). */
export interface DayRange {
  from: string;
  to: string;
}

/** The last 7 UTC days, today included. */
export function defaultRange(now: Date = new Date()): DayRange {
  const today = utcDate(now);
  return { from: addDays(today, -6), to: today };
}

/** The API's half-open range: from 00:00 UTC on the first day to 00:00 UTC after the last. */
export function rangeToApi(range: DayRange): { from: string; to: string } {
  return { from: startOfDay(range.from), to: startOfDay(addDays(range.to, 1)) };
}

export function rangeDays(range: DayRange): number {
  return Math.round((dateMs(range.to) - dateMs(range.from)) / DAY_MS) + 1;
}

export type RangeErrors = Partial<Record<'from' | 'to', string>>;

export function validateRange(range: DayRange, granularity: Granularity): RangeErrors {
  const errors: RangeErrors = {};
  if (!isDate(range.from)) errors.from = 'A date, such as 2026-12-01.';
  if (!isDate(range.to)) errors.to = 'A date, such as 2026-12-07.';
  if (errors.from || errors.to) return errors;
  if (range.to < range.from) errors.to = 'Must be on or after the start date.';
  else if (rangeDays(range) > MAX_DAYS[granularity]) {
    errors.to =
      granularity === 'hour'
        ? `Hourly reports cover at most ${MAX_DAYS.hour} days: pick a shorter range, or By day.`
        : `At most ${MAX_DAYS.day} days.`;
  }
  return errors;
}

/** The start of every bucket in [from, to): hours or UTC days. */
export function bucketStarts(fromMs: number, toMs: number, granularity: Granularity): number[] {
  const step = granularity === 'hour' ? HOUR_MS : DAY_MS;
  const first = Math.floor(fromMs / step) * step;
  const starts: number[] = [];
  for (let t = first; t < toMs && starts.length < 10_000; t += step) starts.push(t);
  return starts;
}

export function addCounts(a: UsageCounts, b: UsageCounts): UsageCounts {
  const sum = { ...a };
  for (const k of COUNT_KEYS) sum[k] = a[k] + (Number(b[k]) || 0);
  return sum;
}

export interface SeriesPoint extends UsageCounts {
  /** Bucket start, Unix ms. */
  start: number;
}

/** One point per bucket of the range, rows summed into their bucket, empty buckets as zeros. */
export function timeSeries(rows: UsageRow[], range: DayRange, granularity: Granularity): SeriesPoint[] {
  const { from, to } = rangeToApi(range);
  const step = granularity === 'hour' ? HOUR_MS : DAY_MS;
  const points = bucketStarts(Date.parse(from), Date.parse(to), granularity).map((start) => ({ ...ZERO, start }));
  const index = new Map(points.map((p, i) => [p.start, i]));
  for (const row of rows) {
    const at = Math.floor(Date.parse(row.bucket) / step) * step;
    const i = index.get(at);
    if (i === undefined) continue;
    points[i] = { ...addCounts(points[i], row), start: at };
  }
  return points;
}

export interface Group extends UsageCounts {
  key: string;
  /** The first row of the group, for its names (deployment_name, user_id…). */
  sample: UsageRow;
}

/** Sums the rows (all buckets) per key, e.g. per resource or per attendee. */
export function groupRows(rows: UsageRow[], key: (row: UsageRow) => string): Group[] {
  const groups = new Map<string, Group>();
  for (const row of rows) {
    const k = key(row);
    const g = groups.get(k);
    groups.set(k, g ? { ...g, ...addCounts(g, row) } : { ...addCounts(ZERO, row), key: k, sample: row });
  }
  return [...groups.values()];
}

const COUNT_FORMAT = new Intl.NumberFormat('en-GB');
const COMPACT_FORMAT = new Intl.NumberFormat('en-GB', { notation: 'compact', maximumFractionDigits: 1 });

/** "12,345". */
export function formatCount(n: number): string {
  return COUNT_FORMAT.format(n);
}

/** "12K", "1.5M": axis ticks. */
export function formatCompact(n: number): string {
  return COMPACT_FORMAT.format(n);
}

/** "2.5 %" of a whole, or "" when the whole is 0. */
export function formatShare(part: number, whole: number): string {
  if (!whole) return '';
  const pct = (part / whole) * 100;
  return `${pct > 0 && pct < 0.1 ? '<0.1' : pct.toFixed(pct < 10 ? 1 : 0)} %`;
}

const DAY_LABEL = new Intl.DateTimeFormat('en-GB', { timeZone: 'UTC', weekday: 'short', day: 'numeric', month: 'short' });
const SHORT_DAY = new Intl.DateTimeFormat('en-GB', { timeZone: 'UTC', day: 'numeric', month: 'short' });
const HOUR_LABEL = new Intl.DateTimeFormat('en-GB', { timeZone: 'UTC', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
const LONG_DAY = new Intl.DateTimeFormat('en-GB', { timeZone: 'UTC', day: 'numeric', month: 'short', year: 'numeric' });

/** A bucket for tooltips: "Thu 3 Dec" or "Thu 3 Dec, 10:00–11:00 UTC". */
export function bucketLabel(start: number, granularity: Granularity): string {
  if (granularity === 'day') return `${DAY_LABEL.format(start)} (UTC)`;
  return `${DAY_LABEL.format(start)}, ${HOUR_LABEL.format(start)}–${HOUR_LABEL.format(start + HOUR_MS)} UTC`;
}

/** A bucket for the x axis: "3 Dec" or "3 Dec 10:00" (the hour alone when the day is not new). */
export function tickLabel(start: number, granularity: Granularity, showDay = true): string {
  if (granularity === 'day') return SHORT_DAY.format(start);
  return showDay ? `${SHORT_DAY.format(start)} ${HOUR_LABEL.format(start)}` : HOUR_LABEL.format(start);
}

/** "26 Nov 2026 – 2 Dec 2026 (UTC)". */
export function rangeLabel(range: DayRange): string {
  const from = LONG_DAY.format(dateMs(range.from));
  const to = LONG_DAY.format(dateMs(range.to));
  return from === to ? `${from} (UTC)` : `${from} – ${to} (UTC)`;
}

/** A file-name-safe form of a name: "Spring hackathon" → "spring-hackathon". */
export function slug(name: string): string {
  return (
    name
      .normalize('NFKD')
      .replace(/[\u0300-\u036f]/g, '')
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, '-')
      .replace(/^-+|-+$/g, '')
      .slice(0, 60) || 'event'
  );
}
