import type { ReactNode } from 'react';
import { formatCount } from '../usage';

export interface Stat {
  label: string;
  value: number;
  /** A second line, e.g. "2.5 % of requests". */
  sub?: ReactNode;
  tone?: 'error';
}

/** Totals as cards: a label, the number, and an optional detail line. */
export function UsageStats({ stats, label }: { stats: Stat[]; label: string }) {
  return (
    <dl className="stats" aria-label={label}>
      {stats.map((s) => (
        <div key={s.label} className={`stat card${s.tone === 'error' && s.value > 0 ? ' stat-error' : ''}`}>
          <dt>{s.label}</dt>
          <dd className="stat-value" data-stat={s.label}>
            {formatCount(s.value)}
          </dd>
          {s.sub ? <dd className="stat-sub">{s.sub}</dd> : null}
        </div>
      ))}
    </dl>
  );
}
