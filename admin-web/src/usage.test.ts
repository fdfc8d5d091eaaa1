import { describe, expect, it } from 'vitest';
import {
  bucketStarts,
  defaultRange,
  formatShare,
  groupRows,
  rangeToApi,
  slug,
  timeSeries,
  validateRange,
} from './usage';
import { niceScale } from './components/UsageChart';
import { usageSearch } from './api';
import type { UsageRow } from './types';

function row(bucket: string, requests: number, total: number, dims: Partial<UsageRow> = {}): UsageRow {
  return {
    bucket,
    event_id: null,
    resource_id: null,
    deployment_name: null,
    user_id: null,
    requests,
    errors: 0,
    prompt_tokens: total,
    completion_tokens: 0,
    total_tokens: total,
    cached_tokens: 0,
    ...dims,
  };
}

describe('report ranges', () => {
  it('default to the last 7 UTC days, today included, whatever the local time', () => {
    expect(defaultRange(new Date('2026-12-03T23:59:59Z'))).toEqual({ from: '2026-11-27', to: '2026-12-03' });
    expect(defaultRange(new Date('2027-01-02T00:00:00Z'))).toEqual({ from: '2026-12-27', to: '2027-01-02' });
  });

  it('become the API’s half-open RFC 3339 range', () => {
    expect(rangeToApi({ from: '2026-12-31', to: '2026-12-31' })).toEqual({
      from: '2026-12-31T00:00:00Z',
      to: '2027-01-01T00:00:00Z',
    });
  });

  it('need real dates in order, and at most 31 days by hour', () => {
    expect(validateRange({ from: '2026-02-30', to: '2026-03-01' }, 'day').from).toBeDefined();
    expect(validateRange({ from: '', to: '2026-03-01' }, 'day').from).toBeDefined();
    expect(validateRange({ from: '2026-03-02', to: '2026-03-01' }, 'day').to).toMatch(/on or after/);
    expect(validateRange({ from: '2026-03-01', to: '2026-03-31' }, 'hour')).toEqual({});
    expect(validateRange({ from: '2026-03-01', to: '2026-04-01' }, 'hour').to).toMatch(/31 days/);
    expect(validateRange({ from: '2026-03-01', to: '2026-04-01' }, 'day')).toEqual({});
  });
});

describe('report rows', () => {
  it('fill every bucket of the range, zeros where nothing was recorded', () => {
    const points = timeSeries(
      [row('2026-12-02T00:00:00Z', 3, 30), row('2026-12-02T00:00:00Z', 1, 5), row('2026-12-09T00:00:00Z', 9, 9)],
      { from: '2026-12-01', to: '2026-12-03' },
      'day',
    );
    expect(points.map((p) => [new Date(p.start).toISOString().slice(0, 10), p.requests, p.total_tokens])).toEqual([
      ['2026-12-01', 0, 0],
      ['2026-12-02', 4, 35],
      ['2026-12-03', 0, 0],
    ]);
    expect(bucketStarts(Date.parse('2026-12-01T00:00:00Z'), Date.parse('2026-12-02T00:00:00Z'), 'hour')).toHaveLength(24);
  });

  it('sum per resource or attendee over the buckets', () => {
    const groups = groupRows(
      [
        row('2026-12-01T00:00:00Z', 1, 10, { resource_id: 'r1', deployment_name: 'gpt-4o' }),
        row('2026-12-02T00:00:00Z', 2, 20, { resource_id: 'r1', deployment_name: 'gpt-4o' }),
        row('2026-12-02T00:00:00Z', 4, 0, { resource_id: null }),
      ],
      (r) => r.resource_id ?? '',
    );
    expect(groups.map((g) => [g.key, g.requests, g.total_tokens, g.sample.deployment_name])).toEqual([
      ['r1', 3, 30, 'gpt-4o'],
      ['', 4, 0, null],
    ]);
  });

  it('ask the API with comma-separated group_by and without unset filters', () => {
    expect(usageSearch({ event_id: 'e 1', from: 'a', granularity: 'hour', group_by: ['resource', 'attendee'] }, 'csv')).toBe(
      'event_id=e+1&from=a&granularity=hour&group_by=resource%2Cattendee&format=csv',
    );
    expect(usageSearch({ event_id: 'e1', group_by: [] })).toBe('event_id=e1');
  });
});

describe('report display', () => {
  it('round the chart’s axis up to a readable step', () => {
    expect(niceScale(0)).toEqual({ top: 5, step: 1 });
    expect(niceScale(3)).toEqual({ top: 3, step: 1 });
    expect(niceScale(13)).toEqual({ top: 15, step: 5 });
    expect(niceScale(2400)).toEqual({ top: 2500, step: 500 });
    expect(niceScale(98_765)).toEqual({ top: 100_000, step: 20_000 });
    expect(niceScale(120)).toEqual({ top: 125, step: 25 });
  });

  it('show shares and file names', () => {
    expect(formatShare(1, 3)).toBe('33 %');
    expect(formatShare(1, 40)).toBe('2.5 %');
    expect(formatShare(1, 100_000)).toBe('<0.1 %');
    expect(formatShare(1, 0)).toBe('');
    expect(slug('Été: Spring hackathon #2!')).toBe('ete-spring-hackathon-2');
  });
});
